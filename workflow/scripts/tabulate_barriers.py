"""Barrier table (one row per task, variant, pair) and its summary over pairs."""

from permerge.barriers import BARRIER_COLUMNS, SUMMARY_COLUMNS, barrier_rows, summarize, write_tsv
from permerge.io import atomic_path, setup_job

log = setup_job(snakemake)
rows = barrier_rows(snakemake.input.losses, snakemake.params.function_preserving)
summary = summarize(rows)
for out, data, cols in ((snakemake.output.barriers, rows, BARRIER_COLUMNS),
                        (snakemake.output.summary, summary, SUMMARY_COLUMNS)):
    with atomic_path(out) as tmp:
        write_tsv(data, tmp, cols)
for s in summary:
    log.info("%s %-22s barrier %.4f ± %.4f (n=%d)", s["task"], s["variant"], s["mean"], s["se"], s["n"])
