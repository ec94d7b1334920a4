"""Barrier arithmetic and tables."""

import math

import pytest

from permerge.evaluation.barriers import (
    BARRIER_COLUMNS,
    SUMMARY_COLUMNS,
    barrier,
    barrier_rows,
    read_curve,
    read_losses,
    read_tsv,
    summarize,
    write_tsv,
)


def write_losses(path, lams, losses, loss_b_unpermuted=None):
    """A loss file as sweep_lambdas writes it; without `loss_b_unpermuted`, one from before that column."""
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = loss_b_unpermuted is not None
    head = "lambda\tloss\taccuracy" + ("\tloss_b_unpermuted\taccuracy_b_unpermuted" if extra else "")
    tail = f"\t{loss_b_unpermuted}\t0.75" if extra else ""
    path.write_text(head + "\n" + "".join(f"{l}\t{v}\t0.5{tail}\n" for l, v in zip(lams, losses)))


def test_barrier_definitions():
    lams = [0.0, 0.25, 0.5, 0.75, 1.0]
    losses = [2.0, 3.0, 4.5, 4.0, 3.0]
    b = barrier(lams, losses)
    assert b["barrier"] == pytest.approx(4.5 - 2.5)
    # linear reference at 0.75 is 2.75: excess 1.25; at 0.5 it is 2.5: excess 2.0
    assert b["barrier_linear"] == pytest.approx(2.0)
    assert (b["loss_a"], b["loss_b"], b["loss_mid"]) == (2.0, 3.0, 4.5)
    # No unpermuted B given: the λ=1 loss stands in for it and preservation is unmeasured.
    assert (b["barrier_true"], b["barrier_linear_true"], b["loss_b_unpermuted"]) == (2.0, 2.0, 3.0)
    assert b["rel_diff_b"] is None


def test_barriers_against_the_true_b_by_hand():
    # π(B) (λ=1) scores 3.0 but the unpermuted B scores 1.0: a permutation that is not function-preserving.
    lams = [0.0, 0.25, 0.5, 0.75, 1.0]
    losses = [2.0, 3.0, 3.2, 3.1, 3.0]
    b = barrier(lams, losses, 1.0)
    # paper: 3.2 − ½(2 + 3) = 0.7; linear against 2 + λ: excesses 0, 0.75, 0.7, 0.35, 0 -> 0.75
    assert b["barrier"] == pytest.approx(0.7) and b["barrier_linear"] == pytest.approx(0.75)
    # true B: 3.2 − ½(2 + 1) = 1.7; linear against 2 − λ: excesses 0, 1.25, 1.7, 1.85, 2.0 -> 2.0 (at λ=1,
    # where the curve ends at π(B), not at B)
    assert b["barrier_true"] == pytest.approx(1.7) and b["barrier_linear_true"] == pytest.approx(2.0)
    assert (b["loss_b"], b["loss_b_unpermuted"]) == (3.0, 1.0)
    assert b["rel_diff_b"] == pytest.approx(2.0)  # |3 − 1| / 1
    # An aligned B better than B: the true barrier is not clamped at 0.
    b = barrier([0.0, 0.5, 1.0], [1.0, 2.0, 1.5], 4.0)
    assert b["barrier"] == pytest.approx(2.0 - 1.25) and b["barrier_true"] == pytest.approx(2.0 - 2.5)
    # against 1 + 3λ: excesses 0, 2 − 2.5, 1.5 − 4 -> 0 (at λ=0)
    assert b["barrier_linear_true"] == 0.0 and b["rel_diff_b"] == pytest.approx(2.5 / 4)
    # A function-preserving variant: the unpermuted B's loss equals λ=1 and both definitions agree.
    b = barrier([0.0, 0.5, 1.0], [1.0, 2.0, 1.5], 1.5)
    assert b["barrier_true"] == b["barrier"] and b["barrier_linear_true"] == b["barrier_linear"]
    assert b["rel_diff_b"] == 0.0


def test_barrier_of_flat_curve_is_zero_and_convex_curve_negative_linear():
    assert barrier([0, 0.5, 1.0], [1.0, 1.0, 1.0])["barrier"] == 0.0
    b = barrier([0.0, 0.5, 1.0], [2.0, 1.0, 2.0])
    assert b["barrier"] == 0.0 and b["barrier_linear"] == 0.0


def test_barrier_needs_endpoints():
    with pytest.raises(ValueError, match="start at 0"):
        barrier([0.1, 1.0], [1.0, 1.0])


def test_rows_and_summary_from_files(tmp_path):
    lams = [0.0, 0.5, 1.0]
    paths = []
    for pair, mid in (("seed1-seed2", 3.0), ("seed1-seed3", 5.0)):
        p = tmp_path / "losses" / "mlm" / "vanilla" / f"{pair}.tsv"
        write_losses(p, lams, [1.0, mid, 2.0])
        paths.append(p)
    rows = barrier_rows(paths, {"vanilla": True})
    assert [r["pair"] for r in rows] == ["seed1-seed2", "seed1-seed3"]
    assert [r["barrier"] for r in rows] == [1.5, 3.5]
    (s,) = summarize(rows)
    assert s["mean"] == 2.5 and s["n"] == 2
    assert s["se"] == pytest.approx(math.sqrt(2.0) / math.sqrt(2))
    out = tmp_path / "b.tsv"
    write_tsv(rows, out, BARRIER_COLUMNS)
    back = read_tsv(out)
    assert back[1]["barrier"] == "3.5" and back[0]["function_preserving"] == "True"
    # old files: the true barrier falls back to the λ=1 loss; function preservation is not measured
    assert back[1]["barrier_true"] == "3.5" and back[1]["loss_b_unpermuted"] == "2" and back[1]["rel_diff_b"] == ""
    assert s["barrier_true_mean"] == 2.5 and s["max_rel_diff_b"] is None
    assert s["vs_vanilla_mean"] is None and s["below_vanilla"] is None  # vanilla itself


def test_summary_pairs_each_variant_with_vanilla(tmp_path):
    lams = [0.0, 0.5, 1.0]
    paths = []
    mids = {"vanilla": (3.0, 5.0, 4.0), "all": (2.0, 5.5, 3.0)}
    for variant, values in mids.items():
        for pair, mid in zip(("seed1-seed2", "seed1-seed3", "seed2-seed3"), values):
            p = tmp_path / "losses" / "mlm" / variant / f"{pair}.tsv"
            write_losses(p, lams, [1.0, mid, 1.0])
            paths.append(p)
    s = {r["variant"]: r for r in summarize(barrier_rows(paths))}
    diffs = [-1.0, 0.5, -1.0]
    assert s["all"]["vs_vanilla_mean"] == pytest.approx(-0.5)
    assert s["all"]["vs_vanilla_se"] == pytest.approx(math.sqrt(sum((d + 0.5) ** 2 for d in diffs) / 2) / math.sqrt(3))
    assert s["all"]["below_vanilla"] == "2/3"
    assert s["vanilla"]["vs_vanilla_mean"] is None


def test_rows_and_summary_with_unpermuted_b(tmp_path):
    lams = [0.0, 0.5, 1.0]
    curves = {  # pair: (losses, unpermuted B's loss)
        "seed1-seed2": ([1.0, 3.0, 2.0], 1.0),
        "seed1-seed3": ([1.0, 5.0, 2.0], 1.6),
        "seed2-seed3": ([1.0, 4.0, 3.0], None),  # an old file, written before the column existed
    }
    paths = []
    for pair, (losses, lb) in curves.items():
        p = tmp_path / "losses" / "mlm" / "ignore_heads" / f"{pair}.tsv"
        write_losses(p, lams, losses, lb)
        paths.append(p)
    assert read_curve(paths[0]) == (lams, [1.0, 3.0, 2.0], 1.0)
    assert read_losses(paths[0]) == (lams, [1.0, 3.0, 2.0])  # the old reader sees the same curve
    rows = barrier_rows(paths, {"ignore_heads": False})
    # paper: 3 − 1.5, 5 − 1.5, 4 − 2; true: 3 − ½(1 + 1), 5 − ½(1 + 1.6), 4 − 2 (fallback to λ=1)
    assert [r["barrier"] for r in rows] == [1.5, 3.5, 2.0]
    assert [r["barrier_true"] for r in rows] == pytest.approx([2.0, 3.7, 2.0])
    # linear against 1 + 0λ, 1 + 0.6λ, 1 + 2λ: excesses at λ=½ are 2, 3.7, 2; at λ=1: 1, 0.4, 0
    assert [r["barrier_linear_true"] for r in rows] == pytest.approx([2.0, 3.7, 2.0])
    assert [r["loss_b_unpermuted"] for r in rows] == [1.0, 1.6, 3.0]
    assert [r["rel_diff_b"] for r in rows] == pytest.approx([1.0, 0.25, None])
    (s,) = summarize(rows)
    assert s["barrier_true_mean"] == pytest.approx(7.7 / 3)
    assert s["barrier_true_se"] == pytest.approx(
        math.sqrt(sum((x - 7.7 / 3) ** 2 for x in (2.0, 3.7, 2.0)) / 2) / math.sqrt(3)
    )
    assert s["barrier_linear_true_mean"] == pytest.approx(7.7 / 3)
    assert s["max_rel_diff_b"] == 1.0  # over the pairs that measured it
    out = tmp_path / "summary.tsv"
    write_tsv([s], out, SUMMARY_COLUMNS)
    (back,) = read_tsv(out)
    assert list(back) == SUMMARY_COLUMNS and back["max_rel_diff_b"] == "1" and back["mean"] == "2.33333"


def test_unpermuted_column_must_repeat_one_value(tmp_path):
    p = tmp_path / "losses" / "mlm" / "v" / "seed1-seed2.tsv"
    p.parent.mkdir(parents=True)
    p.write_text("lambda\tloss\tloss_b_unpermuted\n0.0\t1.0\t2.0\n1.0\t2.0\t2.5\n")
    with pytest.raises(ValueError, match=r"seed1-seed2.tsv: column 'loss_b_unpermuted' must hold one value"):
        read_curve(p)
    p.write_text("lambda\tloss\tloss_b_unpermuted\n0.0\t1.0\t\n1.0\t2.0\t\n")
    with pytest.raises(ValueError, match="one value repeated"):
        read_curve(p)


def test_loss_paths_are_read_with_or_without_their_cohort_folder():
    from permerge.evaluation.barriers import parse_loss_path

    assert parse_loss_path("results/losses/mlm/all/seeds1-2-3/seed1-seed2.tsv") == ("mlm", "all", "seed1-seed2")
    assert parse_loss_path("r/losses/sst2/vanilla/pairs2-1/seed2-seed1.tsv") == ("sst2", "vanilla", "seed2-seed1")
    assert parse_loss_path("results/losses/mlm/all/seed1-seed2.tsv") == ("mlm", "all", "seed1-seed2")  # older
