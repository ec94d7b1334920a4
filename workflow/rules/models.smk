# Seed checkpoints: results/models/mlm/seed{seed}/ (pre-trained from scratch, or a local copy of a hub
# or local checkpoint, so every later rule reads one place) and fine-tuned GLUE models.

if config["models"]["source"] == "pretrain":

    rule train_tokenizer:
        input:
            res("data/text/pretrain.txt"),
        output:
            directory(res("models/tokenizer")),
        log:
            res("logs/train_tokenizer.log"),
        conda:
            ENV
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            vocab_size=config["models"]["pretrain"]["vocab_size"],
        script:
            "../scripts/train_tokenizer.py"

    rule pretrain_seed:
        input:
            tokenizer=res("models/tokenizer"),
            text=res("data/text/pretrain.txt"),
            heldout=res("data/text/heldout.txt"),
        output:
            directory(res("models/mlm/seed{seed}")),
        log:
            res("logs/pretrain_seed/seed{seed}.log"),
        benchmark:
            res("benchmarks/pretrain_seed/seed{seed}.tsv")
        conda:
            ENV
        threads: config["threads"]
        resources:
            mem_mb=3000,
            runtime=60,
        params:
            pretrain=config["models"]["pretrain"],
        script:
            "../scripts/pretrain.py"

else:

    rule fetch_model:
        output:
            directory(res("models/mlm/seed{seed}")),
        log:
            res("logs/fetch_model/seed{seed}.log"),
        conda:
            ENV
        threads: 1
        resources:
            mem_mb=FOOTPRINT.mem_mb("fetch_model", config),
            runtime=30,
        params:
            source=config["models"]["source"],
            location=lambda w: (
                config["models"]["hub_id"] if config["models"]["source"] == "hub" else config["models"]["local_dir"]
            ).replace("{seed}", w.seed),
        script:
            "../scripts/fetch_model.py"


rule finetune:
    input:
        model=res("models/mlm/seed{seed}"),
        train=res("data/glue/{glue_task}/train.jsonl"),
        validation=lambda w: f"{R}/data/glue/{w.glue_task}/{eval_split(w.glue_task)}.jsonl",
    output:
        directory(res("models/{glue_task}/seed{seed}")),
    log:
        res("logs/finetune/{glue_task}/seed{seed}.log"),
    benchmark:
        res("benchmarks/finetune/{glue_task}/seed{seed}.tsv")
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=lambda w: FOOTPRINT.mem_mb("finetune", config, w.glue_task),
        runtime=240,
        gpu=GPU,
    params:
        hparams=lambda w: finetune_params(w.glue_task),
        device=config["device"],
    script:
        "../scripts/finetune.py"
