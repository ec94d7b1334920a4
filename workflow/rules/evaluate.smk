# Losses along θ(λ) = (1-λ)·θ_A + λ·π(θ_B), interpolated in memory (no checkpoint per λ).


rule build_mlm_evalset:
    input:
        text=res("data/text/heldout.txt"),
        tokenizer=f"{R}/models/mlm/seed{SEEDS[0]}",
    output:
        res("data/evalsets/mlm.safetensors"),
    log:
        res("logs/build_mlm_evalset.log"),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        mlm_eval={
            k: config["data"]["mlm_eval"][k]
            for k in ("block_size", "mask_prob", "mask_seed", "max_blocks", "paper_compat")
        },
    script:
        "../scripts/build_mlm_evalset.py"


rule sweep_lambdas:
    input:
        models=seed_models,
        permutations=lambda w: [
            f"{R}/permutations/{w.task}/{w.variant}/{pair_name(a, b)}.safetensors" for a, b in PAIRS
        ],
        data=evaluation_data,
    output:
        [f"{R}/losses/{{task}}/{{variant}}/{pair_name(a, b)}.tsv" for a, b in PAIRS],
    log:
        res("logs/sweep_lambdas/{task}/{variant}.log"),
    benchmark:
        res("benchmarks/sweep_lambdas/{task}/{variant}.tsv")
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=lambda w: FOOTPRINT.mem_mb("sweep_lambdas", config, w.task),
        runtime=240,
        gpu=GPU,
    params:
        seeds=SEEDS,
        pairs=PAIRS,
        lambdas=LAMBDAS,
        evaluation=config["evaluation"],
        max_length=config["finetune"]["max_length"],
        device=config["device"],
    script:
        "../scripts/sweep_lambdas.py"
