# Validated configuration, wildcard constraints and the input functions the rules share.
import dataclasses
import os
import re
import sys

from snakemake.exceptions import WorkflowError

# permerge (workflow/permerge) importable here and in every job's script, installed or not.
LIBDIR = os.path.join(workflow.basedir, "workflow")
sys.path.insert(0, LIBDIR)
# (set here, not read: no `envvars:` entry, which would make users define it)
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [LIBDIR, os.environ.get("PYTHONPATH")])))

from permerge import cohorts as COHORTS  # which statistics pass covers which seed pair
from permerge import config as cfg
from permerge.tooling import cluster as CLUSTER  # checks of the cluster profile (placeholder partitions)
from permerge.data import roles as ROLE_TEXTS  # the embedded text roles and their archives
from permerge.data import sources as PINNED  # the pinned source archives
from permerge.tooling import footprint as FOOTPRINT  # memory of the heavy jobs, from the models' shapes
from permerge import tasks as TASK_REGISTRY
from permerge.data.standins import TASKS as TASK_INFO  # the registry plus how each stand-in is built

try:
    cfg.validate_config(config)
except cfg.ConfigError as err:
    raise WorkflowError(str(err)) from None

# Every job's thread pools sized to its share of the cores (a user's own setting wins): torch, OpenBLAS
# (numpy/scipy) and the tokenizers' Rust pool would otherwise each start one thread per core, and jobs
# sharing cores slow each other down (docs/performance.md).
for _pool in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_pool, str(config["threads"]))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false" if config["threads"] == 1 else "true")

# Script jobs forked from one interpreter that has imported torch and transformers once (seconds a job).
if config["warm_jobs"] and workflow.local_exec and not workflow.remote_exec:
    from permerge.tooling import warm

    warm.install()

if config["offline"]:
    # Hub calls fail at once instead of retrying DNS for ~20 s.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

# Hub data (docs/cluster.md, "Hub data and the login node"): every download is a local rule (fetch_model,
# prepare_hub_text, prepare_hub_task*), run by the Snakemake process on the submitting host. A job that a
# cluster or cloud executor runs elsewhere is a Snakemake process in remote mode (`--mode remote`: the SLURM
# plugin's sbatch job and its srun step, cluster-generic, ...), workflow.remote_exec here: it gets
# HF_HUB_OFFLINE=1/HF_DATASETS_OFFLINE=1 (forced) and reads only the local copies. Every process, local or
# remote, gets hub_cache as HF_HOME. Set here because this file runs again in every job's Snakemake process.
os.environ.update(cfg.hub_environ(config, compute=workflow.remote_exec))

R = config["results"].rstrip("/")  # the results root of this configuration


def res(path):
    """A path under this configuration's results root (results/ or, for the paper grid, results/paper/)."""
    return f"{R}/{path}"


# SLURM partitions still the profile's placeholders (CHANGE_ME_*): a dry run warns (so the plan can be
# previewed), a real cluster run stops in onstart, before anything is submitted. (The executor is not
# known yet while the Snakefile is read, the resources are; jobs inside SLURM skip the check.)
PLACEHOLDER_PARTITIONS = (
    []
    if workflow.remote_exec
    else CLUSTER.placeholder_keys(
        workflow.resource_settings.default_resources,
        workflow.resource_settings.overwrite_resources,
    )
)
if PLACEHOLDER_PARTITIONS:
    from snakemake.logging import logger

    logger.warning(
        "WARNING: "
        + CLUSTER.placeholder_message(PLACEHOLDER_PARTITIONS)
        + "\n(a dry run only previews the jobs; a real run stops before submitting any)"
    )


onstart:
    # Before the first job of a real run (not a dry run): fail now on placeholder SLURM partitions or a GPU
    # config without a GPU, and record what every number of this run was computed with.
    if PLACEHOLDER_PARTITIONS and not workflow.local_exec:
        raise WorkflowError(CLUSTER.placeholder_message(PLACEHOLDER_PARTITIONS))
    if workflow.local_exec:
        try:
            cfg.check_device(config)
        except cfg.ConfigError as err:
            raise WorkflowError(str(err)) from None
    from permerge.io import atomic_path

    with atomic_path(res("config.effective.yaml")) as tmp:
        # + the revisions the texts already prepared were read at (prepare_hub_text adds new ones)
        tmp.write_text(cfg.effective_yaml(config, workflow.overwrite_configfiles, cfg.provenance_comment(R)))


SEEDS = sorted(config["seeds"])
TASKS = list(config["tasks"])
GLUE = [t for t in TASKS if not TASK_REGISTRY.is_mlm(t)]
# Barrier vs pre-training step: the trajectory's tasks at intermediate steps (mlm_step250, ...) are tasks of
# their own, planned like any task; TASK_REGISTRY.base_task says what they evaluate (mlm_step250 -> mlm).
STEP_TASKS = cfg.step_tasks(config)
# Evaluation-only tasks (mlm_compat: mlm's models and permutations scored on the reference's character-spaced
# text) run the λ sweep only; TASK_REGISTRY.models_of says whose models and permutations they read.
PAIRS = cfg.pairs(config)
LAMBDAS = cfg.lambdas(config)
ENV = "../../envs/permerge.yaml"
GPU = 1 if config["device"].startswith("cuda") else 0  # heavy jobs ask for a GPU with a cuda device


wildcard_constraints:
    task=TASK_REGISTRY.task_pattern(),  # mlm, sst2, ... or one at a step: mlm_step250
    glue_task="|".join(TASK_REGISTRY.GLUE_TASKS),
    variant="|".join(config["variants"]),
    seed=r"\d+",
    step=r"\d+",
    a=r"\d+",
    b=r"\d+",
    cohort=COHORTS.PATTERN,
    fraction=r"[0-9.]+(e-?\d+)?",


def fmt(x):
    """A float as it appears in file names (0.5, 1, 0.001)."""
    return f"{x:g}"


def pair_name(a, b):
    return f"seed{a}-seed{b}"


def variant_options(wildcards):
    """The matching options of one variant (as params, so changing them reruns only that variant)."""
    return config["variants"][wildcards.variant]


def cohort_pairs(task):
    """The oriented pairs whose work lands in `task`'s cohorts: the configured pairs, and the (reference, b)
    pairs an all-seed merge reuses (many:)."""
    needed = list(PAIRS)
    if any(cfg.many_variants(config, t) for t in TASKS if TASK_REGISTRY.models_of(t) == task):
        ref = cfg.many_reference(config)
        needed += [(ref, b) for b in SEEDS if b != ref]
    return list(dict.fromkeys(needed))


def task_cohorts(task):
    """Oriented pair -> its cohort, for the statistics, permutations and loss files of `task` (and of the
    evaluation-only tasks that read its models, mlm_compat). The cohorts complete on disk (each cohort
    folder appears whole, atomically, when its job ends) in any of those places, oldest first, then one new
    cohort for the pairs none covers (permerge.cohorts). A fresh grid: one cohort of every seed."""
    task = TASK_REGISTRY.models_of(task)
    if task not in _COHORTS:
        roots = [res(f"stats/{task}")]
        for kind, tasks in (("permutations", [task]), ("losses", _tasks_reading(task))):
            for t in tasks:
                top = res(f"{kind}/{t}")
                roots += [os.path.join(top, v) for v in sorted(os.listdir(top))] if os.path.isdir(top) else []
        found = {}
        for root in filter(os.path.isdir, roots):
            for n in filter(COHORTS.is_cohort, os.listdir(root)):
                mtime = os.stat(os.path.join(root, n)).st_mtime_ns
                found[n] = min(found.get(n, mtime), mtime)
        done = sorted(found, key=lambda n: (found[n], n))
        _COHORTS[task] = COHORTS.assign(cohort_pairs(task), done)
    return _COHORTS[task]


_COHORTS = {}  # read once per Snakemake process: the DAG is built from one view of the disk


def _tasks_reading(task):
    """`task` and the evaluation-only tasks that score its models and permutations."""
    return [
        t for t in {*TASKS, *STEP_TASKS, *TASK_REGISTRY.PAPER_COMPAT_EVALSETS} if TASK_REGISTRY.models_of(t) == task
    ]


def cohort_dir(kind, task, variant, a, b):
    """The cohort folder of pair (a, b): permutations/{task}/{variant}/{cohort} or losses/..."""
    cohorts = task_cohorts(task)
    if (int(a), int(b)) not in cohorts:
        raise WorkflowError(f"{pair_name(a, b)} is not a pair of this configuration (seeds: / pairs:): {PAIRS}")
    return res(f"{kind}/{task}/{variant}/{COHORTS.cohort_of(cohorts, a, b)}")


def pair_file(kind, task, variant, a, b):
    """A pair's file inside its cohort folder: permutations (.safetensors) or losses (.tsv)."""
    return COHORTS.pair_file(cohort_dir(kind, task, variant, a, b), kind, a, b)


def cohort_minutes(per_pair):
    """The time limit (minutes; SLURM --time) of a job over a cohort's pairs: 10 + per_pair(wildcards) each."""
    return lambda wildcards: 10 + per_pair(wildcards) * len(COHORTS.pairs(wildcards.cohort))


def stats_dir(wildcards):
    """The statistics of the job's cohort; vanilla averaging and weight matching need none."""
    if not cfg.needs_statistics(config, wildcards.variant):
        return []
    return res(f"stats/{wildcards.task}/{wildcards.cohort}")


def cohort_models(wildcards):
    """The checkpoints of the seeds a cohort's job loads (mlm_compat: mlm's)."""
    task = TASK_REGISTRY.models_of(wildcards.task)
    return [res(f"models/{task}/seed{s}") for s in COHORTS.seeds(wildcards.cohort)]


def cohort_seeds(wildcards):
    return COHORTS.seeds(wildcards.cohort)


def cohort_pair_list(wildcards):
    return [list(p) for p in COHORTS.pairs(wildcards.cohort)]


def first_model(wildcards):
    return cohort_models(wildcards)[0]


def pair_models(wildcards):
    """The two checkpoints of the job's pair (mlm_compat: mlm's), A first."""
    task = TASK_REGISTRY.models_of(wildcards.task)
    return [res(f"models/{task}/seed{wildcards.a}"), res(f"models/{task}/seed{wildcards.b}")]


def pair_seeds(wildcards):
    return [int(wildcards.a), int(wildcards.b)]


def the_pair(wildcards):
    return [[int(wildcards.a), int(wildcards.b)]]


def matching_models(wildcards):
    """The cohort's checkpoints, for the variants whose matching reads weights (weight, hybrid)."""
    return cohort_models(wildcards) if cfg.needs_weights(config, wildcards.variant) else []


def pooler_models(wildcards):
    """The cohort's checkpoints, for the variants that align the pooler (their metrics say how it was drawn)."""
    return (
        cohort_models(wildcards) if "pooler" in (config["variants"][wildcards.variant].get("components") or []) else []
    )


def cohort_permutations(wildcards):
    """The variant's permutations of the job's cohort (mlm_compat: mlm's)."""
    task = TASK_REGISTRY.models_of(wildcards.task)
    return res(f"permutations/{task}/{wildcards.variant}/{wildcards.cohort}")


def stats_name(wildcards):
    """The file of the variant's statistics fraction inside the task's statistics folder."""
    return f"fraction{fmt(cfg.stats_fraction(config, wildcards.task, wildcards.variant))}.safetensors"


def stats_fraction_params(task):
    """[[fraction, [feature needs]], ...] for the statistics pass of `task`, sorted by fraction.

    The needs are written as one variant mapping per fraction that asks for the union of the feature
    groups its variants use (every residual node once any variant aligns the residual stream, q/k only for
    qk: separate), so that changing a matching option that needs no other features (residual mode,
    attention matcher) does not rerun the pass.
    """
    needs = {}
    for v in cfg.variants_for(config, task):
        opts = cfg.variant_options(config, v)
        if cfg.needs_statistics(config, v):
            n = needs.setdefault(cfg.stats_fraction(config, task, v), {"components": set(), "qk": "shared"})
            n["components"] |= opts.components
            # q/k for their own within-head order, or for activation matching's Q/K rotations
            rotations = opts.within_head != "permutation" and opts.method == "activation"
            if "attn" in opts.components and (opts.qk == "separate" or rotations):
                n["qk"] = "separate"
    return [
        [f, [{"components": sorted(n["components"]), "residual": "all", "qk": n["qk"]}]]
        for f, n in sorted(needs.items())
    ]


def many_permutation_files(wildcards):
    """The pair files (reference, b) an activation/hybrid all-seed merge reuses."""
    if not cfg.needs_statistics(config, wildcards.variant):
        return []
    ref = cfg.many_reference(config)
    return [pair_file("permutations", wildcards.task, wildcards.variant, ref, b) for b in SEEDS if b != ref]


def many_permutations(wildcards):
    return folders(many_permutation_files(wildcards))


def folders(files):
    """The cohort folders holding `files`, each once, in order: what a job reading those files waits for."""
    return list(dict.fromkeys(os.path.dirname(f) for f in files))


def seed_models(wildcards):
    return expand(res("models/{task}/seed{seed}"), task=TASK_REGISTRY.models_of(wildcards.task), seed=SEEDS)


def pair_permutation_file(wildcards):
    """The variant's permutation file of the job's pair (mlm_compat: mlm's)."""
    task = TASK_REGISTRY.models_of(wildcards.task)
    return pair_file("permutations", task, wildcards.variant, wildcards.a, wildcards.b)


def pair_permutations(wildcards):
    return folders([pair_permutation_file(wildcards)])


def loss_files(task):
    """The loss file of every variant and pair of `task`, inside their cohort folders."""
    return [pair_file("losses", task, v, a, b) for v in cfg.variants_for(config, task) for a, b in PAIRS]


def merged_models(task):
    if TASK_REGISTRY.is_evaluation_only(task):
        return []  # mlm_compat's merges are mlm's
    return [
        f"{R}/merged/{task}/{v}/{pair_name(a, b)}/lambda{fmt(lam)}"
        for v in cfg.variants_for(config, task)
        for a, b in PAIRS
        for lam in config["merged_lambdas"]
    ]


def model_location(task, seed):
    """Where fetch_model copies a seed's MLM checkpoint from: models.hub_id / models.local_dir for the final
    one, trajectory.hub_id for one at an intermediate step."""
    step = TASK_REGISTRY.step_of(task)
    if step is not None:
        if config["models"]["source"] != "hub":
            raise WorkflowError(f"{task}: checkpoints at a step come from trajectory.hub_id (models.source: hub)")
        return cfg.step_hub_id(config, seed, step)
    models = config["models"]
    return (models["hub_id"] if models["source"] == "hub" else models["local_dir"]).replace("{seed}", str(seed))


def eval_split(task):
    """The split a task is evaluated on (GLUE's validation; mnli: validation_mismatched)."""
    return TASK_REGISTRY.glue_task(TASK_REGISTRY.base_task(task)).eval_split


def finetune_params(task):
    """Fine-tuning hyper-parameters of one task: the defaults with the task's overrides."""
    ft = config["finetune"]
    # resume_every_steps: how often the state is saved, not what is trained (the script reads it from config)
    hp = {k: v for k, v in ft.items() if k not in ("tasks", "resume_every_steps")}
    hp.update(ft["tasks"].get(TASK_REGISTRY.base_task(task), {}))
    return hp


def stats_text(wildcards):
    task = TASK_REGISTRY.base_task(wildcards.task)  # a task at a step reads the task's data
    if task == TASK_REGISTRY.MLM:
        return res("data/text/books.txt")
    return f"{R}/data/glue/{task}/train.jsonl"


def evaluation_data(wildcards):
    task = TASK_REGISTRY.base_task(wildcards.task)
    if task == TASK_REGISTRY.MLM:  # mlm, mlm at a step: data/evalsets/mlm; mlm_compat: its character-spaced set
        return res(f"data/evalsets/{TASK_REGISTRY.mlm_evalset(wildcards.task)}.safetensors")
    return f"{R}/data/glue/{task}/{eval_split(task)}.jsonl"


# the data.mlm_eval keys of the evaluation set (the text is the heldout role's)
MLM_EVALSET_KEYS = ("block_size", "mask_prob", "mask_seed", "max_blocks", "paper_compat")


def mlm_evalset_options(evalset):
    """The options of an MLM evaluation set: data.mlm_eval's, character-spaced for mlm_compat."""
    options = {k: config["data"]["mlm_eval"][k] for k in MLM_EVALSET_KEYS}
    if evalset in TASK_REGISTRY.PAPER_COMPAT_EVALSETS:
        options["paper_compat"] = True
    return options


def trajectory_loss_files():
    """The loss files of the trajectory: every step task's, and its final task's (the last point)."""
    tasks = [*STEP_TASKS, *config["trajectory"]["tasks"]] if STEP_TASKS else []
    return [pair_file("losses", t, v, a, b) for t in tasks for v in config["trajectory"]["variants"] for a, b in PAIRS]


# Data (data.smk)
# text role -> config key under data:
TEXT_ROLES = {"pretrain": "pretrain_text", "books": "stats_text", "heldout": "mlm_eval"}
# the keys of a data entry that decide the text (mlm_eval's other keys belong to the evaluation rules)
TEXT_SPEC_KEYS = (
    "source",
    "id",
    "config",
    "revision",
    "split",
    "column",
    "path",
    "sample",
    "sample_seed",
    "max_lines",
    "expected_rows",  # no schema default: a spec without it (every embedded one) is unchanged
)
NEVER = "(?!)"  # wildcard constraint that matches nothing


def text_spec(role):
    spec = config["data"][TEXT_ROLES[role]]
    return {k: spec[k] for k in TEXT_SPEC_KEYS if k in spec}


def roles_from(*sources):
    return [r for r in TEXT_ROLES if text_spec(r)["source"] in sources]


def download(name):
    return f"{R}/data/downloads/{PINNED.SOURCES[name].filename}"


def role_downloads(wildcards):
    return {name: download(name) for name in ROLE_TEXTS.ROLE_SOURCES[wildcards.role]}


def task_downloads(wildcards):
    return {name: download(name) for name in TASK_INFO[wildcards.glue_task].sources}


def glue_outputs(splits):
    return {s: f"{R}/data/glue/{{glue_task}}/{s}.jsonl" for s in splits}


STD_SPLITS = ("train", "validation")


def hub_downloads():
    """What the local download rules of this configuration write (texts with their provenance, GLUE splits,
    seed checkpoints and the trajectory's step checkpoints); empty for the embedded default."""
    roles = [r for r in roles_from("hub", "local") if r != "pretrain" or config["models"]["source"] == "pretrain"]
    files = [res(f"data/text/{r}.{ext}") for r in roles for ext in ("txt", "meta.json")]
    if config["data"]["glue"]["source"] == "hub":
        tasks = sorted({TASK_REGISTRY.base_task(t) for t in [*TASKS, *STEP_TASKS] if not TASK_REGISTRY.is_mlm(t)})
        files += [f"{R}/data/glue/{t}/{s}.jsonl" for t in tasks for s in TASK_REGISTRY.glue_task(t).splits]
    if config["models"]["source"] != "pretrain":
        mlm = [TASK_REGISTRY.MLM, *(t for t in STEP_TASKS if TASK_REGISTRY.is_mlm(t))]
        files += [res(f"models/{t}/seed{s}") for t in mlm for s in SEEDS]
    return files
