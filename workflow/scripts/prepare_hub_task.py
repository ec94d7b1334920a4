"""Export one GLUE task (all its splits) from the HuggingFace hub to the stand-ins' jsonl layout."""

import contextlib

from permerge.io import atomic_path, setup_job

log = setup_job(snakemake)  # noqa: F821

from permerge.data import hub as hubdata  # noqa: E402

task = snakemake.wildcards.glue_task  # noqa: F821
with contextlib.ExitStack() as stack:
    tmps = {s: stack.enter_context(atomic_path(snakemake.output[s])) for s in snakemake.output.keys()}  # noqa: F821
    glue = snakemake.params.glue  # noqa: F821
    counts = hubdata.export_glue_task(task, tmps, hub_id=glue["id"], revision=glue["revision"])
log.info("%s: %s", task, counts)
