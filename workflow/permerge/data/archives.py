"""Members of the pinned archives, read in memory: a ``.deb`` (an ``ar`` archive holding ``data.tar.xz``)
or a ``.tar.gz`` sdist. Nothing is extracted to disk.
"""

from __future__ import annotations

import bz2
import functools
import gzip
import io
import lzma
import os
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path


def _ar_members(data: bytes) -> Iterator[tuple[str, bytes]]:
    if not data.startswith(b"!<arch>\n"):
        raise ValueError("not an ar archive (a .deb starts with '!<arch>')")
    pos = 8
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        name = header[:16].decode("ascii").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        pos += 60
        yield name, data[pos : pos + size]
        pos += size + (size & 1)


def _open_tar(name: str, blob: bytes) -> tarfile.TarFile:
    if name.endswith(".xz"):
        blob = lzma.decompress(blob)
    elif name.endswith(".gz"):
        blob = gzip.decompress(blob)
    elif name.endswith(".bz2"):
        blob = bz2.decompress(blob)
    elif name.endswith(".zst"):  # pragma: no cover - not used by the pinned packages
        raise ValueError("zstd-compressed .deb members are not supported; use an xz-compressed build")
    return tarfile.open(fileobj=io.BytesIO(blob), mode="r:")


@functools.lru_cache(maxsize=8)
def _archive_files(path: str) -> dict[str, bytes]:
    """All regular files in a .deb's data.tar or an sdist, keyed by path without a leading './'."""
    raw = Path(path).read_bytes()
    if raw.startswith(b"!<arch>\n"):
        tars = [_open_tar(n, b) for n, b in _ar_members(raw) if n.startswith("data.tar")]
        if not tars:
            raise ValueError(f"{path}: no data.tar member")
        tar = tars[0]
    else:
        tar = tarfile.open(fileobj=io.BytesIO(raw), mode="r:*")
    out = {}
    for m in tar.getmembers():
        if m.isfile():
            out[m.name.removeprefix("./")] = tar.extractfile(m).read()
    return out


def archive_member(path: str | os.PathLike, suffix: str) -> bytes:
    """The one file in the archive whose path ends with ``suffix``."""
    files = _archive_files(str(path))
    hits = [k for k in files if k == suffix or k.endswith("/" + suffix.lstrip("/"))]
    if len(hits) != 1:
        raise KeyError(f"{path}: {len(hits)} members match {suffix!r}")
    return files[hits[0]]


def archive_glob(path: str | os.PathLike, pattern: str) -> dict[str, bytes]:
    rx = re.compile(pattern)
    return {k: v for k, v in sorted(_archive_files(str(path)).items()) if rx.search(k)}
