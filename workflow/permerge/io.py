"""Small I/O helpers shared by scripts: atomic outputs and per-job logging."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, is_dir: bool = False):
    """Yield a temporary sibling of `path`; move it into place only if the block succeeds.

    An interrupted or failed job therefore never leaves a half-written file that looks complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    target = tmp if is_dir else tmp / path.name
    try:
        yield target
        if path.is_dir() and is_dir:
            shutil.rmtree(path)
        os.replace(target, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


PARTIAL = ".partial"  # suffix of a resumable job's work folder (a hidden sibling of its output)


def inputs_fingerprint(paths) -> list:
    """What identifies a job's inputs cheaply: each file's (path, size, mtime) and, for a folder, its files'
    (no content is read: a checkpoint at bert-base is 440 MB)."""
    out = []
    for p in map(Path, paths):
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            st = f.stat()
            out.append([str(f), st.st_size, st.st_mtime_ns])
    return out


def job_fingerprint(snakemake) -> dict:
    """A Snakemake job's params, wildcards and inputs_fingerprint of its inputs, for resumable_folder."""

    def fields(obj):
        return dict(obj.items()) if hasattr(obj, "items") else dict(vars(obj))

    paths = []
    for value in fields(snakemake.input).values():
        paths += [value] if isinstance(value, (str, os.PathLike)) else list(value)
    return {
        "params": fields(snakemake.params),
        "wildcards": fields(snakemake.wildcards),
        "inputs": inputs_fingerprint(paths),
    }


@contextlib.contextmanager
def resumable_folder(path: str | os.PathLike, fingerprint, log=None):
    """Yield a work folder for the output folder `path` that survives an interrupted job: `.{name}.partial`
    beside it, holding a `fingerprint.json` of the job (its params and inputs_fingerprint) and the files
    written so far. A later try of the same job (same fingerprint: a preempted SLURM job, a killed local
    run) finds them and keeps them; any other job starts from an empty folder. When the block succeeds the
    folder, without its fingerprint, replaces `path` whole. Write each file atomically (`atomic_path`) inside
    it, so that a file present there is complete."""
    import json

    path = Path(path)
    work = path.parent / f".{path.name}{PARTIAL}"
    stamp = work / "fingerprint.json"
    text = json.dumps(fingerprint, sort_keys=True, default=str)
    if work.is_dir() and not (stamp.is_file() and stamp.read_text() == text):
        shutil.rmtree(work)  # another job's, or an older version of this one
    if work.is_dir():
        kept = sorted(f.name for f in work.iterdir() if f != stamp and not f.name.startswith("."))
        if log is not None and kept:
            log.info("resuming %s: %d file(s) from an interrupted try kept: %s", path, len(kept), ", ".join(kept))
    else:
        work.mkdir(parents=True)
        stamp.write_text(text)
    yield work
    stamp.unlink()
    for leftover in work.glob(".*"):  # an atomic_path temporary of a killed try
        shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    if path.is_dir():
        shutil.rmtree(path)
    os.replace(work, path)


def setup_job(snakemake=None, *, threads: int | None = None) -> logging.Logger:
    """Configure logging (to the rule's log file when it has one) and torch's thread count."""
    log_file = None
    if snakemake is not None:
        threads = threads or snakemake.threads
        if snakemake.log:
            log_file = str(snakemake.log[0])
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers = [logging.FileHandler(log_file, mode="w")]
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    # Neither torch nor transformers is imported here (seconds per job): a light job (a file copy, a table)
    # stays light. torch reads OMP_NUM_THREADS when first imported; one already imported is set directly.
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(int(threads))
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(int(threads))
    # Progress bars of weight loading would land in snakemake's own output, not the job's log (transformers
    # reads this when imported; one already imported is told directly).
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()
    log = logging.getLogger("permerge")
    # Where the job ran and how it reaches the hub (common.smk: a cluster's compute jobs run offline).
    hub_env = ("PERMERGE_JOB_SITE", "HF_HOME", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    log.info("job environment: %s", ", ".join(f"{k}={os.environ.get(k, '')}" for k in hub_env))
    return log


class DamagedFile(ValueError):
    """An input file is truncated, corrupt or not in the expected encoding; the message names it."""


def check_safetensors(path: str | os.PathLike) -> dict[str, str]:
    """Raise DamagedFile unless `path` is a complete safetensors file: the 8-byte header length, a JSON
    header, and tensor data that ends exactly at the end of the file (a file cut short fails here, by
    name, instead of deep inside a loader). Returns the header's `__metadata__` (no tensor is read)."""
    import json
    import struct

    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise DamagedFile(f"{path}: not a safetensors file ({size} bytes, no header)")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            raise DamagedFile(f"{path}: truncated or not a safetensors file (header of {n} bytes, file of {size})")
        try:
            header = json.loads(fh.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DamagedFile(f"{path}: corrupt safetensors header ({err})") from None
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end != size:
        raise DamagedFile(
            f"{path}: truncated: its tensors need {8 + n + end} bytes, the file has {size}"
            if 8 + n + end > size
            else f"{path}: {size - 8 - n - end} unexpected bytes after the tensors"
        )
    return header.get("__metadata__", {})


def read_text_lines(path: str | os.PathLike, max_lines: int | None = None) -> list[str]:
    """Non-empty stripped lines of a UTF-8 text file; a byte sequence that is not UTF-8 raises DamagedFile
    naming the file and the line."""
    path = Path(path)
    lines: list[str] = []
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError as err:
                raise DamagedFile(f"{path}, line {number}: not UTF-8 ({err.reason} at byte {err.start})") from None
            if line:
                lines.append(line)
                if max_lines is not None and len(lines) >= max_lines:
                    break
    return lines
