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


# One job per (task, variant, cohort), like the permutations: a new seed sweeps only its own pairs. Its folder
# holds a loss file per pair, seed{a}-seed{b}.tsv, and appears whole when the job ends.
rule sweep_lambdas:
    input:
        models=cohort_models,  # mlm_compat: mlm's models and permutations
        permutations=cohort_permutations,
        data=evaluation_data,
    output:
        directory(res("losses/{task}/{variant}/{cohort}")),
    log:
        res("logs/sweep_lambdas/{task}/{variant}/{cohort}.log"),
    benchmark:
        res("benchmarks/sweep_lambdas/{task}/{variant}/{cohort}.tsv")
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=lambda w: FOOTPRINT.mem_mb("sweep_lambdas", config, w.task),
        runtime=cohort_minutes(lambda w: 30),  # per pair: ~12 min on a GPU at bert-base, 21 λ
        gpu=GPU,
    params:
        seeds=cohort_seeds,
        pairs=cohort_pair_list,
        lambdas=LAMBDAS,
        evaluation=config["evaluation"],
        max_length=config["finetune"]["max_length"],
        device=config["device"],
    script:
        "../scripts/sweep_lambdas.py"
