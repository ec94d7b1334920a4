# Seed checkpoints: results/models/mlm/seed{seed}/ (pre-trained from scratch, or a local copy of a hub
# or local checkpoint, so every later rule reads one place) and fine-tuned GLUE models.

if config["models"]["source"] == "pretrain":

    rule train_tokenizer:
        input:
            "results/data/text/pretrain.txt",
        output:
            directory("results/models/tokenizer"),
        log:
            "results/logs/train_tokenizer.log",
        params:
            vocab_size=config["models"]["pretrain"]["vocab_size"],
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        conda:
            ENV
        script:
            "../scripts/train_tokenizer.py"

    rule pretrain_seed:
        input:
            tokenizer="results/models/tokenizer",
            text="results/data/text/pretrain.txt",
            heldout="results/data/text/heldout.txt",
        output:
            directory("results/models/mlm/seed{seed}"),
        log:
            "results/logs/pretrain_seed/seed{seed}.log",
        benchmark:
            "results/benchmarks/pretrain_seed/seed{seed}.tsv"
        params:
            pretrain=config["models"]["pretrain"],
        threads: config["threads"]
        resources:
            mem_mb=3000,
            runtime=60,
        conda:
            ENV
        script:
            "../scripts/pretrain.py"

else:

    rule fetch_model:
        output:
            directory("results/models/mlm/seed{seed}"),
        log:
            "results/logs/fetch_model/seed{seed}.log",
        params:
            source=config["models"]["source"],
            location=lambda w: (
                config["models"]["hub_id"]
                if config["models"]["source"] == "hub"
                else config["models"]["local_dir"]
            ).replace("{seed}", w.seed),
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        conda:
            ENV
        script:
            "../scripts/fetch_model.py"


rule finetune:
    input:
        model="results/models/mlm/seed{seed}",
        train="results/data/glue/{glue_task}/train.jsonl",
        validation=lambda w: f"results/data/glue/{w.glue_task}/{eval_split(w.glue_task)}.jsonl",
    output:
        directory("results/models/{glue_task}/seed{seed}"),
    log:
        "results/logs/finetune/{glue_task}/seed{seed}.log",
    benchmark:
        "results/benchmarks/finetune/{glue_task}/seed{seed}.tsv"
    params:
        hparams=lambda w: finetune_params(w.glue_task),
        device=config["device"],
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=240,
        gpu=GPU,
    conda:
        ENV
    script:
        "../scripts/finetune.py"
