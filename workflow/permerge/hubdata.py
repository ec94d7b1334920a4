"""Paper-configuration data: text roles and GLUE tasks from the HuggingFace hub or local files.

These are the counterparts of :mod:`permerge.embedded` and :mod:`permerge.standins`; they write the same
files (``results/data/text/{role}.txt``, ``results/data/glue/{task}/{split}.jsonl``) so that the rest of
the workflow does not care where the data came from. Hub access needs network: with
``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE`` set (the embedded configuration sets them) a hub load fails
at once and is reported as :class:`HubUnavailable`, naming the dataset id.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from .embedded import paragraphs, split_sentences, strip_gutenberg, write_lines
from .standins import TASKS, validate_task_files, write_jsonl

log = logging.getLogger(__name__)


class HubUnavailable(RuntimeError):
    """A HuggingFace hub dataset could not be loaded (offline mode, no network, unknown id)."""


def _hub_error(dataset_id: str, config: str | None, err: Exception) -> HubUnavailable:
    what = dataset_id + (f" (config {config})" if config else "")
    offline = [v for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if os.environ.get(v, "0") not in ("", "0")]
    why = f"offline mode is on ({', '.join(offline)} set)" if offline else f"{type(err).__name__}: {err}"
    return HubUnavailable(
        f"cannot load the HuggingFace dataset {what}: {why}. This data role needs the hub (network access); "
        "the embedded configuration (config.yaml, data sources 'embedded') runs fully offline."
    )


def load_hub_dataset(dataset_id: str, config: str | None = None, split: str | None = None):
    """``datasets.load_dataset`` with hub failures turned into :class:`HubUnavailable`."""
    import datasets

    try:
        return datasets.load_dataset(dataset_id, config, split=split)
    except Exception as err:  # ConnectionError / OSError offline, DatasetNotFoundError, ...
        raise _hub_error(dataset_id, config, err) from err


# Wikitext headings look like " = Title = " or " = = Section = = ".
_WIKI_HEADING = re.compile(r"^\s*(=\s*)+[^=].*?(\s*=)+\s*$")


def clean_hub_lines(texts: Iterable[str], max_lines: int | None = None) -> Iterator[str]:
    """Non-empty lines, Wikitext ``= Heading =`` lines skipped, text otherwise kept as is (no spacing
    of characters, no re-tokenisation); multi-line records give one line per non-empty line."""
    n = 0
    for text in texts:
        for line in str(text or "").splitlines():
            line = line.strip()
            if not line or _WIKI_HEADING.match(line):
                continue
            yield line
            n += 1
            if max_lines is not None and n >= max_lines:
                return


def load_hub_text(dataset_id: str, config: str | None = None, split: str = "train", column: str = "text",
                  max_lines: int | None = None) -> list[str]:
    """Lines of one text column of a hub dataset (e.g. wikitext / wikitext-103-raw-v1 / validation)."""
    ds = load_hub_dataset(dataset_id, config, split)
    if column not in ds.column_names:
        raise ValueError(f"dataset {dataset_id} ({config}, {split}) has no column {column!r}; columns: {ds.column_names}")
    return list(clean_hub_lines(ds[column], max_lines))


def load_local_text(path: str | os.PathLike, max_lines: int | None = None) -> list[str]:
    """Sentences of a local .txt file or of every .txt file under a folder (sorted), one per line.

    Text is split into paragraphs at blank lines (hard-wrapped books are joined), Project Gutenberg
    headers are removed, and each paragraph is split into sentences.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise ValueError(f"no .txt files under {path}")
    elif path.is_file():
        files = [path]
    else:
        raise FileNotFoundError(f"local text source not found: {path}")
    out: list[str] = []
    for f in files:
        text = strip_gutenberg(f.read_text(encoding="utf-8", errors="replace"))
        for par in paragraphs(text.split("\n")):
            out.extend(s for s in split_sentences(par) if s)
            if max_lines is not None and len(out) >= max_lines:
                return out[:max_lines]
    return out


def text_role_lines(spec: dict) -> list[str]:
    """Lines for one text role from its config entry ({source: hub, id, ...} or {source: local, path})."""
    source = spec.get("source")
    if source == "hub":
        return load_hub_text(spec["id"], spec.get("config"), spec.get("split", "train"),
                             spec.get("column", "text"), spec.get("max_lines"))
    if source == "local":
        return load_local_text(spec["path"], spec.get("max_lines"))
    raise ValueError(f"hubdata handles sources 'hub' and 'local', not {source!r} (embedded texts: permerge.embedded)")


def write_text_role(spec: dict, out: str | os.PathLike) -> int:
    n = write_lines(text_role_lines(spec), out)
    if n == 0:
        raise ValueError(f"text role from {spec} is empty")
    return n


def export_glue_task(task: str, outputs: dict[str, str | os.PathLike], hub_id: str = "nyu-mll/glue") -> dict[str, int]:
    """Write the GLUE splits of ``task`` (split -> jsonl path) from the hub, with the stand-ins' columns.

    Rows labelled -1 (GLUE's hidden test labels) are dropped; ``idx`` is kept from the hub.
    """
    if task not in TASKS:
        raise ValueError(f"unknown GLUE task {task!r}; expected one of {sorted(TASKS)}")
    info = TASKS[task]
    counts = {}
    for split, out in outputs.items():
        if split not in info.splits:
            raise ValueError(f"task {task} has no split {split!r} (splits: {info.splits})")
        ds = load_hub_dataset(hub_id, task, split)  # nyu-mll/glue uses the same split names
        missing = [c for c in (*info.text_keys, "label") if c not in ds.column_names]
        if missing:
            raise ValueError(f"{hub_id}/{task} split {split}: columns {missing} missing (have {ds.column_names})")

        def rows():
            for i, r in enumerate(ds):
                label = r["label"]
                if info.num_labels > 1 and int(label) < 0:
                    continue  # test rows
                row = {k: r[k] for k in info.text_keys}
                row["label"] = float(label) if info.num_labels == 1 else int(label)
                row["idx"] = int(r.get("idx", i))
                yield row

        counts[split] = write_jsonl(rows(), out)
        log.info("%s/%s %s: %d rows -> %s", hub_id, task, split, counts[split], out)
    if set(outputs) >= set(info.splits):
        validate_task_files(task, outputs)
    return counts
