"""Barrier vs pre-training step: the barrier summary of every trajectory task at each step and at the end."""

from permerge.evaluation.barriers import TRAJECTORY_COLUMNS, barrier_rows, summarize, trajectory, write_tsv
from permerge.io import atomic_path, setup_job

log = setup_job(snakemake)
rows = trajectory(summarize(barrier_rows(snakemake.params.losses)), snakemake.params.final_step)
with atomic_path(snakemake.output[0]) as tmp:
    write_tsv(rows, tmp, TRAJECTORY_COLUMNS)
for r in rows:
    log.info(
        "%s %-10s step %8d: barrier %.4f ± %.4f (n=%d)", r["task"], r["variant"], r["step"], r["mean"], r["se"], r["n"]
    )
