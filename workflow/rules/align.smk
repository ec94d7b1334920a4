# Activation statistics (all seeds in one pass), permutations per (task, variant, pair), merged models.


rule collect_statistics:
    input:
        models=seed_models,
        text=stats_text,
    output:
        "results/stats/{task}/fraction{fraction}.safetensors",
    log:
        "results/logs/collect_statistics/{task}/fraction{fraction}.log",
    benchmark:
        "results/benchmarks/collect_statistics/{task}/fraction{fraction}.tsv"
    params:
        statistics=config["statistics"],
        fraction=lambda w: float(w.fraction),
        seeds=SEEDS,
        pairs=PAIRS,
        device=config["device"],
    threads: config["threads"]
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=GPU,
    conda:
        ENV
    script:
        "../scripts/collect_statistics.py"


# One job per (task, variant) covering every pair: the pairs share the statistics file and the per-job
# start-up (python + torch) would otherwise dominate small models. Changing a variant's options reruns
# exactly that variant's jobs.
rule compute_permutations:
    input:
        stats=stats_file,
        model_config=f"results/models/{{task}}/seed{SEEDS[0]}",
    output:
        [f"results/permutations/{{task}}/{{variant}}/{pair_name(a, b)}.safetensors" for a, b in PAIRS],
    log:
        "results/logs/compute_permutations/{task}/{variant}.log",
    benchmark:
        "results/benchmarks/compute_permutations/{task}/{variant}.tsv"
    params:
        options=variant_options,
        pairs=PAIRS,
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        ENV
    script:
        "../scripts/compute_permutations.py"


rule merge_checkpoints:
    input:
        models=seed_models,
        permutations=lambda w: [
            f"results/permutations/{w.task}/{w.variant}/{pair_name(a, b)}.safetensors" for a, b in PAIRS
        ],
    output:
        [
            directory(f"results/merged/{{task}}/{{variant}}/{pair_name(a, b)}/lambda{fmt(lam)}")
            for a, b in PAIRS
            for lam in config["merged_lambdas"]
        ],
    log:
        "results/logs/merge_checkpoints/{task}/{variant}.log",
    benchmark:
        "results/benchmarks/merge_checkpoints/{task}/{variant}.tsv"
    params:
        seeds=SEEDS,
        pairs=PAIRS,
        lambdas=config["merged_lambdas"],
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        ENV
    script:
        "../scripts/merge_checkpoints.py"
