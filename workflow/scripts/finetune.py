"""Fine-tune one pre-trained seed on one GLUE(-shaped) task; the head is initialised identically across seeds.

params.hparams: config `finetune` with the task's overrides (lr, epochs, batch_size, max_length, warmup,
head_seed, data_seed, fp16, group_by_length, max_train_examples, dropout); params.device;
params.resume_dir: where the training state is saved (config `finetune.resume_every_steps`) so that a
killed job's next attempt resumes; outside the output, which Snakemake deletes before a rerun. It is
removed once the output is in place.
"""

from permerge.io import atomic_path, setup_job
from permerge.tooling.device import job_preflight

log = setup_job(snakemake)
job_preflight(getattr(snakemake.params, "device", "cpu") or "cpu", log)  # CUDA works here, before any input is read
from permerge.data.jsonl import read_jsonl, validate_task_files  # noqa: E402
from permerge.tasks import base_task  # noqa: E402
from permerge.tooling.footprint import check_finetune_gpu  # noqa: E402
from permerge.training.finetune import finetune, task_info  # noqa: E402
from permerge.training.resume import discard  # noqa: E402

p = snakemake.params
hp = dict(p.hparams)
KEYS = (
    "lr",
    "epochs",
    "batch_size",
    "max_length",
    "warmup",
    "head_seed",
    "data_seed",
    "fp16",
    "group_by_length",
    "max_train_examples",
    "dropout",
)
missing = [k for k in KEYS if k not in hp]
if missing:
    raise SystemExit(f"finetune: params.hparams lacks {missing} (the config schema's `finetune` defaults fill them)")
task = base_task(snakemake.wildcards.glue_task)  # sst2_step250: SST-2 on the step-250 checkpoint
# with device cuda: fail naming gpu_memory_gb when fine-tuning would not fit it (footprint.finetune_gpu_parts)
check_finetune_gpu(
    {
        **(getattr(snakemake, "config", None) or {}),
        "device": getattr(p, "device", "cpu") or "cpu",
        "finetune": {**hp, "tasks": {}},
    },
    task,
)
seed = int(snakemake.wildcards.seed)
info = task_info(task)
# A missing split, text or label column fails here, naming the task and the file.
validate_task_files(
    task, {"train": snakemake.input.train, info.eval_split: snakemake.input.validation}, require_all=False
)
train = read_jsonl(snakemake.input.train, hp["max_train_examples"])
validation = read_jsonl(snakemake.input.validation)
# The save cadence does not change the result: read from the configuration, not params (a change of it
# must not rerun finished fine-tuning jobs). The schema fills the default.
resume_every = snakemake.config.get("finetune", {}).get("resume_every_steps")
with atomic_path(snakemake.output[0], is_dir=True) as tmp:
    finetune(
        model_dir=snakemake.input.model,
        train_examples=train,
        eval_examples=validation,
        text_keys=info.text_keys,
        num_labels=info.num_labels,
        metric=info.metric,
        out_dir=tmp,
        seed=seed,
        # The schema fills every default (config.schema.yaml, finetune); no second set of defaults here.
        head_seed=int(hp["head_seed"]),
        data_seed=None if hp["data_seed"] is None else int(hp["data_seed"]),
        lr=float(hp["lr"]),
        epochs=float(hp["epochs"]),
        batch_size=int(hp["batch_size"]),
        max_length=int(hp["max_length"]),
        warmup=float(hp["warmup"]),
        fp16=bool(hp["fp16"]),
        group_by_length=bool(hp["group_by_length"]),
        dropout=None if hp["dropout"] is None else float(hp["dropout"]),
        device=getattr(p, "device", "cpu") or "cpu",
        log=log,
        resume_dir=p.resume_dir,
        resume_every_steps=None if resume_every is None else int(resume_every),
    )
discard(p.resume_dir, log)  # only now: the output is in place
