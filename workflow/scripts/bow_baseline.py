"""results/tables/baseline.tsv: the bag-of-words score, chance and the "learnt" target of every GLUE task."""

from permerge.data.jsonl import read_jsonl
from permerge.evaluation.barriers import write_tsv
from permerge.io import atomic_path, setup_job
from permerge.training.baseline import bow_baseline

log = setup_job(snakemake)
rows = []
for task, train, evaluation in zip(snakemake.params.tasks, snakemake.input.train, snakemake.input.evaluation):
    row = bow_baseline(read_jsonl(train), read_jsonl(evaluation), task)
    log.info(
        "%s: bag-of-words %s %.4f (chance %.4f, target %.4f)",
        task,
        *(row[k] for k in ("metric", "bow", "chance", "target")),
    )
    rows.append(row)
with atomic_path(snakemake.output[0]) as tmp:
    write_tsv(rows, tmp, list(rows[0]))
