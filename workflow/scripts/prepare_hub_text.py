"""Write one text role from a HuggingFace dataset (source: hub) or local text files (source: local).

With ``sample: N`` the file holds N rows drawn uniformly across the whole split (``sample_seed``), in random
order, so any prefix of it (the statistics' fractions) is itself a uniform sample."""

from permerge.io import atomic_path, setup_job

log = setup_job(snakemake)  # noqa: F821

from permerge import hubdata  # noqa: E402

spec = dict(snakemake.params.spec)  # noqa: F821
with atomic_path(snakemake.output[0]) as tmp:  # noqa: F821
    n = hubdata.write_text_role(spec, tmp)
log.info("%s from %s: %d lines", snakemake.wildcards.role, spec, n)  # noqa: F821
