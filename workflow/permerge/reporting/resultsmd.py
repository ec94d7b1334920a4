"""``permerge results``: the README's results tables (markdown) from a finished run's tables.

  permerge results [--results results]

Prints, from ``RESULTS/tables/``: per GLUE task the seeds' metric beside chance, the bag-of-words score and
the "learnt" target, with the barriers of every variant the task ran (mean ± s.e. over pairs) and each
variant's paired difference from vanilla; the MLM variants with their paired differences (and on the
character-spaced text, ``mlm_compat``, where the run scored it); the barrier vs
pre-training step; the all-seed merges; and the end-to-end time (``runtime.tsv``, written by ``permerge
runtime``). Tables a run did not produce are left out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from permerge.evaluation.barriers import read_tsv
from permerge.tasks import MLM_COMPAT, is_mlm


def _f(text: str, digits: int = 3) -> str:
    return "–" if text in ("", None) else f"{float(text):.{digits}f}".replace("-", "−")


def _pm(mean: str, se: str, digits: int = 3) -> str:
    return f"{_f(mean, digits)} ± {_f(se, digits)}"


def _paired(s: dict) -> str:
    if not s.get("vs_vanilla_mean"):
        return "–"
    sign = "+" if float(s["vs_vanilla_mean"]) >= 0 else ""
    return f"{sign}{_pm(s['vs_vanilla_mean'], s['vs_vanilla_se'])} ({s['below_vanilla']})"


def glue_table(summary: list[dict], finetune: list[dict]) -> list[str]:
    variants = list(dict.fromkeys(s["variant"] for s in summary if not is_mlm(s["task"])))
    by_task = {(s["task"], s["variant"]): s for s in summary}
    head = ["task", "metric", "seeds (mean ± s.e.)", "chance", "bag of words", "target", "learnt"]
    head += [f"barrier `{v}`" for v in variants] + [f"`{v}` − `vanilla` (lower on)" for v in variants if v != "vanilla"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for f in finetune:
        t = f["task"]
        cells = [t, f["metric"], _pm(f["mean"], f["se"]), _f(f["chance"]), _f(f["bow"]), _f(f["target"]), f["learnt"]]
        cells += [_pm(by_task[t, v]["mean"], by_task[t, v]["se"]) if (t, v) in by_task else "–" for v in variants]
        cells += [_paired(by_task[t, v]) if (t, v) in by_task else "–" for v in variants if v != "vanilla"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def mlm_table(summary: list[dict], task: str = "mlm") -> list[str]:
    lines = [
        "| variant | barrier (mean ± s.e.) | vs the true B | − `vanilla`, paired (lower on) | max \\|L(π(B))−L(B)\\|/L(B) |",
        "|---|---|---|---|---|",
    ]
    for s in summary:
        if s["task"] == task:
            diff = "–" if not s["max_rel_diff_b"] else f"{float(s['max_rel_diff_b']):.1e}"
            lines.append(
                f"| `{s['variant']}` | {_pm(s['mean'], s['se'])} | {_pm(s['barrier_true_mean'], s['barrier_true_se'])} "
                f"| {_paired(s)} | {diff} |"
            )
    return lines


def trajectory_table(rows: list[dict]) -> list[str]:
    steps = sorted({int(r["step"]) for r in rows})
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    cell = {(r["task"], r["variant"], int(r["step"])): r for r in rows}
    lines = ["| task | variant | " + " | ".join(f"step {k}" for k in steps) + " |", "|" + "---|" * (len(steps) + 2)]
    for task in dict.fromkeys(r["task"] for r in rows):
        for v in variants:
            vals = [
                _pm(cell[task, v, k]["mean"], cell[task, v, k]["se"]) if (task, v, k) in cell else "–" for k in steps
            ]
            lines.append(f"| {task} | `{v}` | " + " | ".join(vals) + " |")
    return lines


def many_table(rows: list[dict]) -> list[str]:
    lines = ["| task | variant | merge | loss |", "|---|---|---|---|"]
    for r in rows:
        if not r["merge"].startswith("seed"):
            lines.append(f"| {r['task']} | `{r['variant']}` | {r['merge']} | {_f(r['loss'])} |")
    seeds = [float(r["loss"]) for r in rows if r["merge"].startswith("seed")]
    if seeds:
        lines.append(f"| | | one seed (range) | {min(seeds):.3f}–{max(seeds):.3f} |")
    return lines


def runtime_table(rows: list[dict]) -> list[str]:
    lines = ["| rule | jobs | job wall s (summed) | share |", "|---|---|---|---|"]
    grid = None
    for r in rows:
        if r["rule"] == "(grid)":
            grid = r
            continue
        lines.append(
            f"| `{r['rule']}` | {r['jobs']} | {float(r['wall_s']):,.0f} | {100 * float(r['wall_share']):.0f} % |"
        )
    if grid:
        summed = sum(float(r["wall_s"]) for r in rows if r["rule"] != "(grid)")
        lines.append(
            f"| whole grid ({float(grid['wall_s']) / 60:.1f} min) | {grid['jobs']} | {summed:,.0f} benchmarked | |"
        )
    return lines


def render(results: str | Path) -> str:
    tables = Path(results) / "tables"

    def load(name):
        path = tables / name
        return read_tsv(path) if path.is_file() else None

    summary = load("summary.tsv")
    if summary is None:
        raise ValueError(f"{tables / 'summary.tsv'} does not exist: run the workflow first")
    out = []
    finetune = load("finetune_summary.tsv")
    if finetune:
        out += ["### GLUE-shaped tasks", "", *glue_table(summary, finetune), ""]
    out += ["### MLM", "", *mlm_table(summary), ""]
    if any(s["task"] == MLM_COMPAT for s in summary):
        out += [
            "### MLM on the reference's character-spaced text (`mlm_compat`, the paper's MLM numbers)",
            "",
            *mlm_table(summary, MLM_COMPAT),
            "",
        ]
    for name, title, fn in (
        ("trajectory.tsv", "### Barrier vs pre-training step", trajectory_table),
        ("many.tsv", "### All seeds at once", many_table),
        ("runtime.tsv", "### Run time", runtime_table),
    ):
        rows = load(name)
        if rows:
            out += [title, "", *fn(rows), ""]
    return "\n".join(out)


def cmd_results(args: argparse.Namespace) -> int:
    print(render(args.results))
    return 0


def add_results(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "results",
        help="markdown tables of a finished run (README's results section)",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("--results", default="results", help="results root of the configuration (default: %(default)s)")
    p.set_defaults(func=cmd_results)
