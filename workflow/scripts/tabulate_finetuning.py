"""results/tables/finetune.tsv: the validation metric of every fine-tuned checkpoint; finetune_summary.tsv:
per task, the seeds' mean ± s.e. beside chance, the bag-of-words score and the "learnt" target."""

import json
from pathlib import Path

from permerge.evaluation.barriers import read_tsv, write_tsv
from permerge.io import atomic_path, setup_job
from permerge.training.baseline import summarize_finetuning

log = setup_job(snakemake)
rows, columns = [], ["task", "seed"]
for model_dir in map(Path, snakemake.input.models):
    metrics = json.loads((model_dir / "metrics.json").read_text())
    row = {"task": model_dir.parent.name, "seed": model_dir.name.removeprefix("seed"), **metrics}
    columns += [k for k in row if k not in columns]
    rows.append(row)
with atomic_path(snakemake.output.models) as tmp:
    write_tsv(rows, tmp, columns)
summary = summarize_finetuning(rows, read_tsv(snakemake.input.baseline))
with atomic_path(snakemake.output.summary) as tmp:
    write_tsv(summary, tmp, list(summary[0]))
for s in summary:
    log.info(
        "%s: %s %.3f ± %.3f over %d seeds (chance %.3f, bag-of-words %.3f, target %.3f): learnt %s",
        *(s[k] for k in ("task", "metric", "mean", "se", "n", "chance", "bow", "target", "learnt")),
    )
