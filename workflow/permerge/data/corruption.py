"""Corrupting a sentence (word swap, move, drop, duplication): the CoLA stand-in's unacceptable examples."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

TOKEN = re.compile(r"[A-Za-z0-9]+(?:['-][A-Za-z0-9]+)*|[^\sA-Za-z0-9]")
_DROPPABLE = {
    "the",
    "a",
    "an",
    "of",
    "to",
    "in",
    "was",
    "is",
    "be",
    "have",
    "had",
    "that",
    "with",
    "for",
    "at",
    "on",
    "by",
    "from",
    "as",
    "were",
    "are",
    "been",
    "into",
    "upon",
    "would",
    "could",
    "should",
}


def detok(tokens: Sequence[str]) -> str:
    text = " ".join(tokens)
    text = re.sub(r" ([,.;:!?)\]])", r"\1", text)
    text = re.sub(r"([(\[]) ", r"\1", text)
    text = re.sub(r" (['-]) ", r"\1", text)
    return text


def corrupt(
    tokens: Sequence[str], rng: random.Random, lower_vocab: set[str] = frozenset()
) -> tuple[list[str], str] | None:
    """One corruption of a tokenised sentence: swap, move, drop (function word) or duplicate a word."""
    toks = list(tokens)
    idx = [i for i, t in enumerate(toks) if t[0].isalnum()]
    if len(idx) < 4:
        return None
    kind = rng.choice(["swap", "move", "drop", "dup"])
    if kind == "swap":
        cands = [i for i in idx[:-1] if i + 1 in idx and toks[i].lower() != toks[i + 1].lower()]
        if not cands:
            return None
        i = rng.choice(cands)
        toks[i], toks[i + 1] = toks[i + 1], toks[i]
    elif kind == "move":
        i = rng.choice(idx)
        w = toks.pop(i)
        last = max(k for k, t in enumerate(toks) if t[0].isalnum())  # stay before the final punctuation
        js = [k for k in range(last + 2) if abs(k - i) >= 2]
        if not js:
            return None
        toks.insert(rng.choice(js), w)
    elif kind == "drop":
        cands = [i for i in idx if toks[i].lower() in _DROPPABLE]
        if not cands:
            return None
        toks.pop(rng.choice(cands))
    else:
        i = rng.choice(idx)
        toks.insert(i, toks[i])
    # Sentence-initial capitalisation stays natural: the new first word is capitalised and the old one,
    # if it moved and is a common word, lower-cased (no capital-letter cue for the corruption).
    first_old = next(k for k, t in enumerate(tokens) if t[0].isalnum())
    first_new = next(k for k, t in enumerate(toks) if t[0].isalnum())
    if toks[first_new] != tokens[first_old]:
        word0 = tokens[first_old]
        for k, t in enumerate(toks):
            if k != first_new and t == word0 and word0.lower() in lower_vocab:
                toks[k] = word0.lower()
                break
        toks[first_new] = toks[first_new][0].upper() + toks[first_new][1:]
    if toks == list(tokens):
        return None
    return toks, kind
