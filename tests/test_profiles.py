"""The SLURM profile against the rules: every rule that asks for a GPU has the GPU partition and a GPU
request in workflow/profiles/slurm (a new GPU rule cannot be forgotten), nothing else does; and the check
of placeholder partitions (workflow/permerge/tooling/cluster.py) names the profile keys."""

from __future__ import annotations

import re

import yaml

from permerge.tooling import cluster
from tests.workflow_utils import ROOT

PROFILE = ROOT / "workflow" / "profiles" / "slurm" / "config.v8+.yaml"


def gpu_rules_of_workflow() -> set[str]:
    """Rules whose `resources:` ask for a GPU (`gpu=`), from workflow/rules/*.smk."""
    rules = set()
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        parts = re.split(r"^\s*rule (\w+):\s*$", smk.read_text(), flags=re.M)
        for name, body in zip(parts[1::2], parts[2::2]):
            resources = re.search(r"^(\s+)resources:\n((?:\1\s+.*\n)+)", body, re.M)
            if resources and re.search(r"^\s+gpu\s*=", resources.group(2), re.M):
                rules.add(name)
    return rules


def test_every_gpu_rule_has_the_gpu_partition_and_a_gpu():
    profile = yaml.safe_load(PROFILE.read_text())
    gpu_rules = gpu_rules_of_workflow()
    assert {"collect_statistics", "finetune", "sweep_lambdas", "merge_many"} <= gpu_rules, gpu_rules
    entries = profile["set-resources"]
    with_gpu = {rule for rule, res in entries.items() if "gpu" in res or "gres" in res}
    assert with_gpu == gpu_rules, (
        f"GPU rules without a profile entry: {gpu_rules - with_gpu}; extra: {with_gpu - gpu_rules}"
    )
    cpu_partition = profile["default-resources"]["slurm_partition"]
    partitions = {entries[rule].get("slurm_partition") for rule in gpu_rules}
    assert len(partitions) == 1 and None not in partitions and cpu_partition not in partitions, partitions
    for rule, res in entries.items():
        if rule not in gpu_rules:  # CPU rules: the default (CPU) partition
            assert "slurm_partition" not in res and "gpu" not in res, rule


def test_profile_runtimes_are_numbers_or_longer_for_weight_matching():
    for rule, res in yaml.safe_load(PROFILE.read_text())["set-resources"].items():
        if rule in ("compute_permutations", "sweep_lambdas"):  # the rules' own, per pair of the job's cohort
            assert "runtime" not in res, rule  # (tests/test_slurm.py checks them in a dry run)
            continue
        runtime = res["runtime"]
        if isinstance(runtime, str):  # evaluated by snakemake per job, with its wildcards
            wm, other = (eval(runtime, {"wildcards": type("W", (), {"variant": v})}) for v in ("wm_all", "ff_attn"))
            assert isinstance(wm, int) and isinstance(other, int) and wm > other > 0, (rule, runtime)
        else:
            assert isinstance(runtime, int) and runtime > 0, rule


class _Resource:  # snakemake's Resource keeps a profile value's expression in `raw`
    def __init__(self, raw):
        self.raw = raw


def test_placeholder_keys_name_what_to_edit():
    default = {"slurm_partition": _Resource("CHANGE_ME_CPU_PARTITION"), "mem_mb": _Resource("4000")}
    overwrite = {
        "finetune": {"slurm_partition": _Resource("'CHANGE_ME_GPU_PARTITION'"), "gpu": _Resource(1)},
        "merge_checkpoints": {"runtime": _Resource(30)},
    }
    keys = cluster.placeholder_keys(default, overwrite)
    assert keys == [
        "default-resources: slurm_partition (CHANGE_ME_CPU_PARTITION)",
        "set-resources: finetune: slurm_partition (CHANGE_ME_GPU_PARTITION)",
    ]
    assert "finetune: slurm_partition" in cluster.placeholder_message(keys)
    done = {"slurm_partition": _Resource("cpu")}
    assert cluster.placeholder_keys(done, {"finetune": {"slurm_partition": _Resource("gpu")}}) == []
    assert cluster.placeholder_keys(None, {}) == []
