# Activation statistics per cohort of seed pairs, permutations and merged models per (task, variant, pair).


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
        pairs=lambda w: COHORTS.pairs(w.cohort),
        device=config["device"],
    script:
        "../scripts/collect_statistics.py"


# One job per (task, variant, pair): adding a seed adds jobs of its own pairs only, and removing one leaves
# the other pairs' files alone. The per-job start-up is small here (warm_jobs forks a process that has
# imported torch); on SLURM the profile bundles these jobs (group `align`).
rule compute_permutations:
    input:
        stats=stats_dir,  # the pair's cohort; none for vanilla and weight matching
        models=matching_models,  # only for weight/hybrid matching
        heads=pooler_models,  # where the variant aligns the pooler: do the seeds share its init?
        model_config=res("models/{task}/seed{a}"),
    output:
        res("permutations/{task}/{variant}/seed{a}-seed{b}.safetensors"),
    log:
        res("logs/compute_permutations/{task}/{variant}/seed{a}-seed{b}.log"),
    benchmark:
        res("benchmarks/compute_permutations/{task}/{variant}/seed{a}-seed{b}.tsv")
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=lambda w: FOOTPRINT.mem_mb("compute_permutations", config, w.task),
        runtime=60,
    params:
        options=variant_options,
        stats_name=stats_name,
        seeds=pair_seeds,
        pairs=the_pair,
    script:
        "../scripts/compute_permutations.py"


rule merge_checkpoints:
    input:
        models=pair_models,
        permutations=pair_permutations,
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
        lambdas=config["merged_lambdas"],
    script:
        "../scripts/merge_checkpoints.py"
