"""Plain-text handling: normalisation, sentence splitting, paragraphs, headings, Project Gutenberg
header/licence removal, and writing one line per sentence.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable, Sequence

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


def write_lines(lines: Iterable[str], path: str | os.PathLike) -> int:
    n = 0
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            line = line.replace("\n", " ").strip()
            if line:
                f.write(line + "\n")
                n += 1
    return n


_WORD = re.compile(r"[A-Za-z]+(?:['-][A-Za-z]+)*")


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]
