"""Write one text role from a HuggingFace dataset (source: hub) or local text files (source: local).

With ``sample: N`` the file holds N rows drawn uniformly across the whole split (``sample_seed``), in random
order, so any prefix of it (the statistics' fractions) is itself a uniform sample. A split of another size
than the dataset publishes (``expected_rows``, its own metadata, a partial parquet export) is refused. The
text's provenance (requested and resolved revision, row counts) goes to ``{role}.meta.json`` and to the
comment block of ``config.effective.yaml``."""

import contextlib
from pathlib import Path

from permerge.io import atomic_path, setup_job

log = setup_job(snakemake)  # noqa: F821

from permerge import config as cfg  # noqa: E402
from permerge.data import hub as hubdata  # noqa: E402

spec = dict(snakemake.params.spec)  # noqa: F821
out = snakemake.output  # noqa: F821
with contextlib.ExitStack() as stack:
    text, meta = (stack.enter_context(atomic_path(p)) for p in (out.text, out.meta))
    n = hubdata.write_text_role(spec, text, meta)
log.info("%s from %s: %d lines; provenance in %s", snakemake.wildcards.role, spec, n, out.meta)  # noqa: F821
cfg.record_provenance(Path(out.text).parents[2])  # {results}/data/text/{role}.txt -> {results}
