"""Barrier table (one row per task, variant, pair) and its summary over pairs."""

from permerge.evaluation.barriers import BARRIER_COLUMNS, SUMMARY_COLUMNS, barrier_rows, summarize, write_tsv
from permerge.io import atomic_path, setup_job

# π(B) of a function-preserving variant must score B's loss up to float rounding (as tests/test_smoke_results).
PRESERVATION_TOLERANCE = 1e-4

log = setup_job(snakemake)
rows = barrier_rows(snakemake.params.losses, snakemake.params.function_preserving)
summary = summarize(rows)
for out, data, cols in (
    (snakemake.output.barriers, rows, BARRIER_COLUMNS),
    (snakemake.output.summary, summary, SUMMARY_COLUMNS),
):
    with atomic_path(out) as tmp:
        write_tsv(data, tmp, cols)
old = [r for r in rows if r["rel_diff_b"] is None]
if old:
    log.warning(
        "%d loss files have no loss_b_unpermuted column (written before it existed): their true "
        "barriers use the λ=1 loss, e.g. %s %s %s",
        len(old),
        old[0]["task"],
        old[0]["variant"],
        old[0]["pair"],
    )
for r in rows:
    if (
        r.get("function_preserving") is True
        and r["rel_diff_b"] is not None
        and r["rel_diff_b"] > PRESERVATION_TOLERANCE
    ):
        log.warning(
            "%s %s %s: variant is function-preserving but L(π(B)) = %.6g differs from L(B) = %.6g (rel %.2g)",
            r["task"],
            r["variant"],
            r["pair"],
            r["loss_b"],
            r["loss_b_unpermuted"],
            r["rel_diff_b"],
        )
for s in summary:
    log.info(
        "%s %-22s barrier %.4f ± %.4f, vs true B %.4f ± %.4f (n=%d, max rel |L(π(B)) − L(B)| %s)",
        s["task"],
        s["variant"],
        s["mean"],
        s["se"],
        s["barrier_true_mean"],
        s["barrier_true_se"],
        s["n"],
        "n/a" if s["max_rel_diff_b"] is None else f"{s['max_rel_diff_b']:.2g}",
    )
