"""Build one GLUE-shaped stand-in task (all its splits) from the fetched archives."""

import contextlib

from permerge.io import atomic_path, setup_job

log = setup_job(snakemake)  # noqa: F821

from permerge.data import standins  # noqa: E402

task = snakemake.wildcards.glue_task  # noqa: F821
paths = {name: snakemake.input[name] for name in snakemake.input.keys()}  # noqa: F821
splits = standins.build_task(task, paths, seed=snakemake.params.seed)  # noqa: F821
with contextlib.ExitStack() as stack:
    tmps = {s: stack.enter_context(atomic_path(snakemake.output[s])) for s in snakemake.output.keys()}  # noqa: F821
    counts = standins.write_task(task, splits, tmps)
for split, rows in splits.items():
    log.info("%s %s: %d rows; %s", task, split, counts[split], standins.label_summary(task, rows))
