"""What the smoke run produced: layout, function preservation at λ=1, tables equal to a recomputation."""

import json

import pytest
import torch
from transformers import AutoModelForMaskedLM

from permerge.barriers import barrier, read_losses, read_tsv
from permerge.evaluate import load_evalset, mlm_loss
from tests.workflow_utils import snakemake

TASKS = ["mlm", "sst2", "stsb"]
VARIANTS = {"mlm": ["vanilla", "ff_attn", "all"], "sst2": ["vanilla", "all"], "stsb": ["vanilla", "all"]}
PAIRS = ["seed1-seed2", "seed1-seed3", "seed2-seed3"]
LAMBDAS = [0.0, 0.25, 0.5, 0.75, 1.0]


def test_layout(smoke_run):
    r = smoke_run / "results"
    assert (r / "figures" / "all.pdf").stat().st_size > 10_000
    for task in TASKS:
        assert (r / "figures" / f"{task}.png").is_file()
        for v in VARIANTS[task]:
            for pair in PAIRS:
                assert (r / "permutations" / task / v / f"{pair}.safetensors").is_file()
                assert (r / "merged" / task / v / pair / "lambda0.5" / "model.safetensors").is_file()
                lams, losses = read_losses(r / "losses" / task / v / f"{pair}.tsv")
                assert lams == LAMBDAS and all(x == x for x in losses)
    rows = read_tsv(r / "tables" / "finetune.tsv")
    assert sorted((x["task"], x["seed"]) for x in rows) == [(t, s) for t in ("sst2", "stsb") for s in "123"]


@pytest.mark.parametrize("task", TASKS)
def test_aligned_b_is_b(smoke_run, task):
    """Every function-preserving variant ends (λ=1) at vanilla's λ=1 loss: the aligned B is B."""
    for pair in PAIRS:
        ref = read_losses(smoke_run / "results" / "losses" / task / "vanilla" / f"{pair}.tsv")[1]
        for v in VARIANTS[task]:
            losses = read_losses(smoke_run / "results" / "losses" / task / v / f"{pair}.tsv")[1]
            assert losses[0] == pytest.approx(ref[0], rel=1e-6)  # λ=0 is model A for every variant
            assert losses[-1] == pytest.approx(ref[-1], rel=1e-4), (task, v, pair)


def test_barrier_tables_equal_recomputation(smoke_run):
    r = smoke_run / "results"
    rows = read_tsv(r / "tables" / "barriers.tsv")
    assert len(rows) == sum(len(VARIANTS[t]) for t in TASKS) * len(PAIRS)
    for row in rows:
        b = barrier(*read_losses(r / "losses" / row["task"] / row["variant"] / f"{row['pair']}.tsv"))
        for key in ("barrier", "barrier_linear", "loss_a", "loss_b"):
            assert float(row[key]) == pytest.approx(b[key], rel=1e-5, abs=1e-6), (row, key)
        assert row["function_preserving"] == "True"
    summary = {(s["task"], s["variant"]): s for s in read_tsv(r / "tables" / "summary.tsv")}
    for (task, v), s in summary.items():
        vals = [float(x["barrier"]) for x in rows if x["task"] == task and x["variant"] == v]
        assert int(s["n"]) == 3 and float(s["mean"]) == pytest.approx(sum(vals) / 3, rel=1e-5)


def test_merged_checkpoint_is_the_interpolation(smoke_run):
    """θ(0.5) on disk loads with from_pretrained and scores the λ=0.5 row of the sweep."""
    r = smoke_run / "results"
    model = AutoModelForMaskedLM.from_pretrained(r / "merged" / "mlm" / "all" / "seed1-seed2" / "lambda0.5").eval()
    evalset = load_evalset(r / "data" / "evalsets" / "mlm.safetensors")
    with torch.no_grad():
        loss = mlm_loss(model, evalset, batch_size=32)["loss"]
    lams, losses = read_losses(r / "losses" / "mlm" / "all" / "seed1-seed2.tsv")
    assert loss == pytest.approx(losses[lams.index(0.5)], rel=1e-5)


def test_second_invocation_has_nothing_to_do(smoke_run):
    out = snakemake(smoke_run, "-n", "results/figures/all.pdf", "--configfile", "configs/smoke.yaml")
    assert "Nothing to be done" in out.stdout + out.stderr
