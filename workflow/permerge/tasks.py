"""The task registry: every fact about a task that more than one place needs, written once.

For each GLUE task: its columns, label count (1 = regression), metric, splits (the evaluation split
included), label names, display title; the dict's order is the paper's (the figures and tables follow it).
The schema, the config checks, the data rules, the hub export, the stand-in builders (permerge.data.standins
adds how each stand-in is built), the plots and the tests read it from here. ``mlm`` is not a GLUE task:
it is the pre-trained models themselves. ``mlm_compat`` scores ``mlm``'s models and permutations on the
reference implementation's character-spaced evaluation text (see "Evaluation-only tasks" below).
"""

from __future__ import annotations

from dataclasses import dataclass

MLM = "mlm"
MLM_COMPAT = "mlm_compat"


@dataclass(frozen=True)
class Task:
    name: str
    title: str
    text_keys: tuple[str, ...]
    num_labels: int  # 1: regression (stsb)
    metric: str  # accuracy | f1 | matthews | pearson
    splits: tuple[str, ...]
    eval_split: str
    label_names: tuple[str, ...]  # () for regression
    hub_sizes: tuple[int, int]  # (train, evaluation-split) examples of the real GLUE task (sizes the paper grid)


_STD = ("train", "validation")
TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            "mnli",
            "MNLI-mm",
            ("premise", "hypothesis"),
            3,
            "accuracy",
            ("train", "validation_matched", "validation_mismatched"),
            "validation_mismatched",
            ("entailment", "neutral", "contradiction"),
            (392_702, 9_832),
        ),
        Task(
            "qqp",
            "QQP",
            ("question1", "question2"),
            2,
            "f1",
            _STD,
            "validation",
            ("not_duplicate", "duplicate"),
            (363_846, 40_430),
        ),
        Task(
            "qnli",
            "QNLI",
            ("question", "sentence"),
            2,
            "accuracy",
            _STD,
            "validation",
            ("entailment", "not_entailment"),
            (104_743, 5_463),
        ),
        Task(
            "sst2", "SST-2", ("sentence",), 2, "accuracy", _STD, "validation", ("negative", "positive"), (67_349, 872)
        ),
        Task(
            "cola",
            "CoLA",
            ("sentence",),
            2,
            "matthews",
            _STD,
            "validation",
            ("unacceptable", "acceptable"),
            (8_551, 1_043),
        ),
        Task("stsb", "STS-B", ("sentence1", "sentence2"), 1, "pearson", _STD, "validation", (), (5_749, 1_500)),
        Task(
            "mrpc",
            "MRPC",
            ("sentence1", "sentence2"),
            2,
            "f1",
            _STD,
            "validation",
            ("not_equivalent", "equivalent"),
            (3_668, 408),
        ),
        Task(
            "rte",
            "RTE",
            ("sentence1", "sentence2"),
            2,
            "accuracy",
            _STD,
            "validation",
            ("entailment", "not_entailment"),
            (2_490, 277),
        ),
    )
}
GLUE_TASKS: tuple[str, ...] = tuple(TASKS)
ORDER: tuple[str, ...] = (MLM, MLM_COMPAT, *GLUE_TASKS)
TITLES: dict[str, str] = {
    MLM: "MLM",
    MLM_COMPAT: "MLM, character-spaced text (paper_compat)",
    **{t.name: t.title for t in TASKS.values()},
}


def glue_task(name: str) -> Task:
    """The registry entry of a GLUE task, or a clear error naming the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown GLUE task {name!r} (known: {', '.join(GLUE_TASKS)})") from None


def split_signatures() -> dict[tuple[str, ...], list[str]]:
    """GLUE tasks grouped by their split names (the data rules write one file per split)."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for t in TASKS.values():
        groups.setdefault(t.splits, []).append(t.name)
    return groups


# ------------------------------------------------------------------------------ evaluation-only tasks
# A task that scores another task's models and permutations on its own evaluation data, and has no models,
# statistics or permutations of its own. `mlm_compat`: the `mlm` models and permutations on the reference
# implementation's character-spaced Wikitext (each line's characters joined with spaces, the text behind
# the paper's MLM barriers: docs/method.md "MLM loss"); its evaluation set is data/evalsets/mlm_compat.
# The permutations do not depend on the evaluation text, so every variant's curve costs one λ sweep.
SCORES: dict[str, str] = {MLM_COMPAT: MLM}  # evaluation-only task -> the task whose models it scores
PAPER_COMPAT_EVALSETS: frozenset[str] = frozenset({MLM_COMPAT})  # evaluation sets built character-spaced


def is_evaluation_only(task: str) -> bool:
    """Whether `task` only re-scores another task's models and permutations (mlm_compat)."""
    return task in SCORES


def models_of(task: str) -> str:
    """The task whose models and permutations `task` uses: models_of("mlm_compat") == "mlm"; itself otherwise."""
    return SCORES.get(task, task)


def mlm_evalset(task: str) -> str:
    """The name of the MLM evaluation set (data/evalsets/{name}.safetensors) an MLM task is scored on:
    "mlm_compat" for mlm_compat, "mlm" for mlm and mlm at a step."""
    return task if task in PAPER_COMPAT_EVALSETS else MLM


# ------------------------------------------------------------------------------------------- steps
# A task at an intermediate pre-training step is a task of its own in the DAG: `mlm_step250` is the MLM
# checkpoint after 250 pre-training steps, `sst2_step250` that checkpoint fine-tuned on SST-2. Everything
# that depends on what a task *is* (its data, evaluation, head, fine-tuning settings) asks `base_task`;
# only the model directories and the trajectory table see the step.
STEP_SEP = "_step"


def base_task(task: str) -> str:
    """The task a (possibly step-suffixed) task name evaluates: base_task("mlm_step250") == "mlm"; an
    evaluation-only task evaluates the task it scores: base_task("mlm_compat") == "mlm"."""
    name, sep, step = task.rpartition(STEP_SEP)
    name = name if sep and step.isdigit() else task
    return SCORES.get(name, name)


def step_of(task: str) -> int | None:
    """The pre-training step of a step task (step_of("sst2_step250") == 250); None for a final checkpoint."""
    name, sep, step = task.rpartition(STEP_SEP)
    return int(step) if sep and step.isdigit() else None


def at_step(task: str, step: int) -> str:
    """The name of `task` at pre-training step `step` (at_step("mlm", 250) == "mlm_step250")."""
    return f"{base_task(task)}{STEP_SEP}{int(step)}"


def is_mlm(task: str) -> bool:
    """Whether the task is the pre-trained models themselves (at the end of pre-training or at a step)."""
    return base_task(task) == MLM


def pretrained_of(task: str) -> str:
    """The MLM checkpoint a task's models start from: "mlm" for a final task, "mlm_step250" at a step."""
    step = step_of(task)
    return MLM if step is None else at_step(MLM, step)


def task_pattern(tasks=ORDER) -> str:
    """Regex of the task names (final or at a step) over `tasks`: a wildcard constraint."""
    return f"(?:{'|'.join(tasks)})(?:{STEP_SEP}\\d+)?"
