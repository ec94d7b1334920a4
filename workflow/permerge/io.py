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
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    # Progress bars of weight loading would land in snakemake's own output, not the job's log.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        import transformers

        transformers.utils.logging.disable_progress_bar()
    except (ImportError, AttributeError):
        pass
    return logging.getLogger("permerge")
