# Activation statistics per (task, cohort), permutations per (task, variant, cohort), merged models per pair.


# One job per (task, cohort): every statistics fraction its variants use comes from ONE pass over the data
# (the fraction-f file holds the statistics of the first f of it) that forwards the cohort's seeds and keeps
# its pairs' cross blocks (permerge.cohorts: a fresh grid is one cohort of all seeds; a seed added later
# gets a cohort of its own pairs with the seeds already there, so nothing already computed is redone).
rule collect_statistics:
    input:
        models=cohort_models,
        text=stats_text,
    output:
        directory(res("stats/{task}/{cohort}")),
    log:
        res("logs/collect_statistics/{task}/{cohort}.log"),
    benchmark:
        res("benchmarks/collect_statistics/{task}/{cohort}.tsv")
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=lambda w: FOOTPRINT.mem_mb("collect_statistics", config, w.task),
        runtime=240,
        gpu=GPU,
    params:
        statistics=lambda w: {k: config["statistics"][k] for k in ("batch_size", "max_length", "max_lines")},
        fractions=lambda w: stats_fraction_params(w.task),
        seeds=lambda w: COHORTS.seeds(w.cohort),
        pairs=lambda w: COHORTS.blocks(w.cohort),
        device=config["device"],
    script:
        "../scripts/collect_statistics.py"


# One job per (task, variant, cohort): the cohort of the statistics pass (a fresh grid: one job per task
# and variant; a seed added later: one more, for its own pairs). Its folder holds a file per pair,
# seed{a}-seed{b}.safetensors, and appears whole when the job ends.
rule compute_permutations:
    input:
        stats=stats_dir,  # the cohort's; none for vanilla and weight matching
        models=matching_models,  # only for weight/hybrid matching
        heads=pooler_models,  # where the variant aligns the pooler: do the seeds share its init?
        model_config=first_model,
    output:
        directory(res("permutations/{task}/{variant}/{cohort}")),
    log:
        res("logs/compute_permutations/{task}/{variant}/{cohort}.log"),
    benchmark:
        res("benchmarks/compute_permutations/{task}/{variant}/{cohort}.tsv")
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=lambda w: FOOTPRINT.mem_mb("compute_permutations", config, w.task),
        # per pair at bert-base: weight matching ~6 min, activation matching ~1 min (docs/performance.md)
        runtime=cohort_minutes(lambda w: 30 if cfg.needs_weights(config, w.variant) else 10),
    params:
        options=variant_options,
        stats_name=stats_name,
        seeds=cohort_seeds,
        pairs=cohort_pair_list,
    script:
        "../scripts/compute_permutations.py"


# One job per (task, variant, pair), reading the pair's file from its cohort folder: `snakemake merged`
# only (~130 GB at paper scale), so that a subset of pairs can be asked for.
rule merge_checkpoints:
    input:
        models=pair_models,
        permutations=pair_permutations,  # the pair's cohort folder
    output:
        [
            directory(res(f"merged/{{task}}/{{variant}}/seed{{a}}-seed{{b}}/lambda{fmt(lam)}"))
            for lam in config["merged_lambdas"]
        ],
    log:
        res("logs/merge_checkpoints/{task}/{variant}/seed{a}-seed{b}.log"),
    benchmark:
        res("benchmarks/merge_checkpoints/{task}/{variant}/seed{a}-seed{b}.tsv")
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=lambda w: FOOTPRINT.mem_mb("merge_checkpoints", config, w.task),
        runtime=30,
    params:
        seeds=pair_seeds,
        pairs=the_pair,
        permutation_files=lambda w: [pair_permutation_file(w)],
        lambdas=config["merged_lambdas"],
    script:
        "../scripts/merge_checkpoints.py"
