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

from permerge import config as cfg
from permerge import embedded as EMBEDDED
from permerge.standins import TASKS as TASK_INFO

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


def evaluation_data(wildcards):
    if wildcards.task == "mlm":
        return "results/data/evalsets/mlm.safetensors"
    return f"results/data/glue/{wildcards.task}/{eval_split(wildcards.task)}.jsonl"


# Data (data.smk)
# text role -> config key under data:
TEXT_ROLES = {"pretrain": "pretrain_text", "books": "stats_text", "heldout": "mlm_eval"}
# the keys of a data entry that decide the text (mlm_eval's other keys belong to the evaluation rules)
TEXT_SPEC_KEYS = ("source", "id", "config", "split", "column", "path", "max_lines")
NEVER = "(?!)"  # wildcard constraint that matches nothing


def text_spec(role):
    spec = config["data"][TEXT_ROLES[role]]
    return {k: spec[k] for k in TEXT_SPEC_KEYS if k in spec}


def roles_from(*sources):
    return [r for r in TEXT_ROLES if text_spec(r)["source"] in sources]


def download(name):
    return f"results/data/downloads/{EMBEDDED.SOURCES[name].filename}"


def role_downloads(wildcards):
    return {name: download(name) for name in EMBEDDED.ROLE_SOURCES[wildcards.role]}


def task_downloads(wildcards):
    return {name: download(name) for name in TASK_INFO[wildcards.glue_task].sources}


def glue_outputs(splits):
    return {s: f"results/data/glue/{{glue_task}}/{s}.jsonl" for s in splits}


STD_SPLITS = ("train", "validation")
MNLI_SPLITS = TASK_INFO["mnli"].splits
OTHER_GLUE = "|".join(t for t in TASK_INFO if t != "mnli")
