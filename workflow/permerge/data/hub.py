"""Paper-configuration data: text roles and GLUE tasks from the HuggingFace hub or local files.

These are the counterparts of :mod:`permerge.data.roles` and :mod:`permerge.data.standins`; they write the same
files (``results/data/text/{role}.txt``, ``results/data/glue/{task}/{split}.jsonl``) so that the rest of
the workflow does not care where the data came from. Hub access needs network: with
``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE`` set (the embedded configuration sets them) a hub load fails
at once and is reported as :class:`HubUnavailable`, naming the dataset id and revision.

A text role may be a uniform random sample of a whole split (``sample``/``sample_seed``: the paper samples
its ~1M Books-corpus sentences across the corpus), written in random order so that any prefix of the file is
itself a uniform sample. tests/hub_fixtures.py holds offline copies of the hub repositories' layouts.

A text's split is checked against the size the dataset publishes (its own split metadata, or ``expected_rows``
from the configuration) and refused when it comes from a partial parquet export (:func:`check_complete`);
:func:`write_text_role` records where it came from (requested and resolved revision) next to the text.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from permerge.data.jsonl import validate_task_files, write_jsonl
from permerge.data.text import paragraphs, split_sentences, strip_gutenberg, write_lines
from permerge.tasks import TASKS

log = logging.getLogger(__name__)


class HubUnavailable(RuntimeError):
    """A HuggingFace hub dataset could not be loaded (offline mode, no network, unknown id or revision)."""


class IncompleteDataset(ValueError):
    """A loaded split holds another number of rows than the dataset publishes (e.g. the hub's partial parquet
    export, ``partial-train``, which datasets loads as ``train``)."""


# The hub's parquet conversion (refs/convert/parquet) of a large dataset may stop after the first 5 GB and
# name its folders partial-{split}; datasets infers the split name from the folder and loads it as {split}.
PARTIAL_PREFIX = "partial-"


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


def load_hub_split(
    dataset_id: str,
    config: str | None = None,
    split: str = "train",
    revision: str | None = None,
    alternative: str | None = None,
):
    """``(dataset, builder, declared)`` of one split: what ``datasets.load_dataset(dataset_id, config,
    split=split, revision=revision)`` reads, through its builder so that the caller also sees the data files
    of each split, the resolved revision (``builder.hash``: for a hub dataset, the commit the revision
    resolved to) and ``declared``, the split sizes the dataset's own metadata declares (its card's
    ``dataset_info``; read before preparing, which overwrites them with the counts found). The sizes are
    checked by :func:`check_complete` (with a message that names both counts), not by datasets.
    """
    import datasets

    kwargs = {"revision": revision} if revision else {}
    try:
        builder = datasets.load_dataset_builder(dataset_id, config, **kwargs)
        declared = {str(k): int(v.num_examples) for k, v in (builder.info.splits or {}).items() if v.num_examples}
        builder.download_and_prepare(verification_mode="no_checks")
        return builder.as_dataset(split=split), builder, declared
    except Exception as err:  # ConnectionError / OSError offline, DatasetNotFoundError, unknown split, ...
        raise _hub_error(dataset_id, config, err, revision, alternative) from err


def published_rows(declared: dict[str, int], split: str, expected_rows: int | None = None) -> list[tuple[int, str]]:
    """The sizes the split should have, each with where it comes from: the dataset's own metadata (its card's
    ``dataset_info`` / ``dataset_infos.json``, when it has one) and ``expected_rows`` from the configuration
    (for exports without metadata, e.g. a hub ``refs/convert/parquet`` branch)."""
    out = []
    if declared.get(split):
        out.append((declared[split], "the dataset's own split metadata (dataset_info)"))
    if expected_rows is not None:
        out.append((int(expected_rows), "expected_rows in the configuration"))
    return out


def partial_folders(builder, split: str) -> list[str]:
    """The ``partial-*`` folders among the data files of ``split`` (the hub's truncated parquet export)."""
    files = (builder.config.data_files or {}).get(split) or []
    return sorted(
        {part for f in files for part in str(f).replace("\\", "/").split("/") if part.startswith(PARTIAL_PREFIX)}
    )


def check_complete(
    dataset_id: str,
    revision: str | None,
    split: str,
    n_rows: int,
    builder,
    declared: dict[str, int],
    expected_rows: int | None = None,
) -> int | None:
    """Raise :class:`IncompleteDataset` unless the loaded split holds every row the dataset publishes and
    comes from a complete export; returns the published size (None when nothing publishes one)."""
    sizes = published_rows(declared, split, expected_rows)
    partial = partial_folders(builder, split)
    wrong = [(n, src) for n, src in sizes if n != n_rows]
    if not wrong and not partial:
        return sizes[0][0] if sizes else None
    what = f"dataset {dataset_id} at revision {revision or 'the default branch'}, split {split}"
    if wrong:
        published = "; ".join(f"{n} rows published ({src})" for n, src in wrong)
        why = f"{n_rows} rows loaded, but {published}"
    else:
        why = f"{n_rows} rows loaded; the published size is unknown (set expected_rows)"
    if partial:
        why += (
            f"; the data files are a partial export ({', '.join(partial)}: the hub converted only the first part "
            "of the dataset to parquet)"
        )
    raise IncompleteDataset(
        f"{what}: {why}. Refusing an incomplete split: read a revision that holds the whole split (e.g. the "
        "default branch, revision: null), or give the text as {source: local, path: ...}"
    )


def provenance(dataset_id: str, config: str | None, split: str, revision: str | None, builder, n_rows: int) -> dict:
    """Where a hub text came from: the id, config, split, requested revision and the resolved one (the commit
    datasets resolved the revision to, on the hub or, offline, in its cache; "local directory" for a local
    repository copy such as the test fixtures, which has no commit)."""
    local = os.path.isdir(dataset_id)
    return {
        "source": "hub",
        "id": dataset_id,
        "config": config,
        "split": split,
        "revision": revision,
        "resolved_revision": "local directory" if local else builder.hash,
        "split_rows": n_rows,
    }


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


def hub_text(
    dataset_id: str,
    config: str | None = None,
    split: str = "train",
    column: str = "text",
    max_lines: int | None = None,
    *,
    revision: str | None = None,
    sample: int | None = None,
    sample_seed: int = 0,
    expected_rows: int | None = None,
) -> tuple[list[str], dict]:
    """``(lines, provenance)`` of one text column of a hub dataset (e.g. Salesforce/wikitext /
    wikitext-103-raw-v1 / validation): see :func:`load_hub_text`; ``provenance`` as :func:`provenance`
    returns it, plus the published size the split was checked against."""
    ds, builder, declared = load_hub_split(dataset_id, config, split, revision, alternative=LOCAL_TEXT_ALTERNATIVE)
    what = f"{dataset_id} ({config or 'default'}, {split}{', ' + revision if revision else ''})"
    if column not in ds.column_names:
        raise ValueError(f"dataset {what} has no column {column!r}; columns: {ds.column_names}")
    n_rows = len(ds)
    published = check_complete(dataset_id, revision, split, n_rows, builder, declared, expected_rows)
    meta = {**provenance(dataset_id, config, split, revision, builder, n_rows), "published_rows": published}
    log.info("%s: resolved revision %s", what, meta["resolved_revision"])
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
    return lines, meta


def load_hub_text(dataset_id: str, *args, **kwargs) -> list[str]:
    """Lines of one text column of a hub dataset (e.g. Salesforce/wikitext / wikitext-103-raw-v1 / validation).

    The split's row count is checked against the dataset's published size (:func:`check_complete`: its own
    split metadata, ``expected_rows``, and no ``partial-*`` export folder) before anything is read.

    With ``sample``, ``sample`` rows are drawn uniformly without replacement across the whole split
    (:func:`sample_indices` with ``sample_seed``) and read in that random order (``ds.select``); empty rows
    and Wikitext headings are then skipped as without sampling, and ``max_lines`` keeps the first lines of
    the result.
    """
    return hub_text(dataset_id, *args, **kwargs)[0]


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


def text_role(spec: dict) -> tuple[list[str], dict]:
    """``(lines, provenance)`` for one text role from its config entry: ``{source: hub, id, config, revision,
    split, column, sample, sample_seed, max_lines, expected_rows}`` or ``{source: local, path, sample,
    sample_seed, max_lines}``."""
    source = spec.get("source")
    if source == "hub":
        sample_seed = spec.get("sample_seed")
        return hub_text(
            spec["id"],
            spec.get("config"),
            spec.get("split", "train"),
            spec.get("column", "text"),
            spec.get("max_lines"),
            revision=spec.get("revision"),
            sample=spec.get("sample"),
            sample_seed=0 if sample_seed is None else sample_seed,
            expected_rows=spec.get("expected_rows"),
        )
    if source == "local":
        meta = {"source": "local", "path": os.path.abspath(spec["path"]), "resolved_revision": "local directory"}
        if spec.get("sample") is None:
            return load_local_text(spec["path"], spec.get("max_lines")), meta
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
        return (lines[: spec["max_lines"]] if spec.get("max_lines") else lines), meta
    raise ValueError(f"hubdata handles sources 'hub' and 'local', not {source!r} (embedded texts: permerge.data.roles)")


def text_role_lines(spec: dict) -> list[str]:
    """Lines for one text role from its config entry (:func:`text_role` without the provenance)."""
    return text_role(spec)[0]


def write_text_role(spec: dict, out: str | os.PathLike, meta_out: str | os.PathLike | None = None) -> int:
    """Write the role's lines to ``out`` and, with ``meta_out``, its provenance (:func:`text_role`) as JSON:
    the requested and the resolved revision, the split's rows and the published size they matched, and the
    number of lines written. Returns the number of lines."""
    lines, meta = text_role(spec)
    n = write_lines(lines, out)
    if n == 0:
        raise ValueError(f"text role from {spec} is empty")
    if meta_out is not None:
        Path(meta_out).write_text(json.dumps({**meta, "lines": n}, indent=2, sort_keys=True) + "\n", encoding="utf-8")
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
