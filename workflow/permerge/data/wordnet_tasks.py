"""Stand-in NLI tasks from WordNet, the novels and the WEB Bible: MNLI, RTE and QNLI (a word replaced by a
hypernym, synonym, hyponym, co-hyponym or antonym; a question against a gloss)."""

from __future__ import annotations

import functools
import logging
import random
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

from ..tasks import TASKS
from .bible_tasks import clean_verse
from .resources import Resources
from .splits import assign_groups, take_balanced
from .text import split_sentences
from .wordnet import FUNCTION_WORDS, Synset, WordNet

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# Substitutions
# --------------------------------------------------------------------------------------------------


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
    split_groups = assign_groups(
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
        t = clean_verse(v.text)
        if 12 <= len(t.split()) <= 60 and t not in seen:
            seen.add(t)
            chapters[f"{v.book}.{v.chapter}"].append(t)
    parts = assign_groups(sorted(chapters), sizes, rng, weight=lambda c: len(chapters[c]))
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
        out.update(take_balanced({0: pos, 1: neg}, {split: sizes[split]}, rng))
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
        if not re.fullmatch(r"[a-z]{4,}", word) or res.vocab.get(word, 0) < 3 or word in FUNCTION_WORDS:
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
    parts = assign_groups(keys, sizes, rng, weight=lambda k: 1)
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
        out.update(take_balanced({0: pos_rows, 1: neg_rows}, {split: sizes[split]}, rng))
    return out
