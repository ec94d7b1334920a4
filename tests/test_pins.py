"""One lock of tested versions: envs/constraints.txt (every package, as `name==version`), which envs/setup.sh
passes as constraints to every install. The other places that name versions must agree with it, and the
environment the tests run in (CI's, made by setup.sh from scratch) must be exactly the lock.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from tests.workflow_utils import ROOT

LOCK_FILE = ROOT / "envs" / "constraints.txt"
# what a fresh install must get exactly (and what must be installed where the tests run)
KEY = (
    "torch",
    "transformers",
    "datasets",
    "tokenizers",
    "huggingface-hub",
    "safetensors",
    "numpy",
    "scipy",
    "snakemake",
    "snakemake-executor-plugin-slurm",
    "snakemake-executor-plugin-slurm-jobstep",
    "pytest",
    "ruff",
    "snakefmt",
)


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock() -> dict[str, str]:
    pins = {}
    for line in LOCK_FILE.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", line)
        assert m, f"{LOCK_FILE.name}: not a `name==version` pin: {line!r}"
        assert norm(m.group(1)) not in pins, f"{LOCK_FILE.name}: {m.group(1)} pinned twice"
        pins[norm(m.group(1))] = m.group(2)
    return pins


def pyproject_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    return [Requirement(r) for r in reqs]


def test_lock_is_complete_and_satisfies_pyproject():
    pins = lock()
    for key in KEY:
        assert key in pins, f"{LOCK_FILE.name} does not pin {key}"
    for req in pyproject_requirements():
        name = norm(req.name)
        assert name in pins, f"pyproject.toml requires {req}, which {LOCK_FILE.name} does not pin"
        assert req.specifier.contains(pins[name], prereleases=True), f"{LOCK_FILE.name}: {name}=={pins[name]} vs {req}"
        if any(s.operator == "==" for s in req.specifier):  # an exact pin in pyproject.toml: the same version
            assert str(req.specifier) == f"=={pins[name]}", f"pyproject.toml {req} vs {LOCK_FILE.name} {pins[name]}"
    assert "permerge" not in pins  # the project itself is installed from the tree


def test_conda_env_agrees_with_the_lock():
    env = yaml.safe_load((ROOT / "envs" / "permerge.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    pins = lock()
    assert "python=3.11" in env["dependencies"]  # what the lock was made with
    for entry in pip:
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", entry)
        assert m, f"envs/permerge.yaml: {entry!r} is not pinned (name==version)"
        name = norm(m.group(1))
        assert pins.get(name) == m.group(2), f"envs/permerge.yaml {entry} vs {LOCK_FILE.name} {name}=={pins.get(name)}"


def test_lock_pins_setup_torch_and_setup_uses_the_lock():
    setup = (ROOT / "envs" / "setup.sh").read_text()
    torch_default = re.search(r"^TORCH=\$\{TORCH_VERSION:-([^}]+)\}$", setup, re.M).group(1)
    assert lock()["torch"] == torch_default
    assert "LOCK=envs/constraints.txt" in setup
    # every install: uv (its own install and each uv_install) and pip's fallbacks
    assert '--constraint "$LOCK"' in setup and 'pip install -q -c "$LOCK" uv' in setup
    installs = [line for line in setup.splitlines() if re.search(r"\.venv/bin/pip install", line)]
    assert installs and all('-c "$LOCK"' in line for line in installs), installs


def installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def test_running_environment_is_the_lock():
    """What proves that a fresh install gets exactly the tested versions: CI installs with setup.sh from
    scratch, then runs this. A local venv that drifted fails here too (rerun bash envs/setup.sh)."""
    pins = lock()
    wrong = []
    for name, version in sorted(pins.items()):
        have = installed(name)
        if have is None:
            if name in KEY:
                wrong.append(f"{name}: not installed (lock: {version})")
            continue
        have_base = Version(have).public if name == "torch" else have  # torch 2.13.0+cpu / +cu121: 2.13.0
        if Version(have_base) != Version(version):
            wrong.append(f"{name}: installed {have}, lock {version}")
    if wrong:
        pytest.fail(
            f"the environment differs from {LOCK_FILE.name} (bash envs/setup.sh installs it):\n" + "\n".join(wrong)
        )
