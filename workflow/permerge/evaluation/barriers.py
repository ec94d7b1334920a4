"""Loss barriers from per-λ loss files, and their summary over pairs (docs/method.md, "Merging, losses, barriers").

Each barrier comes twice: as the paper (and its reference code) defines it, with the aligned π(B) standing in
for B at λ=1, and against the true endpoint B (`*_true`, from the loss file's `loss_b_unpermuted` column).
The two agree when the permutation is function-preserving; `rel_diff_b` says how far they were apart.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from statistics import mean

from permerge.cohorts import is_cohort

# The columns after `function_preserving` were added later; readers select columns by name.
BARRIER_COLUMNS = [
    "task",
    "variant",
    "pair",
    "barrier",
    "barrier_linear",
    "loss_a",
    "loss_b",
    "loss_mid",
    "function_preserving",
    "barrier_true",
    "barrier_linear_true",
    "loss_b_unpermuted",
    "rel_diff_b",
]
SUMMARY_COLUMNS = [
    "task",
    "variant",
    "mean",
    "se",
    "n",
    "barrier_linear_mean",
    "barrier_linear_se",
    "barrier_true_mean",
    "barrier_true_se",
    "barrier_linear_true_mean",
    "barrier_linear_true_se",
    "max_rel_diff_b",
    "vs_vanilla_mean",
    "vs_vanilla_se",
    "below_vanilla",
]
BASELINE_VARIANT = "vanilla"  # the paired differences of the summary are against plain weight averaging
# Loss-file column with the unpermuted B's loss (the same on every row; see evaluate.lambda_sweep).
UNPERMUTED_LOSS = "loss_b_unpermuted"


def read_curve(path: str | Path) -> tuple[list[float], list[float], float | None]:
    """(λ values, losses, loss of the unpermuted B) of one loss file, sorted by λ.

    The unpermuted B's loss is None for files written before the `loss_b_unpermuted` column existed.
    """
    path = Path(path)
    rows = read_tsv(path)
    if not rows or "lambda" not in rows[0] or "loss" not in rows[0]:
        raise ValueError(f"{path}: expected a TSV with columns 'lambda' and 'loss'")
    pts = sorted((float(r["lambda"]), float(r["loss"])) for r in rows)
    loss_b = None
    if UNPERMUTED_LOSS in rows[0]:
        values = {r[UNPERMUTED_LOSS] for r in rows}
        if len(values) != 1 or "" in values or None in values:
            raise ValueError(
                f"{path}: column {UNPERMUTED_LOSS!r} must hold one value repeated on every row, "
                f"got {sorted(map(str, values))}"
            )
        loss_b = float(values.pop())
    return [p[0] for p in pts], [p[1] for p in pts], loss_b


def read_losses(path: str | Path) -> tuple[list[float], list[float]]:
    """(λ values, losses) of one loss file, sorted by λ; checks the header names the file."""
    lams, losses, _ = read_curve(path)
    return lams, losses


def barrier(lams: list[float], losses: list[float], loss_b_unpermuted: float | None = None) -> dict:
    """Barriers of one loss curve over a λ grid that runs from 0 (model A) to 1 (the aligned B, π(B)).

    * `barrier` (the paper's): max_λ L(θ(λ)) − ½(L_A + L(π(B)));
      `barrier_linear`: max_λ [L(θ(λ)) − ((1−λ)L_A + λL(π(B)))].
    * `barrier_true` / `barrier_linear_true`: the same against the TRUE endpoint B, i.e. with
      L_B = `loss_b_unpermuted` (the max still runs over the swept λ, λ=1 being π(B)). They differ from the
      paper's only when the permutation is not function-preserving (attention matched ignoring heads).
    * `rel_diff_b` = |L(π(B)) − L(B)| / L(B): function preservation as observed.

    When `loss_b_unpermuted` is None (loss files from before the column existed) the λ=1 loss stands in for
    it: `loss_b_unpermuted` = `loss_b`, the true barriers equal the paper's, and `rel_diff_b` is None
    (not measured).
    """
    if lams[0] != 0.0 or lams[-1] != 1.0:
        raise ValueError(f"the λ grid must start at 0 and end at 1 (got {lams[0]} … {lams[-1]})")
    la, lb = losses[0], losses[-1]
    lb_true = lb if loss_b_unpermuted is None else float(loss_b_unpermuted)
    mid = min(range(len(lams)), key=lambda i: abs(lams[i] - 0.5))

    def linear(end):
        return max(l - ((1 - t) * la + t * end) for t, l in zip(lams, losses))

    return {
        "barrier": max(losses) - 0.5 * (la + lb),
        "barrier_linear": linear(lb),
        "loss_a": la,
        "loss_b": lb,
        "loss_mid": losses[mid],
        "barrier_true": max(losses) - 0.5 * (la + lb_true),
        "barrier_linear_true": linear(lb_true),
        "loss_b_unpermuted": lb_true,
        "rel_diff_b": None if loss_b_unpermuted is None else _rel_diff(lb, lb_true),
    }


def _rel_diff(x: float, ref: float) -> float:
    if ref == 0.0:
        return 0.0 if x == 0.0 else math.inf
    return abs(x - ref) / abs(ref)


def parse_loss_path(path: str | Path) -> tuple[str, str, str]:
    """results/losses/{task}/{variant}/{cohort}/{pair}.tsv (or, written before cohorts,
    results/losses/{task}/{variant}/{pair}.tsv) -> (task, variant, pair)."""
    p = Path(path)
    folder = p.parent.parent if is_cohort(p.parent.name) else p.parent
    return folder.parent.name, folder.name, p.stem


def barrier_rows(paths, function_preserving: dict[str, bool] | None = None) -> list[dict]:
    rows = []
    for path in paths:
        task, variant, pair = parse_loss_path(path)
        row = {"task": task, "variant": variant, "pair": pair, **barrier(*read_curve(path))}
        if function_preserving is not None:
            row["function_preserving"] = function_preserving.get(variant, "")
        rows.append(row)
    return rows


def _mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (sample sd / sqrt(n)); the SE of a single value is NaN."""
    from scipy.stats import sem

    return mean(values), float(sem(values)) if len(values) > 1 else float("nan")


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and standard error over pairs of each barrier, per (task, variant), in first-seen order, and
    `max_rel_diff_b`: the largest |L(π(B)) − L(B)| / L(B) over the pairs that measured it (None if none).

    Paired against `vanilla` of the same task (over the pairs both have; None for vanilla itself or a task
    without it): `vs_vanilla_mean`/`_se` of barrier − vanilla's barrier, and `below_vanilla`, "k/n" pairs
    where the variant's barrier is the lower. Pairs share their evaluation data, so the paired difference
    is far less noisy than the two means side by side."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["variant"]), []).append(r)
    vanilla = {(r["task"], r["pair"]): r["barrier"] for r in rows if r["variant"] == BASELINE_VARIANT}
    out = []
    for (task, variant), rs in groups.items():
        m, se = _mean_se([r["barrier"] for r in rs])
        row = {"task": task, "variant": variant, "mean": m, "se": se, "n": len(rs)}
        for key in ("barrier_linear", "barrier_true", "barrier_linear_true"):
            row[f"{key}_mean"], row[f"{key}_se"] = _mean_se([r[key] for r in rs])
        diffs = [r["rel_diff_b"] for r in rs if r.get("rel_diff_b") is not None]
        row["max_rel_diff_b"] = max(diffs) if diffs else None
        paired = [r["barrier"] - vanilla[task, r["pair"]] for r in rs if (task, r["pair"]) in vanilla]
        if variant != BASELINE_VARIANT and paired:
            row["vs_vanilla_mean"], row["vs_vanilla_se"] = _mean_se(paired)
            row["below_vanilla"] = f"{sum(d < 0 for d in paired)}/{len(paired)}"
        else:
            row["vs_vanilla_mean"] = row["vs_vanilla_se"] = row["below_vanilla"] = None
        out.append(row)
    return out


def write_tsv(rows: list[dict], path: str | Path, columns: list[str], *, float_format: str | None = ".6g") -> None:
    """The project's TSV writer: a header of `columns`, one line per row (keys outside `columns` ignored,
    missing values and None empty), floats with `float_format` (None: the float's repr, which reads back
    exactly). Writes `path` directly: callers wrap it in io.atomic_path."""
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, delimiter="\t", lineterminator="\n", extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(
                {
                    k: (format(v, float_format) if float_format else repr(float(v))) if isinstance(v, float) else v
                    for k, v in r.items()
                }
            )


def read_tsv(path: str | Path) -> list[dict]:
    """The rows of a TSV with a header line, as {column: text}."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


# ------------------------------------------------------------------------------------------- trajectory
TRAJECTORY_COLUMNS = ["task", "variant", "step", "mean", "se", "n", "barrier_true_mean", "barrier_true_se"]


def trajectory(summary_rows: list[dict], final_step: int) -> list[dict]:
    """Barrier vs pre-training step: `summarize`'s rows of tasks at intermediate steps (mlm_step250) and of
    their final tasks (mlm, at `final_step`), as rows (task, variant, step, mean, se, n, ...), sorted by task,
    variant and step."""
    from permerge.tasks import base_task, step_of

    out = []
    for s in summary_rows:
        step = step_of(s["task"])
        out.append({**s, "task": base_task(s["task"]), "step": final_step if step is None else step})
    return sorted(out, key=lambda r: (r["task"], r["variant"], int(r["step"])))
