"""R data in the pinned r-cran-* packages: lazy-load databases (``Rdata.rdb`` + ``Rdata.rdx``) and ``.rda``
files, through ``rdata``; and the tidytext lexicon objects read from them.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import struct
import warnings
import zlib

from .archives import archive_member


def _r_convert(raw: bytes):
    import rdata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Unknown file type: assumed RDS", tibble constructor notes
        return rdata.conversion.convert(rdata.parser.parse_data(raw))


def read_rdx(rdx: bytes) -> dict[str, tuple[int, int]]:
    """Index of an R lazy-load DB: object name -> (offset, length) in the .rdb.

    ``NAME.rdx`` is a (gzip/zlib-compressed) R serialization of a list with ``variables`` (name ->
    integer(2) offset, length), ``references`` and ``compressed``.
    """
    if rdx[:2] == b"\x1f\x8b":
        raw = gzip.decompress(rdx)
    elif rdx[:2] in (b"X\n", b"A\n", b"B\n"):
        raw = rdx
    else:
        raw = zlib.decompress(rdx[4:])
    index = _r_convert(raw)
    return {str(k): (int(v[0]), int(v[1])) for k, v in index["variables"].items()}


def read_rdb_object(rdb: bytes, offset: int, length: int):
    """One object of an R lazy-load DB: 4-byte big-endian raw length, then a compressed serialization.

    R's ``compress=TRUE`` writes a zlib stream straight after the length; ``compress=2|3`` write a type
    byte first ('Z' zlib, '2' bzip2, 'X' xz, '0' stored).
    """
    blob = rdb[offset : offset + length]
    if len(blob) < 5:
        raise ValueError(f"truncated lazy-load DB record at offset {offset}")
    (size,) = struct.unpack(">I", blob[:4])
    body = blob[4:]
    if body[:1] == b"Z":
        raw = zlib.decompress(body[1:])
    elif body[:1] == b"2":
        raw = bz2.decompress(body[1:])
    elif body[:1] == b"X":
        raw = lzma.decompress(body[1:])
    elif body[:1] == b"0":
        raw = body[1:]
    else:
        raw = zlib.decompress(body)
    if len(raw) != size:
        raise ValueError(f"lazy-load DB record at offset {offset}: expected {size} bytes, got {len(raw)}")
    return _r_convert(raw)


def read_lazyload(rdb: bytes, rdx: bytes, name: str):
    index = read_rdx(rdx)
    if name not in index:
        raise KeyError(f"object {name!r} not in lazy-load DB (has {sorted(index)})")
    return read_rdb_object(rdb, *index[name])


def read_rda(raw: bytes) -> dict:
    """Objects of an .rda/.RData file (any of gzip/bzip2/xz or uncompressed)."""
    for magic, fn in ((b"\x1f\x8b", gzip.decompress), (b"BZh", bz2.decompress), (b"\xfd7zXZ", lzma.decompress)):
        if raw.startswith(magic):
            raw = fn(raw)
            break
    return _r_convert(raw)


def package_rdata(deb: str | os.PathLike, name: str):
    """Object ``name`` from the lazy-load data DB (``data/Rdata.rdb``) of an r-cran-* package."""
    return read_lazyload(archive_member(deb, "data/Rdata.rdb"), archive_member(deb, "data/Rdata.rdx"), name)


def bing_lexicon(deb: str | os.PathLike) -> dict[str, str]:
    """Bing (Hu & Liu) sentiment lexicon from tidytext: word -> 'positive' | 'negative'."""
    df = package_rdata(deb, "sentiments")
    return {str(w): str(s) for w, s in zip(df["word"], df["sentiment"])}


def negators(deb: str | os.PathLike) -> list[str]:
    """Negator phrases of tidytext's ``nma_words`` (e.g. 'not', 'never', 'could not')."""
    df = package_rdata(deb, "nma_words")
    return sorted(str(w) for w, m in zip(df["word"], df["modifier"]) if str(m) == "negator")
