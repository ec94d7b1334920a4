# Activation statistics (all seeds in one pass), permutations per (task, variant, pair), merged models.


# One job per task: every statistics fraction its variants use comes from ONE pass over the data (the
# fraction-f file holds the statistics of the first f of it), one file per fraction in the folder.
rule collect_statistics:
    input:
        models=seed_models,
        text=stats_text,
    output:
        directory(res("stats/{task}")),
    log:
        res("logs/collect_statistics/{task}.log"),
    benchmark:
        res("benchmarks/collect_statistics/{task}.tsv")
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
        seeds=SEEDS,
        pairs=PAIRS,
        device=config["device"],
    script:
        "../scripts/collect_statistics.py"


# One job per (task, variant) covering every pair: the pairs share the statistics file and the per-job
# start-up (python + torch) would otherwise dominate small models. Changing a variant's options reruns
# exactly that variant's jobs.
rule compute_permutations:
    input:
        stats=stats_dir,  # none for vanilla and weight matching
        models=matching_models,  # only for weight/hybrid matching
        heads=pooler_models,  # where the variant aligns the pooler: do the seeds share its init?
        model_config=f"{R}/models/{{task}}/seed{SEEDS[0]}",
    output:
        [f"{R}/permutations/{{task}}/{{variant}}/{pair_name(a, b)}.safetensors" for a, b in PAIRS],
    log:
        res("logs/compute_permutations/{task}/{variant}.log"),
    benchmark:
        res("benchmarks/compute_permutations/{task}/{variant}.tsv")
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=lambda w: FOOTPRINT.mem_mb("compute_permutations", config, w.task),
        runtime=60,
    params:
        options=variant_options,
        stats_name=stats_name,
        seeds=SEEDS,
        pairs=PAIRS,
    script:
        "../scripts/compute_permutations.py"


rule merge_checkpoints:
    input:
        models=seed_models,
        permutations=lambda w: [
            f"{R}/permutations/{w.task}/{w.variant}/{pair_name(a, b)}.safetensors" for a, b in PAIRS
        ],
    output:
        [
            directory(f"{R}/merged/{{task}}/{{variant}}/{pair_name(a, b)}/lambda{fmt(lam)}")
            for a, b in PAIRS
            for lam in config["merged_lambdas"]
        ],
    log:
        res("logs/merge_checkpoints/{task}/{variant}.log"),
    benchmark:
        res("benchmarks/merge_checkpoints/{task}/{variant}.tsv")
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=lambda w: FOOTPRINT.mem_mb("merge_checkpoints", config, w.task),
        runtime=30,
    params:
        seeds=SEEDS,
        pairs=PAIRS,
        lambdas=config["merged_lambdas"],
    script:
        "../scripts/merge_checkpoints.py"
