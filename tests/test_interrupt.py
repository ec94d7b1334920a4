"""Interrupted runs: a job killed mid-write leaves nothing that looks complete, and a rerun heals it.

On a copy of the finished smoke run, seed 1's pre-training is forced again and interrupted while its
script is inside `atomic_path` (the checkpoint is being trained/written into a hidden temporary sibling).
The whole process group (snakemake and the job) gets
- SIGKILL: a crash or `kill -9`; nobody cleans up, snakemake's lock stays (`--unlock`);
- SIGINT: Ctrl-C in the terminal; snakemake stops the job and removes its outputs;
- SIGTERM: `scancel`, a shutdown; the job dies, snakemake notes the failure and exits.
(SIGTERM to snakemake alone lets running jobs finish first.) Afterwards no output may look complete, and
`--rerun-incomplete` must rebuild exactly the checkpoint of the uninterrupted run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.workflow_utils import snakemake

CONFIG = ("--configfile", "configs/smoke.yaml")
TARGET = "results/models/mlm/seed1"


def _weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def _temp_siblings(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.*"))


def _interrupted_run(smoke_run: Path, wd: Path, how: str) -> tuple[str, int]:
    """Copy the finished smoke run to wd, force seed 1's pre-training, and send `how` to the whole process
    group once the job is inside atomic_path (its hidden temporary checkpoint dir exists). Returns the
    Snakemake log and the process group id."""
    shutil.copytree(smoke_run, wd, symlinks=True)
    out_dir = wd / TARGET
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    log_path = wd.parent / f"{wd.name}.snakemake.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "snakemake", "-j", "1", "-f", TARGET, *CONFIG],
            cwd=wd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # A shell without job control starts background commands with SIGINT ignored, and an ignored
            # signal stays ignored across exec: restore the default so Snakemake and its job can be interrupted.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            deadline = time.monotonic() + 600
            while not _temp_siblings(out_dir):
                assert proc.poll() is None, (
                    f"snakemake ended before the job started writing:\n{log_path.read_text()[-3000:]}"
                )
                assert time.monotonic() < deadline, "the job never started"
                time.sleep(0.02)
            os.killpg(proc.pid, {"sigkill": signal.SIGKILL, "sigint": signal.SIGINT, "sigterm": signal.SIGTERM}[how])
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    # No process of the killed run may still write into the copy.
    deadline = time.monotonic() + 30
    while subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "processes of the interrupted run survived"
        time.sleep(0.2)
    return log_path.read_text(), proc.pid


@pytest.mark.parametrize("how", ["sigkill", "sigint", "sigterm"])
def test_interrupted_job_leaves_no_complete_output(smoke_run, tmp_path, how):
    out_rel = Path(TARGET)
    reference = _weights(smoke_run / out_rel)
    old_files = {p.name for p in (smoke_run / out_rel).iterdir()}
    # An attempt whose job finished before the signal landed tests nothing: repeat it (at most 3).
    for attempt in range(3):
        wd = tmp_path / f"wf{attempt}"
        text, _ = _interrupted_run(smoke_run, wd, how)
        if "Finished jobid" not in text:
            break
    assert "Finished jobid" not in text, f"the job finished before the signal in 3 attempts:\n{text[-3000:]}"
    out_dir = wd / TARGET

    # Nothing looks complete: the checkpoint is gone (snakemake removes a job's old outputs before it
    # starts it) and no partial checkpoint took its place; a left-over temp dir is hidden (".seed1.*").
    assert not out_dir.exists(), f"{TARGET} left behind: {sorted(p.name for p in out_dir.iterdir())}"
    siblings = sorted(p.name for p in out_dir.parent.iterdir())
    assert not [n for n in siblings if n.startswith("seed1")], siblings  # only hidden ".seed1.*" may remain

    if how == "sigkill":
        # A killed snakemake cannot release its lock: the next run refuses until `--unlock`.
        locked = snakemake(wd, "-j", "1", TARGET, *CONFIG, check=False)
        assert locked.returncode != 0 and "--unlock" in locked.stdout + locked.stderr
        snakemake(wd, "--unlock", *CONFIG)

    # Snakemake knows the job did not finish: a dry run plans it again.
    plan = snakemake(wd, "-n", TARGET, *CONFIG)
    assert "pretrain_seed" in plan.stdout, plan.stdout[-3000:]

    # The rerun completes and gives the uninterrupted run's checkpoint.
    snakemake(wd, "-j", "1", "--rerun-incomplete", TARGET, *CONFIG)
    rebuilt = _weights(out_dir)
    assert rebuilt.keys() == reference.keys()
    assert all((rebuilt[k] == reference[k]).all() for k in reference), "rerun differs from the first run"
    assert old_files <= {p.name for p in out_dir.iterdir()}
