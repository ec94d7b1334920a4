"""Stand-in tasks from the two Bibles (KJV and WEB verse pairs): MRPC, QQP and STS-B."""

from __future__ import annotations

import math
import random
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

from .resources import Resources
from .splits import assign_groups, take_balanced
from .sword import Verse
from .text import split_sentences, words

# --------------------------------------------------------------------------------------------------
# Bible pairs: MRPC, QQP, STS-B
# --------------------------------------------------------------------------------------------------


def clean_verse(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\u00b6", "").replace('"', "")).strip()


def _chapters(res: Resources, min_words: int, max_words: int) -> dict[str, list[tuple[Verse, str, str]]]:
    """Chapter -> [(kjv verse, kjv text, web text)] in verse order, verses of a sensible length only."""
    out, seen = defaultdict(list), set()
    for k, w in res.bible:
        kt, wt = clean_verse(k.text), clean_verse(w.text)
        nk, nw = len(kt.split()), len(wt.split())
        if kt in seen or wt in seen:  # verses repeated verbatim (e.g. Numbers 7) are kept once
            continue
        seen.update((kt, wt))
        if min_words <= nk <= max_words and min_words <= nw <= max_words and 0.5 <= nk / nw <= 2:
            out[f"{k.book}.{k.chapter}"].append((k, kt, wt))
    return dict(out)


def _pair(rng: random.Random, a: str, b: str, keys=("sentence1", "sentence2")) -> dict:
    """Randomly ordered pair (translation is not a cue for the label)."""
    if rng.random() < 0.5:
        a, b = b, a
    return {keys[0]: a, keys[1]: b}


def build_mrpc(res: Resources, sizes: Mapping[str, int], rng: random.Random) -> dict[str, list[dict]]:
    chapters = _chapters(res, 8, 40)
    parts = assign_groups(sorted(chapters), sizes, rng, weight=lambda c: len(chapters[c]))
    out = {}
    for split, names in parts.items():
        pos, neg = [], []
        for c in sorted(names):
            vs = chapters[c]
            content = [set(words(wt)) - _STOP for _, _, wt in vs]
            for i, (_k, kt, wt) in enumerate(vs):
                nb = [j for j in range(max(0, i - 5), min(len(vs), i + 6)) if j != i]
                if rng.random() < 0.5 or not nb:
                    pos.append({**_pair(rng, kt, wt), "label": 1})
                else:
                    # Hard negative: of the nearby verses (within 5), the one sharing most content words.
                    kw = set(words(kt)) - _STOP
                    j = max(nb, key=lambda j: (_overlap(kw, content[j]), -abs(j - i)))
                    neg.append({**_pair(rng, kt, vs[j][2]), "label": 0})
        rng.shuffle(pos)
        rng.shuffle(neg)
        out.update(take_balanced({0: neg, 1: pos}, {split: sizes[split]}, rng))
    return out


def _overlap(a: set[str], b: set[str]) -> float:
    return len(a & b) / max(1, min(len(a), len(b)))


_STOP = {
    "the",
    "and",
    "of",
    "to",
    "in",
    "that",
    "a",
    "is",
    "it",
    "for",
    "be",
    "i",
    "he",
    "his",
    "with",
    "you",
    "not",
    "they",
    "them",
    "shall",
    "will",
    "unto",
    "all",
    "who",
    "which",
    "this",
    "me",
    "my",
    "have",
    "was",
    "are",
    "your",
    "him",
    "from",
    "but",
    "what",
    "why",
    "how",
    "thou",
    "thee",
    "thy",
    "ye",
    "we",
    "our",
    "us",
    "on",
    "by",
    "as",
    "or",
    "so",
    "there",
    "then",
    "their",
    "her",
    "she",
    "an",
    "do",
    "did",
    "does",
    "if",
    "when",
    "where",
    "whom",
    "no",
    "yet",
    "let",
    "may",
    "can",
    "hath",
    "has",
}


def questions_of(text: str) -> list[str]:
    """The question sentences of a verse, each cut to its direct speech ("..., saying, Who is he?")."""
    out = []
    for q in split_sentences(text):
        if not q.endswith("?"):
            continue
        m = list(re.finditer(r"[,:;] (?=[A-Z])", q))
        if m and len(q[m[-1].end() :].split()) >= 3:
            q = q[m[-1].end() :]
        out.append(q[0].upper() + q[1:])
    return out


def build_qqp(res: Resources, sizes: Mapping[str, int], rng: random.Random) -> dict[str, list[dict]]:
    """Question sentences of aligned verses: the KJV and WEB renderings of one question (duplicate) or the
    KJV question with the WEB question of the same book sharing most content words (not duplicate).
    Chapters are assigned to splits; negatives are drawn within the split."""
    chapters, seen = defaultdict(list), set()
    for k, w in res.bible:
        kqs, wqs = questions_of(clean_verse(k.text)), questions_of(clean_verse(w.text))
        if len(kqs) != len(wqs):
            # Unequal counts: only the verse-final questions are known to correspond.
            ends = k.text.rstrip().endswith("?") and w.text.rstrip('" ').endswith("?")
            kqs, wqs = (kqs[-1:], wqs[-1:]) if ends and kqs and wqs else ([], [])
        for kq, wq in zip(kqs, wqs):  # aligned in order
            if kq in seen or wq in seen or kq == wq:  # repeated or identical questions are left out
                continue
            seen.update((kq, wq))
            if 3 <= len(kq.split()) <= 30 and 3 <= len(wq.split()) <= 30:
                chapters[(k.book, k.chapter)].append((kq, wq))
    chapters = {c: v for c, v in chapters.items() if v}
    parts = assign_groups(sorted(chapters), sizes, rng, weight=lambda c: len(chapters[c]))
    out = {}
    for split, names in parts.items():
        books = defaultdict(list)
        for c in sorted(names):
            books[c[0]] += chapters[c]
        pos, neg = [], []
        for b in sorted(books):
            qs = books[b]
            if len(qs) < 2:
                continue
            content = [set(words(wq)) - _STOP for _, wq in qs]
            kcontent = [set(words(kq)) - _STOP for kq, _ in qs]
            for i, (kq, wq) in enumerate(qs):
                # Every question gives one duplicate and one non-duplicate pair (the question alone is no cue).
                pos.append({**_pair(rng, kq, wq, ("question1", "question2")), "label": 1})
                # Hard negative: the other WEB question of the book sharing most content words.
                j = max(
                    (j for j in range(len(qs)) if j != i),
                    key=lambda j: (_overlap(kcontent[i], content[j]), -abs(j - i)),
                )
                neg.append({**_pair(rng, kq, qs[j][1], ("question1", "question2")), "label": 0})
        rng.shuffle(pos)
        rng.shuffle(neg)
        out.update(take_balanced({0: neg, 1: pos}, {split: sizes[split]}, rng))
    return out


def _lemma_weights(res: Resources) -> dict[str, float]:
    df = Counter()
    for k, w in res.bible:
        df.update(set(k.lemmas) | set(w.lemmas))
    n = len(res.bible)
    return {lem: math.log(n / c) for lem, c in df.items()}


def lemma_similarity(a: Sequence[str], b: Sequence[str], weights: Mapping[str, float]) -> float:
    """IDF-weighted Dice overlap of two sets of Strong's numbers (0..1)."""
    sa, sb = set(a), set(b)
    wa = sum(weights.get(x, 0.0) for x in sa)
    wb = sum(weights.get(x, 0.0) for x in sb)
    if wa + wb == 0:
        return 0.0
    return 2 * sum(weights.get(x, 0.0) for x in sa & sb) / (wa + wb)


def stsb_score(sim: float) -> float:
    """Map a lemma similarity to STS-B's 0..5 scale (same-verse pairs land around 4-5), 2 decimals."""
    return round(min(5.0, max(0.0, 5.0 * sim / 0.8)), 2)


def build_stsb(res: Resources, sizes: Mapping[str, int], rng: random.Random) -> dict[str, list[dict]]:
    weights = _lemma_weights(res)
    chapters = _chapters(res, 6, 30)
    parts = assign_groups(sorted(chapters), sizes, rng, weight=lambda c: len(chapters[c]))
    out = {}
    for split, names in parts.items():
        names = sorted(names)
        flat = [(c, i) for c in names for i in range(len(chapters[c]))]
        rows = []
        for c in names:
            vs = chapters[c]
            for i, (k, kt, wt) in enumerate(vs):
                kind = rng.choices(["same", "joined", "near", "far"], weights=[3, 2, 3, 2])[0]
                if kind == "same":
                    lem_b, text_b = _web_lemmas(res, k), wt
                elif kind == "joined" and i + 1 < len(vs):
                    # WEB rendering of this verse joined with the next one: half-overlap.
                    lem_b = _web_lemmas(res, k) + _web_lemmas(res, vs[i + 1][0])
                    text_b = wt + " " + vs[i + 1][2]
                elif kind == "near" and len(vs) > 1:
                    j = rng.choice([x for x in range(max(0, i - 3), min(len(vs), i + 4)) if x != i])
                    lem_b, text_b = _web_lemmas(res, vs[j][0]), vs[j][2]
                else:
                    c2, j = rng.choice(flat)
                    if c2 == c:
                        continue
                    lem_b, text_b = _web_lemmas(res, chapters[c2][j][0]), chapters[c2][j][2]
                sim = lemma_similarity(k.lemmas, lem_b, weights)
                rows.append({**_pair(rng, kt, text_b), "label": stsb_score(sim)})
        rng.shuffle(rows)
        n = sizes[split]
        if len(rows) < n:
            raise ValueError(f"stsb {split}: only {len(rows)} pairs")
        # Flatten the score distribution a little: keep all pairs from sparse score bins first.
        bins = defaultdict(list)
        for r in rows:
            bins[min(4, int(r["label"]))].append(r)
        take, per = [], n // 5
        for b in sorted(bins):
            take += bins[b][:per]
        rest = [r for b in sorted(bins) for r in bins[b][per:]]
        take += rest[: n - len(take)]
        rng.shuffle(take)
        out[split] = take
    return out


def _web_lemmas(res: Resources, k: Verse) -> tuple[str, ...]:
    return res.web_by_ref[k.ref].lemmas
