"""Configuration: schema validation (defaults filled) plus the checks a JSON schema cannot express.

Used by the Snakefile before planning, so bad input fails before any job runs, naming the key.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"
ROOT = Path(__file__).resolve().parents[2]  # the repository (config.yaml, configs/)
from .tasks import ORDER  # noqa: E402  (the task registry)


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the key."""


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate `config` in place against the schema (filling defaults), then check cross-key rules."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    try:
        validate(config, str(SCHEMA), set_default=True)
    except WorkflowError as err:
        raise ConfigError(f"invalid configuration: {err}") from None
    _check_tasks(config)
    _check_pairs(config)
    _check_lambdas(config)
    _check_variants(config)
    _check_sources(config)
    _check_many(config)
    return config


def pairs(config) -> list[tuple[int, int]]:
    """The (a, b) seed pairs to merge; a is the reference model A."""
    if config.get("pairs"):
        return [(int(a), int(b)) for a, b in config["pairs"]]
    return list(combinations(sorted(config["seeds"]), 2))


def lambdas(config) -> list[float]:
    """The λ grid, sorted; an integer N means N evenly spaced values in [0, 1]."""
    spec = config["lambdas"]
    if isinstance(spec, int):
        return [round(i / (spec - 1), 10) for i in range(spec)]
    return sorted(float(x) for x in spec)


def variants_for(config, task: str) -> list[str]:
    """Variant names evaluated for `task` (a GLUE task falls back to the `glue` entry)."""
    tv = config["task_variants"]
    if task in tv:
        return list(tv[task])
    if task == "mlm":
        raise ConfigError("task_variants: no entry for 'mlm'")
    if "glue" not in tv:
        raise ConfigError(f"task_variants: no entry for '{task}' and no 'glue' default")
    return list(tv["glue"])


def variant_options(config, name: str):
    from permerge.variants import Variant

    return Variant.from_mapping(config["variants"][name], name=name)


def stats_fraction(config, task: str, variant: str) -> float:
    """The fraction of the statistics data a variant uses on `task`: its own stats_fraction, else the
    task's default (statistics.mlm_fraction for mlm: the paper's main runs use 10% of the Books sample;
    the whole training split for GLUE tasks)."""
    own = variant_options(config, variant).stats_fraction
    if own is not None:
        return float(own)
    return float(config["statistics"]["mlm_fraction"]) if task == "mlm" else 1.0


def stats_fractions(config, task: str) -> list[float]:
    """The statistics fractions the aligning variants of `task` need (one file each, from one pass);
    vanilla averaging needs none."""
    return sorted({stats_fraction(config, task, v) for v in variants_for(config, task) if needs_statistics(config, v)})


def needs_statistics(config, variant: str) -> bool:
    """Whether a variant's permutations read activation statistics: vanilla averaging (no components) and
    data-free weight matching do not."""
    opts = config["variants"][variant]
    return bool(opts.get("components")) and opts.get("method", "activation") != "weight"


def needs_weights(config, variant: str) -> bool:
    """Whether a variant's permutations read the seed checkpoints (weight and hybrid matching)."""
    opts = config["variants"][variant]
    return bool(opts.get("components")) and opts.get("method", "activation") != "activation"


def load_merged(*configfiles, overrides: dict | None = None) -> dict[str, Any]:
    """The configuration as Snakemake builds it: config.yaml, then each --configfile deep-merged over it
    (snakemake.utils.update_config, the function Snakemake itself uses), validated with defaults filled."""
    import yaml
    from snakemake.utils import update_config

    config: dict[str, Any] = {}
    for f in (ROOT / "config.yaml", *configfiles):
        with open(f) as fh:
            update_config(config, yaml.safe_load(fh) or {})
    if overrides:
        update_config(config, overrides)
    return validate_config(config)


def effective_yaml(config, configfiles=()) -> str:
    """The validated configuration of a run as YAML, with its provenance as comments."""
    import yaml

    head = [
        "# The effective configuration of this run (config.yaml, then each --configfile merged over it,",
        "# schema defaults filled). Written by the workflow; do not edit.",
        f"# configfiles: {', '.join(str(f) for f in configfiles) or 'config.yaml'}",
    ]
    return "\n".join(head) + "\n" + yaml.safe_dump(config, sort_keys=True, default_flow_style=None, width=110)


def many_variants(config, task: str) -> list[str]:
    """The variants merged all at once on `task` (those of many.variants the task runs)."""
    return [v for v in config["many"]["variants"] if v in variants_for(config, task)]


def many_reference(config) -> int:
    ref = config["many"]["reference"]
    return sorted(config["seeds"])[0] if ref is None else int(ref)


def _check_many(config):
    many = config["many"]
    for v in many["variants"]:
        if v not in config["variants"]:
            raise ConfigError(
                f"many.variants: unknown variant '{v}' (defined: {', '.join(sorted(config['variants']))})"
            )
    if not many["variants"]:
        return
    ref = many_reference(config)
    if ref not in config["seeds"]:
        raise ConfigError(f"many.reference: seed {ref} is not in seeds {sorted(config['seeds'])}")
    # activation variants reuse the pair files (reference, b): every such pair must be in the grid
    have = set(pairs(config))
    missing = [(ref, b) for b in sorted(config["seeds"]) if b != ref and (ref, b) not in have]
    if missing and any(
        config["variants"][v].get("method", "activation") != "weight" and config["variants"][v].get("components")
        for v in many["variants"]
    ):
        raise ConfigError(
            f"many: activation variants align every seed to seed {ref} with the pair files, but pairs lacks {missing}"
        )


def _check_tasks(config):
    for i, task in enumerate(config["tasks"]):
        if task not in ORDER:
            raise ConfigError(f"tasks[{i}] = {task!r}: unknown task (known: {', '.join(ORDER)})")
    for key in config["task_variants"]:
        if key not in (*ORDER, "glue"):
            raise ConfigError(f"task_variants.{key}: unknown task (keys: {', '.join(ORDER)} or glue)")


def _check_pairs(config):
    seeds = set(config["seeds"])
    for i, pair in enumerate(config.get("pairs") or []):
        a, b = pair
        for s in (a, b):
            if s not in seeds:
                raise ConfigError(f"pairs[{i}] = {pair}: seed {s} is not in seeds {sorted(seeds)}")
        if a == b:
            raise ConfigError(f"pairs[{i}] = {pair}: a model cannot be merged with itself")


def _check_lambdas(config):
    grid = lambdas(config)
    if 0.0 not in grid or 1.0 not in grid:
        raise ConfigError(
            f"lambdas: the grid must contain both endpoints 0 and 1 (got {grid}); the barrier is measured against them"
        )


def _check_variants(config):
    from permerge.variants import VariantError

    for name in config["variants"]:
        try:
            variant_options(config, name)
        except VariantError as err:
            raise ConfigError(f"variants.{name}: {err}") from None
    for task in config["tasks"]:
        for v in variants_for(config, task):
            if v not in config["variants"]:
                key = task if task in config["task_variants"] else "glue"
                raise ConfigError(
                    f"task_variants.{key}: unknown variant '{v}' (defined: {', '.join(sorted(config['variants']))})"
                )


def _check_sources(config):
    offline = config["offline"]
    models = config["models"]
    if models["source"] == "hub":
        if "{seed}" not in models["hub_id"]:
            raise ConfigError(f"models.hub_id '{models['hub_id']}' must contain '{{seed}}'")
        if offline:
            raise ConfigError(
                f"models.hub_id '{models['hub_id']}' needs the HuggingFace hub but offline: true; "
                "set offline: false (as configs/paper.yaml does) or use the embedded config.yaml"
            )
    if models["source"] == "local" and "{seed}" not in models.get("local_dir", ""):
        raise ConfigError("models.local_dir must be set and contain '{seed}' when models.source is local")
    for role, spec in config["data"].items():
        if spec["source"] == "hub":
            if not spec.get("id"):
                raise ConfigError(f"data.{role}.id: a dataset id is required with source: hub")
            if offline:
                raise ConfigError(
                    f"data.{role}.id '{spec['id']}' needs the HuggingFace hub but offline: true; "
                    "set offline: false or use the embedded config.yaml"
                )
        if spec["source"] == "local" and not spec.get("path"):
            raise ConfigError(f"data.{role}.path: a file or folder is required with source: local")


def check_device(config):
    """device: cuda on a machine without a usable GPU fails before the first job (the Snakefile calls this
    at the start of a local run; cluster runs plan on nodes without the GPUs their jobs get)."""
    device = config["device"]
    if not device.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(
            f"device: {device!r} but torch sees no CUDA device on this machine (torch {torch.__version__}, "
            f"CUDA build: {torch.version.cuda or 'none'}); run on a GPU machine or a cluster profile "
            "(--profile workflow/profiles/slurm), or set device: cpu"
        )
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise ConfigError(f"device: {device!r} but only {torch.cuda.device_count()} CUDA device(s) are visible")
