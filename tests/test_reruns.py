"""Partial reruns on a copy of the finished smoke run: a config change reruns only what depends on it.

(a) one variant's matching option -> that variant's permutations and everything downstream (run, and
    only those outputs change); (b) one more λ -> the sweeps and the tables/figures; (c) one more seed ->
    the new seed's models, but no existing seed's pre-training or fine-tuning (the statistics pass covers
    all seeds at once, so statistics and every permutation rerun; see docs/configuration.md).
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections import Counter
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml

from tests.workflow_utils import planned_jobs, snakemake

SMOKE = "configs/smoke.yaml"
TARGETS = ("results/figures/all.pdf", "merged")  # merged checkpoints are their own target


def copy_run(src: Path, dest: Path) -> Path:
    """The finished run with its mtimes and .snakemake metadata, so nothing looks outdated."""
    shutil.copytree(src, dest, symlinks=True)
    return dest


def overlay(wd: Path, name: str, **changes) -> Path:
    path = wd / "configs" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(changes, sort_keys=False))
    return path


def hashes(wd: Path) -> dict[str, str]:
    out = {}
    for p in sorted((wd / "results").rglob("*")):
        if p.is_file():
            out[str(p.relative_to(wd))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def planned_wildcards(wd: Path, *args: str) -> dict[str, list[str]]:
    """rule -> the wildcards of each job a dry run plans ("" for a job without wildcards)."""
    out = snakemake(wd, "-n", *args)
    jobs: dict[str, list[str]] = {}
    current = None
    for line in (out.stdout + out.stderr).splitlines():
        text = line.strip()
        if m := re.fullmatch(r"(?:localrule|rule) (\w+):", text):
            current = jobs.setdefault(m.group(1), [])
            current.append("")
        elif current is not None and text.startswith("wildcards: "):
            current[-1] = text.removeprefix("wildcards: ")
    return jobs


@pytest.fixture(scope="module")
def smoke_config(smoke_run) -> dict:
    return yaml.safe_load((smoke_run / SMOKE).read_text())


def test_variant_option_reruns_only_that_variant(smoke_run, smoke_config, tmp_path):
    wd = copy_run(smoke_run, tmp_path / "wf")
    assert planned_jobs(wd, *TARGETS, "--configfile", SMOKE) == Counter(), "the copied run is not up to date"

    variants = smoke_config["variants"]
    assert variants["all"]["residual"] == "all"
    changed = dict(variants, all=dict(variants["all"], residual="first"))
    ov = overlay(wd, "residual_first", variants=changed)
    args = (*TARGETS, "--configfile", SMOKE, str(ov.relative_to(wd)))

    # One permutation/merge/sweep job per (task, variant), each covering all pairs: mlm, sst2, stsb, and
    # the trajectory's mlm_step20 (permutations and sweeps only: no merged checkpoints at a step).
    jobs = planned_jobs(wd, *args)
    assert dict(jobs) == {
        "compute_permutations": 4,
        "merge_checkpoints": 3,
        "sweep_lambdas": 4,
        "merge_many": 3,
        "tabulate_barriers": 1,
        "tabulate_many": 1,
        "tabulate_trajectory": 1,
        "plot_barriers": 1,
        "merged": 1,  # the target rule of the merged checkpoints (no output: runs when they change)
    }, jobs
    planned = planned_wildcards(wd, *args)
    assert all(
        "variant=all" in w
        for r in ("compute_permutations", "merge_checkpoints", "sweep_lambdas", "merge_many")
        for w in planned[r]
    ), planned

    before = hashes(wd)
    snakemake(wd, "-j", "2", *args)
    after = hashes(wd)
    assert planned_jobs(wd, *args) == Counter(), "not up to date after the rerun"

    allowed = [
        "results/permutations/*/all/*",
        "results/merged/*/all/*",
        "results/losses/*/all/*",
        "results/many/*/all/*",
        "results/tables/many.tsv",
        "results/logs/merge_many/*/all.log",
        "results/benchmarks/merge_many/*/all.tsv",
        "results/logs/tabulate_many.log",
        "results/tables/barriers.tsv",
        "results/tables/summary.tsv",
        "results/figures/*",
        "results/logs/compute_permutations/*/all.log",
        "results/logs/merge_checkpoints/*/all.log",
        "results/logs/sweep_lambdas/*/all.log",
        "results/benchmarks/sweep_lambdas/*/all.tsv",
        "results/benchmarks/compute_permutations/*/all.tsv",
        "results/benchmarks/merge_checkpoints/*/all.tsv",
        "results/logs/tabulate_barriers.log",
        "results/logs/plot_barriers.log",
        "results/tables/trajectory.tsv",
        "results/logs/tabulate_trajectory.log",
        "results/config.effective.yaml",  # the provenance of the last run: now with the overlay
    ]
    changed_files = sorted(k for k in after if before.get(k) != after[k])
    unexpected = [f for f in changed_files if not any(fnmatch(f, pat) for pat in allowed)]
    assert not unexpected, f"outputs outside variant 'all' and its tables/figures changed: {unexpected}"
    assert set(before) <= set(after), f"outputs vanished: {sorted(set(before) - set(after))}"
    effective = yaml.safe_load((wd / "results/config.effective.yaml").read_text())
    assert (
        effective["variants"]["all"]["residual"] == "first"
        and "residual_first.yaml" in (wd / "results/config.effective.yaml").read_text()
    )
    # residual "first" gives other permutations than "all" for the residual stream of these models
    assert any(f.startswith("results/permutations/") for f in changed_files), changed_files
    for unchanged in (
        "results/models/",
        "results/stats/",
        "results/permutations/mlm/ff_attn/",
        "results/losses/sst2/vanilla/",
        "results/tables/finetune.tsv",
    ):
        assert not any(f.startswith(unchanged) for f in changed_files), unchanged


def test_new_lambda_reruns_only_sweeps(smoke_run, smoke_config, tmp_path):
    wd = copy_run(smoke_run, tmp_path / "wf")
    lambdas = sorted([*smoke_config["lambdas"], 0.6])
    ov = overlay(wd, "more_lambdas", lambdas=lambdas)
    jobs = planned_jobs(wd, *TARGETS, "--configfile", SMOKE, str(ov.relative_to(wd)))
    n_sweeps = 4 + 2 * 2 + 2  # (task, variant)s: mlm variants + glue tasks x glue variants + mlm_step20's
    assert dict(jobs) == {
        "sweep_lambdas": n_sweeps,
        "tabulate_barriers": 1,
        "tabulate_trajectory": 1,
        "plot_barriers": 1,
    }, jobs


def test_new_seed_keeps_existing_seed_models(smoke_run, smoke_config, tmp_path):
    wd = copy_run(smoke_run, tmp_path / "wf")
    ov = overlay(wd, "four_seeds", seeds=[*smoke_config["seeds"], 4])
    args = (*TARGETS, "--configfile", SMOKE, str(ov.relative_to(wd)))
    jobs = planned_wildcards(wd, *args)
    counts = {rule: len(w) for rule, w in sorted(jobs.items())}
    print("jobs after adding seed 4:", counts)

    # Only seed 4 is trained: no existing seed's pre-training or fine-tuning is rescheduled.
    assert jobs["pretrain_seed"] == ["seed=4"], jobs["pretrain_seed"]
    assert sorted(jobs["finetune"]) == ["glue_task=sst2, seed=4", "glue_task=stsb, seed=4"], jobs["finetune"]
    for rule in ("fetch_source", "build_texts", "build_task", "train_tokenizer", "build_mlm_evalset"):
        assert rule not in jobs, f"{rule} rescheduled by a new seed"
    # The statistics pass covers all seeds (one pass over the data), so every task's statistics and hence
    # every permutation, merge and sweep job reruns (each covers all pairs, the 3 old ones included).
    # (mlm_step20 too: the new seed's checkpoint at step 20 is extracted from its own pre-training)
    task_variants, step_variants = 4 + 2 * 2, 2
    assert jobs["extract_step"] == ["step=20, seed=4"], jobs["extract_step"]
    assert counts == {
        "collect_statistics": 3 + 1,
        "compute_permutations": task_variants + step_variants,
        "extract_step": 1,
        "finetune": 2,
        "merge_checkpoints": task_variants,
        "plot_barriers": 1,
        "pretrain_seed": 1,
        "sweep_lambdas": task_variants + step_variants,
        "tabulate_barriers": 1,
        "tabulate_finetuning": 1,
        "tabulate_trajectory": 1,
        "merge_many": 3 + 2 * 2,
        "tabulate_many": 1,
        "merged": 1,
    }, counts
