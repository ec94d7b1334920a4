"""Build one embedded text role (pretrain, books or heldout) from the fetched archives."""

from permerge.io import atomic_path, setup_job

log = setup_job(snakemake)  # noqa: F821

from permerge.data import roles  # noqa: E402

role = snakemake.wildcards.role  # noqa: F821
paths = {name: snakemake.input[name] for name in snakemake.input.keys()}  # noqa: F821
with atomic_path(snakemake.output[0]) as tmp:  # noqa: F821
    counts = roles.build_text_roles(paths, {role: tmp}, **snakemake.params.options)  # noqa: F821
log.info("%s: %d lines", role, counts[role])
