"""JSON-lines files of GLUE-shaped tasks (one file per split, with an ``idx`` column): reading, writing
and checking them against the task registry (permerge.tasks). Used by the stand-ins and the hub export."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..tasks import TASKS


def write_jsonl(rows: Iterable[Mapping], path: str | os.PathLike) -> int:
    n = 0
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=False) + "\n")
            n += 1
    return n


def read_jsonl(path: str | os.PathLike, max_examples: int | None = None) -> list[dict]:
    """The rows of a jsonl file (blank lines skipped), the first `max_examples` of them when given."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
                if max_examples is not None and len(rows) >= max_examples:
                    break
    return rows


def validate_task_files(task: str, paths: Mapping[str, str | os.PathLike], *, require_all: bool = True) -> None:
    """Check that every split of ``task`` is present and every row has the text keys and a valid label.

    ``paths``: split -> jsonl file (with ``require_all=False``, only the splits given are checked).
    Raises ``ValueError`` naming the task, split and file.
    """
    if task not in TASKS:
        raise ValueError(f"unknown GLUE task {task!r}; expected one of {sorted(TASKS)}")
    info = TASKS[task]
    missing = [s for s in info.splits if s not in paths] if require_all else []
    if missing:
        raise ValueError(f"task {task}: split(s) {missing} missing (have {sorted(paths)})")
    for split, path in paths.items():
        if not Path(path).is_file():
            raise ValueError(f"task {task}: file for split {split!r} not found: {path}")
        rows = read_jsonl(path)
        if not rows:
            raise ValueError(f"task {task}: split {split!r} is empty: {path}")
        for i, row in enumerate(rows):
            for key in (*info.text_keys, "label", "idx"):
                if key not in row:
                    raise ValueError(f"task {task}: column {key!r} missing in {path} (row {i})")
            for key in info.text_keys:
                if not isinstance(row[key], str):
                    raise ValueError(f"task {task}: column {key!r} is not text in {path} (row {i})")
            label = row["label"]
            if info.num_labels == 1:
                if not isinstance(label, (int, float)) or isinstance(label, bool):
                    raise ValueError(f"task {task}: label {label!r} is not a number in {path} (row {i})")
            elif not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < info.num_labels:
                raise ValueError(f"task {task}: label {label!r} not in 0..{info.num_labels - 1} in {path} (row {i})")
