"""Fine-tune one pre-trained seed on one GLUE(-shaped) task; the head is initialised identically across seeds."""

from permerge.io import atomic_path, setup_job

log = setup_job(snakemake)
from permerge.finetune import finetune, task_info  # noqa: E402
from permerge.standins import read_jsonl, validate_task_files  # noqa: E402

p = snakemake.params
hp = dict(p.hparams)
task = snakemake.wildcards.glue_task
seed = int(snakemake.wildcards.seed)
info = task_info(task)
# A missing split, text or label column fails here, naming the task and the file.
validate_task_files(task, {"train": snakemake.input.train, info.eval_split: snakemake.input.validation},
                    require_all=False)
train = read_jsonl(snakemake.input.train, hp.get("max_train_examples"))
validation = read_jsonl(snakemake.input.validation)
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
        head_seed=int(hp.get("head_seed", 0)),
        lr=float(hp.get("lr", 2e-5)),
        epochs=float(hp.get("epochs", 3)),
        batch_size=int(hp.get("batch_size", 32)),
        max_length=int(hp.get("max_length", 128)),
        group_by_length=bool(hp.get("group_by_length", True)),
        device=getattr(p, "device", "cpu") or "cpu",
        log=log,
    )
