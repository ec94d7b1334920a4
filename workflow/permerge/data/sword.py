"""SWORD zText Bible modules (``ot|nt.bzs/.bzv/.bzz``) with OSIS markup, read from the pinned packages."""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import struct
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

from .archives import archive_glob
from .text import normalize


@dataclasses.dataclass(frozen=True)
class Verse:
    ref: str  # "Gen.1.1"
    book: str
    chapter: int
    verse: int
    text: str  # plain text
    lemmas: tuple[str, ...]  # Strong's numbers in order, e.g. ("H7225", "H0430", ...)


_NOTE = re.compile(r"<note\b[^>]*>.*?</note>", re.DOTALL)
_TITLE = re.compile(r"<title\b[^>]*>.*?</title>", re.DOTALL)
_TAG = re.compile(r"<[^>]+>")
_LEMMA = re.compile(r'lemma="([^"]*)"')
_CHAPTER_START = re.compile(r'<chapter\b[^>]*\bsID="([^".]+)\.(\d+)"')
_CHAPTER_END = re.compile(r'<chapter\b[^>]*\beID="')


def osis_to_text(osis: str) -> str:
    text = _NOTE.sub(" ", osis) if "<note" in osis else osis
    text = _TITLE.sub(" ", text) if "<title" in text else text
    text = _TAG.sub("", text)
    text = text.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
    return normalize(text)


_STRONG = re.compile(r"strong:([GH])0*(\d+)")


def osis_lemmas(osis: str) -> tuple[str, ...]:
    """Strong's numbers of the ``<w lemma="strong:H0430">`` tags (outside notes), zero-padded to 4 digits."""
    if "<note" in osis:
        osis = _NOTE.sub(" ", osis)
    return tuple(f"{p}{int(n):04d}" for val in _LEMMA.findall(osis) for p, n in _STRONG.findall(val))


def ztext_entries(bzs: bytes, bzv: bytes, bzz: bytes) -> list[str]:
    """Raw text of every index entry of one testament of a zText module (empty string for empty slots).

    ``.bzs``: 12-byte little-endian entries (offset, compressed size, uncompressed size) of zlib blocks
    in ``.bzz``; ``.bzv``: 10-byte entries (block, offset, size) per versification slot.
    """
    blocks = [struct.unpack_from("<III", bzs, i) for i in range(0, len(bzs) - 11, 12)]
    cache: dict[int, bytes] = {}
    out = []
    for i in range(0, len(bzv) - 9, 10):
        b, off, size = struct.unpack_from("<IIH", bzv, i)
        if size == 0 or b >= len(blocks):
            out.append("")
            continue
        if b not in cache:
            boff, bsize, _ = blocks[b]
            cache[b] = zlib.decompress(bzz[boff : boff + bsize])
        out.append(cache[b][off : off + size].decode("utf-8", "replace"))
    return out


def ztext_verses(entries: Sequence[str]) -> list[Verse]:
    """Verses of one testament, located by the OSIS chapter milestones.

    Each chapter's heading slot carries ``<chapter sID="Book.N"/>``; the slots after it are verses 1, 2, ...
    until the chapter's ``eID`` milestone. Empty slots count (they keep the numbering) but yield no verse.
    """
    out = []
    book, chap, verse = None, None, 0
    for raw in entries:
        m = _CHAPTER_START.search(raw)
        if m and not osis_to_text(raw):
            book, chap, verse = m.group(1), int(m.group(2)), 0
            continue
        if chap is None:
            continue
        verse += 1
        text = osis_to_text(raw)
        if text:
            out.append(Verse(f"{book}.{chap}.{verse}", book, chap, verse, text, osis_lemmas(raw)))
        if _CHAPTER_END.search(raw):
            book, chap = None, None
    return out


def read_ztext(files: Mapping[str, bytes]) -> list[Verse]:
    """All verses of a zText module given its files (``ot.bzs``, ``ot.bzv``, ... keyed by basename)."""
    verses = []
    for t in ("ot", "nt"):
        if f"{t}.bzv" in files:
            verses += ztext_verses(ztext_entries(files[f"{t}.bzs"], files[f"{t}.bzv"], files[f"{t}.bzz"]))
    return verses


@functools.lru_cache(maxsize=4)
def bible_verses(deb: str | os.PathLike) -> list[Verse]:
    files = archive_glob(deb, r"modules/texts/ztext/[^/]+/(ot|nt)\.bz[svz]$")
    if not files:
        raise ValueError(f"{deb}: no SWORD zText module files")
    return read_ztext({Path(k).name: v for k, v in files.items()})
