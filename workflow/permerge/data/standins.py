"""GLUE-shaped stand-in tasks built offline from the embedded public-domain sources.

Each task has GLUE's name, columns, label convention, metric and splits (``TASKS``), and is written as
JSON-lines files (one per split, with an ``idx`` column) that ``datasets.load_dataset("json", ...)``
reads. They are small (about 3,000 train / 600 validation examples) so that tiny BERTs fine-tune in
minutes on a CPU. Construction (details in docs/data.md):

* sst2  novel sentences labelled by the Bing sentiment lexicon (with negation), |score| >= 2;
* cola  novel sentences (acceptable) vs corrupted copies of other sentences (word swap, move, drop,
        duplication);
* mrpc  King James verse paired with the World English Bible rendering of the same verse (paraphrase)
        or of the most word-overlapping verse among its ten neighbours (not a paraphrase);
* qqp   the same for question verses, negatives being the most word-overlapping other question of the book;
* stsb  KJV/WEB verse pairs (same, joined with a neighbour, neighbouring, unrelated) scored 0-5 by the
        weighted overlap of their Strong's numbers (the underlying Hebrew/Greek words);
* mnli  WordNet example sentences with one word replaced: hypernym/synonym (entailment), hyponym or
        co-hyponym (neutral), antonym (contradiction); the *mismatched* set applies the same rules to
        sentences from the novels (another genre and source);
* rte   World English Bible verses with a hypothesis that is one of their sentences (optionally with a
        hypernym/synonym substitution: entailment) or a sentence with a hyponym/co-hyponym/antonym
        substitution or from a neighbouring verse (not_entailment);
* qnli  "what does W mean?" against a WordNet gloss of W (entailment) or of a related/sibling synset.

Splits are disjoint by construction: examples are grouped (by source sentence, verse chapter or synset)
and whole groups go to one split; :func:`build_task` also asserts that no (text, label) example repeats
across splits. Everything is deterministic given the seed.

This module holds the task facts (``TASKS``), the builders' registry (``BUILDERS``) and the entry points
(``build_task``, ``write_task``); the builders live by source: ``novel_tasks`` (sst2, cola),
``bible_tasks`` (mrpc, qqp, stsb), ``wordnet_tasks`` (mnli, rte, qnli), with ``resources`` (the parsed
archives), ``splits``, ``lexicon`` (sentiment) and ``corruption`` (CoLA's unacceptable sentences).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from ..tasks import TASKS as REGISTRY
from ..tasks import Task
from .bible_tasks import build_mrpc, build_qqp, build_stsb
from .jsonl import validate_task_files, write_jsonl
from .novel_tasks import build_cola, build_sst2
from .resources import Resources
from .wordnet_tasks import build_mnli, build_qnli, build_rte

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TaskInfo(Task):
    """A registry task (permerge.tasks) plus how its stand-in is built."""

    sources: tuple[str, ...] = ()  # embedded archives the stand-in is built from
    sizes: dict[str, int] = dataclasses.field(default_factory=dict)  # examples per split of the stand-in


# How each stand-in is built: its source archives and split sizes (columns, labels, splits: permerge.tasks).
_STANDINS: dict[str, tuple[tuple[str, ...], dict[str, int]]] = {
    "mnli": (
        ("wordnet", "janeaustenr", "tidytext"),
        {"train": 6000, "validation_matched": 600, "validation_mismatched": 600},
    ),
    "qqp": (("kjv", "web"), {"train": 2000, "validation": 400}),
    "qnli": (("wordnet", "janeaustenr", "tidytext"), {"train": 3000, "validation": 600}),
    "sst2": (("janeaustenr", "tidytext"), {"train": 3000, "validation": 600}),
    "cola": (("janeaustenr", "tidytext"), {"train": 3000, "validation": 600}),
    "stsb": (("kjv", "web"), {"train": 3000, "validation": 600}),
    "mrpc": (("kjv", "web"), {"train": 3000, "validation": 600}),
    "rte": (("wordnet", "web", "janeaustenr", "tidytext"), {"train": 2400, "validation": 400}),
}
TASKS: dict[str, TaskInfo] = {
    name: TaskInfo(
        **{f.name: getattr(task, f.name) for f in dataclasses.fields(Task)},
        sources=_STANDINS[name][0],
        sizes=_STANDINS[name][1],
    )
    for name, task in REGISTRY.items()
}


def _example_key(info: TaskInfo, row: Mapping) -> tuple:
    """The texts of an example, order-insensitive (a pair and its swap are the same example)."""
    return tuple(sorted(row[k] for k in info.text_keys))


def _check_disjoint(info: TaskInfo, splits: Mapping[str, list[dict]]) -> None:
    seen: dict[tuple, str] = {}
    for split, rows in splits.items():
        for row in rows:
            key = _example_key(info, row)
            if key in seen and seen[key] != split:
                raise AssertionError(f"{info.name}: example {key!r} is in both {seen[key]} and {split}")
            seen[key] = split


BUILDERS: dict[str, Callable[[Resources, Mapping[str, int], random.Random], dict[str, list[dict]]]] = {
    "mnli": build_mnli,
    "qqp": build_qqp,
    "qnli": build_qnli,
    "sst2": build_sst2,
    "cola": build_cola,
    "stsb": build_stsb,
    "mrpc": build_mrpc,
    "rte": build_rte,
}


def build_task(
    task: str,
    paths: Mapping[str, str | os.PathLike] | Resources,
    *,
    seed: int = 0,
    sizes: Mapping[str, int] | None = None,
) -> dict[str, list[dict]]:
    """Build one stand-in task: split -> rows (GLUE columns, ``label``, ``idx``). Deterministic in ``seed``."""
    if task not in TASKS:
        raise ValueError(f"unknown GLUE task {task!r}; expected one of {sorted(TASKS)}")
    info = TASKS[task]
    res = paths if isinstance(paths, Resources) else Resources(paths)
    sizes = dict(sizes or info.sizes)
    rng = random.Random(f"permerge-{task}-{seed}")
    splits = BUILDERS[task](res, sizes, rng)
    _check_disjoint(info, splits)
    out = {}
    for split in info.splits:
        rows = [
            {**{k: r[k] for k in info.text_keys}, "label": r["label"], "idx": i} for i, r in enumerate(splits[split])
        ]
        out[split] = rows
    return out


def write_task(task: str, splits: Mapping[str, list[dict]], outputs: Mapping[str, str | os.PathLike]) -> dict[str, int]:
    """Write split -> rows to split -> jsonl path, then validate them."""
    counts = {s: write_jsonl(splits[s], outputs[s]) for s in outputs}
    validate_task_files(task, outputs)
    return counts


def label_summary(task: str, rows: Sequence[Mapping]) -> str:
    info = TASKS[task]
    if info.num_labels == 1:
        ys = [r["label"] for r in rows]
        m = sum(ys) / len(ys)
        return f"mean {m:.2f}, " + ", ".join(
            f"[{a},{a + 1}{']' if a == 4 else ')'}: {sum(a <= y < a + 1 or (a == 4 and y == 5) for y in ys)}"
            for a in range(5)
        )
    c = Counter(r["label"] for r in rows)
    return ", ".join(f"{info.label_names[k]} {c[k]} ({c[k] / len(rows):.0%})" for k in range(info.num_labels))
