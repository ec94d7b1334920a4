"""The λ sweep scores the UNPERMUTED B too: equal to λ=1 for a function-preserving permutation, different for
one that mixes heads (attention matched ignoring heads), and the barrier table then carries both barriers."""

import math

import numpy as np
import pytest
import torch

from permerge.alignment.spec import head_assignment, is_function_preserving, random_permutations, spec_for_model
from permerge.evaluation.barriers import (
    BARRIER_COLUMNS,
    SUMMARY_COLUMNS,
    barrier_rows,
    read_losses,
    read_tsv,
    summarize,
    write_tsv,
)
from permerge.evaluation.evaluate import (
    IGNORE_INDEX,
    check_lambda_grid,
    glue_loss,
    lambda_sweep,
    mlm_loss,
    write_loss_table,
)
from permerge.merging.permute import apply_permutations
from tests import tiny

torch.set_num_threads(1)

VOCAB, HIDDEN, HEADS = 100, 32, 2
# A large init scale so that the random models are far from uniform and a head-mixing permutation changes
# the loss by far more than float rounding.
CONFIG = dict(
    vocab_size=VOCAB,
    hidden_size=HIDDEN,
    num_hidden_layers=2,
    num_attention_heads=HEADS,
    intermediate_size=64,
    max_position_embeddings=32,
    initializer_range=0.2,
)

LAMBDAS = [0.0, 0.5, 1.0]
MLM_COLUMNS = ["lambda", "loss", "n_tokens", "pseudo_perplexity", "accuracy"]


def mlm(seed):
    return tiny.model(tiny.bert_config(CONFIG), "mlm", seed=seed)


@pytest.fixture(scope="module")
def evalset():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, VOCAB, (8, 24), generator=g)
    labels = torch.where(torch.rand(ids.shape, generator=g) < 0.3, ids, torch.full_like(ids, IGNORE_INDEX))
    return {"input_ids": ids, "labels": labels}


@pytest.fixture(scope="module")
def pair():
    return mlm(1), mlm(2)


def head_mixing_perms(model, rng):
    """Function-preserving perms except that every layer's V/O (and Q/K, as ignore_heads does) permutation
    swaps units between heads."""
    spec = spec_for_model(model)
    perms = random_permutations(spec, rng, qk="shared")
    for layer in range(CONFIG["num_hidden_layers"]):
        p = rng.permutation(HIDDEN)
        while head_assignment(p, HEADS) is not None:
            p = rng.permutation(HIDDEN)
        perms[f"attn.{layer}"], perms[f"qk.{layer}"] = p, p.copy()
    assert not is_function_preserving(spec, perms)
    return perms


def sweep(a, b, perms, evalset):
    return lambda_sweep(
        a, apply_permutations(b, perms), LAMBDAS, lambda m: mlm_loss(m, evalset, batch_size=4), model_b=b
    )


@pytest.fixture(scope="module")
def sweeps(pair, evalset):
    a, b = pair
    rng = np.random.default_rng(0)
    fp = random_permutations(spec_for_model(b), rng)
    assert is_function_preserving(spec_for_model(b), fp)
    return {"preserving": sweep(a, b, fp, evalset), "mixing": sweep(a, b, head_mixing_perms(b, rng), evalset)}


def test_unpermuted_b_columns_on_every_row(pair, evalset, sweeps):
    a, b = pair
    ref = mlm_loss(b, evalset, batch_size=4)
    for rows in sweeps.values():
        assert [r["lambda"] for r in rows] == LAMBDAS
        for r in rows:
            assert r["loss_b_unpermuted"] == ref["loss"]  # B itself, evaluated once, repeated
            assert r["accuracy_b_unpermuted"] == ref["accuracy"]
            assert r["pseudo_perplexity_b_unpermuted"] == ref["pseudo_perplexity"]
            assert "n_tokens_b_unpermuted" not in r  # counts are the same for every model
        assert rows[0]["loss"] == mlm_loss(a, evalset, batch_size=4)["loss"]


def test_function_preserving_permutation_ends_at_b(sweeps):
    rows = sweeps["preserving"]
    assert rows[-1]["loss"] == pytest.approx(rows[-1]["loss_b_unpermuted"], rel=1e-6)
    assert rows[-1]["accuracy"] == rows[-1]["accuracy_b_unpermuted"]


def test_head_mixing_permutation_does_not_end_at_b(sweeps):
    r = sweeps["mixing"][-1]
    assert abs(r["loss"] - r["loss_b_unpermuted"]) / r["loss_b_unpermuted"] > 5e-3  # 1.5e-2 measured


def test_loss_files_and_barrier_table_carry_both(tmp_path, sweeps):
    paths = []
    for variant, rows in sweeps.items():
        path = tmp_path / "losses" / "mlm" / variant / "seed1-seed2.tsv"
        path.parent.mkdir(parents=True)
        write_loss_table(rows, path)
        paths.append(path)
        # Old columns first, in their old order, then the unpermuted B's; old readers see the same curve.
        header = path.read_text().splitlines()[0].split("\t")
        assert header == MLM_COLUMNS + ["loss_b_unpermuted", "pseudo_perplexity_b_unpermuted", "accuracy_b_unpermuted"]
        assert read_losses(path) == (LAMBDAS, [r["loss"] for r in rows])
        assert [{k: float(v) for k, v in r.items()} for r in read_tsv(path)] == [
            {k: float(v) for k, v in r.items()} for r in rows
        ]  # every value back exactly

    table = barrier_rows(paths, {"preserving": True, "mixing": False})
    by = {r["variant"]: r for r in table}
    for variant, rows in sweeps.items():
        losses = [r["loss"] for r in rows]
        la, lpi, lb = losses[0], losses[-1], rows[0]["loss_b_unpermuted"]
        t = by[variant]
        assert t["barrier"] == pytest.approx(max(losses) - (la + lpi) / 2, abs=1e-12)
        assert t["barrier_true"] == pytest.approx(max(losses) - (la + lb) / 2, abs=1e-12)
        assert t["barrier_linear_true"] == pytest.approx(
            max(l - ((1 - x) * la + x * lb) for x, l in zip(LAMBDAS, losses)), abs=1e-12
        )
        assert t["loss_b_unpermuted"] == lb and t["rel_diff_b"] == pytest.approx(abs(lpi - lb) / lb)
    assert by["preserving"]["barrier_true"] == pytest.approx(by["preserving"]["barrier"], abs=1e-5)
    assert by["preserving"]["rel_diff_b"] < 1e-6
    assert abs(by["mixing"]["barrier_true"] - by["mixing"]["barrier"]) > 1e-2

    out = tmp_path / "barriers.tsv"
    write_tsv(table, out, BARRIER_COLUMNS)
    back = read_tsv(out)
    assert list(back[0]) == BARRIER_COLUMNS
    assert float(back[1]["barrier_true"]) == pytest.approx(by["mixing"]["barrier_true"], rel=1e-5)
    summary = summarize(table)
    write_tsv(summary, tmp_path / "summary.tsv", SUMMARY_COLUMNS)
    s = {r["variant"]: r for r in read_tsv(tmp_path / "summary.tsv")}
    assert float(s["mixing"]["max_rel_diff_b"]) == pytest.approx(by["mixing"]["rel_diff_b"], rel=1e-5)
    assert float(s["preserving"]["max_rel_diff_b"]) < 1e-6

    # The figures read the new files as before.
    from permerge.reporting.plots import write_figures

    (tmp_path / "png").mkdir()
    written = write_figures(paths, summary, tmp_path / "all.pdf", tmp_path / "png", ["mlm"])
    assert [p.name for p in written] == ["mlm.png"] and (tmp_path / "all.pdf").stat().st_size > 1000


def test_glue_metric_of_unpermuted_b():
    a, b = tiny.models(tiny.bert_config(CONFIG, num_labels=2), "cls", seeds=(3, 4))
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, VOCAB, (12, 10), generator=g)
    data = {
        "input_ids": ids,
        "token_type_ids": torch.zeros_like(ids),
        "attention_mask": torch.ones_like(ids),
        "lengths": torch.full((12,), 10),
        "labels": torch.randint(2, (12,), generator=g),
    }

    def evaluate(m):
        return glue_loss(m, data, num_labels=2, metric="matthews", batch_size=5)

    b.train()  # lambda_sweep scores B in eval mode and gives it back as it was
    perms = random_permutations(spec_for_model(b), np.random.default_rng(5))
    rows = lambda_sweep(a, apply_permutations(b, perms), [1.0, 0.0], evaluate, model_b=b)
    assert b.training
    ref = evaluate(b.eval())
    for r in rows:
        assert {k: r[k] for k in ("loss_b_unpermuted", "accuracy_b_unpermuted", "matthews_b_unpermuted")} == {
            "loss_b_unpermuted": ref["loss"],
            "accuracy_b_unpermuted": ref["accuracy"],
            "matthews_b_unpermuted": ref["matthews"],
        }
    assert rows[0]["lambda"] == 1.0 and rows[0]["loss"] == pytest.approx(ref["loss"], rel=1e-6)
    assert rows[0]["matthews"] == ref["matthews"]


@pytest.mark.parametrize(
    "grid, match",
    [
        ([], "at least two"),
        ([0.0], "at least two"),
        ([1.0], "at least two"),
        ([0.0, 0.5], r"endpoints 0 and 1; missing \[1.0\]"),
        ([0.25, 0.5, 1.0], r"missing \[0.0\]"),
        ([0.2, 0.8], r"missing \[0.0, 1.0\]"),
        ([0.0, float("nan"), 1.0], "non-finite"),
        ([0.0, 0.5, 0.5, 1.0], "repeated"),
    ],
)
def test_lambda_sweep_rejects_bad_grids(pair, grid, match):
    a, b = pair

    def evaluate(m):
        raise AssertionError("nothing may be evaluated on a bad grid")

    with pytest.raises(ValueError, match=match):
        lambda_sweep(a, b, grid, evaluate, model_b=b)


def test_good_grids_pass_in_their_order():
    assert check_lambda_grid([0, 1]) == [0.0, 1.0]
    assert check_lambda_grid(iter([1, 0.5, 0])) == [1.0, 0.5, 0.0]
    assert math.isclose(sum(check_lambda_grid(np.linspace(0, 1, 5))), 2.5)


def test_unpermuted_columns_are_written_last(tmp_path):
    rows = [
        {"lambda": 0.0, "loss_b_unpermuted": 2.0, "loss": 1.0, "matthews_b_unpermuted": 0.5},
        {"lambda": 1.0, "loss": 2.5, "matthews": 0.25, "loss_b_unpermuted": 2.0, "matthews_b_unpermuted": 0.5},
    ]
    write_loss_table(rows, tmp_path / "t.tsv")
    lines = (tmp_path / "t.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["lambda", "loss", "matthews", "loss_b_unpermuted", "matthews_b_unpermuted"]
    assert lines[1].split("\t") == ["0.0", "1.0", "", "2.0", "0.5"]


def test_seed_scores_give_the_same_rows(pair, evalset, sweeps):
    """sweep_lambdas evaluates each seed once per job: A's result as the λ=0 row and B's as the unpermuted
    endpoint must be exactly the rows a sweep that evaluates them itself writes."""
    a, b = pair
    rng = np.random.default_rng(0)
    fp = random_permutations(spec_for_model(b), rng)  # the "preserving" sweep's permutations

    def evaluate(m):
        return mlm_loss(m, evalset, batch_size=4)

    calls = []

    def counting(m):
        calls.append(m)
        return evaluate(m)

    scores = {"a": evaluate(a), "b": evaluate(b)}
    rows = lambda_sweep(a, apply_permutations(b, fp), LAMBDAS, counting, model_b=b, scores=scores)
    assert rows == sweeps["preserving"]
    assert len(calls) == len(LAMBDAS) - 1  # λ = 0 and the unpermuted B not evaluated again
    # vanilla: π(B) is B, so λ = 1 takes B's result as well, the row a sweep evaluating it writes
    calls.clear()
    rows = lambda_sweep(a, apply_permutations(b, {}), LAMBDAS, counting, model_b=b, scores=scores)
    assert len(calls) == len(LAMBDAS) - 2
    assert rows == lambda_sweep(a, apply_permutations(b, {}), LAMBDAS, evaluate, model_b=b)
    assert rows[-1]["loss"] == rows[-1]["loss_b_unpermuted"] == scores["b"]["loss"]
