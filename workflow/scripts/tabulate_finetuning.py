"""results/tables/finetune.tsv: the validation metric of every fine-tuned checkpoint."""

import json
from pathlib import Path

from permerge.barriers import write_tsv
from permerge.io import atomic_path, setup_job

log = setup_job(snakemake)
rows, columns = [], ["task", "seed"]
for model_dir in map(Path, snakemake.input.models):
    metrics = json.loads((model_dir / "metrics.json").read_text())
    row = {"task": model_dir.parent.name, "seed": model_dir.name.removeprefix("seed"), **metrics}
    columns += [k for k in row if k not in columns]
    rows.append(row)
with atomic_path(snakemake.output[0]) as tmp:
    write_tsv(rows, tmp, columns)
log.info("%d fine-tuned checkpoints", len(rows))
