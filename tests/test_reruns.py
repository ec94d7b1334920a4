"""Partial reruns on a copy of the finished smoke run: a config change reruns only what depends on it.

(a) one variant's matching option -> that variant's permutations and everything downstream (run, and
    only those outputs change); (b) one more λ -> the sweeps and the tables/figures; (c) one more seed ->
    only jobs that involve it (its models, a statistics cohort of its pairs, its pairs' permutations and
    sweeps) plus what reads the whole grid; no old pair's file is rewritten (run); removing a seed then
    reruns only what reads the whole grid (docs/performance.md, "Adding seeds").
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

    # One permutation and one sweep job per (task, variant, cohort): a fresh grid is one cohort (seeds1-2-3)
    # of mlm, sst2, stsb and the trajectory's mlm_step20; merged checkpoints one job per pair (3 pairs; none
    # at a step).
    jobs = planned_jobs(wd, *args)
    assert dict(jobs) == {
        "compute_permutations": 4,
        "merge_checkpoints": 3 * 3,
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
        "results/logs/compute_permutations/*/all/*.log",
        "results/logs/merge_checkpoints/*/all/*.log",
        "results/logs/sweep_lambdas/*/all/*.log",
        "results/benchmarks/sweep_lambdas/*/all/*.tsv",
        "results/benchmarks/compute_permutations/*/all/*.tsv",
        "results/benchmarks/merge_checkpoints/*/all/*.tsv",
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
    n_sweeps = 4 + 2 * 2 + 2  # one cohort x (mlm variants + glue tasks x glue variants + mlm_step20's)
    assert dict(jobs) == {
        "sweep_lambdas": n_sweeps,
        "tabulate_barriers": 1,
        "tabulate_trajectory": 1,
        "plot_barriers": 1,
    }, jobs


def involves(wildcards: str, seed: int) -> bool:
    """Whether a job's wildcards name `seed`: its own (seed=, a=, b=) or one of its statistics cohort's."""
    from permerge import cohorts

    fields = dict(f.split("=", 1) for f in wildcards.split(", ") if "=" in f)
    if "cohort" in fields:
        return seed in cohorts.seeds(fields["cohort"])
    return str(seed) in (fields.get("seed"), fields.get("a"), fields.get("b"))


# Jobs that read every seed or every pair: they rerun whenever the seed set changes.
WHOLE_GRID = {
    "tabulate_barriers",
    "tabulate_finetuning",
    "tabulate_trajectory",
    "tabulate_many",
    "plot_barriers",
    "merge_many",  # all seeds merged at once
    "merged",  # the target rule of the merged checkpoints (no output)
}


def stamps(wd: Path, keep) -> dict[str, tuple[str, int]]:
    """path -> (sha256, mtime in ns) of the results files `keep(relative path)` selects."""
    out = {}
    for p in sorted((wd / "results").rglob("*")):
        rel = str(p.relative_to(wd / "results"))
        if p.is_file() and keep(rel):
            out[rel] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out


def old_pair_file(rel: str) -> bool:
    """An output of seeds 1-3 only: statistics, a pair's permutations, losses, merges, a seed's models."""
    if rel.startswith(("stats/", "permutations/", "losses/", "merged/")):
        return not re.search(r"seeds?4", rel)
    return rel.startswith("models/") and "/seed4" not in rel


def test_new_seed_computes_only_its_own_pairs_and_removing_one_only_tables(smoke_run, smoke_config, tmp_path):
    wd = copy_run(smoke_run, tmp_path / "wf")
    assert smoke_config["seeds"] == [1, 2, 3]
    ov = overlay(wd, "four_seeds", seeds=[1, 2, 3, 4])
    args = (*TARGETS, "--configfile", SMOKE, str(ov.relative_to(wd)))
    jobs = planned_wildcards(wd, *args)
    counts = {rule: len(w) for rule, w in sorted(jobs.items())}
    print("jobs after adding seed 4:", counts)

    # Every planned job involves seed 4, but those that read the whole grid (tables, figures, all-seed merges).
    stray = {r: [w for w in ws if not involves(w, 4)] for r, ws in jobs.items() if r not in WHOLE_GRID}
    assert not any(stray.values()), f"jobs of old seeds or pairs replanned: {stray}"
    assert jobs["pretrain_seed"] == ["seed=4"] and jobs["extract_step"] == ["step=20, seed=4"], jobs
    assert sorted(jobs["finetune"]) == ["glue_task=sst2, seed=4", "glue_task=stsb, seed=4"], jobs["finetune"]
    # statistics: one pass per task over seed 4 and the seeds it pairs with, keeping only its 3 cross blocks
    assert sorted(jobs["collect_statistics"]) == [
        f"task={t}, cohort=seeds4x1-2-3" for t in ("mlm", "mlm_step20", "sst2", "stsb")
    ], jobs["collect_statistics"]
    # permutations and sweeps: one job per task and variant, of the cohort seeds4x1-2-3 (its 3 pairs)
    task_variants, step_variants, new_pairs = 4 + 2 * 2, 2, 3
    for rule in ("compute_permutations", "sweep_lambdas"):
        assert len(jobs[rule]) == task_variants + step_variants, jobs[rule]
        assert all(w.endswith("cohort=seeds4x1-2-3") for w in jobs[rule]), jobs[rule]
    assert counts["merge_checkpoints"] == new_pairs * task_variants
    for rule in ("fetch_source", "build_texts", "build_task", "train_tokenizer", "build_mlm_evalset"):
        assert rule not in jobs, f"{rule} rescheduled by a new seed"

    before = stamps(wd, old_pair_file)
    assert any(k.startswith("losses/") for k in before) and any(k.startswith("stats/") for k in before)
    snakemake(wd, "-j", "2", *args)
    assert planned_jobs(wd, *args) == Counter(), "not up to date after adding seed 4"
    after = stamps(wd, old_pair_file)
    changed = sorted(k for k in before if after.get(k) != before[k])
    assert not changed, f"files of old seeds/pairs rewritten or touched: {changed[:10]}"
    assert (wd / "results/losses/mlm/all/seeds4x1-2-3/seed1-seed4.tsv").is_file()
    assert (wd / "results/permutations/mlm/all/seeds4x1-2-3/seed3-seed4.safetensors").is_file()
    assert (wd / "results/stats/mlm/seeds4x1-2-3").is_dir()
    rows = [line.split("\t") for line in (wd / "results/tables/barriers.tsv").read_text().splitlines()]
    assert {r[rows[0].index("pair")] for r in rows[1:]} == {
        f"seed{a}-seed{b}" for a, b in [(1, 2), (1, 3), (2, 3), (1, 4), (2, 4), (3, 4)]
    }

    # Removing a seed: the remaining pairs' files stay as they are; only what reads the whole grid reruns.
    fewer = overlay(wd, "without_seed2", seeds=[1, 3, 4])
    args = (*TARGETS, "--configfile", SMOKE, str(fewer.relative_to(wd)))
    jobs = planned_wildcards(wd, *args)
    assert set(jobs) <= WHOLE_GRID and "tabulate_barriers" in jobs, jobs
    kept = stamps(wd, lambda rel: rel.startswith(("stats/", "permutations/", "losses/", "merged/", "models/")))
    snakemake(wd, "-j", "2", *args)
    assert stamps(wd, lambda rel: rel in kept) == kept
