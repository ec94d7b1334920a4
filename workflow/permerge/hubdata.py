"""Paper-configuration data: text roles and GLUE tasks from the HuggingFace hub or local files.

These are the counterparts of :mod:`permerge.data.roles` and :mod:`permerge.data.standins`; they write the same
files (``results/data/text/{role}.txt``, ``results/data/glue/{task}/{split}.jsonl``) so that the rest of
the workflow does not care where the data came from. Hub access needs network: with
``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE`` set (the embedded configuration sets them) a hub load fails
at once and is reported as :class:`HubUnavailable`, naming the dataset id and revision.

A text role may be a uniform random sample of a whole split (``sample``/``sample_seed``: the paper samples
its ~1M Books-corpus sentences across the corpus), written in random order so that any prefix of the file is
itself a uniform sample. tests/hub_fixtures.py holds offline copies of the hub repositories' layouts.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from .data.jsonl import validate_task_files, write_jsonl
from .data.text import paragraphs, split_sentences, strip_gutenberg, write_lines
from .tasks import TASKS

log = logging.getLogger(__name__)


class HubUnavailable(RuntimeError):
    """A HuggingFace hub dataset could not be loaded (offline mode, no network, unknown id or revision)."""


LOCAL_TEXT_ALTERNATIVE = (
    "or give this text role as {source: local, path: /path/to/books/} (a folder of .txt books, read offline)"
)


def _hub_error(
    dataset_id: str, config: str | None, err: Exception, revision: str | None = None, alternative: str | None = None
) -> HubUnavailable:
    what = dataset_id + (f" (config {config})" if config else "") + (f" at revision {revision}" if revision else "")
    cause = f"{type(err).__name__}: {err}"
    if os.path.isdir(dataset_id):  # a local repository copy (e.g. the test fixtures): no hub involved
        return HubUnavailable(f"cannot load the dataset {what} (a local directory): {cause}")
    offline = [v for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if os.environ.get(v, "0") not in ("", "0")]
    # Offline mode is the usual cause, but say what datasets said too (a wrong config or split also fails).
    why = f"offline mode is on ({', '.join(offline)} set); {cause}" if offline else cause
    return HubUnavailable(
        f"cannot load the HuggingFace dataset {what}: {why}. This data role needs the hub (network access); "
        "the embedded configuration (config.yaml, data sources 'embedded') runs fully offline"
        + (f"; {alternative}" if alternative else "")
        + "."
    )


def load_hub_dataset(
    dataset_id: str,
    config: str | None = None,
    split: str | None = None,
    revision: str | None = None,
    alternative: str | None = None,
):
    """``datasets.load_dataset`` with hub failures turned into :class:`HubUnavailable`.

    ``revision`` (a branch, tag or commit, e.g. ``refs/convert/parquet``, the hub's parquet export) is passed
    only when set. ``dataset_id`` may also be a local directory laid out like a hub repository (the test
    fixtures); datasets ignores the revision there.
    """
    import datasets

    kwargs = {"revision": revision} if revision else {}
    try:
        return datasets.load_dataset(dataset_id, config, split=split, **kwargs)
    except Exception as err:  # ConnectionError / OSError offline, DatasetNotFoundError, script datasets, ...
        raise _hub_error(dataset_id, config, err, revision, alternative) from err


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


def sample_indices(n_rows: int, sample: int, seed: int = 0) -> np.ndarray:
    """``sample`` distinct row indices drawn uniformly from ``range(n_rows)`` with
    ``numpy.random.default_rng(seed)``, in the order drawn (random), so that every prefix of the result is
    itself a uniform sample without replacement."""
    if not isinstance(sample, (int, np.integer)) or isinstance(sample, bool) or sample < 1:
        raise ValueError(f"sample must be a positive integer, not {sample!r}")
    if sample > n_rows:
        raise ValueError(f"cannot sample {sample} rows from a split of {n_rows} rows")
    return np.random.default_rng(seed).choice(n_rows, size=sample, replace=False, shuffle=True)


def _column_texts(ds, column: str, batch_size: int = 10_000) -> Iterator[str]:
    # Batched reads: one Arrow slice per batch instead of one Python row at a time (1M sampled rows).
    for batch in ds.select_columns([column]).iter(batch_size=batch_size):
        yield from batch[column]


def load_hub_text(
    dataset_id: str,
    config: str | None = None,
    split: str = "train",
    column: str = "text",
    max_lines: int | None = None,
    *,
    revision: str | None = None,
    sample: int | None = None,
    sample_seed: int = 0,
) -> list[str]:
    """Lines of one text column of a hub dataset (e.g. Salesforce/wikitext / wikitext-103-raw-v1 / validation).

    With ``sample``, ``sample`` rows are drawn uniformly without replacement across the whole split
    (:func:`sample_indices` with ``sample_seed``) and read in that random order (``ds.select``); empty rows
    and Wikitext headings are then skipped as without sampling, and ``max_lines`` keeps the first lines of
    the result.
    """
    ds = load_hub_dataset(dataset_id, config, split, revision, alternative=LOCAL_TEXT_ALTERNATIVE)
    what = f"{dataset_id} ({config or 'default'}, {split}{', ' + revision if revision else ''})"
    if column not in ds.column_names:
        raise ValueError(f"dataset {what} has no column {column!r}; columns: {ds.column_names}")
    n_rows = len(ds)
    if sample is not None:
        try:
            idx = sample_indices(n_rows, sample, sample_seed)
        except ValueError as err:
            raise ValueError(f"dataset {what}, data.*.sample: {err}") from None
        ds = ds.select(idx)
        log.info(
            "%s: %d rows in the split; sampled %d rows uniformly (sample_seed %d), in random order",
            what,
            n_rows,
            sample,
            sample_seed,
        )
    else:
        log.info(
            "%s: %d rows in the split; reading them in order%s",
            what,
            n_rows,
            f" (first {max_lines} lines)" if max_lines else "",
        )
    lines = list(clean_hub_lines(_column_texts(ds, column), max_lines))
    log.info("%s: %d lines kept", what, len(lines))
    return lines


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
    """Lines for one text role from its config entry: ``{source: hub, id, config, revision, split, column,
    sample, sample_seed, max_lines}`` or ``{source: local, path, sample, sample_seed, max_lines}``."""
    source = spec.get("source")
    if source == "hub":
        sample_seed = spec.get("sample_seed")
        return load_hub_text(
            spec["id"],
            spec.get("config"),
            spec.get("split", "train"),
            spec.get("column", "text"),
            spec.get("max_lines"),
            revision=spec.get("revision"),
            sample=spec.get("sample"),
            sample_seed=0 if sample_seed is None else sample_seed,
        )
    if source == "local":
        if spec.get("sample") is None:
            return load_local_text(spec["path"], spec.get("max_lines"))
        # Same meaning as for the hub: a uniform sample of the sentences, in random order, then max_lines.
        lines = load_local_text(spec["path"])
        seed = spec.get("sample_seed")
        try:
            idx = sample_indices(len(lines), spec["sample"], 0 if seed is None else seed)
        except ValueError as err:
            raise ValueError(f"local text {spec['path']} ({len(lines)} sentences): {err}") from None
        log.info(
            "%s: %d sentences; sampled %d uniformly (sample_seed %s), in random order",
            spec["path"],
            len(lines),
            len(idx),
            0 if seed is None else seed,
        )
        lines = [lines[i] for i in idx]
        return lines[: spec["max_lines"]] if spec.get("max_lines") else lines
    raise ValueError(f"hubdata handles sources 'hub' and 'local', not {source!r} (embedded texts: permerge.data.roles)")


def write_text_role(spec: dict, out: str | os.PathLike) -> int:
    n = write_lines(text_role_lines(spec), out)
    if n == 0:
        raise ValueError(f"text role from {spec} is empty")
    return n


def export_glue_task(
    task: str, outputs: dict[str, str | os.PathLike], hub_id: str = "nyu-mll/glue", revision: str | None = None
) -> dict[str, int]:
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
        ds = load_hub_dataset(hub_id, task, split, revision)  # nyu-mll/glue uses the same split names
        missing = [c for c in (*info.text_keys, "label") if c not in ds.column_names]
        if missing:
            raise ValueError(f"{hub_id}/{task} split {split}: columns {missing} missing (have {ds.column_names})")

        def rows(ds=ds):
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
