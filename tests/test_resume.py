"""Resumable fine-tuning: a run killed mid-way and resumed ends bit-identical to an uninterrupted one."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest
import torch
from safetensors.torch import load_file

import permerge.training.finetune as ft
from permerge.io import check_safetensors
from permerge.training.finetune import finetune
from permerge.training.resume import STATE

from .test_evaluate import corpus_dir, tokenizer_dir  # noqa: F401  (fixtures)
from .test_finetune import _classification_data, mlm_dirs  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[1]
# 48 examples in batches of 8: 6 steps an epoch, 18 in all; dropout on (its RNG must be restored).
KW = dict(
    text_keys=["sentence"],
    num_labels=2,
    metric="accuracy",
    seed=1,
    epochs=3,
    batch_size=8,
    lr=1e-3,
    max_length=32,
    warmup=0.1,
    dropout=0.1,
)
EVERY = 4  # saves after steps 4, 6 (epoch end), 8, 12, 16, 18


def _run(model_dir, out_dir, **kw):
    torch.set_num_threads(1)  # the subprocess runs on one thread too: the same reduction order
    data = _classification_data(48)
    return finetune(model_dir=model_dir, train_examples=data, eval_examples=data[:16], out_dir=out_dir, **{**KW, **kw})


def _weights(out_dir):
    return load_file(str(Path(out_dir) / "model.safetensors"))


def _same(a_dir, b_dir, ma, mb):
    a, b = _weights(a_dir), _weights(b_dir)
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    timing = ("train_minutes", "minutes")
    assert {k: v for k, v in ma.items() if k not in timing} == {k: v for k, v in mb.items() if k not in timing}


def _saved_step(path) -> int:
    return json.loads(check_safetensors(path)["permerge_resume"])["step"]


@pytest.fixture(scope="module")
def reference(mlm_dirs, tmp_path_factory):
    """The uninterrupted run (not resumable) every resumed run must reproduce."""
    out = tmp_path_factory.mktemp("ref") / "out"
    return out, _run(mlm_dirs[0], out)


class Killed(BaseException):
    """Stands for a kill: not an Exception, so nothing on the way catches it."""


def _interrupt_after(monkeypatch, steps):
    """Make the training forward of step `steps` + 1 (0-based: `steps`) raise Killed."""
    real, calls = ft.glue_logits, []

    def forward(*args, **kwargs):
        if len(calls) == steps:
            raise Killed
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(ft, "glue_logits", forward)


def _interrupted(monkeypatch, model_dir, tmp_path, steps, name="killed", **kw):
    with monkeypatch.context() as m:
        _interrupt_after(m, steps)
        with pytest.raises(Killed):
            _run(model_dir, tmp_path / name, **kw)


JOB = """
import json, os, sys, time
os.environ["HF_HUB_OFFLINE"] = "1"
import torch
torch.set_num_threads(1)
import permerge.training.finetune as ft
args = json.loads(sys.argv[1])
real = ft.glue_logits
def slow(*a, **k):
    time.sleep(0.15)  # slow steps, so that the test can kill the job between two saves
    return real(*a, **k)
ft.glue_logits = slow
ft.finetune(**args)
"""


def test_sigkilled_finetuning_resumes_bit_identical(mlm_dirs, reference, tmp_path, caplog):
    """A real kill (SIGKILL of a fine-tuning process) after its state reached step 5 or later, within the
    first or second epoch; the resumed run crosses an epoch boundary and ends with the reference's every
    tensor and metric (dropout 0.1: the dropout RNG is restored). Most of its time is the subprocess importing
    torch and transformers (10-45 s, depending on the machine's load)."""
    ref_dir, ref = reference
    resume_dir = tmp_path / "resume"
    data = _classification_data(48)
    args = dict(
        model_dir=str(mlm_dirs[0]),
        train_examples=data,
        eval_examples=data[:16],
        out_dir=str(tmp_path / "killed"),
        resume_dir=str(resume_dir),
        resume_every_steps=EVERY,
        **KW,
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "workflow"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", JOB, json.dumps(args)], env=env, stderr=subprocess.PIPE)
    state, deadline = resume_dir / STATE, time.time() + 180
    try:
        while time.time() < deadline and proc.poll() is None:
            if state.is_file() and _saved_step(state) >= 5:
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"the job ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    step = _saved_step(state)
    assert 5 <= step < 12, step  # resumed within epoch 1 or 2: the rest crosses an epoch boundary
    assert not (tmp_path / "killed" / "model.safetensors").exists()
    with caplog.at_level(logging.INFO):
        m = _run(mlm_dirs[0], tmp_path / "resumed", resume_dir=resume_dir, resume_every_steps=EVERY)
    assert f"resuming from step {step} of 18 (epoch {step // 6 + 1}) from {state}" in caplog.text
    _same(ref_dir, tmp_path / "resumed", ref, m)


@pytest.mark.parametrize("steps", [6, 10])
def test_resume_at_epoch_end_and_mid_epoch(monkeypatch, mlm_dirs, reference, tmp_path, caplog, steps):
    """Killed after 6 steps (state at the epoch end, 6) or 10 (state at 8, mid-epoch; steps 9-10 are redone)."""
    ref_dir, ref = reference
    resume_dir = tmp_path / "resume"
    _interrupted(monkeypatch, mlm_dirs[0], tmp_path, steps, resume_dir=resume_dir, resume_every_steps=EVERY)
    saved = {6: 6, 10: 8}[steps]
    assert _saved_step(resume_dir / STATE) == saved
    with caplog.at_level(logging.INFO):
        m = _run(mlm_dirs[0], tmp_path / "resumed", resume_dir=resume_dir, resume_every_steps=EVERY)
    assert f"resuming from step {saved} of 18" in caplog.text
    _same(ref_dir, tmp_path / "resumed", ref, m)


def test_uninterrupted_run_with_state_matches_and_final_state_resumes(mlm_dirs, reference, tmp_path, caplog):
    """Saving draws from no generator: a resumable run equals the plain one. Its state after the last step
    (kept here: only the job script discards it) resumes with no step left, to the same output."""
    ref_dir, ref = reference
    resume_dir = tmp_path / "resume"
    with caplog.at_level(logging.INFO):
        m = _run(mlm_dirs[0], tmp_path / "a", resume_dir=resume_dir, resume_every_steps=EVERY)
    assert "no resume state: starting from step 0" in caplog.text
    _same(ref_dir, tmp_path / "a", ref, m)
    assert _saved_step(resume_dir / STATE) == 18
    caplog.clear()
    with caplog.at_level(logging.INFO):
        again = _run(mlm_dirs[0], tmp_path / "b", resume_dir=resume_dir, resume_every_steps=None)
    assert "resuming from step 18 of 18" in caplog.text
    _same(ref_dir, tmp_path / "b", ref, again)


def test_state_of_other_hparams_is_not_resumed(monkeypatch, mlm_dirs, tmp_path, caplog):
    """A state left by lr 1e-3 is ignored (with a warning naming it and the difference) by an lr 2e-3 run,
    which starts from step 0 and ends as an uninterrupted lr 2e-3 run."""
    resume_dir = tmp_path / "resume"
    _interrupted(monkeypatch, mlm_dirs[0], tmp_path, 10, resume_dir=resume_dir, resume_every_steps=EVERY)
    plain = _run(mlm_dirs[0], tmp_path / "plain", lr=2e-3)
    with caplog.at_level(logging.INFO):
        m = _run(mlm_dirs[0], tmp_path / "other", lr=2e-3, resume_dir=resume_dir, resume_every_steps=EVERY)
    assert f"ignoring the resume state {resume_dir / STATE}: it belongs to another run (lr: 0.001 there" in caplog.text
    assert "starting from step 0" in caplog.text and "resuming" not in caplog.text
    _same(tmp_path / "plain", tmp_path / "other", plain, m)
    # ... and another input model's state is not resumed either
    _interrupted(monkeypatch, mlm_dirs[0], tmp_path, 10, resume_dir=resume_dir, resume_every_steps=EVERY)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        _run(mlm_dirs[1], tmp_path / "seed2", resume_dir=resume_dir, resume_every_steps=EVERY)
    assert "it belongs to another run (model:" in caplog.text and "resuming" not in caplog.text


def test_kill_during_save_and_damaged_state(monkeypatch, mlm_dirs, reference, tmp_path, caplog):
    """A save killed half-way leaves its temporary beside an intact state: resumed, temporary removed. A
    truncated state (which atomic saves never leave, but a disk might) is ignored: a run from step 0."""
    ref_dir, ref = reference
    resume_dir = tmp_path / "resume"
    _interrupted(monkeypatch, mlm_dirs[0], tmp_path, 10, resume_dir=resume_dir, resume_every_steps=EVERY)
    partial = resume_dir / f".{STATE}.x1y2z3" / STATE
    partial.parent.mkdir()
    partial.write_bytes((resume_dir / STATE).read_bytes()[:5000])  # a save of step 12 cut short by the kill
    with caplog.at_level(logging.INFO):
        m = _run(mlm_dirs[0], tmp_path / "resumed", resume_dir=resume_dir, resume_every_steps=EVERY)
    assert "resuming from step 8 of 18" in caplog.text
    assert not partial.parent.exists()
    _same(ref_dir, tmp_path / "resumed", ref, m)

    resume_dir = tmp_path / "resume2"
    _interrupted(monkeypatch, mlm_dirs[0], tmp_path, 10, name="k2", resume_dir=resume_dir, resume_every_steps=EVERY)
    state = resume_dir / STATE
    state.write_bytes(state.read_bytes()[:-100])
    caplog.clear()
    with caplog.at_level(logging.INFO):
        m = _run(mlm_dirs[0], tmp_path / "fresh", resume_dir=resume_dir, resume_every_steps=EVERY)
    assert f"ignoring the resume state {state}: unreadable" in caplog.text and "truncated" in caplog.text
    _same(ref_dir, tmp_path / "fresh", ref, m)


def test_job_script_resumes_and_removes_the_state(monkeypatch, mlm_dirs, reference, tmp_path):
    """workflow/scripts/finetune.py: resumes from params.resume_dir (cadence from the configuration), writes
    the output, then removes the resume directory."""
    import runpy

    from permerge.data.jsonl import write_jsonl

    ref_dir, ref = reference
    data = _classification_data(48)
    rows = [{**row, "idx": i} for i, row in enumerate(data)]  # the GLUE files carry an idx column
    write_jsonl(rows, tmp_path / "train.jsonl")
    write_jsonl(rows[:16], tmp_path / "validation.jsonl")
    resume_dir = tmp_path / "resume" / "finetune" / "sst2" / "seed1"
    _interrupted(monkeypatch, mlm_dirs[0], tmp_path, 10, resume_dir=resume_dir, resume_every_steps=EVERY)
    hp = {k: KW[k] for k in ("lr", "epochs", "batch_size", "max_length", "warmup", "dropout")}
    hp.update(head_seed=0, data_seed=None, fp16=False, group_by_length=True, max_train_examples=None)
    sm = SimpleNamespace(
        input=SimpleNamespace(
            model=str(mlm_dirs[0]), train=str(tmp_path / "train.jsonl"), validation=str(tmp_path / "validation.jsonl")
        ),
        output=[str(tmp_path / "models" / "sst2" / "seed1")],
        log=[str(tmp_path / "finetune.log")],
        threads=1,
        params=SimpleNamespace(hparams=hp, device="cpu", resume_dir=str(resume_dir)),
        wildcards=SimpleNamespace(glue_task="sst2", seed="1"),
        config={"finetune": {"resume_every_steps": EVERY}},
    )
    runpy.run_path(str(ROOT / "workflow/scripts/finetune.py"), init_globals={"snakemake": sm}, run_name="__main__")
    log = (tmp_path / "finetune.log").read_text()
    assert f"resuming from step 8 of 18 (epoch 2) from {resume_dir / STATE}" in log
    assert not resume_dir.exists() and (tmp_path / "resume" / "finetune" / "sst2").is_dir()
    out = tmp_path / "models" / "sst2" / "seed1"
    _same(ref_dir, out, ref, json.loads((out / "metrics.json").read_text()))
