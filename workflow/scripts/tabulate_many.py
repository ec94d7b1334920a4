"""results/tables/many.tsv: the losses of every all-seed merge (rows of results/many/*/*/losses.tsv)."""

from pathlib import Path

from permerge.evaluation.barriers import read_tsv, write_tsv
from permerge.io import atomic_path, setup_job

log = setup_job(snakemake)
rows, columns = [], []
for folder in map(Path, snakemake.input):
    for row in read_tsv(folder / "losses.tsv"):
        columns += [k for k in row if k not in columns]
        rows.append(row)
with atomic_path(snakemake.output[0]) as tmp:
    write_tsv(rows, tmp, columns)
log.info("%d rows from %d merges", len(rows), len(snakemake.input))
