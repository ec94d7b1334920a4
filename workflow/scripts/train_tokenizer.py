"""Lowercase WordPiece tokenizer trained on the pre-training text (embedded config only)."""

from permerge.io import atomic_path, setup_job

log = setup_job(snakemake)
from permerge.training.pretrain import train_wordpiece  # noqa: E402

with atomic_path(snakemake.output[0], is_dir=True) as tmp:
    tok = train_wordpiece(list(snakemake.input), tmp, vocab_size=int(snakemake.params.vocab_size))
log.info("tokenizer with %d entries -> %s", len(tok), snakemake.output[0])
