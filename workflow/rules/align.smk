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
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=GPU,
    conda:
        ENV
    script:
        "../scripts/collect_statistics.py"


rule compute_permutations:
    input:
        stats=stats_file,
        model_a="results/models/{task}/seed{a}",
        model_b="results/models/{task}/seed{b}",
    output:
        "results/permutations/{task}/{variant}/seed{a}-seed{b}.safetensors",
    log:
        "results/logs/compute_permutations/{task}/{variant}/seed{a}-seed{b}.log",
    params:
        options=variant_options,
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        ENV
    script:
        "../scripts/compute_permutations.py"


rule merge_checkpoint:
    input:
        model_a="results/models/{task}/seed{a}",
        model_b="results/models/{task}/seed{b}",
        permutations="results/permutations/{task}/{variant}/seed{a}-seed{b}.safetensors",
    output:
        directory("results/merged/{task}/{variant}/seed{a}-seed{b}/lambda{lam}"),
    log:
        "results/logs/merge_checkpoint/{task}/{variant}/seed{a}-seed{b}/lambda{lam}.log",
    params:
        lam=lambda w: float(w.lam),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    conda:
        ENV
    script:
        "../scripts/merge_checkpoint.py"
