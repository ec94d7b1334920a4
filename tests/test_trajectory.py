"""Barrier vs pre-training step (`trajectory:`): step checkpoints of the embedded pre-training, the step as
part of a task's identity in the DAG (mlm_step{k}), the paper configuration's plan, the config checks, and
that adding a step reruns only that step's jobs (on the finished smoke run)."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest
import torch
import yaml

from permerge import config as cfg
from permerge.evaluation.barriers import barrier_rows, summarize
from permerge.tasks import at_step, base_task, is_mlm, pretrained_of, step_of, task_pattern
from permerge.training import pretrain as pretrain_module
from permerge.training.pretrain import pretrain_bert
from permerge.training.steps import export_step, step_file
from tests.workflow_utils import ROOT, copy_workflow, planned_jobs, snakemake

from .test_evaluate import corpus_dir, tokenizer, tokenizer_dir  # noqa: F401  (fixtures)
from .test_pretrain import TINY

SMOKE = "configs/smoke.yaml"
PAPER_TRAJECTORY = ("configs/paper.yaml", "configs/trajectory.yaml")


# ----------------------------------------------------------------------------------------- task names
def test_a_step_is_part_of_the_task_name():
    assert (base_task("mlm_step250"), step_of("mlm_step250")) == ("mlm", 250)
    assert (base_task("sst2_step0"), step_of("sst2_step0")) == ("sst2", 0)
    assert (base_task("mlm"), step_of("mlm"), base_task("stsb"), step_of("stsb")) == ("mlm", None, "stsb", None)
    assert at_step("mlm", 20000) == "mlm_step20000" and at_step("mlm_step5", 7) == "mlm_step7"
    assert is_mlm("mlm_step5") and is_mlm("mlm") and not is_mlm("sst2_step5")
    assert pretrained_of("sst2_step250") == "mlm_step250" and pretrained_of("sst2") == "mlm"
    pattern = re.compile(task_pattern())
    assert all(pattern.fullmatch(t) for t in ("mlm", "mlm_step250", "rte_step0", "mnli"))
    assert not any(pattern.fullmatch(t) for t in ("mlm_step", "mlm_stepx", "foo_step1", "mlm250"))


# ----------------------------------------------------------------------------------------- checkpoints
def _pretrain(tokenizer_dir, corpus_dir, out, **kw):  # noqa: F811
    args = dict(tokenizer_dir=tokenizer_dir, text_file=corpus_dir / "train.txt", seed=3, steps=6, batch_size=4)
    return pretrain_bert(out_dir=out, **{**args, **TINY, **kw})


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def test_step_checkpoints_leave_the_final_weights_unchanged(tokenizer_dir, corpus_dir, tmp_path):  # noqa: F811
    plain = _pretrain(tokenizer_dir, corpus_dir, tmp_path / "plain")
    saving = _pretrain(tokenizer_dir, corpus_dir, tmp_path / "saving", checkpoint_every=2)
    a, b = _weights(tmp_path / "plain/model.safetensors"), _weights(tmp_path / "saving/model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bit-identical
    assert plain["final_train_loss"] == saving["final_train_loss"]
    # every multiple of 2 strictly below the final step 6, the initialisation included; none without it
    assert saving["checkpoint_steps"] == [0, 2, 4] and "checkpoint_steps" not in plain
    assert sorted(p.name for p in (tmp_path / "saving/steps").iterdir()) == [f"step{k}.safetensors" for k in (0, 2, 4)]
    assert not (tmp_path / "plain/steps").exists()


def test_step_checkpoint_is_the_model_after_that_step(tokenizer_dir, corpus_dir, tmp_path, monkeypatch):  # noqa: F811
    """The step-k file holds the weights after exactly k optimizer steps of the full run (its lr schedule is
    the whole run's): snapshots taken inside the training loop itself, in a run without checkpoints."""
    snapshots = {}
    real_train = pretrain_module.train

    def snapshotting_train(model, *args, after_step=None, **kw):
        snapshots[0] = {k: v.detach().clone() for k, v in model.state_dict().items()}

        def after(done):
            snapshots[done] = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if after_step is not None:
                after_step(done)

        return real_train(model, *args, after_step=after, **kw)

    monkeypatch.setattr(pretrain_module, "train", snapshotting_train)
    _pretrain(tokenizer_dir, corpus_dir, tmp_path / "run")
    monkeypatch.undo()
    _pretrain(tokenizer_dir, corpus_dir, tmp_path / "saving", checkpoint_every=2)
    for k in (0, 2, 4):
        saved = _weights(step_file(tmp_path / "saving", k))
        assert all(torch.equal(saved[name], snapshots[k][name]) for name in saved), k
        assert not torch.equal(
            saved["bert.encoder.layer.0.output.dense.weight"], snapshots[6]["bert.encoder.layer.0.output.dense.weight"]
        )
    assert len(snapshots) == 7


def test_export_step_is_a_model_directory(tokenizer_dir, corpus_dir, tmp_path):  # noqa: F811
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    _pretrain(tokenizer_dir, corpus_dir, tmp_path / "seed", checkpoint_every=2)
    export_step(tmp_path / "seed", 2, tmp_path / "step2")
    model = AutoModelForMaskedLM.from_pretrained(str(tmp_path / "step2"))
    saved = _weights(step_file(tmp_path / "seed", 2))
    state = model.state_dict()
    assert all(torch.equal(state[k], saved[k]) for k in saved)
    assert model.cls.predictions.decoder.weight.data_ptr() == model.bert.embeddings.word_embeddings.weight.data_ptr()
    assert len(AutoTokenizer.from_pretrained(str(tmp_path / "step2"))) == model.config.vocab_size
    with pytest.raises(FileNotFoundError, match=r"no checkpoint at step 3 \(saved: \[0, 2, 4\]\)"):
        export_step(tmp_path / "seed", 3, tmp_path / "step3")


def test_export_step_refuses_a_foreign_weights_file(tmp_path):
    from safetensors.torch import save_file

    seed = tmp_path / "seed"
    (seed / "steps").mkdir(parents=True)
    (seed / "config.json").write_text("{}")
    save_file({"w": torch.zeros(2)}, str(step_file(seed, 4)), metadata={"step": "4"})  # no format: pt
    with pytest.raises(ValueError, match=r"step4.safetensors is not a step-4 checkpoint .*rerun pretrain_seed"):
        export_step(seed, 4, tmp_path / "out")


def test_extract_step_job_imports_neither_torch_nor_transformers():
    # The extract_step script's imports: a job that copies files must not pay seconds of imports.
    code = (
        "import sys; from permerge.io import setup_job; setup_job(threads=1); import permerge.training.steps; "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------------------------------- configuration
def _merged(*files, **overrides):
    return cfg.load_merged(*(ROOT / f for f in files), overrides=overrides)


def test_embedded_default_has_a_cheap_trajectory():
    c = _merged()
    steps, total = cfg.trajectory_steps(c), c["models"]["pretrain"]["steps"]
    assert 1 <= len(steps) <= 3 and all(k < total for k in steps)
    assert cfg.step_tasks(c) == [at_step("mlm", k) for k in steps] and cfg.final_step(c) == total
    assert c["trajectory"]["variants"] == ["vanilla", "all"]
    assert cfg.variants_for(c, at_step("mlm", steps[0])) == ["vanilla", "all"]
    # a task at a step is the task: its statistics fraction and variants' features
    assert cfg.stats_fraction(c, "mlm_step250", "all") == cfg.stats_fraction(c, "mlm", "all")


def test_paper_trajectory_config():
    c = _merged(*PAPER_TRAJECTORY)
    assert c["seeds"] == [0, 1, 2, 3, 4] and c["results"] == "results/trajectory"
    assert cfg.final_step(c) == 2_000_000 and c["trajectory"]["tasks"] == ["mlm", "sst2"]
    assert cfg.step_hub_id(c, 3, 20000) == "google/multiberts-seed_3-step_20k"
    assert cfg.step_hub_id(c, 0, 0) == "google/multiberts-seed_0-step_0k"
    # the public MultiBERTs steps: every 20k up to 200k, then every 100k up to 2000k
    public = {*range(0, 200_001, 20_000), *range(300_000, 2_000_001, 100_000)}
    assert set(cfg.trajectory_steps(c)) <= public
    assert not cfg.step_tasks(_merged("configs/paper.yaml"))  # the paper's own grid has none


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"trajectory": {"steps": [300]}}, r"step 300 is not a multiple of models.pretrain.checkpoint_every = 250"),
        (
            {"trajectory": {"steps": [250]}, "models": {"pretrain": {"steps": 250}}},
            r"step 250 is not before the end of pre-training \(models.pretrain.steps = 250\)",
        ),
        (
            {"trajectory": {"steps": [250]}, "models": {"pretrain": {"checkpoint_every": 0}}},
            r"needs intermediate checkpoints: set models.pretrain.checkpoint_every",
        ),
        ({"trajectory": {"variants": ["vanilla", "nope"]}}, r"trajectory.variants: 'nope' does not run for task 'mlm'"),
        ({"trajectory": {"tasks": ["mlm", "qqp"]}, "tasks": ["mlm", "sst2"]}, r"trajectory.tasks\[1\] = 'qqp': not in"),
        ({"trajectory": {"final_step": 999}}, r"trajectory.final_step = 999: with models.source pretrain"),
    ],
)
def test_trajectory_config_errors_name_the_key(overrides, message):
    with pytest.raises(cfg.ConfigError, match=message):
        _merged(**overrides)


def test_trajectory_config_errors_for_other_sources():
    with pytest.raises(cfg.ConfigError, match=r"trajectory.final_step: required with models.source hub"):
        _merged("configs/paper.yaml", trajectory={"steps": [20000]})
    with pytest.raises(cfg.ConfigError, match=r"\[2500\] are not whole thousands"):
        _merged(*PAPER_TRAJECTORY, trajectory={"steps": [2500]})
    with pytest.raises(cfg.ConfigError, match=r"\[2000000\] are not before trajectory.final_step = 2000000"):
        _merged(*PAPER_TRAJECTORY, trajectory={"steps": [2_000_000]})
    with pytest.raises(cfg.ConfigError, match=r"models.source local has no intermediate checkpoints"):
        _merged("configs/roberta.yaml", trajectory={"steps": [250]})


# ----------------------------------------------------------------------------------------- plans
@pytest.fixture(scope="module")
def wf(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("wf"))


def test_paper_trajectory_plans_the_expected_jobs(wf):
    c = _merged(*PAPER_TRAJECTORY)
    jobs = planned_jobs(wf, "results/trajectory/figures/all.pdf", "--configfile", *PAPER_TRAJECTORY)
    seeds, steps, tasks = len(c["seeds"]), len(cfg.trajectory_steps(c)), c["trajectory"]["tasks"]
    glue = [t for t in c["tasks"] if t != "mlm"]
    final_task_variants = sum(len(cfg.variants_for(c, t)) for t in c["tasks"])
    step_task_variants = len(tasks) * steps * len(c["trajectory"]["variants"])
    # permutations and sweeps: one job per (task, variant, cohort), a fresh grid one cohort of every pair
    expected = {
        "fetch_model": seeds * (1 + steps),  # the final checkpoints and every step's
        "finetune": seeds * len(glue) + seeds * steps * len([t for t in tasks if t != "mlm"]),
        "collect_statistics": len(c["tasks"]) + len(tasks) * steps,
        "compute_permutations": final_task_variants + step_task_variants,
        "sweep_lambdas": final_task_variants + step_task_variants,
        "tabulate_trajectory": 1,
        "plot_barriers": 1,
    }
    assert {r: jobs[r] for r in expected} == expected
    # the same numbers, written out: 5 seeds x (final + 6 steps); mlm (3 variants) + sst2 (2) + 12 step tasks x 2
    assert expected == {
        "fetch_model": 35,
        "finetune": 35,
        "collect_statistics": 14,
        "compute_permutations": 29,
        "sweep_lambdas": 29,
        "tabulate_trajectory": 1,
        "plot_barriers": 1,
    }
    assert "extract_step" not in jobs and "pretrain_seed" not in jobs and "merge_many" not in jobs


def test_paper_trajectory_step_jobs_read_the_steps_models(wf):
    out = snakemake(
        wf, "-n", "results/trajectory/losses/sst2_step20000/all/seeds0-1-2-3-4", "--configfile", *PAPER_TRAJECTORY
    )
    text = out.stdout + out.stderr
    assert "output: results/trajectory/models/mlm_step20000/seed0" in text
    finetune = re.search(
        r"rule finetune:\n\s+input: (.*)\n\s+output: results/trajectory/models/sst2_step20000/seed0", text
    )
    assert finetune and finetune.group(1).split(", ") == [
        "results/trajectory/models/mlm_step20000/seed0",
        "results/trajectory/data/glue/sst2/train.jsonl",
        "results/trajectory/data/glue/sst2/validation.jsonl",
    ]
    stats = re.search(
        r"rule collect_statistics:\n\s+input: (.*)\n\s+output: results/trajectory/stats/sst2_step20000/seeds0-1-2-3-4",
        text,
    )
    assert stats and "results/trajectory/data/glue/sst2/train.jsonl" in stats.group(1).split(", ")


def test_no_trajectory_no_table(wf, tmp_path):
    overlay = wf / "configs" / "no_trajectory.yaml"
    overlay.write_text(yaml.safe_dump({"trajectory": {"steps": []}}))
    jobs = planned_jobs(wf, "results/figures/all.pdf", "--configfile", "configs/no_trajectory.yaml")
    assert "tabulate_trajectory" not in jobs and "extract_step" not in jobs and jobs["plot_barriers"] == 1


# ----------------------------------------------------------------------------------------- smoke run
def _smoke_config():
    return _merged(SMOKE)


def test_smoke_trajectory_table_and_figure(smoke_run):
    c, r = _smoke_config(), smoke_run / "results"
    steps, final = cfg.trajectory_steps(c), cfg.final_step(c)
    with open(r / "tables" / "trajectory.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    variants = c["trajectory"]["variants"]
    cohort = "seeds" + "-".join(map(str, sorted(c["seeds"])))  # a fresh grid's one cohort
    assert [(x["task"], x["variant"], int(x["step"])) for x in rows] == [
        ("mlm", v, k) for v in sorted(variants) for k in (*steps, final)
    ]
    files = [
        r / "losses" / (t if k == final else at_step(t, k)) / v / cohort / f"seed{a}-seed{b}.tsv"
        for t in ("mlm",)
        for v in variants
        for k in (*steps, final)
        for a, b in cfg.pairs(c)
    ]
    expected = {(s["task"], s["variant"]): s for s in summarize(barrier_rows(files))}
    for x in rows:
        s = expected[(x["task"] if int(x["step"]) == final else at_step(x["task"], int(x["step"])), x["variant"])]
        assert float(x["mean"]) == pytest.approx(s["mean"], rel=1e-5, abs=1e-6)
        assert float(x["se"]) == pytest.approx(s["se"], rel=1e-5, abs=1e-6) and int(x["n"]) == len(cfg.pairs(c))
    assert (r / "figures" / "trajectory.png").stat().st_size > 5_000
    every = c["models"]["pretrain"]["checkpoint_every"]
    saved = sorted(int(p.stem.removeprefix("step")) for p in (r / "models/mlm/seed1/steps").iterdir())
    assert saved == list(range(0, c["models"]["pretrain"]["steps"], every))


def test_adding_a_step_reruns_only_that_step(smoke_run, tmp_path):
    wd = tmp_path / "wf"
    shutil.copytree(smoke_run, wd, symlinks=True)
    targets = ("results/figures/all.pdf", "merged")
    assert planned_jobs(wd, *targets, "--configfile", SMOKE) == {}, "the copied run is not up to date"
    c = _smoke_config()
    every, old = c["models"]["pretrain"]["checkpoint_every"], cfg.trajectory_steps(c)
    new = next(k for k in range(0, c["models"]["pretrain"]["steps"], every) if k not in old)
    (wd / "configs" / "one_more_step.yaml").write_text(yaml.safe_dump({"trajectory": {"steps": sorted([*old, new])}}))
    out = snakemake(wd, "-n", *targets, "--configfile", SMOKE, "configs/one_more_step.yaml")
    jobs: dict[str, list[str]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out.stdout + out.stderr):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        if rule:
            wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.M)
            jobs.setdefault(rule.group(1), []).append(wildcards.group(1) if wildcards else "")
    variants = c["trajectory"]["variants"]
    task = at_step("mlm", new)
    assert sorted(jobs["extract_step"]) == [f"step={new}, seed={s}" for s in c["seeds"]]
    cohort = "seeds" + "-".join(map(str, sorted(c["seeds"])))  # the new step's statistics: one cohort of all seeds
    assert jobs["collect_statistics"] == [f"task={task}, cohort={cohort}"]
    for rule in ("compute_permutations", "sweep_lambdas"):
        expected = [f"task={task}, variant={v}, cohort={cohort}" for v in variants]
        assert sorted(jobs[rule]) == sorted(expected), rule
    assert jobs["tabulate_trajectory"] == [""] and jobs["plot_barriers"] == [""]
    assert set(jobs) == {
        "extract_step",
        "collect_statistics",
        "compute_permutations",
        "sweep_lambdas",
        "tabulate_trajectory",
        "plot_barriers",
    }, jobs


def test_hub_step_checkpoint_comes_from_trajectory_hub_id(tmp_path):
    """With models.source hub, mlm_step{k} is fetch_model's local copy of trajectory.hub_id at step k (a
    MultiBERTs-shaped fixture: pickled pytorch_model.bin, vocab.txt), read by the same restricted loader."""
    from safetensors.torch import load_file

    from tests.hub_fixtures import make_multiberts

    hub = tmp_path / "hub"
    make_multiberts(hub / "final", seeds=(1, 2))
    step_dir = make_multiberts(hub / "step_20k", seeds=(1,))[1]
    state = torch.load(step_dir / "pytorch_model.bin", weights_only=True)
    state["bert.encoder.layer.0.output.dense.weight"] += 1.0  # the step's weights differ from the final's
    torch.save(state, step_dir / "pytorch_model.bin")
    wd = copy_workflow(tmp_path / "wf")
    overlay = {
        "device": "cpu",
        "seeds": [1, 2],
        "models": {"hub_id": str(hub / "final" / "multiberts-seed_{seed}")},
        "trajectory": {"hub_id": str(hub / "step_{step_k}k" / "multiberts-seed_{seed}")},
    }
    (wd / "configs" / "fixture.yaml").write_text(yaml.safe_dump(overlay))
    target = "results/trajectory/models/mlm_step20000/seed1"
    snakemake(wd, "-j", "1", target, "--configfile", *PAPER_TRAJECTORY, "configs/fixture.yaml")
    fetched = load_file(str(wd / target / "model.safetensors"))
    key = "bert.encoder.layer.0.output.dense.weight"
    assert torch.equal(fetched[key], state[key])
    assert str(step_dir) in (wd / "results/trajectory/logs/fetch_model/mlm_step20000/seed1.log").read_text()
