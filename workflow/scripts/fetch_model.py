"""A local copy of a seed checkpoint from the hub or a local directory (safetensors + fast tokenizer), with
every pre-trained weight kept (BertForPreTraining: pooler and NSP head too)."""

import os

from permerge.io import atomic_path, setup_job

log = setup_job(snakemake)
p = snakemake.params
from permerge.models import fetch_checkpoint  # noqa: E402

try:
    with atomic_path(snakemake.output[0], is_dir=True) as tmp:
        kept = fetch_checkpoint(p.location, tmp, log=log)
except OSError as err:
    if p.source == "hub" and os.environ.get("HF_HUB_OFFLINE") == "1":
        raise SystemExit(
            f"model '{p.location}' must come from the HuggingFace hub, but HF_HUB_OFFLINE=1 and it is not "
            "in the local cache. Run where the hub is reachable (configs/paper.yaml sets offline: false), "
            "or use the embedded config.yaml, which runs offline."
        ) from err
    raise SystemExit(f"cannot load model '{p.location}' ({p.source}): {err}") from err
except ValueError as err:  # unsupported architecture, missing weights, no fast tokenizer
    raise SystemExit(f"cannot use model '{p.location}' ({p.source}): {err}") from err
log.info("saved %s (%s) as %s: %s", p.location, p.source, snakemake.output[0], kept)
