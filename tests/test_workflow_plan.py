"""Dry runs: the planned jobs per rule for the embedded, paper and smoke configurations."""

import re

import pytest

from permerge.tasks import GLUE_TASKS
from tests.workflow_utils import copy_workflow, planned_jobs, snakemake


@pytest.fixture(scope="module")
def wf(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("wf"))


def test_embedded_seed_models(wf):
    jobs = planned_jobs(wf, *[f"results/models/mlm/seed{s}" for s in range(1, 6)])
    assert jobs["pretrain_seed"] == 5
    assert jobs["train_tokenizer"] == 1
    assert "finetune" not in jobs and "collect_statistics" not in jobs


def test_embedded_full_grid(wf):
    jobs = planned_jobs(wf, "results/figures/all.pdf")
    mlm_variants, glue_tasks, glue_variants = 10, len(GLUE_TASKS), 3  # vanilla, all, paper_glue
    per_pair = mlm_variants + glue_tasks * glue_variants
    # barrier vs pre-training step: mlm at 2 intermediate steps with vanilla and all (tests/test_trajectory.py)
    steps, step_variants = 2, 2
    assert jobs["pretrain_seed"] == 5 and jobs["extract_step"] == 5 * steps
    assert jobs["finetune"] == 5 * glue_tasks
    assert jobs["collect_statistics"] == 1 + glue_tasks + steps
    # one job per (task, variant, cohort): a fresh grid is one cohort of every seed (its 10 pairs) per task
    pairs = 10
    assert jobs["compute_permutations"] == per_pair + steps * step_variants
    assert jobs["sweep_lambdas"] == per_pair + steps * step_variants
    assert "merge_checkpoints" not in jobs  # merged checkpoints are their own target
    assert jobs["build_mlm_evalset"] == 1
    assert jobs["tabulate_barriers"] == jobs["plot_barriers"] == jobs["tabulate_finetuning"] == 1
    assert jobs["tabulate_trajectory"] == 1
    # all seeds at once (many.tasks: [mlm]): vanilla, all and wm_all on mlm only
    assert jobs["merge_many"] == 3 and jobs["tabulate_many"] == 1
    assert jobs["bow_baseline"] == 1
    assert planned_jobs(wf, "merged")["merge_checkpoints"] == pairs * per_pair


def test_paper_grid_dry_run(wf):
    # targets before --configfile, which takes several files
    jobs = planned_jobs(wf, "results/paper/figures/all.pdf", "--configfile", "configs/paper.yaml")
    assert jobs["fetch_model"] == 5
    assert "pretrain_seed" not in jobs and "train_tokenizer" not in jobs and "build_texts" not in jobs
    assert jobs["finetune"] == 40
    # one pass per task: mlm's five data fractions come from the same pass over the Books sample
    assert jobs["collect_statistics"] == 9
    assert jobs["compute_permutations"] == 16 + 8 * 3  # one job per (task, variant, cohort): one cohort
    # + mlm_compat: 8 of mlm's variants re-scored on the character-spaced text, on mlm's permutations
    assert jobs["sweep_lambdas"] == 16 + 8 * 3 + 8
    assert jobs["build_mlm_evalset"] == 2  # the normal and the character-spaced evaluation sets
    assert jobs["merge_many"] == 4 + 8 * 2
    assert "merge_checkpoints" not in jobs


def test_paper_and_embedded_results_roots_differ(wf):
    """The two configurations write disjoint trees, so the demo and the paper grid coexist in a checkout."""
    out = snakemake(wf, "-n", "results/paper/figures/all.pdf", "--configfile", "configs/paper.yaml")
    outputs = re.findall(r"^\s+output: (.*)$", out.stdout + out.stderr, re.M)
    paths = [p for line in outputs for p in line.split(", ")]
    assert paths and all(p.startswith("results/paper/") for p in paths), [p for p in paths if "paper" not in p][:5]
    demo = snakemake(wf, "-n", "results/figures/all.pdf")
    demo_paths = [
        p for line in re.findall(r"^\s+output: (.*)$", demo.stdout + demo.stderr, re.M) for p in line.split(", ")
    ]
    assert demo_paths and not any(p.startswith("results/paper/") for p in demo_paths)


def test_vanilla_needs_no_statistics(wf):
    jobs = planned_jobs(wf, "results/losses/mlm/vanilla/seeds1-2-3-4-5")
    assert "collect_statistics" not in jobs and jobs["compute_permutations"] == 1


def test_weight_matching_needs_no_statistics(wf):
    """Data-free: a weight-matching variant's permutations, sweeps and all-seed merge read checkpoints only."""
    jobs = planned_jobs(wf, "results/losses/mlm/wm_all/seeds1-2-3-4-5", "results/many/mlm/wm_all")
    assert "collect_statistics" not in jobs and "build_texts" in jobs  # (the held-out text for the loss)
    assert jobs["compute_permutations"] == 1 and jobs["merge_many"] == 1
    inputs = _planned_inputs(wf, "results/permutations/mlm/wm_all/seeds1-2-3-4-5")
    perm_inputs = inputs[("compute_permutations", "task=mlm, variant=wm_all, cohort=seeds1-2-3-4-5")].split(", ")
    assert {f"results/models/mlm/seed{s}" for s in range(1, 6)} <= set(perm_inputs)  # the cohort's models
    assert not any("stats" in x for x in perm_inputs)
    # a cohort of a seed added later loads the seeds of its own pairs only
    inputs = _planned_inputs(wf, "results/permutations/mlm/wm_all/seeds6x1-2")
    perm_inputs = inputs[("compute_permutations", "task=mlm, variant=wm_all, cohort=seeds6x1-2")].split(", ")
    assert sorted({x for x in perm_inputs if "models" in x}) == [f"results/models/mlm/seed{s}" for s in (1, 2, 6)]


def test_smoke_plan(wf):
    jobs = planned_jobs(wf, "results/figures/all.pdf", "--configfile", "configs/smoke.yaml")
    assert jobs["pretrain_seed"] == 3
    assert jobs["finetune"] == 3 * 2
    assert jobs["compute_permutations"] == 4 + 2 * 2 + 2  # one cohort (3 pairs); + mlm_step20: vanilla, all
    assert jobs["extract_step"] == 3 and jobs["tabulate_trajectory"] == 1


def _planned_inputs(wf, *targets) -> dict[tuple[str, str], str]:
    """{(rule, wildcards line): input line} of every job a dry run prints."""
    out = snakemake(wf, "-n", *targets)
    jobs = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out.stdout + out.stderr):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        inputs = re.search(r"^\s+input: (.*)$", block, re.M)
        wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.M)
        if rule and inputs and wildcards:
            jobs[(rule.group(1), wildcards.group(1))] = inputs.group(1)
    return jobs


def test_mnli_is_evaluated_on_validation_mismatched(wf):
    jobs = _planned_inputs(
        wf, "results/losses/mnli/vanilla/seeds1-2-3-4-5", "results/losses/sst2/vanilla/seeds1-2-3-4-5"
    )
    mnli = [
        jobs[("sweep_lambdas", "task=mnli, variant=vanilla, cohort=seeds1-2-3-4-5")],
        jobs[("finetune", "glue_task=mnli, seed=1")],
    ]
    for inputs in mnli:
        assert "results/data/glue/mnli/validation_mismatched.jsonl" in inputs.split(", "), inputs
        assert "results/data/glue/mnli/validation.jsonl" not in inputs.split(", "), inputs
    assert (
        "results/data/glue/sst2/validation.jsonl"
        in jobs[("sweep_lambdas", "task=sst2, variant=vanilla, cohort=seeds1-2-3-4-5")]
    )


def test_roberta_config_plans_a_local_pair(wf):
    """configs/roberta.yaml (a user's own RoBERTa seeds) plans the MLM grid from local checkpoints and a GLUE
    task (SST-2) fine-tuned from them."""
    jobs = planned_jobs(wf, "results/roberta/figures/all.pdf", "--configfile", "configs/roberta.yaml")
    assert jobs["fetch_model"] == 3 and "pretrain_seed" not in jobs
    assert jobs["finetune"] == 3  # one per seed, on sst2
    # per cohort (one, of 3 pairs): mlm 4 variants, sst2 2; one statistics cohort per task
    assert jobs["compute_permutations"] == jobs["sweep_lambdas"] == 4 + 2
    assert jobs["merge_many"] == 3 and jobs["collect_statistics"] == 2
