"""``permerge runtime``: the grid's end-to-end time and a per-rule breakdown from Snakemake's files.

  permerge runtime [--benchmarks results/benchmarks] [--log .snakemake/log/X.snakemake.log]
                   [--out results/tables/runtime.tsv]

Per rule, from the benchmark files (``results/benchmarks/{rule}/...tsv``): jobs, summed job wall time and
its share of the total, Snakemake's CPU time, peak resident memory. With one job per core (``--cores all``,
one thread a job) a job's wall time is what it costs. Snakemake's ``cpu_time`` is sampled: work before the
first and after the last sample is missed, so it reads well below the truth (a λ sweep that ran alone for
39 s at 96 % of a core was recorded as 14.9 CPU-s); it is kept for reference only. The end-to-end time is read
from a Snakemake log (its start date to its last job timestamp) and written as the row ``rule = (grid)``.
"""

from __future__ import annotations

import argparse
import re
from datetime import datetime
from pathlib import Path

from permerge.evaluation.barriers import read_tsv, write_tsv
from permerge.io import atomic_path

COLUMNS = ("rule", "jobs", "wall_s", "wall_share", "cpu_s", "max_rss_mb")
GRID_ROW = "(grid)"

_DATE = re.compile(r"^\s*Date: (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")
_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]")
_DONE = re.compile(r"(\d+) of (\d+) steps \(100%\) done")


def read_benchmarks(root: str | Path) -> dict[str, list[dict[str, float]]]:
    """{rule: [one dict per benchmark row]}; the rule is the first folder under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"benchmark folder {root} does not exist (run the workflow first)")
    rules: dict[str, list[dict[str, float]]] = {}
    for path in sorted(root.rglob("*.tsv")):
        rule = path.relative_to(root).parts[0]
        rows = read_tsv(path)
        if not rows or "s" not in rows[0]:
            raise ValueError(f"{path} is not a Snakemake benchmark file (no 's' column)")
        for row in rows:
            rules.setdefault(rule, []).append({k: _number(row.get(k)) for k in ("s", "cpu_time", "max_rss")})
    if not rules:
        raise ValueError(f"no benchmark files under {root}")
    return rules


def _number(text: str | None) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):  # Snakemake writes "-" where it could not measure
        return 0.0


def breakdown(rules: dict[str, list[dict[str, float]]]) -> list[dict[str, object]]:
    """One row per rule, most job wall time first."""
    total_wall = sum(r["s"] for rows in rules.values() for r in rows) or 1.0
    table = [
        {
            "rule": rule,
            "jobs": len(rows),
            "wall_s": round(sum(r["s"] for r in rows), 1),
            "wall_share": round(sum(r["s"] for r in rows) / total_wall, 3),
            "cpu_s": round(sum(r["cpu_time"] for r in rows), 1),
            "max_rss_mb": round(max(r["max_rss"] for r in rows), 1),
        }
        for rule, rows in rules.items()
    ]
    return sorted(table, key=lambda row: -row["wall_s"])


def log_wall_seconds(path: str | Path) -> tuple[float, int]:
    """(seconds from the log's start date to its last job timestamp, jobs done) of a Snakemake log."""
    start = last = None
    done = 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if start is None and (m := _DATE.match(line)):
                start = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")
            elif m := _STAMP.match(line):
                last = datetime.strptime(" ".join(m.group(1).split()), "%a %b %d %H:%M:%S %Y")
            elif m := _DONE.search(line):
                done = int(m.group(2))
    if start is None or last is None:
        raise ValueError(f"{path}: no start date or job timestamps (not a Snakemake log that ran jobs)")
    if not done:
        raise ValueError(f"{path}: the run did not finish (no '100% done' line); time a complete run")
    return (last - start).total_seconds(), done


def newest_complete_log(folder: str | Path) -> Path:
    """The newest Snakemake log in ``folder`` whose run finished all its jobs."""
    logs = sorted(Path(folder).glob("*.snakemake.log"), reverse=True)  # names start with an ISO time
    for path in logs:
        if _DONE.search(path.read_text(encoding="utf-8", errors="replace")):
            return path
    raise ValueError(f"no Snakemake log in {folder} records a finished run")


def cmd_runtime(args: argparse.Namespace) -> int:
    args.benchmarks = args.benchmarks or f"{args.results}/benchmarks"
    args.out = args.out or f"{args.results}/tables/runtime.tsv"
    rows = breakdown(read_benchmarks(args.benchmarks))
    log_path = Path(args.log) if args.log else newest_complete_log(args.log_dir)
    wall, jobs = log_wall_seconds(log_path)
    rows.append(
        {
            "rule": GRID_ROW,
            "jobs": jobs,
            "wall_s": round(wall, 1),
            "wall_share": 1.0,
            "cpu_s": round(sum(r["cpu_s"] for r in rows), 1),
            "max_rss_mb": max(r["max_rss_mb"] for r in rows),
        }
    )
    with atomic_path(args.out) as tmp:
        write_tsv(rows, tmp, list(COLUMNS))
    width = max(len(str(r["rule"])) for r in rows)
    print(f"{'rule':<{width}}  jobs   wall_s  share    cpu_s  max_rss_mb")
    for r in rows:
        print(
            f"{r['rule']:<{width}}  {r['jobs']:>4} {r['wall_s']:>8} {r['wall_share']:>6.3f} "
            f"{r['cpu_s']:>8} {r['max_rss_mb']:>10}"
        )
    summed = sum(r["wall_s"] for r in rows[:-1])
    print(
        f"end to end: {wall / 60:.1f} min for {jobs} jobs ({log_path}); summed job wall time {summed:.0f} s "
        f"({summed / wall:.2f} jobs at a time); wrote {args.out}"
    )
    return 0


def add_runtime(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "runtime",
        help="per-rule time from Snakemake benchmark files + end-to-end time",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument(
        "--results",
        default="results",
        help="results root of the configuration (results/paper for the paper grid; default: %(default)s)",
    )
    p.add_argument("--benchmarks", default=None, help="benchmark folder (default: RESULTS/benchmarks)")
    p.add_argument(
        "--log", default=None, help="Snakemake log of the timed run (default: the newest finished one in --log-dir)"
    )
    p.add_argument("--log-dir", default=".snakemake/log", help="default: %(default)s")
    p.add_argument("--out", default=None, help="default: RESULTS/tables/runtime.tsv")
    p.set_defaults(func=cmd_runtime)
