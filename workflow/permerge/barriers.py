"""Loss barriers from per-λ loss files, and their summary over pairs (method.md, "Merging, losses, barriers")."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from statistics import mean, stdev

BARRIER_COLUMNS = [
    "task", "variant", "pair", "barrier", "barrier_linear", "loss_a", "loss_b", "loss_mid",
    "function_preserving",
]
SUMMARY_COLUMNS = ["task", "variant", "mean", "se", "n", "barrier_linear_mean", "barrier_linear_se"]


def read_losses(path: str | Path) -> tuple[list[float], list[float]]:
    """(λ values, losses) of one loss file, sorted by λ; checks the header names the file."""
    path = Path(path)
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if not rows or "lambda" not in rows[0] or "loss" not in rows[0]:
        raise ValueError(f"{path}: expected a TSV with columns 'lambda' and 'loss'")
    pts = sorted((float(r["lambda"]), float(r["loss"])) for r in rows)
    return [p[0] for p in pts], [p[1] for p in pts]


def barrier(lams: list[float], losses: list[float]) -> dict[str, float]:
    """The paper's barrier max_λ L − ½(L_A + L_B), and the one against linear interpolation."""
    if lams[0] != 0.0 or lams[-1] != 1.0:
        raise ValueError(f"the λ grid must start at 0 and end at 1 (got {lams[0]} … {lams[-1]})")
    la, lb = losses[0], losses[-1]
    mid = min(range(len(lams)), key=lambda i: abs(lams[i] - 0.5))
    return {
        "barrier": max(losses) - 0.5 * (la + lb),
        "barrier_linear": max(l - ((1 - t) * la + t * lb) for t, l in zip(lams, losses)),
        "loss_a": la,
        "loss_b": lb,
        "loss_mid": losses[mid],
    }


def parse_loss_path(path: str | Path) -> tuple[str, str, str]:
    """results/losses/{task}/{variant}/{pair}.tsv -> (task, variant, pair)."""
    p = Path(path)
    return p.parent.parent.name, p.parent.name, p.stem


def barrier_rows(paths, function_preserving: dict[str, bool] | None = None) -> list[dict]:
    rows = []
    for path in paths:
        task, variant, pair = parse_loss_path(path)
        row = {"task": task, "variant": variant, "pair": pair, **barrier(*read_losses(path))}
        if function_preserving is not None:
            row["function_preserving"] = function_preserving.get(variant, "")
        rows.append(row)
    return rows


def _mean_se(values: list[float]) -> tuple[float, float]:
    m = mean(values)
    se = stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return m, se


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and standard error of the barrier over pairs, per (task, variant), in first-seen order."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["variant"]), []).append(r)
    out = []
    for (task, variant), rs in groups.items():
        m, se = _mean_se([r["barrier"] for r in rs])
        ml, sel = _mean_se([r["barrier_linear"] for r in rs])
        out.append({"task": task, "variant": variant, "mean": m, "se": se, "n": len(rs),
                    "barrier_linear_mean": ml, "barrier_linear_se": sel})
    return out


def write_tsv(rows: list[dict], path: str | Path, columns: list[str]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, delimiter="\t", extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def read_tsv(path: str | Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))
