# Losses along θ(λ) = (1-λ)·θ_A + λ·π(θ_B), interpolated in memory (no checkpoint per λ).


# mlm: the held-out text tokenized normally; mlm_compat: the same lines character-spaced as the reference
# scored them (same masks' seed and block size), for the paper's MLM barriers.
rule build_mlm_evalset:
    input:
        text=res("data/text/heldout.txt"),
        tokenizer=f"{R}/models/mlm/seed{SEEDS[0]}",
    output:
        res("data/evalsets/{evalset}.safetensors"),
    log:
        res("logs/build_{evalset}_evalset.log"),
    wildcard_constraints:
        evalset="|".join([TASK_REGISTRY.MLM, *TASK_REGISTRY.PAPER_COMPAT_EVALSETS]),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        mlm_eval=lambda w: mlm_evalset_options(w.evalset),
    script:
        "../scripts/build_mlm_evalset.py"


# One job per (task, variant, pair), like the permutations: a new seed sweeps only its own pairs.
rule sweep_lambdas:
    input:
        models=pair_models,  # mlm_compat: mlm's models and permutations
        permutations=pair_permutations,
        data=evaluation_data,
    output:
        res("losses/{task}/{variant}/seed{a}-seed{b}.tsv"),
    log:
        res("logs/sweep_lambdas/{task}/{variant}/seed{a}-seed{b}.log"),
    benchmark:
        res("benchmarks/sweep_lambdas/{task}/{variant}/seed{a}-seed{b}.tsv")
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=lambda w: FOOTPRINT.mem_mb("sweep_lambdas", config, w.task),
        runtime=240,
        gpu=GPU,
    params:
        seeds=pair_seeds,
        pairs=the_pair,
        lambdas=LAMBDAS,
        evaluation=config["evaluation"],
        max_length=config["finetune"]["max_length"],
        device=config["device"],
    script:
        "../scripts/sweep_lambdas.py"
