"""The fixed masked MLM evaluation set (masks drawn once, reused for every λ, pair and variant)."""

from permerge.io import setup_job

log = setup_job(snakemake)
from permerge.evaluation.evaluate import build_mlm_evalset, save_evalset  # noqa: E402
from permerge.models import load_tokenizer  # noqa: E402

o = dict(snakemake.params.mlm_eval)
tokenizer = load_tokenizer(snakemake.input.tokenizer)
with open(snakemake.input.text, encoding="utf-8") as fh:
    evalset = build_mlm_evalset(
        tokenizer,
        fh,
        block_size=o["block_size"],  # every key filled by the schema
        mask_prob=o["mask_prob"],
        seed=o["mask_seed"],
        paper_compat=o["paper_compat"],
        max_blocks=o["max_blocks"],
    )
n_masked = int((evalset["labels"] != -100).sum())
save_evalset(
    evalset,
    snakemake.output[0],
    metadata={**o, "n_blocks": len(evalset["input_ids"]), "n_masked": n_masked, "text": str(snakemake.input.text)},
)
log.info("%d blocks of %d tokens, %d masked targets -> %s", *evalset["input_ids"].shape, n_masked, snakemake.output[0])
