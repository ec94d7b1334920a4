"""`permerge runtime`: per-rule breakdown from benchmark files and the end-to-end time from a Snakemake log."""

import pytest

from permerge.cli import main
from permerge.evaluation.barriers import read_tsv
from permerge.reporting.runtime import GRID_ROW, breakdown, log_wall_seconds, read_benchmarks

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"

LOG = """Assuming unrestricted shared filesystem usage.
SNAKEMAKE
  Date: 2026-11-26 22:00:25
Building DAG of jobs...
[Thu Nov 26 22:00:26 2026]
localrule fetch_source:
[Thu Nov 26 22:00:40 2026]
Finished jobid: 1 (Rule: fetch_source)
1 of 3 steps (33%) done
[Thu Nov 26 22:09:05 2026]
Finished jobid: 0 (Rule: all)
3 of 3 steps (100%) done
Complete log(s): .snakemake/log/x.snakemake.log
"""


def bench(path, s, cpu, rss):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{s}\t0:00:{int(s):02d}\t{rss}\t0\t0\t0\t0\t0\t1.0\t{cpu}\n")


@pytest.fixture
def run_dir(tmp_path):
    bench(tmp_path / "benchmarks/finetune/sst2/seed1.tsv", 10.0, 8.0, 500.5)
    bench(tmp_path / "benchmarks/finetune/sst2/seed2.tsv", 12.0, 10.0, 600.4)
    bench(tmp_path / "benchmarks/pretrain_seed/seed1.tsv", 30.0, 2.0, 900.0)
    (tmp_path / "log").mkdir()
    (tmp_path / "log/2026-11-26T220025.snakemake.log").write_text(LOG)
    return tmp_path


def test_breakdown_sums_per_rule(run_dir):
    rows = breakdown(read_benchmarks(run_dir / "benchmarks"))
    assert [r["rule"] for r in rows] == ["pretrain_seed", "finetune"]  # most job wall time first
    pre, ft = rows
    assert (ft["jobs"], ft["wall_s"], ft["cpu_s"], ft["max_rss_mb"]) == (2, 22.0, 18.0, 600.4)
    assert (ft["wall_share"], pre["wall_share"]) == (round(22 / 52, 3), round(30 / 52, 3))


def test_wall_seconds_from_log(run_dir):
    assert log_wall_seconds(run_dir / "log/2026-11-26T220025.snakemake.log") == (520.0, 3)


def test_unfinished_log_is_refused(run_dir):
    path = run_dir / "log/2026-11-26T230000.snakemake.log"
    path.write_text(LOG.replace("3 of 3 steps (100%) done", ""))
    with pytest.raises(ValueError, match="did not finish"):
        log_wall_seconds(path)


def test_cli_writes_table_with_grid_row(run_dir, capsys):
    # A newer unfinished log (e.g. an interrupted rerun) is skipped for the finished one.
    (run_dir / "log/2026-11-27T000000.snakemake.log").write_text(LOG.split("[Thu")[0])
    out = run_dir / "tables/runtime.tsv"
    assert (
        main(
            [
                "runtime",
                "--benchmarks",
                str(run_dir / "benchmarks"),
                "--log-dir",
                str(run_dir / "log"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = read_tsv(out)
    assert [r["rule"] for r in rows] == ["pretrain_seed", "finetune", GRID_ROW]
    assert float(rows[-1]["wall_s"]) == 520.0 and rows[-1]["jobs"] == "3" and float(rows[-1]["cpu_s"]) == 20.0
    assert "8.7 min for 3 jobs" in (printed := capsys.readouterr().out)
    assert "summed job wall time 52 s (0.10 jobs at a time)" in printed


def test_cli_missing_benchmarks_is_a_clear_error(tmp_path, capsys):
    assert main(["runtime", "--benchmarks", str(tmp_path / "nope"), "--out", str(tmp_path / "r.tsv")]) == 1
    assert "nope does not exist" in capsys.readouterr().err
    assert not (tmp_path / "r.tsv").exists()


def test_runtime_of_the_smoke_run(smoke_run, monkeypatch):
    monkeypatch.chdir(smoke_run)
    assert main(["runtime"]) == 0
    rows = {r["rule"]: r for r in read_tsv(smoke_run / "results/tables/runtime.tsv")}
    for rule in ("pretrain_seed", "collect_statistics", "finetune", "compute_permutations", "sweep_lambdas"):
        files = list((smoke_run / "results/benchmarks" / rule).rglob("*.tsv"))
        assert int(rows[rule]["jobs"]) == len(files) > 0
    shares = sum(float(r["wall_share"]) for k, r in rows.items() if k != GRID_ROW)
    assert shares == pytest.approx(1.0, abs=0.01)
    assert float(rows[GRID_ROW]["wall_s"]) > 0
