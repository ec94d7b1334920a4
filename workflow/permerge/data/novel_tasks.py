"""Stand-in tasks from the novels: SST-2 (lexicon-labelled sentences) and CoLA (real vs corrupted)."""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Mapping

from .corruption import TOKEN, corrupt, detok
from .lexicon import sentiment_score
from .resources import Resources
from .splits import take_balanced

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# SST-2: lexicon-labelled novel sentences
# --------------------------------------------------------------------------------------------------


def build_sst2(res: Resources, sizes: Mapping[str, int], rng: random.Random) -> dict[str, list[dict]]:
    pools = {0: [], 1: []}
    for s in res.novel_sentences:
        n = len(s.split())
        if not 6 <= n <= 40:
            continue
        score = sentiment_score(s, res.lexicon, res.negators)
        if abs(score) >= 2:
            pools[int(score > 0)].append({"sentence": s, "label": int(score > 0)})
    for p in pools.values():
        rng.shuffle(p)
    return take_balanced(pools, sizes, rng)


# --------------------------------------------------------------------------------------------------
# CoLA: real vs corrupted sentences
# --------------------------------------------------------------------------------------------------


def build_cola(res: Resources, sizes: Mapping[str, int], rng: random.Random) -> dict[str, list[dict]]:
    pool = [s for s in res.novel_sentences if 4 <= len(s.split()) <= 20 and s[0].isupper() and '"' not in s]
    rng.shuffle(pool)
    lower_vocab = {t for s in pool for t in TOKEN.findall(s)[1:] if t.islower()}
    total = sum(sizes.values())
    real, fake, i = [], [], 0
    while (len(real) < total // 2 + 1 or len(fake) < total // 2 + 1) and i < len(pool):
        toks = TOKEN.findall(pool[i])
        i += 1
        if len(real) <= len(fake):
            real.append({"sentence": detok(toks), "label": 1})
            continue
        out = corrupt(toks, rng, lower_vocab)
        if out is not None:
            fake.append({"sentence": detok(out[0]), "label": 0, "_kind": out[1]})
    kinds = Counter(r.pop("_kind") for r in fake)
    log.info("cola corruptions: %s", dict(kinds))
    return take_balanced({0: fake, 1: real}, sizes, rng)
