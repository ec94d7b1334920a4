"""A local copy of a seed checkpoint from the hub or a local directory (safetensors, tokenizer)."""

import os

from permerge.io import atomic_path, setup_job

log = setup_job(snakemake)
p = snakemake.params
from transformers import AutoTokenizer, BertForMaskedLM  # noqa: E402

try:
    model = BertForMaskedLM.from_pretrained(p.location)
    tokenizer = AutoTokenizer.from_pretrained(p.location)
except OSError as err:
    if p.source == "hub" and os.environ.get("HF_HUB_OFFLINE") == "1":
        raise SystemExit(
            f"model '{p.location}' must come from the HuggingFace hub, but HF_HUB_OFFLINE=1 and it is not "
            "in the local cache. Run where the hub is reachable (configs/paper.yaml sets offline: false), "
            "or use the embedded config.yaml, which runs offline."
        ) from err
    raise SystemExit(f"cannot load model '{p.location}' ({p.source}): {err}") from err
with atomic_path(snakemake.output[0], is_dir=True) as tmp:
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
log.info("saved %s (%s) as %s", p.location, p.source, snakemake.output[0])
