"""Pre-train one tiny BERT seed from scratch (the embedded MultiBERTs stand-in)."""

import inspect

from permerge.io import atomic_path, setup_job

log = setup_job(snakemake)
from permerge.training.pretrain import pretrain_bert  # noqa: E402

p = snakemake.params
seed = int(p.seed) if hasattr(p, "seed") else int(snakemake.wildcards.seed)
accepted = set(inspect.signature(pretrain_bert).parameters)
# vocab_size in the config sizes the tokenizer; the model takes the trained tokenizer's size.
hparams = {k: v for k, v in dict(p.pretrain).items() if k in accepted and k != "vocab_size"}
ignored = sorted(set(p.pretrain) - set(hparams) - {"vocab_size"})
if ignored:
    log.warning("ignoring unknown pretrain keys: %s", ignored)
with atomic_path(snakemake.output[0], is_dir=True) as tmp:
    pretrain_bert(
        tokenizer_dir=snakemake.input.tokenizer,
        text_file=snakemake.input.text,
        heldout_file=snakemake.input.get("heldout"),
        seed=seed,
        out_dir=tmp,
        log=log,
        **hparams,
    )
