# Validated configuration, wildcard constraints and the input functions the rules share.
import os
import sys

from snakemake.exceptions import WorkflowError

# permerge (workflow/permerge) importable here and in every job's script, installed or not.
LIBDIR = os.path.join(workflow.basedir, "workflow")
sys.path.insert(0, LIBDIR)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [LIBDIR, os.environ.get("PYTHONPATH")]))

from permerge import config as cfg

try:
    cfg.validate_config(config)
except cfg.ConfigError as err:
    raise WorkflowError(str(err)) from None

if config["offline"]:
    # Hub calls fail at once instead of retrying DNS for ~20 s.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

SEEDS = sorted(config["seeds"])
TASKS = list(config["tasks"])
GLUE = [t for t in TASKS if t != "mlm"]
PAIRS = cfg.pairs(config)
LAMBDAS = cfg.lambdas(config)
ENV = "../../envs/permerge.yaml"
GPU = 1 if config["device"].startswith("cuda") else 0  # heavy jobs ask for a GPU with a cuda device


wildcard_constraints:
    task="|".join(["mlm", *cfg.GLUE_TASKS]),
    glue_task="|".join(cfg.GLUE_TASKS),
    variant="|".join(config["variants"]),
    seed=r"\d+",
    a=r"\d+",
    b=r"\d+",
    fraction=r"[0-9.]+(e-?\d+)?",
    lam=r"[0-9.]+",


def fmt(x):
    """A float as it appears in file names (0.5, 1, 0.001)."""
    return f"{x:g}"


def pair_name(a, b):
    return f"seed{a}-seed{b}"


def variant_options(wildcards):
    """The matching options of one variant (as params, so changing them reruns only that variant)."""
    return config["variants"][wildcards.variant]


def stats_file(wildcards):
    fraction = cfg.variant_options(config, wildcards.variant).stats_fraction
    return f"results/stats/{wildcards.task}/fraction{fmt(fraction)}.safetensors"


def seed_models(wildcards):
    return expand("results/models/{task}/seed{seed}", task=wildcards.task, seed=SEEDS)


def loss_files(task):
    return [
        f"results/losses/{task}/{v}/{pair_name(a, b)}.tsv"
        for v in cfg.variants_for(config, task)
        for a, b in PAIRS
    ]


def merged_models(task):
    return [
        f"results/merged/{task}/{v}/{pair_name(a, b)}/lambda{fmt(lam)}"
        for v in cfg.variants_for(config, task)
        for a, b in PAIRS
        for lam in config["merged_lambdas"]
    ]


def eval_split(task):
    """The split a task is evaluated on (GLUE's validation; mnli: validation_mismatched)."""
    from permerge.standins import TASKS as TASK_INFO

    return TASK_INFO[task].eval_split


def finetune_params(task):
    """Fine-tuning hyper-parameters of one task: the defaults with the task's overrides."""
    ft = config["finetune"]
    hp = {k: v for k, v in ft.items() if k != "tasks"}
    hp.update(ft["tasks"].get(task, {}))
    return hp


def stats_text(wildcards):
    if wildcards.task == "mlm":
        return "results/data/text/books.txt"
    return f"results/data/glue/{wildcards.task}/train.jsonl"
