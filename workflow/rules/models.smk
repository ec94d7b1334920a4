# Seed checkpoints: results/models/mlm/seed{seed}/ (pre-trained from scratch, or a local copy of a hub
# or local checkpoint, so every later rule reads one place) and fine-tuned GLUE models. A checkpoint at an
# intermediate pre-training step is a task of its own: results/models/mlm_step{step}/seed{seed}/ (and a GLUE
# task fine-tuned from it, results/models/sst2_step{step}/seed{seed}/).

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

    # A step's checkpoint from the weights pretrain_seed saved on the way (models.pretrain.checkpoint_every):
    # adding a step to trajectory.steps pre-trains nothing again.
    rule extract_step:
        input:
            seed_dir=res("models/mlm/seed{seed}"),
        output:
            directory(res("models/mlm_step{step}/seed{seed}")),
        log:
            res("logs/extract_step/step{step}/seed{seed}.log"),
        conda:
            ENV
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            step=lambda w: int(w.step),
        script:
            "../scripts/extract_step.py"

else:

    # The final checkpoint (task mlm: models.hub_id or models.local_dir) or one at an intermediate step
    # (mlm_step{step}: trajectory.hub_id).
    rule fetch_model:
        output:
            directory(res("models/{task}/seed{seed}")),
        log:
            res("logs/fetch_model/{task}/seed{seed}.log"),
        wildcard_constraints:
            task=TASK_REGISTRY.task_pattern([TASK_REGISTRY.MLM]),
        # a download (hub) or a copy: on a cluster it runs on the submitting host, which has the network
        localrule: True
        conda:
            ENV
        threads: 1
        resources:
            mem_mb=FOOTPRINT.mem_mb("fetch_model", config),
            runtime=30,
        params:
            source=config["models"]["source"],
            location=lambda w: model_location(w.task, w.seed),
        script:
            "../scripts/fetch_model.py"


# A GLUE task at a step (sst2_step250) fine-tunes that step's MLM checkpoint (mlm_step250) on the task.
rule finetune:
    input:
        model=lambda w: f"{R}/models/{TASK_REGISTRY.pretrained_of(w.glue_task)}/seed{w.seed}",
        train=lambda w: f"{R}/data/glue/{TASK_REGISTRY.base_task(w.glue_task)}/train.jsonl",
        validation=lambda w: f"{R}/data/glue/{TASK_REGISTRY.base_task(w.glue_task)}/{eval_split(w.glue_task)}.jsonl",
    output:
        directory(res("models/{glue_task}/seed{seed}")),
    log:
        res("logs/finetune/{glue_task}/seed{seed}.log"),
    benchmark:
        res("benchmarks/finetune/{glue_task}/seed{seed}.tsv")
    wildcard_constraints:
        glue_task=TASK_REGISTRY.task_pattern(TASK_REGISTRY.GLUE_TASKS),
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
