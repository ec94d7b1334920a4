"""Splitting a stand-in task's examples into disjoint splits: balanced per-label pools, and whole groups
(a source sentence, a verse chapter, a synset) to one split."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence


def take_balanced(
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


def assign_groups(
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
