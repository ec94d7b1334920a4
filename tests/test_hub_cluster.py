"""The paper grid on a cluster: hub downloads run on the submitting host (local rules), every other job runs
offline, and one HuggingFace cache (hub_cache) reaches every job (docs/cluster.md, Hub data and the login node).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from permerge import config as cfg
from tests import hub_fixtures
from tests.workflow_utils import copy_workflow, local_rules, planned_jobs

R = "results/paper"
DOWNLOADS = {"fetch_model", "prepare_hub_text", "prepare_hub_task", "prepare_hub_task_mnli"}
COMPUTE = {"finetune", "collect_statistics", "compute_permutations", "sweep_lambdas", "build_mlm_evalset", "merge_many"}


@pytest.fixture(scope="module")
def wf(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("wf"))


def test_downloads_are_local_rules_on_a_cluster(wf):
    # the paper grid with the MultiBERTs trajectory (fetch_model also fetches the step checkpoints)
    args = ("configs/paper.yaml", "configs/trajectory.yaml")
    jobs = planned_jobs(wf, "results/trajectory/figures/all.pdf", "--configfile", *args)
    assert jobs["fetch_model"] == 5 * 7  # 5 seeds x (6 steps + the final checkpoint)
    assert jobs["prepare_hub_text"] == 2 and jobs["prepare_hub_task"] == 1  # books + heldout; sst2
    paper = planned_jobs(wf, f"{R}/figures/all.pdf", "--configfile", "configs/paper.yaml")
    assert paper["prepare_hub_task_mnli"] == 1 and paper["prepare_hub_task"] == 7
    planned = set(jobs) | set(paper)
    assert DOWNLOADS <= planned and COMPUTE <= planned
    # hub_data: every download and nothing else, for the login node first
    assert planned_jobs(wf, "hub_data", "--configfile", *args) == {
        "fetch_model": 35,
        "prepare_hub_text": 2,
        "prepare_hub_task": 1,
        "hub_data": 1,
    }
    assert planned_jobs(wf, "hub_data", "--configfile", "configs/paper.yaml") == {
        "fetch_model": 5,
        "prepare_hub_text": 2,
        "prepare_hub_task": 7,
        "prepare_hub_task_mnli": 1,
        "hub_data": 1,
    }

    local = local_rules(wf, *args)
    assert {r for r in planned if r in DOWNLOADS or r.startswith(("fetch_", "prepare_hub"))} == DOWNLOADS
    assert all(local[r] for r in DOWNLOADS | {"hub_data"}), local
    assert not any(local[r] for r in COMPUTE), local
    # the embedded default: as before, only its pinned-archive download and the tables are local
    embedded = local_rules(wf)
    assert embedded["fetch_source"] and not embedded["build_texts"] and not embedded["pretrain_seed"]
    assert "fetch_model" not in embedded and "hub_data" not in embedded and not embedded["build_task"]


def test_hub_environ(tmp_path):
    paper = cfg.load_merged(cfg.ROOT / "configs" / "paper.yaml")
    assert paper["hub_cache"] == "{results}/hub_cache"
    cache = tmp_path / "results" / "paper" / "hub_cache"
    common = {"HF_HOME": str(cache), "HF_HUB_CACHE": str(cache / "hub"), "HF_DATASETS_CACHE": str(cache / "datasets")}
    assert cfg.hub_environ(paper, compute=False, cwd=tmp_path) == {**common, "PERMERGE_JOB_SITE": "local"}
    assert cfg.hub_environ(paper, compute=True, cwd=tmp_path) == {
        **common,
        "PERMERGE_JOB_SITE": "compute",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    absolute = cfg.load_merged(cfg.ROOT / "configs" / "paper.yaml", overrides={"hub_cache": "/scratch/hf"})
    assert cfg.hub_environ(absolute, compute=False)["HF_HOME"] == "/scratch/hf"
    embedded = cfg.load_merged()
    assert embedded["hub_cache"] is None  # HuggingFace's own defaults; the embedded data never needs the hub
    assert cfg.hub_environ(embedded, compute=False) == {"PERMERGE_JOB_SITE": "local"}
    with pytest.raises(cfg.ConfigError, match="hub_cache"):
        cfg.load_merged(overrides={"hub_cache": "{seed}/x"})


def _run(wd: Path, *args: str) -> subprocess.CompletedProcess:
    # no HF_*_OFFLINE from the test's environment: what the jobs get comes from the workflow alone
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=wd, env=env, capture_output=True, text=True, timeout=900
    )
    assert out.returncode == 0, f"snakemake {' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-6000:]}"
    return out


def _job_env(log: Path) -> dict[str, str]:
    line = next(x for x in log.read_text().splitlines() if "job environment: " in x)
    return dict(kv.split("=", 1) for kv in line.split("job environment: ", 1)[1].split(", "))


def test_local_downloads_and_an_offline_compute_job(tmp_path):
    """The downloads run in the submitting Snakemake process (local, online, the cache); a job run as a cluster
    executor runs it (`snakemake --mode remote`, what the SLURM plugin starts inside the allocation) is
    offline and sees the same cache."""
    hub = tmp_path / "hub"
    hub_fixtures.make_multiberts(hub / "models", [1])
    wikitext = hub_fixtures.make_wikitext(hub / "wikitext")
    wd = copy_workflow(tmp_path / "wf")
    overlay = {
        "models": {"hub_id": str(hub / "models" / "multiberts-seed_{seed}")},
        "data": {"mlm_eval": {"id": str(wikitext)}},
        "device": "cpu",
        "seeds": [1, 2],
        "tasks": ["mlm"],
    }
    (wd / "configs/overlay.yaml").write_text(yaml.safe_dump(overlay))
    configs = ("--configfile", "configs/paper.yaml", "configs/overlay.yaml")
    _run(wd, "-j1", f"{R}/models/mlm/seed1", f"{R}/data/text/heldout.txt", *configs)
    cache = wd / R / "hub_cache"
    for log in (f"{R}/logs/fetch_model/mlm/seed1.log", f"{R}/logs/prepare_hub_text/heldout.log"):
        env = _job_env(wd / log)
        assert env == {
            "PERMERGE_JOB_SITE": "local",
            "HF_HOME": str(cache),
            "HF_HUB_OFFLINE": "",  # paper.yaml: offline: false; the downloads may use the network
            "HF_DATASETS_OFFLINE": "",
        }, log
    assert any((cache / "datasets").iterdir())  # datasets prepared Wikitext in the one cache
    meta = json.loads((wd / R / "data/text/heldout.meta.json").read_text())
    assert meta["resolved_revision"] == "local directory" and meta["split_rows"] == 30
    assert "#   heldout: " in (wd / R / "config.effective.yaml").read_text()

    # one compute job as a cluster executor starts it
    _run(
        wd,
        "--target-jobs",
        "build_mlm_evalset:",
        "--allowed-rules",
        "build_mlm_evalset",
        "--cores",
        "1",
        "--nolock",
        "--mode",
        "remote",
        *configs,
    )
    assert (wd / R / "data/evalsets/mlm.safetensors").is_file()
    env = _job_env(wd / R / "logs/build_mlm_evalset.log")
    assert env == {
        "PERMERGE_JOB_SITE": "compute",
        "HF_HOME": str(cache),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
