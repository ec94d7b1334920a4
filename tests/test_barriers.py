"""Barrier arithmetic and tables."""

import math

import pytest

from permerge.barriers import barrier, barrier_rows, read_tsv, summarize, write_tsv, BARRIER_COLUMNS


def write_losses(path, lams, losses):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("lambda\tloss\taccuracy\n" + "".join(f"{l}\t{v}\t0.5\n" for l, v in zip(lams, losses)))


def test_barrier_definitions():
    lams = [0.0, 0.25, 0.5, 0.75, 1.0]
    losses = [2.0, 3.0, 4.5, 4.0, 3.0]
    b = barrier(lams, losses)
    assert b["barrier"] == pytest.approx(4.5 - 2.5)
    # linear reference at 0.75 is 2.75: excess 1.25; at 0.5 it is 2.5: excess 2.0
    assert b["barrier_linear"] == pytest.approx(2.0)
    assert (b["loss_a"], b["loss_b"], b["loss_mid"]) == (2.0, 3.0, 4.5)


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
