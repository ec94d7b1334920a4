"""Checks of the cluster profile a run was started with (workflow/profiles/slurm).

The profile ships with placeholder partitions (``CHANGE_ME_CPU_PARTITION``, ``CHANGE_ME_GPU_PARTITION``)
that a user must replace. sbatch would take them as they are and every job would be rejected (or, worse,
land in a default partition without GPUs), so the Snakefile asks :func:`placeholder_keys` which profile
keys still hold one: a dry run warns, a real run stops before submitting anything.
"""

from __future__ import annotations

from collections.abc import Mapping

PLACEHOLDER = "CHANGE_ME"
PARTITION = "slurm_partition"


def raw_value(resource) -> object:
    """The value a profile or the command line gave a resource (a snakemake ``Resource`` keeps the
    unevaluated expression in ``raw``; plain values are returned as they are), quotes stripped."""
    value = getattr(resource, "raw", resource)
    if isinstance(value, str):
        value = value.strip().strip("'\"")
    return value


def is_placeholder(value) -> bool:
    return isinstance(value, str) and value.startswith(PLACEHOLDER)


def placeholder_keys(default_resources: Mapping | None, overwrite_resources: Mapping[str, Mapping] | None) -> list[str]:
    """The profile keys whose partition is still a placeholder, as a user finds them in the profile:
    ``default-resources: slurm_partition`` and ``set-resources: <rule>: slurm_partition``."""
    keys = []
    if default_resources and PARTITION in default_resources:
        value = raw_value(default_resources[PARTITION])
        if is_placeholder(value):
            keys.append(f"default-resources: {PARTITION} ({value})")
    for rule, resources in sorted((overwrite_resources or {}).items()):
        if PARTITION in resources:
            value = raw_value(resources[PARTITION])
            if is_placeholder(value):
                keys.append(f"set-resources: {rule}: {PARTITION} ({value})")
    return keys


def placeholder_message(keys: list[str]) -> str:
    listed = "\n  ".join(keys)
    return (
        f"the SLURM profile's partitions are still placeholders; edit these keys of the profile "
        f"(workflow/profiles/slurm/config.v8+.yaml, or your --workflow-profile overlay) to your cluster's "
        f"partitions (`sinfo -s` lists them; the GPU partition is set once, at `&gpu_partition`):\n  {listed}"
    )
