"""WordNet 3.0 database files (``data.noun``, ``index.noun``, ``noun.exc`` ...) from the pinned package."""

from __future__ import annotations

import dataclasses
import os
import re

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
