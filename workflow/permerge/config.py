"""Configuration: schema validation (defaults filled) plus the checks a JSON schema cannot express.

Used by the Snakefile before planning, so bad input fails before any job runs, naming the key.
"""

from __future__ import annotations

import os
from itertools import combinations
from pathlib import Path
from typing import Any

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"
ROOT = Path(__file__).resolve().parents[2]  # the repository (config.yaml, configs/)
from .tasks import ORDER, SCORES, at_step, is_evaluation_only, is_mlm, step_of  # noqa: E402  (the task registry)


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
    _check_trajectory(config)
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
    """Variant names evaluated for `task` (a GLUE task falls back to the `glue` entry; a task at an
    intermediate pre-training step runs `trajectory.variants`; an evaluation-only task such as mlm_compat
    without an entry runs the variants of the task it scores)."""
    if step_of(task) is not None:
        return list(config["trajectory"]["variants"])
    tv = config["task_variants"]
    if task in tv:
        return list(tv[task])
    if is_evaluation_only(task):
        return variants_for(config, SCORES[task])
    if task == "mlm":
        raise ConfigError("task_variants: no entry for 'mlm'")
    if "glue" not in tv:
        raise ConfigError(f"task_variants: no entry for '{task}' and no 'glue' default")
    return list(tv["glue"])


def variant_options(config, name: str):
    from permerge.alignment.variants import Variant

    return Variant.from_mapping(config["variants"][name], name=name)


def stats_fraction(config, task: str, variant: str) -> float:
    """The fraction of the statistics data a variant uses on `task`: its own stats_fraction, else the
    task's default (statistics.mlm_fraction for mlm: the paper's main runs use 10% of the Books sample;
    the whole training split for GLUE tasks)."""
    own = variant_options(config, variant).stats_fraction
    if own is not None:
        return float(own)
    return float(config["statistics"]["mlm_fraction"]) if is_mlm(task) else 1.0


def stats_fractions(config, task: str) -> list[float]:
    """The statistics fractions the aligning variants of `task` need (one file each, from one pass);
    vanilla averaging needs none."""
    return sorted({stats_fraction(config, task, v) for v in variants_for(config, task) if needs_statistics(config, v)})


def needs_statistics(config, variant: str) -> bool:
    """Whether a variant's permutations read activation statistics (its method's registry entry,
    permerge.alignment.matchers.METHOD, says): vanilla averaging (no components) and data-free weight matching do not."""
    opts = variant_options(config, variant)
    return bool(opts.components) and _method(opts).statistics


def needs_weights(config, variant: str) -> bool:
    """Whether a variant's permutations read the seed checkpoints (weight and hybrid matching)."""
    opts = variant_options(config, variant)
    return bool(opts.components) and _method(opts).weights


def _method(variant):
    from permerge.alignment.matchers import METHOD

    return METHOD[variant.method]


def trajectory_steps(config) -> list[int]:
    """The intermediate pre-training steps of the trajectory, ascending (empty: no trajectory)."""
    return sorted(int(k) for k in config["trajectory"]["steps"])


def step_tasks(config) -> list[str]:
    """The tasks at intermediate steps the trajectory runs ("mlm_step250", ...), task by task, step by step."""
    return [at_step(t, k) for t in config["trajectory"]["tasks"] for k in trajectory_steps(config)]


def final_step(config) -> int | None:
    """The pre-training step of the final checkpoints (the tasks themselves): models.pretrain.steps when the
    seeds are pre-trained here, else trajectory.final_step."""
    if config["models"]["source"] == "pretrain":
        return int(config["models"]["pretrain"]["steps"])
    return config["trajectory"]["final_step"]


def step_hub_id(config, seed, step: int) -> str:
    """The hub id of a seed's checkpoint at an intermediate step (trajectory.hub_id with {seed}, {step} and
    {step_k} = thousands of steps replaced; MultiBERTs names its steps in thousands: step_20k)."""
    template = config["trajectory"]["hub_id"]
    return (
        template.replace("{seed}", str(seed)).replace("{step_k}", str(int(step) // 1000)).replace("{step}", str(step))
    )


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


def effective_yaml(config, configfiles=(), provenance: str = "") -> str:
    """The validated configuration of a run as YAML, with its provenance as comments (``provenance``: the
    block :func:`provenance_comment` writes, appended as comments so the file stays a valid configfile)."""
    import yaml

    head = [
        "# The effective configuration of this run (config.yaml, then each --configfile merged over it,",
        "# schema defaults filled). Written by the workflow; do not edit.",
        f"# configfiles: {', '.join(str(f) for f in configfiles) or 'config.yaml'}",
    ]
    body = yaml.safe_dump(config, sort_keys=True, default_flow_style=None, width=110)
    return "\n".join(head) + "\n" + body + provenance


# ------------------------------------------------------------------------------------------------------
# Hub data: one cache, offline compute jobs, and where each downloaded text came from
# ------------------------------------------------------------------------------------------------------

HUB_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def hub_cache_dir(config, cwd: str | Path | None = None) -> Path | None:
    """The absolute HuggingFace cache folder of ``hub_cache`` (``{results}`` replaced by the results root,
    relative to the working directory), or None (``hub_cache: null``: HuggingFace's own defaults)."""
    cache = config.get("hub_cache")
    if cache is None:
        return None
    path = Path(str(cache).replace("{results}", config["results"].rstrip("/"))).expanduser()
    return path if path.is_absolute() else (Path(cwd or Path.cwd()) / path).absolute()


def hub_environ(config, *, compute: bool, cwd: str | Path | None = None) -> dict[str, str]:
    """The environment variables a job of this configuration gets (common.smk puts them in os.environ of
    every Snakemake process, so every job inherits them).

    * ``hub_cache`` set: ``HF_HOME`` = it, ``HF_HUB_CACHE`` = it/hub (models, hub files),
      ``HF_DATASETS_CACHE`` = it/datasets (prepared datasets): one cache on the login node and on the
      compute nodes, whatever the user's shell sets.
    * ``compute`` (a job run by a cluster or cloud executor, not on the submitting host): ``HF_HUB_OFFLINE=1``
      and ``HF_DATASETS_OFFLINE=1``, overriding any setting: every download is a local rule, so a compute job
      that asks the hub fails at once, naming the id, instead of retrying a network it may not have.
    * ``PERMERGE_JOB_SITE``: ``compute`` or ``local`` (logged by every job, see io.setup_job).
    """
    env = {"PERMERGE_JOB_SITE": "compute" if compute else "local"}
    cache = hub_cache_dir(config, cwd)
    if cache is not None:
        env.update(HF_HOME=str(cache), HF_HUB_CACHE=str(cache / "hub"), HF_DATASETS_CACHE=str(cache / "datasets"))
    if compute:
        env.update(dict.fromkeys(HUB_OFFLINE_VARS, "1"))
    return env


PROVENANCE_MARK = "# data provenance"


def provenance_comment(results_root: str | Path) -> str:
    """A comment block naming the revision every hub or local text of this results root was read at (from the
    ``data/text/{role}.meta.json`` files prepare_hub_text writes); empty when there are none yet."""
    import json

    metas = sorted(Path(results_root, "data", "text").glob("*.meta.json"))
    if not metas:
        return ""
    lines = [f"{PROVENANCE_MARK} (from data/text/{{role}}.meta.json, written when each text was prepared):"]
    for f in metas:
        m = json.loads(f.read_text(encoding="utf-8"))
        role = f.name[: -len(".meta.json")]
        if m.get("source") == "hub":
            lines.append(
                f"#   {role}: {m['id']} config {m.get('config')} split {m['split']} revision {m.get('revision')} "
                f"-> resolved {m['resolved_revision']}; {m['split_rows']} rows (published: {m.get('published_rows')})"
            )
        else:
            lines.append(f"#   {role}: {m.get('source')} {m.get('path')} ({m.get('resolved_revision')})")
    return "\n".join(lines) + "\n"


def record_provenance(results_root: str | Path) -> None:
    """Rewrite the provenance block of ``{results_root}/config.effective.yaml`` from the meta files now there
    (a job calls this after writing its meta file; jobs on one host take turns through a lock file). Nothing
    happens without a config.effective.yaml (it is written at the start of every real run)."""
    import fcntl
    import os
    import tempfile

    eff = Path(results_root, "config.effective.yaml")
    if not eff.is_file():
        return
    with open(eff.with_name(".config.effective.yaml.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = eff.read_text(encoding="utf-8")
        cut = text.find(PROVENANCE_MARK)
        text = (text if cut < 0 else text[:cut]) + provenance_comment(results_root)
        fd, tmp = tempfile.mkstemp(prefix=".config.effective.yaml.", dir=eff.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, eff)


def many_variants(config, task: str) -> list[str]:
    """The variants merged all at once on `task` (those of many.variants the task runs; none for a task
    outside many.tasks)."""
    tasks = config["many"].get("tasks")
    if (tasks is not None and task not in tasks) or is_evaluation_only(task):
        return []  # mlm_compat: no all-seed merges of its own (they would be mlm's, re-scored)
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
        opts = variant_options(config, v)
        if opts.within_head != "permutation" and needs_weights(config, v):
            # MergeMany re-aligns each seed to an average of the others and stops when no permutation changes;
            # per-head rotations there (and hybrid's start from the pair files' maps) are not supported
            raise ConfigError(
                f"many.variants: variant '{v}' sets within_head: {opts.within_head} with method {opts.method}; "
                "the all-seed merge of weight and hybrid matching (MergeMany) takes within_head: permutation only"
            )
    for t in many.get("tasks") or []:
        if t not in config["tasks"]:
            raise ConfigError(f"many.tasks: '{t}' is not in tasks {config['tasks']}")
    if not many["variants"]:
        return
    ref = many_reference(config)
    if ref not in config["seeds"]:
        raise ConfigError(f"many.reference: seed {ref} is not in seeds {sorted(config['seeds'])}")
    # activation variants reuse the pair files (reference, b): every such pair must be in the grid
    have = set(pairs(config))
    missing = [(ref, b) for b in sorted(config["seeds"]) if b != ref and (ref, b) not in have]
    if missing and any(needs_statistics(config, v) for v in many["variants"]):
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
    for task in config["tasks"]:
        if not is_evaluation_only(task):
            continue
        scored = SCORES[task]
        if scored not in config["tasks"]:
            raise ConfigError(
                f"tasks: {task!r} scores {scored!r}'s models and permutations on other evaluation data; "
                f"add {scored!r} to tasks"
            )
        extra = [v for v in variants_for(config, task) if v not in variants_for(config, scored)]
        if extra:
            raise ConfigError(
                f"task_variants.{task}: {extra} do not run for {scored!r} (task_variants.{scored}: "
                f"{variants_for(config, scored)}); {task} re-scores {scored}'s permutations, so its variants "
                f"must be a subset of {scored}'s"
            )
        if task == "mlm_compat" and config["data"]["mlm_eval"]["paper_compat"]:
            raise ConfigError(
                "tasks: mlm_compat scores the character-spaced text beside mlm's normal text, but "
                "data.mlm_eval.paper_compat: true makes mlm score the character-spaced text too; drop one"
            )


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
    from permerge.alignment.variants import VariantError

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


def _check_trajectory(config):
    tr = config["trajectory"]
    steps = trajectory_steps(config)
    if not steps:
        return
    for i, task in enumerate(tr["tasks"]):
        if is_evaluation_only(task):
            raise ConfigError(
                f"trajectory.tasks[{i}] = {task!r}: an evaluation-only task has no checkpoints of its own at a step"
            )
        if task not in config["tasks"]:
            raise ConfigError(
                f"trajectory.tasks[{i}] = {task!r}: not in tasks {config['tasks']} (its final checkpoint is the last point)"
            )
    for v in tr["variants"]:
        for task in tr["tasks"]:
            if v not in variants_for(config, task):
                key = task if task in config["task_variants"] else "glue"
                raise ConfigError(
                    f"trajectory.variants: {v!r} does not run for task {task!r} (task_variants.{key}: "
                    f"{variants_for(config, task)}); the trajectory's variants must be a subset of each of its tasks'"
                )
    source = config["models"]["source"]
    if source == "pretrain":
        pre = config["models"]["pretrain"]
        every, total = int(pre["checkpoint_every"]), int(pre["steps"])
        if tr["final_step"] is not None and int(tr["final_step"]) != total:
            raise ConfigError(
                f"trajectory.final_step = {tr['final_step']}: with models.source pretrain the final step is "
                f"models.pretrain.steps = {total}; leave trajectory.final_step null"
            )
        for k in steps:
            if k >= total:
                raise ConfigError(
                    f"trajectory.steps: step {k} is not before the end of pre-training (models.pretrain.steps = "
                    f"{total}); the final checkpoint is the task itself, the trajectory's last point"
                )
            if not every:
                raise ConfigError(
                    f"trajectory.steps = {steps} needs intermediate checkpoints: set models.pretrain.checkpoint_every "
                    "(0 saves none)"
                )
            if k % every:
                raise ConfigError(
                    f"trajectory.steps: step {k} is not a multiple of models.pretrain.checkpoint_every = {every} "
                    "(pre-training saves only those)"
                )
    elif source == "hub":
        hub_id = tr["hub_id"]
        if "{seed}" not in hub_id or ("{step}" not in hub_id and "{step_k}" not in hub_id):
            raise ConfigError(f"trajectory.hub_id {hub_id!r} must contain '{{seed}}' and '{{step}}' or '{{step_k}}'")
        if "{step_k}" in hub_id:
            odd = [k for k in steps if k % 1000]
            if odd:
                raise ConfigError(
                    f"trajectory.steps: {odd} are not whole thousands, but trajectory.hub_id {hub_id!r} names "
                    "steps in thousands ({step_k})"
                )
        final = tr["final_step"]
        if final is None:
            raise ConfigError(
                "trajectory.final_step: required with models.source hub (the pre-training step of the final "
                "checkpoints models.hub_id names, e.g. 2000000 for the MultiBERTs); or set trajectory.steps: []"
            )
        late = [k for k in steps if k >= final]
        if late:
            raise ConfigError(
                f"trajectory.steps: {late} are not before trajectory.final_step = {final} (the final checkpoint is "
                "the task itself, the trajectory's last point)"
            )
    else:
        raise ConfigError(
            f"trajectory.steps = {steps}: models.source {source} has no intermediate checkpoints (they come from "
            "pre-training here or from trajectory.hub_id); set trajectory.steps: []"
        )


def check_device(config):
    """device: cuda on a machine where CUDA does not work fails before the first job (the Snakefile calls this
    at the start of a local run; cluster runs plan on nodes without the GPUs their jobs get, and each GPU job
    runs the same preflight itself). The check (permerge.tooling.device.preflight: a device, a tiny matmul on it) runs
    in a child process, so this process holds no CUDA context for the rest of the run."""
    import subprocess
    import sys

    from permerge.tooling.device import is_cuda

    device = config["device"]
    if not is_cuda(device):
        return
    lib = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [lib, os.environ.get("PYTHONPATH")])))
    out = subprocess.run(
        [sys.executable, "-m", "permerge.tooling.device", device], capture_output=True, text=True, env=env
    )
    if out.returncode != 0:
        raise ConfigError(
            f"{out.stderr.strip() or out.stdout.strip()}\n  (run on a GPU machine or a cluster profile: "
            "--profile workflow/profiles/slurm; or set device: cpu)"
        )
