"""`permerge bench --quick` with tiny sizes: runs end to end and reports finite positive figures.

Timing targets are not checked here (they depend on the machine); docs/performance.md has the figures.
"""

import json
import math
import subprocess
import sys

import pytest

from permerge.tooling.bench import flop_floor, statistics_bytes

TINY = [
    "--quick",
    "--layers",
    "1",
    "--seeds-layers",
    "1",
    "--scale-layers",
    "1",
    "--hidden",
    "64",
    "--vocab",
    "300",
    "--seq-len",
    "16",
    "--batch-size",
    "2",
    "--seeds",
    "3",
    "--lambdas",
    "2",
    "--eval-blocks",
    "2",
    "--widths",
    "32,64",
    "--mem-layers",
    "1",
    "--mem-hidden",
    "64",
    "--match-layers",
    "1",
]

KEYS = [
    "stats_vs_forward",
    "stats_vs_forward_5seeds",
    "stats_peak_mb_pair_base",
    "match_seconds_base",
    "sweep_vs_forward",
]


def positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "sub" / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "permerge.cli", "bench", *TINY, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, out


def test_bench_prints_a_table_and_one_json_object(bench_run):
    proc, out = bench_run
    lines = proc.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert sum(line.lstrip().startswith("{") for line in lines) == 1
    assert any("stats_vs_forward" in line for line in lines[:-1])  # the table
    assert json.loads(out.read_text()) == result


def test_bench_figures_are_finite_and_positive(bench_run):
    result = json.loads(bench_run[0].stdout.strip().splitlines()[-1])
    for key in KEYS:
        assert positive(result[key]), (key, result[key])
    d = result["details"]
    for key in (
        "forward_s",
        "stats_s",
        "stats_vs_forward_whole_pass",
        "products_s_per_batch",
        "gemm_floor",
        "flop_floor",
    ):
        assert positive(d["stats_pair"][key]), key
    rows = d["stats_pair"]["per_batch"]
    assert len(rows) == 2 and all(positive(r["stats_s"]) and positive(r["forward_s"]) for r in rows)
    assert d["stats_5seeds"]["models"] == 3
    assert d["memory"]["accumulator_bytes"] == statistics_bytes(2, 1, 64)["accumulators"]
    assert positive(d["sweep"]["per_lambda_s"]) and d["sweep"]["lambdas"] == 2
    s = result["settings"]
    assert s["quick"] is True and s["layers"] == 1 and s["hidden"] == 64 and s["fewer_layers_than_bert_base"]
    assert [row["hidden"] for row in result["scaling"]] == [32, 64]
    for row in result["scaling"]:
        assert len(row["stats_pair"]) == 2 and len(row["sweep"]) == 2
        for r in row["stats_pair"] + row["sweep"]:
            assert all(positive(v) for v in r.values()), r
        assert positive(row["match_seconds"]) and positive(row["stats_state_mib_pair"])


def test_statistics_bytes_at_bert_base():
    b = statistics_bytes(2, 12, 768)
    # 12 FF blocks 3072^2, 12 x (ctx, q, k) and 25 residual nodes 768^2, float64; means and M2 of 2 models
    cross = 8 * (12 * 3072**2 + (36 + 25) * 768**2)
    moments = 8 * 2 * 2 * (12 * 3072 + 61 * 768)
    assert b["accumulators"] == cross + moments
    assert b["workspace"] == 4 * 3072**2  # one float32 product buffer, sized for the largest block
    assert flop_floor(2, 12, 768, 128) > 1.8  # the cross products alone cost ~0.9 forward passes


def test_bench_rejects_cuda_without_a_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    proc = subprocess.run(
        [sys.executable, "-m", "permerge.cli", "bench", *TINY, "--device", "cuda"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "no CUDA device" in proc.stderr


def test_permutations_memory_mode_runs_small(tmp_path):
    out = tmp_path / "pm.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "permerge.cli",
            "bench",
            "--permutations-memory",
            "--layers",
            "1",
            "--hidden",
            "64",
            "--seeds",
            "3",
            "--tmpdir",
            str(tmp_path),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert json.loads(out.read_text()) == result
    assert "peak RSS" in proc.stdout
    one, many = result["runs"]
    assert (one["models"], one["pairs"], many["models"], many["pairs"]) == (2, 1, 3, 3)
    # 1 layer x 64: 3 residual nodes, ff 256, ctx 64; float32 cross blocks, float64 means and M2
    per_pair = 4 * (3 * 64**2 + 256**2 + 64**2)
    moments = lambda n: 8 * 2 * n * (4 * 64 + 256)  # noqa: E731
    assert one["file_bytes"] > per_pair + moments(2) and one["file_bytes"] < per_pair + moments(2) + 8192  # + header
    assert many["file_bytes"] - 3 * per_pair - moments(3) < 8192
    # matching keeps only M2 (float64, models x dim) whatever the number of pairs
    assert many["held_bytes_after_pair"] == [8 * 3 * (4 * 64 + 256)] * 3
    assert all(positive(x) for x in many["seconds_per_pair"] + [one["peak_rss_mib"], many["peak_rss_mib"]])
    b = result["file_bytes_paper"]["3_models"]
    assert b["now_float32_paper_features"] == 3 * per_pair + moments(3)
    assert b["before_float64_all_features"] == 3 * 8 * (6 * 64**2 + 256**2) + 8 * 2 * 3 * (6 * 64 + 256)
    assert not [p for p in tmp_path.iterdir() if p.name != "pm.json"]  # the statistics files are deleted


def test_statistics_file_bytes_at_bert_base():
    from permerge.tooling.bench import paper_features, statistics_file_bytes

    # the paper's MLM set (ff, ctx, 25 residual nodes), 5 seeds = 10 pairs: float32 now, float64 + q/k before
    now = statistics_file_bytes(5, 12, 768, paper_features(12), 4)
    before = statistics_file_bytes(5, 12, 768, paper_features(12, qk=True), 8)
    assert now == 10 * 4 * (12 * 3072**2 + 37 * 768**2) + 8 * 2 * 5 * (12 * 3072 + 37 * 768)
    assert 5.3e9 < now < 5.5e9 and 11.9e9 < before < 12.0e9


def test_weight_matching_mode_runs_small(tmp_path):
    out = tmp_path / "wm.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "permerge.cli",
            "bench",
            "--weight-matching",
            "--layers",
            "1",
            "--hidden",
            "64",
            "--vocab",
            "100",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert json.loads(out.read_text()) == result
    assert "weight matching at 1 layers x 64" in proc.stdout
    planted, independent = result["planted"], result["independent"]
    # 1 layer: ff.0, attn.0, qk.0, res; the planted pair (10% noise) is recovered exactly
    assert planted["perms"] == independent["perms"] == 4
    assert planted["perms_recovered"] == 4 and planted["units_recovered_fraction"] == 1.0
    for row in (planted, independent):
        assert row["converged"] and 2 <= row["sweeps"] <= 100
        assert positive(row["seconds"]) and row["objective_end"] > row["objective_start"]
    assert positive(result["match_seconds_base"])
    both = subprocess.run(
        [sys.executable, "-m", "permerge.cli", "bench", "--weight-matching", "--permutations-memory"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert both.returncode != 0 and "separate modes" in both.stderr
