"""The embedded archives a stand-in task is built from, parsed lazily and at most once per process
(``Resources``): the novels' sentences and vocabulary, the sentiment lexicon, the two Bibles, WordNet."""

from __future__ import annotations

import functools
import os
from collections import Counter
from collections.abc import Mapping

from . import rdata
from .roles import novel_corpus
from .sources import SOURCES
from .sword import Verse, bible_verses
from .text import words
from .wordnet import WordNet, wordnet_index
from .wordnet import wordnet as read_wordnet


class Resources:
    """Lazily parsed sources, from a mapping source name -> archive path."""

    def __init__(self, paths: Mapping[str, str | os.PathLike]):
        self.paths = {k: str(v) for k, v in paths.items()}

    def _need(self, name: str) -> str:
        if name not in self.paths:
            raise ValueError(f"archive {name!r} ({SOURCES[name].filename}) is needed but was not given")
        return self.paths[name]

    @functools.cached_property
    def novel_sentences(self) -> list[str]:
        seen, out = set(), []
        for _, sents in novel_corpus({k: self._need(k) for k in ("janeaustenr", "tidytext")}):
            for s in sents:
                if s not in seen:
                    seen.add(s)
                    out.append(s)
        return out

    @functools.cached_property
    def vocab(self) -> Counter:
        """Lower-case word counts of the novels (what the pre-trained models have read)."""
        return Counter(w for s in self.novel_sentences for w in words(s))

    @functools.cached_property
    def lexicon(self) -> dict[str, str]:
        return rdata.bing_lexicon(self._need("tidytext"))

    @functools.cached_property
    def negators(self) -> set[str]:
        return {n for n in rdata.negators(self._need("tidytext")) if " " not in n}

    @functools.cached_property
    def bible(self) -> list[tuple[Verse, Verse]]:
        """(KJV, WEB) verse pairs with the same reference, in canonical (KJV) order."""
        kjv = bible_verses(self._need("kjv"))
        web = {v.ref: v for v in bible_verses(self._need("web"))}
        return [(k, web[k.ref]) for k in kjv if k.ref in web]

    @functools.cached_property
    def web(self) -> list[Verse]:
        return bible_verses(self._need("web"))

    @functools.cached_property
    def web_by_ref(self) -> dict[str, Verse]:
        return {w.ref: w for _, w in self.bible}

    @functools.cached_property
    def wordnet(self) -> WordNet:
        # The novels' vocabulary steers word choice (words the pre-trained models have read).
        return WordNet(read_wordnet(self._need("wordnet")), wordnet_index(self._need("wordnet")), self.vocab)
