"""Shared fixtures. `smoke_run` runs the smoke configuration once per test session (minutes);
`paper_rehearsal` the offline paper-grid rehearsal (tests/rehearsal.py), for tests/test_paper_rehearsal.py and
tests/test_slurm.py."""

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from tests import hub_fixtures, rehearsal
from tests.workflow_utils import COPIED, ROOT, copy_workflow, snakemake

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

# Downloaded source packages are cached across test sessions (the workflow's own fetch rule fills it).
DOWNLOAD_CACHE = ROOT / ".cache" / "downloads"


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """A workflow copy where `results/figures/all.pdf` and the merged checkpoints were built with configs/smoke.yaml."""
    reuse = os.environ.get("PERMERGE_SMOKE_DIR")  # development: reuse (and bring up to date) a finished run
    if reuse:
        for name in COPIED:  # the current code replaces the run's copy
            old = Path(reuse) / name
            shutil.rmtree(old) if old.is_dir() else old.unlink(missing_ok=True)
        wd = copy_workflow(Path(reuse))
        snakemake(wd, "-j", "2", "results/figures/all.pdf", "merged", "--configfile", "configs/smoke.yaml")
        return wd
    wd = copy_workflow(tmp_path_factory.mktemp("smoke"))
    downloads = wd / "results" / "data" / "downloads"
    if DOWNLOAD_CACHE.is_dir():
        shutil.copytree(DOWNLOAD_CACHE, downloads, copy_function=shutil.copy2)
    snakemake(wd, "-j", "2", "results/figures/all.pdf", "merged", "--configfile", "configs/smoke.yaml")
    DOWNLOAD_CACHE.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(downloads, DOWNLOAD_CACHE, dirs_exist_ok=True, copy_function=shutil.copy2)
    return wd


@pytest.fixture(scope="session")
def paper_rehearsal(tmp_path_factory) -> dict:
    """configs/paper.yaml plus the rehearsal overlay (hub fixtures, a shrunk grid), run locally to
    results/paper/figures/all.pdf. Returns the workflow copy, the fixture hub, paper.yaml and the arguments."""
    # development: a finished rehearsal's folder (hub/, hub.json, wf/), kept outside pytest's numbered temp
    # folders (other sessions delete those; run with --basetemp to keep one)
    reuse = os.environ.get("PERMERGE_REHEARSAL_DIR")
    if reuse:
        root = Path(reuse)
        hub = {k: Path(v) for k, v in json.loads((root / "hub.json").read_text()).items()}
        wd = root / "wf"
    else:
        root = tmp_path_factory.mktemp("rehearsal")
        hub = hub_fixtures.make_all(
            root / "hub", seeds=rehearsal.SEEDS, glue_tasks=rehearsal.GLUE_TASKS, book_rows=rehearsal.BOOK_ROWS
        )
        (root / "hub.json").write_text(json.dumps({k: str(v) for k, v in hub.items()}))
        wd = copy_workflow(root / "wf")
    paper = yaml.safe_load((wd / "configs/paper.yaml").read_text())
    args = rehearsal.write_overlay(wd, hub)
    snakemake(wd, "-j", "2", f"{rehearsal.R}/figures/all.pdf", *args)
    return {"wd": wd, "hub": hub, "paper": paper, "args": args}
