"""Barrier-curve figures: loss along λ per task (mean over pairs ± s.e.) and a summary bar chart."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from permerge.evaluation.barriers import parse_loss_path, read_losses  # noqa: E402
from permerge.tasks import ORDER, TITLES, is_mlm  # noqa: E402

TASK_ORDER = list(ORDER)
TASK_TITLES = TITLES
BASELINE = "vanilla"


def ordered_tasks(tasks) -> list[str]:
    return sorted(tasks, key=lambda t: TASK_ORDER.index(t) if t in TASK_ORDER else len(TASK_ORDER))


def load_curves(paths) -> dict[str, dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]]:
    """task -> variant -> pair -> (λ, loss)."""
    curves: dict = defaultdict(lambda: defaultdict(dict))
    for p in paths:
        task, variant, pair = parse_loss_path(p)
        lams, losses = read_losses(p)
        curves[task][variant][pair] = (np.asarray(lams), np.asarray(losses))
    return curves


def _variant_order(variants) -> list[str]:
    return sorted(variants, key=lambda v: (v != BASELINE, v))


def plot_task(ax, task: str, by_variant: dict, *, pair_lines: bool = True) -> None:
    """Mean loss over pairs vs λ per variant with a ±s.e. band; the vanilla baseline is dashed black."""
    cmap = plt.get_cmap("tab10")
    for i, variant in enumerate(_variant_order(by_variant)):
        pairs = by_variant[variant]
        lams = next(iter(pairs.values()))[0]
        ys = np.stack([pairs[p][1] for p in sorted(pairs)])
        m = ys.mean(0)
        se = ys.std(0, ddof=1) / math.sqrt(len(ys)) if len(ys) > 1 else np.zeros_like(m)
        style = dict(color="black", ls="--") if variant == BASELINE else dict(color=cmap(i % 10))
        if pair_lines:
            for y in ys:
                ax.plot(lams, y, lw=0.4, alpha=0.25, color=style["color"])
        ax.plot(lams, m, lw=1.8, label=f"{variant} (n={len(ys)})", **style)
        ax.fill_between(lams, m - se, m + se, alpha=0.2, color=style["color"])
    ax.set_title(f"{TASK_TITLES.get(task, task)}: loss along θ(λ) = (1−λ)θ_A + λπ(θ_B)")
    ax.set_xlabel("λ  (0 = model A, 1 = aligned model B)")
    ax.set_ylabel("MLM loss (nats)" if is_mlm(task) else ("MSE" if task.startswith("stsb") else "cross-entropy"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def plot_summary(ax, summary_rows: list[dict]) -> None:
    """Barrier mean ± s.e. per task (groups) and variant (bars)."""
    tasks = ordered_tasks({r["task"] for r in summary_rows})
    variants = _variant_order({r["variant"] for r in summary_rows})
    index = {(r["task"], r["variant"]): r for r in summary_rows}
    width = 0.8 / len(variants)
    cmap = plt.get_cmap("tab10")
    for j, v in enumerate(variants):
        xs, hs, es = [], [], []
        for i, t in enumerate(tasks):
            r = index.get((t, v))
            if r is None:
                continue
            xs.append(i + (j - (len(variants) - 1) / 2) * width)
            hs.append(float(r["mean"]))
            se = float(r["se"])
            es.append(0.0 if math.isnan(se) else se)
        color = "0.3" if v == BASELINE else cmap(j % 10)
        ax.bar(xs, hs, width, yerr=es, capsize=2, label=v, color=color)
    ax.set_xticks(range(len(tasks)), [TASK_TITLES.get(t, t) for t in tasks])
    ax.set_ylabel("loss barrier: max_λ L − ½(L_A + L_B)")
    ax.set_title("Loss barrier per task and variant (mean ± s.e. over pairs)")
    ax.axhline(0, color="black", lw=0.5)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)


def plot_many(ax, many_rows: list[dict]) -> None:
    """All seeds merged at once: per task (groups), each model's loss relative to the mean of the seeds'
    (bars: the plain average, then each variant's merges), so tasks with different loss scales share an axis."""
    tasks = ordered_tasks({r["task"] for r in many_rows})
    bars = list(dict.fromkeys((r["variant"], r["merge"]) for r in many_rows if not r["merge"].startswith("seed")))
    # the plain average is the same for every variant: show it once
    bars = [("", "average")] + [b for b in bars if b[1] != "average"]
    width = 0.8 / len(bars)
    cmap = plt.get_cmap("tab10")
    for j, (variant, merge) in enumerate(bars):
        xs, hs = [], []
        for i, t in enumerate(tasks):
            rows = [r for r in many_rows if r["task"] == t]
            seeds = [float(r["loss"]) for r in rows if r["merge"].startswith("seed")]
            hit = [r for r in rows if r["merge"] == merge and (not variant or r["variant"] == variant)]
            if not hit or not seeds:
                continue
            xs.append(i + (j - (len(bars) - 1) / 2) * width)
            hs.append(float(hit[0]["loss"]) - sum(seeds) / len(seeds))
        label = "plain average" if not variant else f"{variant}: {merge}"
        ax.bar(xs, hs, width, label=label, color="0.3" if not variant else cmap(j % 10))
    ax.set_xticks(range(len(tasks)), [TASK_TITLES.get(t, t) for t in tasks])
    ax.set_ylabel("loss of the merge − mean loss of the seeds")
    ax.set_title("All seeds merged at once (MergeMany)")
    ax.axhline(0, color="black", lw=0.5)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)


def plot_trajectory(axes, trajectory_rows: list[dict]) -> None:
    """Barrier vs pre-training step (barriers.trajectory's rows): one panel per task, one line per variant,
    mean ± s.e. over pairs; the last point of each line is the final checkpoint."""
    tasks = ordered_tasks({r["task"] for r in trajectory_rows})
    cmap = plt.get_cmap("tab10")
    for ax, task in zip(axes, tasks):
        rows = [r for r in trajectory_rows if r["task"] == task]
        for i, v in enumerate(_variant_order({r["variant"] for r in rows})):
            pts = sorted((int(r["step"]), float(r["mean"]), float(r["se"])) for r in rows if r["variant"] == v)
            steps, means, ses = (np.asarray(x) for x in zip(*pts))
            style = dict(color="black", ls="--") if v == BASELINE else dict(color=cmap(i % 10))
            ax.errorbar(steps, means, yerr=np.nan_to_num(ses), marker="o", capsize=3, label=v, **style)
        ax.set_title(f"{TASK_TITLES.get(task, task)}: barrier vs pre-training step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("pre-training step (last point: the final checkpoint)")
        ax.set_ylabel("loss barrier: max_λ L − ½(L_A + L_B)")
        ax.axhline(0, color="black", lw=0.5)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)


def write_figures(
    loss_paths,
    summary_rows: list[dict],
    pdf_path,
    png_dir,
    tasks,
    many_rows: list[dict] | None = None,
    trajectory_rows: list[dict] | None = None,
) -> list[Path]:
    """all.pdf (a page per task, mlm first, then the summary, then the all-seed merges and the barrier vs
    pre-training step if given) and one PNG per task (and trajectory.png)."""
    curves = load_curves(loss_paths)
    written = []
    with PdfPages(pdf_path) as pdf:
        for task in ordered_tasks(tasks):
            fig, ax = plt.subplots(figsize=(8, 5.5))
            plot_task(ax, task, curves[task])
            fig.tight_layout()
            pdf.savefig(fig)
            png = Path(png_dir) / f"{task}.png"
            fig.savefig(png, dpi=110)
            written.append(png)
            plt.close(fig)
        fig, ax = plt.subplots(figsize=(max(8, 1.4 * len(tasks) + 3), 5.5))
        plot_summary(ax, summary_rows)
        fig.tight_layout()
        pdf.savefig(fig)
        plt.close(fig)
        if many_rows:
            fig, ax = plt.subplots(figsize=(max(8, 1.4 * len(tasks) + 3), 5.5))
            plot_many(ax, many_rows)
            fig.tight_layout()
            pdf.savefig(fig)
            plt.close(fig)
        if trajectory_rows:
            n = len({r["task"] for r in trajectory_rows})
            fig, axes = plt.subplots(1, n, figsize=(6.5 * n, 5), squeeze=False)
            plot_trajectory(axes[0], trajectory_rows)
            fig.tight_layout()
            pdf.savefig(fig)
            png = Path(png_dir) / "trajectory.png"
            fig.savefig(png, dpi=110)
            written.append(png)
            plt.close(fig)
    return written
