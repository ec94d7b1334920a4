"""WordNet 3.0 database files (``data.noun``, ``index.noun``, ``noun.exc`` ...) from the pinned package, and
``WordNet``: the parsed database as the lookups the NLI stand-ins use (parts of speech, senses, hypernyms,
hyponyms, antonyms, substitute words)."""

from __future__ import annotations

import dataclasses
import os
import random
import re
from collections.abc import Mapping

from .archives import archive_member


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


class WordNet:
    """Synsets and the lemma index of WordNet, with lookups for word substitutions; ``vocab`` (word counts of
    the pre-training text) makes substitutes the models have read preferred."""

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
        if len(poss) != 1 or poss[0] not in "na" or word in FUNCTION_WORDS or self.inflected(word):
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


FUNCTION_WORDS = {
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
