"""The matchers, each declared once: the values of a variant's matching options and what they mean.

A new attention matcher is one entry of ``ATTENTION`` (which head pairs it scores and how it picks the head
assignment from their scores); both the activation matcher (``permerge.alignment.matching``) and weight matching
(``permerge.alignment.weight_matching``) run it through ``assign_heads``, ``permerge.alignment.variants`` validates it and
derives function preservation from it, and the configuration accepts it. The same holds for the residual
modes (which LayerNorm nodes drive the residual permutation), the Q/K modes and the methods: a new method
is one entry of ``METHOD`` (what it reads and how it aligns a pair; ``matching.align_pair`` runs it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment


def lsa(sim: np.ndarray) -> np.ndarray:
    """The assignment maximising the summed similarity, as a gather index p (row i takes column p[i])."""
    rows, cols = linear_sum_assignment(sim, maximize=True)
    p = np.empty(len(rows), dtype=np.int64)
    p[rows] = cols
    return p


@dataclass(frozen=True)
class AttentionMatcher:
    name: str
    function_preserving: bool  # False when it can mix units of different heads
    description: str
    # head pairs (j of A, k of B) whose within-head assignments are scored; None: one flat LSA, heads ignored
    candidates: Callable[[int], list[tuple[int, int]]] | None
    # the head assignment (head j of A <- head heads[j] of B) from the H x H scores
    choose: Callable[[np.ndarray], np.ndarray] | None


ATTENTION: dict[str, AttentionMatcher] = {
    m.name: m
    for m in (
        AttentionMatcher(
            "head_perm",
            True,
            "Algorithm 1: within-head LSA for every head pair, outer LSA over heads",
            lambda h: [(j, k) for j in range(h) for k in range(h)],
            lsa,
        ),
        AttentionMatcher(
            "monotonic",
            True,
            "head j <-> head j, within-head LSA only",
            lambda h: [(j, j) for j in range(h)],
            lambda scores: np.arange(len(scores)),
        ),
        AttentionMatcher("ignore_heads", False, "one flat LSA over all units (mixes heads)", None, None),
    )
}

# which residual-stream nodes (0 = embeddings LayerNorm, 2L = the last layer's output) drive the one
# residual permutation; their correlations are averaged
RESIDUAL: dict[str, Callable[[int], Sequence[int]]] = {
    "first": lambda layers: [0],
    "last": lambda layers: [2 * layers],
    "all": lambda layers: range(2 * layers + 1),
}
# Q/K within-head order: V's (the reference) or one common order of their own (both exact symmetries)
QK: tuple[str, ...] = ("shared", "separate")


@dataclass(frozen=True)
class Method:
    """From what a variant's permutations are computed. ``align(variant, pair, init)`` returns (perms, info):
    the permutations mapping B into A's basis and the str -> str facts worth recording with them;
    ``pair`` is a ``matching.Pair`` holding what ``statistics`` / ``weights`` say the method reads; ``init``
    the permutations to start from (None: the method's own start)."""

    name: str
    description: str
    statistics: bool  # reads the pair's activation statistics
    weights: bool  # reads the pair's weights (and their PermutationSpec)
    # options whose value the method fixes, with why: another value is an error (never silently ignored)
    fixed: dict[str, tuple[Any, str]]
    align: Callable[..., tuple[dict[str, np.ndarray], dict[str, str]]]


def _activation(variant, pair, init=None):
    from permerge.alignment.matching import compute_permutations

    if init is not None:
        raise ValueError("activation matching has no starting permutations (init); hybrid matching does")
    return compute_permutations(pair.stats, pair.a, pair.b, variant, pair.config), {}


def _weight(variant, pair, init=None):
    from permerge.alignment.weight_matching import match_weights

    result = match_weights(pair.spec, pair.params_a, pair.params_b, variant, seed=pair.seed, init=init)
    info = {
        "iterations": str(result.sweeps),
        "converged": str(result.converged),
        "objective": repr(result.objective[-1]),
        "objective_start": repr(result.objective[0]),
        "seed": repr(pair.seed),
    }
    return result.perms, info


def _hybrid(variant, pair, init=None):
    if init is None:
        init, _ = _activation(variant, pair)
    return _weight(variant, pair, init)


METHOD: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "activation", "LSA on the correlations of the pair's activations (the paper)", True, False, {}, _activation
        ),
        Method(
            "weight",
            "data-free weight matching (Git Re-Basin's coordinate descent over the spec's permutations)",
            False,
            True,
            {
                # "all" nodes of the residual stream: the one residual permutation is solved from every weight it
                # touches; first/last pick activation nodes, which weight matching has no counterpart of
                "residual": ("all", "it solves the residual permutation from every weight of the stream"),
                "stats_fraction": (None, "it reads no statistics"),
            },
            _weight,
        ),
        Method("hybrid", "weight matching started from the activation permutations", True, True, {}, _hybrid),
    )
}
# from what the permutations are computed
METHODS: tuple[str, ...] = tuple(METHOD)


def attention_matcher(name: str) -> AttentionMatcher:
    try:
        return ATTENTION[name]
    except KeyError:
        raise ValueError(f"unknown attention mode {name!r} (allowed: {', '.join(ATTENTION)})") from None


def method(name: str) -> Method:
    try:
        return METHOD[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r} (allowed: {', '.join(METHOD)})") from None


def residual_nodes(mode: str, num_layers: int) -> list[int]:
    try:
        return list(RESIDUAL[mode](num_layers))
    except KeyError:
        raise ValueError(f"unknown residual mode {mode!r} (allowed: {', '.join(RESIDUAL)})") from None


def assign_heads(sims: Sequence[np.ndarray], num_heads: int, mode: str = "head_perm") -> list[np.ndarray]:
    """One permutation per similarity matrix (d x d, d = heads x head size), all sharing one head assignment:
    every candidate head pair gets a within-head LSA per matrix, scored by the summed matched similarity;
    the matcher picks the head assignment from the scores. A flat matcher runs one LSA per matrix."""
    matcher = attention_matcher(mode)
    n = sims[0].shape[0]
    if n % num_heads:
        raise ValueError(f"dimension {n} is not divisible by {num_heads} heads")
    if matcher.candidates is None:
        return [lsa(s) for s in sims]
    dh = n // num_heads
    inner: dict[tuple[int, int], list[np.ndarray]] = {}
    scores = np.zeros((num_heads, num_heads))
    for j, k in matcher.candidates(num_heads):
        inner[j, k] = []
        for s in sims:
            block = s[j * dh : (j + 1) * dh, k * dh : (k + 1) * dh]
            p = lsa(block)
            inner[j, k].append(p)
            scores[j, k] += block[np.arange(dh), p].sum()
    heads = matcher.choose(scores)
    return [np.concatenate([heads[j] * dh + inner[j, heads[j]][m] for j in range(num_heads)]) for m in range(len(sims))]
