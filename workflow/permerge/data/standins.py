"""GLUE-shaped stand-in tasks built offline from the embedded public-domain sources.

Each task has GLUE's name, columns, label convention, metric and splits (``TASKS``), and is written as
JSON-lines files (one per split, with an ``idx`` column) that ``datasets.load_dataset("json", ...)``
reads. They are small (about 3,000 train / 600 validation examples) so that tiny BERTs fine-tune in
minutes on a CPU. Construction (details in docs/data.md):

* sst2  novel sentences labelled by the Bing sentiment lexicon (with negation), |score| >= 2;
* cola  novel sentences (acceptable) vs corrupted copies of other sentences (word swap, move, drop,
        duplication);
* mrpc  King James verse paired with the World English Bible rendering of the same verse (paraphrase)
        or of the most word-overlapping verse among its ten neighbours (not a paraphrase);
* qqp   the same for question verses, negatives being the most word-overlapping other question of the book;
* stsb  KJV/WEB verse pairs (same, joined with a neighbour, neighbouring, unrelated) scored 0-5 by the
        weighted overlap of their Strong's numbers (the underlying Hebrew/Greek words);
* mnli  WordNet example sentences with one word replaced: hypernym/synonym (entailment), hyponym or
        co-hyponym (neutral), antonym (contradiction); the *mismatched* set applies the same rules to
        sentences from the novels (another genre and source);
* rte   World English Bible verses with a hypothesis that is one of their sentences (optionally with a
        hypernym/synonym substitution: entailment) or a sentence with a hyponym/co-hyponym/antonym
        substitution or from a neighbouring verse (not_entailment);
* qnli  "what does W mean?" against a WordNet gloss of W (entailment) or of a related/sibling synset.

Splits are disjoint by construction: examples are grouped (by source sentence, verse chapter or synset)
and whole groups go to one split; :func:`build_task` also asserts that no (text, label) example repeats
across splits. Everything is deterministic given the seed.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence

from ..tasks import TASKS as REGISTRY
from ..tasks import Task
from . import rdata
from .jsonl import validate_task_files, write_jsonl
from .roles import novel_corpus
from .sources import SOURCES
from .sword import Verse, bible_verses
from .text import split_sentences
from .wordnet import Synset, wordnet_index
from .wordnet import wordnet as read_wordnet

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TaskInfo(Task):
    """A registry task (permerge.tasks) plus how its stand-in is built."""

    sources: tuple[str, ...] = ()  # embedded archives the stand-in is built from
    sizes: dict[str, int] = dataclasses.field(default_factory=dict)  # examples per split of the stand-in


# How each stand-in is built: its source archives and split sizes (columns, labels, splits: permerge.tasks).
_STANDINS: dict[str, tuple[tuple[str, ...], dict[str, int]]] = {
    "mnli": (
        ("wordnet", "janeaustenr", "tidytext"),
        {"train": 6000, "validation_matched": 600, "validation_mismatched": 600},
    ),
    "qqp": (("kjv", "web"), {"train": 2000, "validation": 400}),
    "qnli": (("wordnet", "janeaustenr", "tidytext"), {"train": 3000, "validation": 600}),
    "sst2": (("janeaustenr", "tidytext"), {"train": 3000, "validation": 600}),
    "cola": (("janeaustenr", "tidytext"), {"train": 3000, "validation": 600}),
    "stsb": (("kjv", "web"), {"train": 3000, "validation": 600}),
    "mrpc": (("kjv", "web"), {"train": 3000, "validation": 600}),
    "rte": (("wordnet", "web", "janeaustenr", "tidytext"), {"train": 2400, "validation": 400}),
}
TASKS: dict[str, TaskInfo] = {
    name: TaskInfo(
        **{f.name: getattr(task, f.name) for f in dataclasses.fields(Task)},
        sources=_STANDINS[name][0],
        sizes=_STANDINS[name][1],
    )
    for name, task in REGISTRY.items()
}


# --------------------------------------------------------------------------------------------------
# Shared resources (parsed once per process)
# --------------------------------------------------------------------------------------------------

_WORD = re.compile(r"[A-Za-z]+(?:['-][A-Za-z]+)*")


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


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


# --------------------------------------------------------------------------------------------------
# Split helpers
# --------------------------------------------------------------------------------------------------


def _take_balanced(
    pools: Mapping[object, Sequence],
    sizes: Mapping[str, int],
    rng: random.Random,
    shares: Mapping[object, float] | None = None,
) -> dict[str, list]:
    """Fill each split from per-label pools (already shuffled), disjointly, in the given proportions."""
    labels = list(pools)
    shares = shares or {lab: 1 / len(labels) for lab in labels}
    cursor = {lab: 0 for lab in labels}
    out = {}
    for split, n in sizes.items():
        rows = []
        for j, lab in enumerate(labels):
            k = round(n * shares[lab]) if j < len(labels) - 1 else n - len(rows)
            avail = len(pools[lab]) - cursor[lab]
            if k > avail:
                raise ValueError(f"not enough examples for label {lab!r} in split {split!r}: need {k}, have {avail}")
            rows += pools[lab][cursor[lab] : cursor[lab] + k]
            cursor[lab] += k
        rng.shuffle(rows)
        out[split] = rows
    return out


def _assign_groups(
    groups: Sequence, sizes: Mapping[str, int], rng: random.Random, weight: Callable[[object], float] = lambda g: 1.0
) -> dict[str, list]:
    """Partition shuffled groups into splits with shares proportional to ``sizes`` (by summed weight)."""
    groups = list(groups)
    rng.shuffle(groups)
    total = sum(sizes.values())
    order = sorted(sizes, key=lambda s: sizes[s])  # small splits first, the rest to the largest
    out, i = {s: [] for s in sizes}, 0
    W = sum(weight(g) for g in groups)
    for s in order[:-1]:
        target, acc = W * sizes[s] / total, 0.0
        while i < len(groups) and acc < target:
            out[s].append(groups[i])
            acc += weight(groups[i])
            i += 1
    out[order[-1]] = groups[i:]
    return out


def _example_key(info: TaskInfo, row: Mapping) -> tuple:
    """The texts of an example, order-insensitive (a pair and its swap are the same example)."""
    return tuple(sorted(row[k] for k in info.text_keys))


def _check_disjoint(info: TaskInfo, splits: Mapping[str, list[dict]]) -> None:
    seen: dict[tuple, str] = {}
    for split, rows in splits.items():
        for row in rows:
            key = _example_key(info, row)
            if key in seen and seen[key] != split:
                raise AssertionError(f"{info.name}: example {key!r} is in both {seen[key]} and {split}")
            seen[key] = split


# --------------------------------------------------------------------------------------------------
# SST-2: lexicon-labelled novel sentences
# --------------------------------------------------------------------------------------------------

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
    return _take_balanced(pools, sizes, rng)


# --------------------------------------------------------------------------------------------------
# CoLA: real vs corrupted sentences
# --------------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"[A-Za-z0-9]+(?:['-][A-Za-z0-9]+)*|[^\sA-Za-z0-9]")
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


def _detok(tokens: Sequence[str]) -> str:
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


def build_cola(res: Resources, sizes: Mapping[str, int], rng: random.Random) -> dict[str, list[dict]]:
    pool = [s for s in res.novel_sentences if 4 <= len(s.split()) <= 20 and s[0].isupper() and '"' not in s]
    rng.shuffle(pool)
    lower_vocab = {t for s in pool for t in _TOKEN.findall(s)[1:] if t.islower()}
    total = sum(sizes.values())
    real, fake, i = [], [], 0
    while (len(real) < total // 2 + 1 or len(fake) < total // 2 + 1) and i < len(pool):
        toks = _TOKEN.findall(pool[i])
        i += 1
        if len(real) <= len(fake):
            real.append({"sentence": _detok(toks), "label": 1})
            continue
        out = corrupt(toks, rng, lower_vocab)
        if out is not None:
            fake.append({"sentence": _detok(out[0]), "label": 0, "_kind": out[1]})
    kinds = Counter(r.pop("_kind") for r in fake)
    log.info("cola corruptions: %s", dict(kinds))
    return _take_balanced({0: fake, 1: real}, sizes, rng)


# --------------------------------------------------------------------------------------------------
# Bible pairs: MRPC, QQP, STS-B
# --------------------------------------------------------------------------------------------------


def _clean_verse(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\u00b6", "").replace('"', "")).strip()


def _chapters(res: Resources, min_words: int, max_words: int) -> dict[str, list[tuple[Verse, str, str]]]:
    """Chapter -> [(kjv verse, kjv text, web text)] in verse order, verses of a sensible length only."""
    out, seen = defaultdict(list), set()
    for k, w in res.bible:
        kt, wt = _clean_verse(k.text), _clean_verse(w.text)
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
    parts = _assign_groups(sorted(chapters), sizes, rng, weight=lambda c: len(chapters[c]))
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
        out.update(_take_balanced({0: neg, 1: pos}, {split: sizes[split]}, rng))
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
        kqs, wqs = questions_of(_clean_verse(k.text)), questions_of(_clean_verse(w.text))
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
    parts = _assign_groups(sorted(chapters), sizes, rng, weight=lambda c: len(chapters[c]))
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
        out.update(_take_balanced({0: neg, 1: pos}, {split: sizes[split]}, rng))
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
    parts = _assign_groups(sorted(chapters), sizes, rng, weight=lambda c: len(chapters[c]))
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


# --------------------------------------------------------------------------------------------------
# WordNet-based NLI: MNLI, RTE, QNLI
# --------------------------------------------------------------------------------------------------


class WordNet:
    def __init__(
        self,
        synsets: dict[str, Synset],
        index: dict[tuple[str, str], list[str]],
        vocab: Mapping[str, int] | None = None,
    ):
        self.synsets = synsets
        self.index = index  # (lemma, pos) -> synset keys in sense order
        self.vocab = vocab or {}

    def plain_pos(self, word: str) -> str | None:
        """'n' or 'a' for a word that is only a noun or only an adjective in WordNet and does not look
        like an inflected verb (less sense/POS ambiguity when the sense is not annotated)."""
        poss = [p for p in "nvar" if (word, p) in self.index]
        if len(poss) != 1 or poss[0] not in "na" or word in _FUNCTION_WORDS or self.inflected(word):
            return None
        return poss[0]

    def inflected(self, word: str) -> bool:
        """Looks like a regular inflection of another lemma (threads, walked, walking)."""
        for suffix, stems in (("ed", ("", "e")), ("ing", ("", "e")), ("s", ("",)), ("es", ("",)), ("ies", ("y",))):
            if word.endswith(suffix) and any(
                (word[: -len(suffix)] + st, p) in self.index for st in stems for p in "nv"
            ):
                return True
        return False

    def main_pos(self, word: str) -> str | None:
        """The part of speech with the most senses (ties: n, v, a, r)."""
        poss = [(len(self.index[(word, p)]), -i, p) for i, p in enumerate("nvar") if (word, p) in self.index]
        return max(poss)[2] if poss else None

    def lemmas(self, key: str) -> list[str]:
        return [w for w in self.synsets[key].words]

    def first_sense(self, word: str, pos: str) -> str | None:
        keys = self.index.get((word, pos))
        return keys[0] if keys else None

    def pos_count(self, word: str) -> int:
        return sum((word, p) in self.index for p in "nvar")

    def hypernyms(self, key: str) -> list[str]:
        return self.synsets[key].targets("@", "@i")

    def hyponyms(self, key: str) -> list[str]:
        return self.synsets[key].targets("~")

    def antonyms(self, key: str, word: str) -> list[str]:
        """Antonym lemmas of ``word`` in synset ``key`` (direct, or indirect through a satellite's head)."""
        s = self.synsets[key]
        if word not in s.words:
            return []
        wi = s.words.index(word) + 1
        out = [
            self.synsets[t].words[tw - 1]
            for sym, t, sw, tw in s.pointers
            if sym == "!" and sw == wi and t in self.synsets
        ]
        if not out and s.pos == "s":
            for head in s.targets("&"):
                h = self.synsets.get(head)
                if h is None:
                    continue
                for sym, t, _sw, tw in h.pointers:
                    if sym == "!" and t in self.synsets:
                        out.append(self.synsets[t].words[tw - 1])
        return out

    def substitutes(self, key: str, word: str, relation: str, rng: random.Random) -> list[str]:
        """Candidate replacement lemmas of ``word`` (sense ``key``) standing in ``relation`` to it."""
        if relation == "hypernym":
            ks = self.hypernyms(key)
            if ks and rng.random() < 0.3:
                ks = ks + [h for k in ks for h in self.hypernyms(k)]
            cands = [w for k in ks for w in self.lemmas(k)]
        elif relation == "synonym":
            cands = [w for w in self.lemmas(key) if w != word]
        elif relation == "hyponym":
            cands = [w for k in self.hyponyms(key) for w in self.lemmas(k)]
        elif relation == "cohyponym":
            cands = [w for h in self.hypernyms(key) for k in self.hyponyms(h) if k != key for w in self.lemmas(k)]
        elif relation == "antonym":
            cands = self.antonyms(key, word)
        else:  # pragma: no cover
            raise ValueError(relation)
        cands = [c for c in dict.fromkeys(cands) if _good_substitute(word, c)]
        if self.vocab:
            # Prefer replacements the pre-training text contains (every word of a multi-word lemma).
            known = [c for c in cands if all(self.vocab.get(x, 0) >= 2 for x in re.split(r"[ -]", c))]
            cands = known or cands
        return cands


_SUBSTITUTE = re.compile(r"[a-z]+(?:[ '-][a-z]+){0,2}")


def _good_substitute(word: str, cand: str) -> bool:
    return (
        cand != word
        and _SUBSTITUTE.fullmatch(cand) is not None
        and word not in cand.split()
        and cand not in word.split()
    )


@functools.cache
def word_pattern(word: str) -> re.Pattern:
    """Whole-word, case-insensitive pattern of ``word`` (compiled once)."""
    return re.compile(rf"(?<![\w'-]){re.escape(word)}(?![\w'-])", re.IGNORECASE)


_RUN = re.compile(r"[\w'-]+")


def _find_word(sentence: str, word: str) -> tuple[int, int] | None:
    if " " not in word:  # fast path: compare whole tokens, no per-word regex
        for m in _RUN.finditer(sentence):
            if m.group(0).lower() == word:
                return m.span()
        return None
    m = word_pattern(word).search(sentence)
    return m.span() if m else None


_ARTICLE = re.compile(r"(?<![\w'-])(a|an|A|An)\s+$")


def substitute(sentence: str, word: str, repl: str) -> str | None:
    """Replace the first whole-word occurrence of ``word`` (case-insensitive), fixing a/an before it."""
    span = _find_word(sentence, word.lower())
    if span is None:
        return None
    start, end = span
    if sentence[start].isupper():
        repl = repl[0].upper() + repl[1:]
    before = sentence[:start]
    art = _ARTICLE.search(before)
    if art:
        new = "an" if repl[0].lower() in "aeiou" else "a"
        if art.group(1)[0].isupper():
            new = new.capitalize()
        before = before[: art.start(1)] + new + before[art.end(1) :]
    return before + repl + sentence[end:]


# relation -> MNLI label; for RTE entailment (0) vs not (1)
_NLI_RELATIONS = {
    0: ("hypernym", "synonym"),
    1: ("hyponym", "cohyponym"),
    2: ("antonym",),
}


def _nli_candidates(wn: WordNet, key: str, word: str, premise: str, rng: random.Random) -> dict[int, dict]:
    """For one (premise, word, sense) every label that a substitution can realise: label -> example."""
    out = {}
    for label, relations in _NLI_RELATIONS.items():
        rels = list(relations)
        rng.shuffle(rels)
        for rel in rels:
            cands = wn.substitutes(key, word, rel, rng)
            if not cands:
                continue
            hyp = substitute(premise, word, rng.choice(cands))
            if hyp and hyp != premise:
                out[label] = {"premise": premise, "hypothesis": hyp, "label": label, "_word": word}
                break
    return out


_PRONOUNS = re.compile(r"^[a-z][a-z -]*$")
_FUNCTION_WORDS = {
    "about",
    "above",
    "after",
    "again",
    "against",
    "also",
    "although",
    "always",
    "another",
    "anything",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "could",
    "does",
    "done",
    "down",
    "during",
    "each",
    "either",
    "else",
    "enough",
    "even",
    "ever",
    "every",
    "first",
    "from",
    "further",
    "have",
    "having",
    "here",
    "herself",
    "himself",
    "into",
    "itself",
    "last",
    "least",
    "less",
    "like",
    "little",
    "many",
    "more",
    "most",
    "much",
    "must",
    "myself",
    "neither",
    "never",
    "next",
    "none",
    "nothing",
    "often",
    "once",
    "only",
    "other",
    "ought",
    "over",
    "same",
    "shall",
    "should",
    "since",
    "some",
    "something",
    "such",
    "sure",
    "than",
    "that",
    "their",
    "them",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "though",
    "through",
    "till",
    "together",
    "under",
    "until",
    "upon",
    "very",
    "were",
    "what",
    "when",
    "where",
    "whether",
    "which",
    "while",
    "whom",
    "whose",
    "will",
    "with",
    "within",
    "without",
    "would",
    "your",
    "yourself",
    "lord",
    "lady",
    "miss",
    "mister",
    "master",
    "sir",
    "madam",
}


def _lowercase_words(text: str) -> list[str]:
    """Distinct words written in lower case in ``text`` (capitalised ones may be names), 4+ letters."""
    return list(dict.fromkeys(w for w in re.findall(r"(?<![\w'-])[a-z]{4,}(?![\w'-])", text)))


def _wordnet_example_groups(wn: WordNet, rng: random.Random) -> list[list[dict]]:
    """Groups (one per WordNet example sentence) of NLI examples realisable on that sentence."""
    groups, used = [], set()
    for key in sorted(wn.synsets):
        s = wn.synsets[key]
        for ex in s.examples:
            if not 4 <= len(ex.split()) <= 30 or ex in used:
                continue
            for word in s.words:
                if not _PRONOUNS.match(word) or substitute(ex, word, "x") is None:
                    continue
                cands = [c for c in _nli_candidates(wn, key, word, ex, rng).values() if c["hypothesis"] not in used]
                if cands:
                    used.add(ex)
                    used.update(c["hypothesis"] for c in cands)
                    groups.append(cands)
                break
    return groups


def _novel_nli_groups(
    wn: WordNet, sentences: Sequence[str], rng: random.Random, limit: int, targets: set[str] | None = None
) -> list[list[dict]]:
    """The same substitutions on novel sentences, using the first WordNet sense of nouns/adjectives that
    are not also verbs (less ambiguity); at most one group per sentence. With ``targets``, only those
    words are replaced (the words the training set substitutes: what was learnt there can transfer, as
    BERT's pre-trained lexical knowledge does for the real MNLI mismatched set)."""
    groups = []
    order = list(range(len(sentences)))
    rng.shuffle(order)
    for i in order:
        s = sentences[i]
        if not 5 <= len(s.split()) <= 30:
            continue
        toks = _lowercase_words(s)
        rng.shuffle(toks)
        for t in toks:
            pos = wn.plain_pos(t)
            if pos is None or (targets is not None and t not in targets):
                continue
            key = wn.first_sense(t, pos)
            cands = _nli_candidates(wn, key, t, s, rng)
            if len(cands) >= 2:
                groups.append(list(cands.values()))
                break
        if len(groups) >= limit:
            break
    return groups


def build_mnli(res: Resources, sizes: Mapping[str, int], rng: random.Random) -> dict[str, list[dict]]:
    wn = res.wordnet
    groups = _wordnet_example_groups(wn, rng)
    split_groups = _assign_groups(
        groups, {"train": sizes["train"], "validation_matched": sizes["validation_matched"]}, rng
    )
    out = {s: _take_groups(g, sizes[s], (0, 1, 2), rng, "mnli " + s) for s, g in split_groups.items()}
    targets = {r["_word"] for r in out["train"]}
    mism = _novel_nli_groups(wn, res.novel_sentences, rng, limit=4 * sizes["validation_mismatched"], targets=targets)
    out["validation_mismatched"] = _take_groups(
        mism, sizes["validation_mismatched"], (0, 1, 2), rng, "mnli validation_mismatched"
    )
    return {s: out[s] for s in TASKS["mnli"].splits}


def _take_groups(groups: Sequence[list[dict]], n: int, labels: Sequence, rng: random.Random, what: str) -> list[dict]:
    """n examples with balanced labels from whole groups (a group never straddles splits)."""
    groups = list(groups)
    rng.shuffle(groups)
    have = Counter(r["label"] for g in groups for r in g)
    # Visit groups holding the scarcest labels first so that those labels reach their quota.
    scarce = sorted(labels, key=lambda lab: have[lab])
    groups.sort(key=lambda g: min(scarce.index(r["label"]) for r in g))
    per = {lab: n // len(labels) + (1 if i < n % len(labels) else 0) for i, lab in enumerate(labels)}
    counts, rows = Counter(), []
    for g in groups:
        for r in g:
            if counts[r["label"]] < per[r["label"]]:
                rows.append(r)
                counts[r["label"]] += 1
    short = {lab: per[lab] - counts[lab] for lab in labels if counts[lab] < per[lab]}
    if short:
        log.warning("%s: labels short of quota: %s (have %s)", what, short, dict(counts))
    rng.shuffle(rows)
    return rows


def build_rte(res: Resources, sizes: Mapping[str, int], rng: random.Random) -> dict[str, list[dict]]:
    """Premise: a WEB verse. Hypothesis: one of its sentences (maybe with a substitution) or a neighbour's."""
    wn = res.wordnet
    chapters, seen = defaultdict(list), set()
    for v in res.web:
        t = _clean_verse(v.text)
        if 12 <= len(t.split()) <= 60 and t not in seen:
            seen.add(t)
            chapters[f"{v.book}.{v.chapter}"].append(t)
    parts = _assign_groups(sorted(chapters), sizes, rng, weight=lambda c: len(chapters[c]))
    out = {}
    for split, names in parts.items():
        pos, neg = [], []
        for c in sorted(names):
            vs = chapters[c]
            for i, premise in enumerate(vs):
                sents = [s for s in split_sentences(premise) if len(s.split()) >= 5]
                if not sents:
                    continue
                hyp = rng.choice(sents)
                mode = rng.random()
                if mode < 0.5:
                    ex = _rte_substitution(wn, hyp, rng)
                    if ex is None:
                        continue
                    text, label = ex
                elif mode < 0.75 or len(vs) < 2:
                    text, label = hyp, 0
                else:
                    j = rng.choice([x for x in range(max(0, i - 3), min(len(vs), i + 4)) if x != i])
                    other = [s for s in split_sentences(vs[j]) if len(s.split()) >= 5]
                    if not other:
                        continue
                    text, label = rng.choice(other), 1
                if text in premise and label == 1:
                    continue
                (pos if label == 0 else neg).append({"sentence1": premise, "sentence2": text, "label": label})
        rng.shuffle(pos)
        rng.shuffle(neg)
        out.update(_take_balanced({0: pos, 1: neg}, {split: sizes[split]}, rng))
    return out


def _rte_substitution(wn: WordNet, sentence: str, rng: random.Random) -> tuple[str, int] | None:
    toks = _lowercase_words(sentence)
    rng.shuffle(toks)
    want = rng.random() < 0.5  # entailment?
    for t in toks:
        pos = wn.plain_pos(t)
        if pos is None:
            continue
        key = wn.first_sense(t, pos)
        rels = ["hypernym", "synonym"] if want else ["hyponym", "cohyponym", "antonym"]
        rng.shuffle(rels)
        for rel in rels:
            cands = wn.substitutes(key, t, rel, rng)
            if cands:
                new = substitute(sentence, t, rng.choice(cands))
                if new and new != sentence:
                    return new, 0 if want else 1
    return None


_QNLI_TEMPLATES = {
    "n": ("what does {w} mean?", "what is a {w}?", "what is meant by {w}?"),
    "v": ("what does it mean to {w}?", "what does {w} mean?"),
    "a": ("what does {w} mean?", "what does it mean to be {w}?"),
    "s": ("what does {w} mean?", "what does it mean to be {w}?"),
    "r": ("what does {w} mean?",),
}


def _gloss_sentence(s: Synset, with_example: bool) -> str:
    text = s.definition
    if with_example and s.examples:
        text = f'{text}; "{s.examples[0]}"'
    return text[0].upper() + text[1:] + ("" if text.endswith((".", '"')) else ".")


def build_qnli(res: Resources, sizes: Mapping[str, int], rng: random.Random) -> dict[str, list[dict]]:
    """Question about a word W; sentence: a gloss of W's first sense (entailment) or a related synset's."""
    wn = res.wordnet
    # Words whose first sense has a definition; one group per synset so a gloss never straddles splits.
    items = []
    for (word, pos), keys in sorted(wn.index.items()):
        if not re.fullmatch(r"[a-z]{4,}", word) or res.vocab.get(word, 0) < 3 or word in _FUNCTION_WORDS:
            continue
        if pos != wn.main_pos(word) or wn.inflected(word):
            continue
        key = keys[0]
        s = wn.synsets[key]
        if not s.definition or len(s.definition.split()) < 3 or word not in s.words:
            continue  # (a capitalised lemma, e.g. a place name, is not in s.words in lower case)
        items.append((word, pos, key))
    rng.shuffle(items)
    by_synset = defaultdict(list)
    for it in items:
        by_synset[it[2]].append(it)
    keys = sorted(by_synset)
    parts = _assign_groups(keys, sizes, rng, weight=lambda k: 1)
    out = {}
    for split, ks in parts.items():
        ks_set = set(ks)
        same_pos = defaultdict(list)
        for x in sorted(ks):
            if wn.synsets[x].words[0].islower():  # no proper-noun glosses as distractors
                same_pos[x[0]].append(x)
        pos_rows, neg_rows = [], []
        for k in sorted(ks):
            word, pos, _ = by_synset[k][0]
            s = wn.synsets[k]
            q = rng.choice(_QNLI_TEMPLATES[s.pos]).format(w=word)
            if word[0] in "aeiou":
                q = q.replace(" a " + word, " an " + word)
            if rng.random() < 0.5:
                # Entailment: the gloss, usually with its example (which mentions the word).
                pos_rows.append({"question": q, "sentence": _gloss_sentence(s, rng.random() < 0.7), "label": 0})
                continue
            # Not entailment: a hyponym's gloss that mentions the word, or a sibling's/random gloss.
            mention = [h for h in wn.hyponyms(k) if h in ks_set and word_pattern(word).search(wn.synsets[h].definition)]
            sib = [x for h in wn.hypernyms(k) for x in wn.hyponyms(h) if x != k and x in ks_set]
            if mention and rng.random() < 0.4:
                other = wn.synsets[rng.choice(mention)]
                neg_rows.append({"question": q, "sentence": _gloss_sentence(other, False), "label": 1})
            else:
                pool = sib or same_pos[k[0]]
                other = wn.synsets[rng.choice(pool)]
                if other.key == k:
                    continue
                if word_pattern(word).search(other.definition + " " + " ".join(other.examples[:1])):
                    continue
                neg_rows.append({"question": q, "sentence": _gloss_sentence(other, rng.random() < 0.7), "label": 1})
        rng.shuffle(pos_rows)
        rng.shuffle(neg_rows)
        out.update(_take_balanced({0: pos_rows, 1: neg_rows}, {split: sizes[split]}, rng))
    return out


BUILDERS: dict[str, Callable[[Resources, Mapping[str, int], random.Random], dict[str, list[dict]]]] = {
    "mnli": build_mnli,
    "qqp": build_qqp,
    "qnli": build_qnli,
    "sst2": build_sst2,
    "cola": build_cola,
    "stsb": build_stsb,
    "mrpc": build_mrpc,
    "rte": build_rte,
}


def build_task(
    task: str,
    paths: Mapping[str, str | os.PathLike] | Resources,
    *,
    seed: int = 0,
    sizes: Mapping[str, int] | None = None,
) -> dict[str, list[dict]]:
    """Build one stand-in task: split -> rows (GLUE columns, ``label``, ``idx``). Deterministic in ``seed``."""
    if task not in TASKS:
        raise ValueError(f"unknown GLUE task {task!r}; expected one of {sorted(TASKS)}")
    info = TASKS[task]
    res = paths if isinstance(paths, Resources) else Resources(paths)
    sizes = dict(sizes or info.sizes)
    rng = random.Random(f"permerge-{task}-{seed}")
    splits = BUILDERS[task](res, sizes, rng)
    _check_disjoint(info, splits)
    out = {}
    for split in info.splits:
        rows = [
            {**{k: r[k] for k in info.text_keys}, "label": r["label"], "idx": i} for i, r in enumerate(splits[split])
        ]
        out[split] = rows
    return out


def write_task(task: str, splits: Mapping[str, list[dict]], outputs: Mapping[str, str | os.PathLike]) -> dict[str, int]:
    """Write split -> rows to split -> jsonl path, then validate them."""
    counts = {s: write_jsonl(splits[s], outputs[s]) for s in outputs}
    validate_task_files(task, outputs)
    return counts


def label_summary(task: str, rows: Sequence[Mapping]) -> str:
    info = TASKS[task]
    if info.num_labels == 1:
        ys = [r["label"] for r in rows]
        m = sum(ys) / len(ys)
        return f"mean {m:.2f}, " + ", ".join(
            f"[{a},{a + 1}{']' if a == 4 else ')'}: {sum(a <= y < a + 1 or (a == 4 and y == 5) for y in ys)}"
            for a in range(5)
        )
    c = Counter(r["label"] for r in rows)
    return ", ".join(f"{info.label_names[k]} {c[k]} ({c[k] / len(rows):.0%})" for k in range(info.num_labels))
