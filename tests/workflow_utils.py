"""Helpers for tests that run Snakemake on a temporary copy of the workflow."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPIED = ("Snakefile", "config.yaml", "configs", "workflow", "envs")


def copy_workflow(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def snakemake(
    workdir: Path, *args: str, check: bool = True, timeout: float = 1800, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run snakemake in `workdir`; offline for the hub unless `env` (the whole environment) is given."""
    if env is None:
        env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and out.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{out.stdout[-4000:]}\n{out.stderr[-8000:]}")
    return out


def planned_jobs(workdir: Path, *args: str) -> Counter:
    """Jobs per rule that a dry run would execute."""
    out = snakemake(workdir, "-n", *args, "--quiet", "rules")
    counts: Counter = Counter()
    for line in (out.stdout + out.stderr).splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


# Which rules Snakemake runs on the submitting host under a cluster executor: Workflow.is_local, the function
# the scheduler asks, with the executor plugin's settings (slurm: non_local_exec). Dry runs cannot show it:
# Snakemake 9.27.1 prints `rule NAME:` for every job of a dry run, local or not (jobs.py: "in dryrun, we don't
# want to display a decision whether local or not").
_LOCALNESS = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings import types as T
from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry

configfiles = [Path(p).absolute() for p in sys.argv[2:]]
with SnakemakeApi(T.OutputSettings(quiet={T.Quietness.ALL})) as api:
    wf = api.workflow(
        resource_settings=T.ResourceSettings(cores=1),
        config_settings=T.ConfigSettings(configfiles=configfiles),
        snakefile=Path("Snakefile").absolute(),
        workdir=Path.cwd(),
    )
    workflow = wf._workflow
    workflow._executor_plugin = ExecutorPluginRegistry().get_plugin(sys.argv[1])
    print(json.dumps({rule.name: workflow.is_local(rule) for rule in workflow.rules}))
"""


def local_rules(workdir: Path, *configfiles: str, executor: str = "slurm") -> dict[str, bool]:
    """Rule name -> whether a run with `executor` keeps its jobs on the submitting host (a local rule)."""
    import json

    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    out = subprocess.run(
        [sys.executable, "-c", _LOCALNESS, executor, *configfiles],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode != 0:
        raise AssertionError(f"local_rules failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
