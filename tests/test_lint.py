"""`snakemake --lint` is clean: every rule has a log and a conda env, helpers live in common.smk, …"""

import pytest

from tests.workflow_utils import copy_workflow, snakemake


@pytest.mark.parametrize("configfile", [None, "configs/paper.yaml"])
def test_lint_clean(tmp_path, configfile):
    # Rules depend on the config (pretrain vs fetch_model, embedded vs hub data): lint each variant.
    wd = copy_workflow(tmp_path / "wf")
    args = ["--lint"] + (["--configfile", configfile] if configfile else [])
    out = snakemake(wd, *args, check=False)
    text = out.stdout + out.stderr
    assert out.returncode == 0, f"snakemake --lint complains:\n{text[-6000:]}"
    assert "Lints for" not in text, text[-6000:]
