"""A real SLURM run: part of the smoke configuration through `--profile workflow/profiles/slurm`.

tests/slurm/start_cluster.sh starts a one-node cluster on localhost (slurmctld, slurmd, munged; installs
slurm-wlm/munge with apt when missing). The test copies the finished local smoke run, removes one mlm
variants' permutations and losses, and rebuilds them through sbatch (the profile bundles the 2 permutation
jobs into one SLURM job and the 2 sweeps into another, on the node's fake GPU); the results must equal the
local run's.

Skipped only outside CI when the cluster cannot be had at all (not root, or no slurm and no apt-get). In CI
(CI=true) every such reason is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.workflow_utils import ROOT, copy_workflow, planned_jobs, snakemake

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SLURM_DIR = ROOT / "tests" / "slurm"
PROFILE = "workflow/profiles/slurm"
OVERLAY = SLURM_DIR / "profile"
STATE = Path(os.environ.get("PERMERGE_SLURM_DIR", Path(tempfile.gettempdir()) / "permerge-slurm"))
CONFIG = ("--configfile", "configs/smoke.yaml")
TASK, VARIANTS = "mlm", ("ff_attn", "all")
PAIRS = ("seed1-seed2", "seed1-seed3", "seed2-seed3")


def _why_no_cluster() -> str | None:
    if os.geteuid() != 0:
        return "needs root (starts slurmctld/slurmd/munged, may apt-get install slurm-wlm)"
    if not shutil.which("slurmctld") and not shutil.which("apt-get"):
        return "slurm-wlm is not installed and apt-get is unavailable"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed"
    return None


def _slurm_env() -> dict:
    return dict(os.environ, SLURM_CONF="/etc/slurm/slurm.conf")


def _diagnostics() -> str:
    parts = []
    for cmd in (["squeue", "--states=all", "-o", "%i %j %T %r %C %m %b"], ["sinfo", "-N", "-l"]):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, env=_slurm_env())
            parts.append(f"$ {' '.join(cmd)}\n{out.stdout}{out.stderr}")
        except (OSError, subprocess.TimeoutExpired) as err:
            parts.append(f"$ {' '.join(cmd)}: {err}")
    for log in ("slurmctld.log", "slurmd.log"):
        path = STATE / "log" / log
        if path.exists():
            parts.append(f"--- {path} (tail)\n" + "\n".join(path.read_text().splitlines()[-25:]))
    return "\n".join(parts)


@pytest.fixture(scope="module")
def slurm_cluster():
    reason = _why_no_cluster()
    if reason:
        if IN_CI:
            pytest.fail(f"SLURM test must run in CI, but: {reason}")
        pytest.skip(reason)
    start = subprocess.run(
        ["bash", str(SLURM_DIR / "start_cluster.sh"), str(STATE)], capture_output=True, text=True, timeout=600
    )
    try:
        if start.returncode != 0:
            pytest.fail(f"the test cluster did not start:\n{start.stdout}\n{start.stderr}\n{_diagnostics()}")
        yield STATE
    finally:
        stop = subprocess.run(
            ["bash", str(SLURM_DIR / "stop_cluster.sh"), str(STATE)], capture_output=True, text=True, timeout=120
        )
        assert stop.returncode == 0, f"stop_cluster.sh failed:\n{stop.stdout}\n{stop.stderr}"
        assert not Path("/etc/slurm/slurm.conf").exists(), "slurm.conf left behind (slows every snakemake call)"


def _targets() -> list[str]:
    return [f"results/losses/{TASK}/{v}/{p}.tsv" for v in VARIANTS for p in PAIRS]


def test_slurm_profile_dry_run(tmp_path):
    """The SLURM profile's resources and groups reach the jobs (a dry run submits nothing)."""
    wd = copy_workflow(tmp_path / "wf")
    out = snakemake(wd, "-n", *_targets(), *CONFIG, "--profile", PROFILE)
    text = out.stdout + out.stderr
    assert "Using profile workflow/profiles/slurm" in text, text[-2000:]
    assert "Group job align" in text and "Group job sweeps" in text, text[-4000:]
    sweeps = [b for b in re.split(r"\n\s*\n", text) if "rule sweep_lambdas:" in b]
    assert len(sweeps) == len(VARIANTS), text[-4000:]
    # memory comes from the footprint model of the rule (the profile sets none), the GPU from the profile
    from permerge import config as cfg
    from permerge import footprint

    mem = footprint.mem_mb("sweep_lambdas", cfg.load_merged(*[wd / c for c in CONFIG[1:]]), TASK)
    for block in sweeps:
        assert re.search(rf"resources:.*\bmem_mb={mem}\b.*\bgpu=1\b", block), block
        assert "slurm_partition=CHANGE_ME" in block, block


def test_slurm_run_matches_local(slurm_cluster, smoke_run, tmp_path):
    wd = tmp_path / "wf"
    shutil.copytree(smoke_run, wd, symlinks=True)  # copy2: mtimes kept, so upstream outputs stay current
    reference = {}
    for sub in ("permutations", "losses"):
        for variant in VARIANTS:
            src = wd / "results" / sub / TASK / variant
            reference.update({p.relative_to(wd): p.read_bytes() for p in sorted(src.iterdir())})
            shutil.rmtree(src)

    # Only the removed outputs are planned: everything upstream comes from the local run.
    jobs = planned_jobs(wd, *_targets(), *CONFIG)
    assert dict(jobs) == {"compute_permutations": len(VARIANTS), "sweep_lambdas": len(VARIANTS)}, jobs

    cpus = subprocess.run(
        ["sinfo", "-h", "-N", "-o", "%c"], capture_output=True, text=True, env=_slurm_env(), timeout=10
    ).stdout.split()[0]
    started = time.monotonic()
    try:
        out = snakemake(
            wd,
            *_targets(),
            *CONFIG,
            "--profile",
            PROFILE,
            "--workflow-profile",
            str(OVERLAY),
            "--cores",
            cpus,
            timeout=900,
        )
    except AssertionError as err:
        raise AssertionError(f"{err}\n{_diagnostics()}") from None
    except subprocess.TimeoutExpired:
        raise AssertionError(f"SLURM run timed out (status polling hang?)\n{_diagnostics()}") from None
    text = out.stdout + out.stderr
    print(f"SLURM part: {time.monotonic() - started:.0f} s")

    # Every job went through sbatch, bundled by the profile's groups: two SLURM jobs (the permutations;
    # the sweeps, with the fake GPU) that SLURM ran to completion in the run's directory.
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+?)\)", text)
    assert len(submitted) == 2, text[-4000:]
    for jobid, log in submitted:
        info = subprocess.run(
            ["scontrol", "show", "job", jobid], capture_output=True, text=True, env=_slurm_env(), timeout=10
        ).stdout
        assert "JobState=COMPLETED" in info, info
        assert f"WorkDir={wd}" in info, info
        # The group job's snakemake ran each of its jobs as a job step (srun ... snakemake) in the allocation.
        job_log = Path(log).read_text()
        rule = "sweep_lambdas" if "sweeps" in Path(log).parent.name else "compute_permutations"
        assert len(re.findall(rf"^rule {rule}:$", job_log, re.M)) == len(VARIANTS), job_log[-3000:]
        assert len(re.findall(rf"^localrule {rule}:$", job_log, re.M)) == len(VARIANTS), job_log[-3000:]
        assert f"{len(VARIANTS)} of {len(VARIANTS)} steps (100%) done" in job_log, job_log[-3000:]
        if rule == "sweep_lambdas":
            assert "gres:gpu:1" in info, info  # gpu: 1 -> sbatch --gpus=1, on the fake GPU
        else:
            assert "group_align" in log, log

    # The same results as the local run.
    from safetensors.torch import load

    for rel, data in reference.items():
        new = (wd / rel).read_bytes()
        if rel.suffix == ".safetensors":
            a, b = load(new), load(data)
            assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a), rel
        else:
            assert new == data, f"{rel} differs from the local run"
