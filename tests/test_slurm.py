"""A real SLURM run: the paper grid (configs/paper.yaml plus the rehearsal overlay of tests/rehearsal.py,
mlm and one GLUE task) to results/paper/figures/all.pdf through the SLURM profile as a user edits it.

tests/slurm/start_cluster.sh starts a two-node cluster on localhost (slurmctld, one slurmd per node, munged;
installs slurm-wlm/munge with apt when missing): node cpu0 in partition `cpu` and node gpu0 with two fake
GPUs in partition `gpu`, so a GPU request to the CPU partition is rejected. The test copies
workflow/profiles/slurm with its two placeholder partitions set to `cpu` and `gpu` (the one edit a user
makes) and adds tests/slurm/profile (status polling with squeue, kept logs) as --workflow-profile. Then it
reads SLURM's records of every job it submitted (`scontrol show job`: partition, GPU request, the job's log
and the rules in it), the records of a network guard (tests/slurm/sitecustomize.py) from every Python
process of every job, and compares the results with the local rehearsal run (tests/conftest.py).

Skipped only outside CI when the cluster cannot be had at all (not root, or no slurm and no apt-get). In CI
(CI=true) every such reason is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests import rehearsal
from tests.workflow_utils import ROOT, copy_workflow, snakemake

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SLURM_DIR = ROOT / "tests" / "slurm"
PROFILE = "workflow/profiles/slurm"
OVERLAY = SLURM_DIR / "profile"
STATE = Path(os.environ.get("PERMERGE_SLURM_DIR", Path(tempfile.gettempdir()) / "permerge-slurm"))
PARTITIONS = {"CHANGE_ME_CPU_PARTITION": "cpu", "CHANGE_ME_GPU_PARTITION": "gpu"}  # start_cluster.sh's
GPU_RULES = {"collect_statistics", "finetune", "sweep_lambdas", "merge_many"}
DOWNLOAD_RULES = {"fetch_model", "prepare_hub_text", "prepare_hub_task", "prepare_hub_task_mnli"}
# A subset of the local rehearsal's grid (every shared file must be identical): 2 of its 3 tasks, and of the
# all-seed merges the plain average and MergeMany (wm_all); the task variants (and so the statistics) as there.
TASKS = ("mlm", "mnli")
MANY_VARIANTS = ("vanilla", "wm_all")


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
    for log in ("slurmctld.log", "slurmd-cpu0.log", "slurmd-gpu0.log"):
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


SMOKE = ("--configfile", "configs/smoke.yaml")
SMOKE_TARGETS = [f"results/losses/mlm/{v}/seeds1-2-3" for v in ("ff_attn", "all")]  # the smoke grid's cohort


def site_profile(dest: Path) -> Path:
    """workflow/profiles/slurm as a user edits it for the test cluster: its two placeholder partitions set
    (each is written once in the profile; the GPU rules refer to the GPU one with a YAML alias)."""
    text = (ROOT / PROFILE / "config.v8+.yaml").read_text()
    for placeholder, partition in PARTITIONS.items():
        assert text.count(placeholder) == 1, f"{placeholder} should be set in one place of the profile"
        text = text.replace(placeholder, partition)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.v8+.yaml").write_text(text)
    return dest


def scontrol_job(jobid: str) -> dict:
    out = subprocess.run(
        ["scontrol", "show", "-o", "job", jobid], capture_output=True, text=True, env=_slurm_env(), timeout=10
    )
    assert out.returncode == 0, f"no SLURM record of job {jobid} (MinJobAge too short?): {out.stderr}"
    return dict(f.split("=", 1) for f in out.stdout.split() if "=" in f)


def job_rules(log: str) -> set[str]:
    """The rules a SLURM job ran: its snakemake (one rule, or a group's several) prints `rule NAME:`
    (`localrule NAME:` in the job step) for each job it runs."""
    return set(re.findall(r"^(?:local)?rule (\w+):$", log, re.M))


def test_slurm_profile_dry_run(tmp_path):
    """The profile's partitions, GPU requests and groups reach the jobs; a dry run with the placeholder
    partitions warns, names the keys to edit, and still shows the plan."""
    wd = copy_workflow(tmp_path / "wf")
    out = snakemake(wd, "-n", *SMOKE_TARGETS, *SMOKE, "--profile", PROFILE)
    text = out.stdout + out.stderr
    assert "Using profile workflow/profiles/slurm" in text, text[-2000:]
    assert "the SLURM profile's partitions are still placeholders" in text, text[:3000]
    for key in ("default-resources: slurm_partition", "set-resources: sweep_lambdas: slurm_partition"):
        assert key in text, text[:3000]
    assert "Group job align" in text and "Group job sweeps" not in text, text[-4000:]  # sweeps are not grouped
    blocks = re.split(r"\n\s*\n", text)
    sweeps = [b for b in blocks if "rule sweep_lambdas:" in b]
    perms = [b for b in blocks if "rule compute_permutations:" in b]
    assert len(sweeps) == len(perms) == 2, text[-4000:]  # one job per (variant, cohort)
    # memory comes from the footprint model of the rule (the profile sets none), GPU and partition from the profile
    from permerge import config as cfg
    from permerge.tooling import footprint

    mem = footprint.mem_mb("sweep_lambdas", cfg.load_merged(*[wd / c for c in SMOKE[1:]]), "mlm")
    for block in sweeps:
        assert re.search(rf"resources:.*\bmem_mb={mem}\b.*\bgpu=1\b", block), block
        assert "slurm_partition=CHANGE_ME_GPU_PARTITION" in block, block
    for block in perms:
        assert "slurm_partition=CHANGE_ME_CPU_PARTITION" in block and "gpu=" not in block, block
    # time limits per job grow with its cohort's pairs (3 here): 10 min + 10 per pair (activation matching),
    # 10 + 30 per pair for a sweep
    assert all(re.search(r"resources:.*\bruntime=40\b", b) for b in perms), perms
    assert all(re.search(r"resources:.*\bruntime=100\b", b) for b in sweeps), sweeps


def test_placeholder_partitions_stop_a_real_run(slurm_cluster, tmp_path):
    """A real run with the profile as shipped fails before anything is submitted, naming the keys."""
    wd = copy_workflow(tmp_path / "wf")
    before = subprocess.run(
        ["squeue", "-h", "--states=all", "-o", "%i"], capture_output=True, text=True, env=_slurm_env(), timeout=10
    ).stdout.split()
    out = snakemake(wd, *SMOKE_TARGETS, *SMOKE, "--profile", PROFILE, "--workflow-profile", str(OVERLAY), check=False)
    text = out.stdout + out.stderr
    assert out.returncode != 0, text[-3000:]
    assert "the SLURM profile's partitions are still placeholders" in text, text[-3000:]
    assert "set-resources: merge_many: slurm_partition (CHANGE_ME_GPU_PARTITION)" in text, text[-3000:]
    assert "submitted with SLURM jobid" not in text, text[-3000:]
    after = subprocess.run(
        ["squeue", "-h", "--states=all", "-o", "%i"], capture_output=True, text=True, env=_slurm_env(), timeout=10
    ).stdout.split()
    assert after == before, "jobs were submitted"
    assert not (wd / "results" / "models").exists()


def test_paper_grid_through_slurm(slurm_cluster, paper_rehearsal, tmp_path):
    local = paper_rehearsal["wd"]
    wd = copy_workflow(tmp_path / "wf")
    args = rehearsal.write_overlay(wd, paper_rehearsal["hub"], tasks=TASKS, many_variants=MANY_VARIANTS)
    profile = site_profile(tmp_path / "site-profile")
    guard = tmp_path / "guard"
    guard.mkdir()
    shutil.copy(SLURM_DIR / "sitecustomize.py", guard / "sitecustomize.py")
    # A user's environment with hub access: no HF_*_OFFLINE here; compute jobs must be offline on their own.
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(guard), env.get("PYTHONPATH")])),
        PERMERGE_NET_GUARD_DIR=str(guard),
    )
    target = f"{rehearsal.R}/figures/all.pdf"
    started = time.monotonic()
    try:
        out = snakemake(
            wd, target, *args, "--profile", str(profile), "--workflow-profile", str(OVERLAY), env=env, timeout=1500
        )
    except AssertionError as err:
        raise AssertionError(f"{err}\n{_diagnostics()}") from None
    except subprocess.TimeoutExpired:
        raise AssertionError(f"SLURM run timed out (status polling hang?)\n{_diagnostics()}") from None
    text = out.stdout + out.stderr
    print(f"paper grid through SLURM: {time.monotonic() - started:.0f} s")
    assert (wd / target).is_file()

    # SLURM's records of every job the run submitted: partition, GPU request, the rules in its log.
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+?)\)", text)
    assert submitted, text[-4000:]
    seen: dict[str, set[str]] = {}
    for jobid, _ in submitted:
        rec = scontrol_job(jobid)
        assert rec["JobState"] == "COMPLETED", rec
        assert rec["WorkDir"] == str(wd), rec
        rules = job_rules(Path(rec["StdOut"]).read_text())
        assert rules, f"job {jobid}: no rule in its log {rec['StdOut']}"
        # the plugin's --comment names the job's (first) rule: rule_NAME_wildcards_... or, for a group job,
        # rule_GROUP_NAME
        assert any(re.match(rf"rule_(\w+_)?{r}(_wildcards_|$)", rec["Comment"]) for r in rules), rec
        gpu = "gres:gpu:1" in rec.get("TresPerJob", "") + rec.get("TresPerNode", "")
        if rules & GPU_RULES:
            assert rules <= GPU_RULES, f"job {jobid} mixes GPU and CPU rules: {rules}"
            assert rec["Partition"] == "gpu" and gpu, (jobid, rules, rec)
        else:
            assert rec["Partition"] == "cpu" and not gpu, (jobid, rules, rec)
            assert "gpu" not in rec.get("TresPerJob", "") + rec.get("TresPerNode", ""), rec
        seen[jobid] = rules
    ran = set().union(*seen.values())
    assert GPU_RULES <= ran, ran
    assert not ran & DOWNLOAD_RULES, f"download rules ran on compute nodes: {ran & DOWNLOAD_RULES}"

    # The network guard was active in every job's Python processes; nothing tried to reach the network;
    # every process ran with the hub offline.
    records = [json.loads(p.read_text()) for p in guard.glob("guard-*.json")]
    attempts = [json.loads(p.read_text()) for p in guard.glob("attempt-*.json")]
    assert not attempts, attempts
    guarded = {r["job"] for r in records}
    assert guarded == set(seen), f"jobs without a guarded Python process: {set(seen) - guarded}"
    for r in records:  # as at exit (as at start for a process that ended without running atexit)
        assert r["HF_HUB_OFFLINE"] == "1" and r["HF_DATASETS_OFFLINE"] == "1", r

    # The same results as the local rehearsal: every loss and permutation file of this run.
    from safetensors.torch import load

    root = wd / rehearsal.R
    shared = [
        p.relative_to(root)
        for sub in ("losses", "permutations", "many")
        for p in sorted((root / sub).rglob("*"))
        if p.suffix in (".tsv", ".safetensors") and (sub != "many" or p.name == "losses.tsv")
    ]
    assert any(p.parts[0] == "permutations" for p in shared) and any(p.parts[0] == "many" for p in shared)
    for rel in shared:
        mine, theirs = (root / rel).read_bytes(), (local / rehearsal.R / rel).read_bytes()
        if rel.suffix == ".safetensors":
            a, b = load(mine), load(theirs)
            assert a.keys() == b.keys() and all(torch_equal(a[k], b[k]) for k in a), rel
        else:
            assert mine == theirs, f"{rel} differs from the local run"


def torch_equal(a, b) -> bool:
    import torch

    return a.dtype == b.dtype and torch.equal(a, b)
