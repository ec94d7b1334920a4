"""Sentiment of a sentence from the Bing lexicon (tidytext) with negation: the SST-2 stand-in's labels."""

from __future__ import annotations

from collections.abc import Mapping

from .text import words

# Lexicon entries that in these novels are mostly names, titles or function words.
_SENTIMENT_SKIP = {
    "miss",
    "like",
    "well",
    "pretty",
    "right",
    "work",
    "works",
    "master",
    "mercy",
    "grace",
    "fine",
    "patient",
    "fair",
    "dear",
    "good",
    "great",
    "free",
    "lord",
    "gentle",
}


def sentiment_score(text: str, lexicon: Mapping[str, str], negators: set[str]) -> int:
    """Positive minus negative lexicon words; a word within three words after a negator counts reversed."""
    toks = words(text)
    score = 0
    for i, w in enumerate(toks):
        pol = lexicon.get(w)
        if pol is None or w in _SENTIMENT_SKIP:
            continue
        s = 1 if pol == "positive" else -1
        if any(t in negators or t.endswith("n't") for t in toks[max(0, i - 3) : i]):
            s = -s
        score += s
    return score
