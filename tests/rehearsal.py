"""The paper-grid rehearsal's overlay, shared by tests/test_paper_rehearsal.py (a local run) and
tests/test_slurm.py (the same grid, or a subset of its tasks, through SLURM): configs/paper.yaml as a user
runs it, plus one overlay that only points the hub ids at hub-shaped fixture repositories
(tests/hub_fixtures.py) and shrinks the grid (3 seeds, 2 GLUE tasks, 3 λ, fewer variants)."""

from __future__ import annotations

from pathlib import Path

import yaml

SEEDS = (1, 2, 3)
GLUE_TASKS = ("mnli", "stsb")
BOOK_ROWS, SAMPLE = 3000, 1000
R = "results/paper"
COMPAT_VARIANTS = ["vanilla", "ff_attn"]  # mlm_compat: a subset of paper.yaml's, which needs mlm variants cut here
OVERLAY = "configs/rehearsal.yaml"
ARGS = ("--configfile", "configs/paper.yaml", OVERLAY)


def overlay(hub: dict, tasks=("mlm", "mlm_compat", *GLUE_TASKS), many_variants=None) -> dict:
    """`tasks`, `many_variants`: a subset of the grid (tests/test_slurm.py), with the same results."""
    grid = {"many": {"variants": list(many_variants)}} if many_variants else {}
    return grid | {
        # where the hub repositories are (the fixture folders), nothing else about the data
        "models": {"hub_id": str(hub["models"] / "multiberts-seed_{seed}")},
        "data": {
            # the fixture's own size (paper.yaml's expected_rows is the real corpus's 74,004,228)
            "stats_text": {"id": str(hub["bookcorpus"]), "sample": SAMPLE, "expected_rows": BOOK_ROWS},
            "mlm_eval": {"id": str(hub["wikitext"])},
            "glue": {"id": str(hub["glue"])},
        },
        # a smaller grid on the CPU
        "device": "cpu",
        "threads": 1,
        "seeds": list(SEEDS),
        "tasks": list(tasks),
        "lambdas": [0.0, 0.5, 1.0],
        "task_variants": {
            "mlm": ["vanilla", "ff_attn", "ff_attn_ignore_heads", "ff_attn_frac0.01", "ff_attn_frac0.5"],
            "mlm_compat": COMPAT_VARIANTS,
            "glue": ["vanilla", "all", "paper_glue"],
        },
    }


def write_overlay(wd: Path, hub: dict, **kwargs) -> tuple[str, ...]:
    """Write the overlay into the workflow copy `wd`; returns the --configfile arguments."""
    (wd / OVERLAY).write_text(yaml.safe_dump(overlay(hub, **kwargs)))
    return ARGS
