"""Permutation matching by maximising summed *signed* Pearson correlation (linear sum assignment), and
``align_pair``: the one way to align a pair, whatever the variant's method (``matchers.METHOD``).

Convention: a permutation is an index array p with aligned_B[i] = B[p[i]]; p[i] is the unit of B matched
to unit i of A.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from permerge.alignment.headmaps import rotate_heads, statistics_crosses, weight_crosses
from permerge.alignment.matchers import assign_heads, attention_matcher, lsa, method, residual_nodes
from permerge.alignment.stats import FEATURE_KINDS, Statistics
from permerge.alignment.variants import Variant


def _as_numpy(corr) -> np.ndarray:
    if hasattr(corr, "detach"):
        corr = corr.detach().cpu().double().numpy()
    corr = np.asarray(corr, dtype=np.float64)
    if corr.ndim != 2 or corr.shape[0] != corr.shape[1]:
        raise ValueError(f"expected a square correlation matrix, got shape {corr.shape}")
    if not np.isfinite(corr).all():
        raise ValueError("correlation matrix contains NaN or inf")
    return corr


_lsa = lsa


def match_ff(corr) -> np.ndarray:
    """One LSA over all units (FF intermediate, pooler, residual)."""
    return _lsa(_as_numpy(corr))


def match_attention(corr_ctx, num_heads: int, mode: str = "head_perm", corr_qk=None) -> tuple[np.ndarray, np.ndarray]:
    """(p_ctx, p_qk) for one attention layer, with the attention matcher ``mode`` (permerge.alignment.matchers).

    head_perm: Algorithm 1 of the paper - inner LSA on every (head j of A, head k of B) block of the
      context correlation, scored by the sum of matched correlations; outer LSA over the H x H scores picks
      the head assignment; each head then uses its pair's inner permutation.
    monotonic: head j <-> head j, inner LSA only.
    ignore_heads: one flat LSA over all units (mixes heads: not function-preserving); p_qk = p_ctx.
    corr_qk (Q/K "separate"): within-head Q/K orders from these blocks under the same head assignment;
      when None, Q/K reuse the context permutation (the reference behaviour).
    """
    corr = _as_numpy(corr_ctx)
    d = corr.shape[0]
    if d % num_heads:
        raise ValueError(f"dimension {d} is not divisible by {num_heads} heads")
    matcher = attention_matcher(mode)
    (p_ctx,) = assign_heads([corr], num_heads, mode)
    if corr_qk is None or matcher.candidates is None:
        return p_ctx, p_ctx.copy()
    cqk = _as_numpy(corr_qk)
    if cqk.shape != corr.shape:
        raise ValueError(f"corr_qk shape {cqk.shape} differs from corr_ctx shape {corr.shape}")
    dh = d // num_heads
    heads = p_ctx.reshape(num_heads, dh)[:, 0] // dh
    p_qk = np.concatenate(
        [
            heads[j] * dh + _lsa(cqk[j * dh : (j + 1) * dh, heads[j] * dh : (heads[j] + 1) * dh])
            for j in range(num_heads)
        ]
    )
    return p_ctx, p_qk


def residual_correlation(stats: Statistics, a: str, b: str, mode: str, num_layers: int):
    """The correlation matrix that drives the residual matching."""
    nodes = residual_nodes(mode, num_layers)
    if len(nodes) == 1:
        return stats.correlation(f"res.{nodes[0]}", a, b)
    total = stats.correlation(f"res.{nodes[0]}", a, b).clone()
    for i in nodes[1:]:
        total += stats.correlation(f"res.{i}", a, b)
    return total / len(nodes)


def match_residual(stats: Statistics, a: str, b: str, mode: str, num_layers: int) -> np.ndarray:
    """first: embeddings-LN node; last: final layer output; all: mean correlation over all 2L+1 nodes."""
    return match_ff(residual_correlation(stats, a, b, mode, num_layers))


def required_features(variant: Variant, num_layers: int, *, pooler: bool = False, emb: bool = False) -> list[str]:
    """Statistics features a variant needs (to collect fewer when statistics are not shared). emb: whether
    the models have an embedding space of their own (a projected ELECTRA), which "res" aligns too."""
    out: list[str] = []
    comps = variant.components
    if "res" in comps:
        out += [f"res.{i}" for i in residual_nodes(variant.residual, num_layers)]
        if emb:
            out.append("emb")
    if "ff" in comps:
        out += [f"ff.{l}" for l in range(num_layers)]
    if "attn" in comps:
        out += [f"ctx.{l}" for l in range(num_layers)]
        # q/k for their own within-head order, or for the Q/K rotations of activation matching
        rotations = variant.within_head != "permutation" and variant.method == "activation"
        if variant.qk == "separate" or rotations:
            out += [f"{kind}.{l}" for kind in ("q", "k") for l in range(num_layers)]
    if "pooler" in comps and pooler:
        out.append("pooler")
    return out


def _feature_order(feature: str) -> tuple[int, int]:
    kind, _, idx = feature.partition(".")
    return FEATURE_KINDS.index(kind), int(idx or 0)


def union_features(
    variants: Iterable[Variant], num_layers: int, *, pooler: bool = False, emb: bool = False
) -> list[str]:
    """Every feature some of the variants needs, once, in the order of stats.feature_names (empty when
    all are vanilla: then no statistics need collecting). pooler: whether the models have a pooler; emb:
    an embedding space of their own (required_features)."""
    need = {f for v in variants for f in required_features(v, num_layers, pooler=pooler, emb=emb)}
    return sorted(need, key=_feature_order)


def compute_permutations(stats: Statistics, a: str, b: str, variant: Variant, config) -> dict[str, np.ndarray]:
    """Perms mapping model b into model a's basis for the components the variant asks for.

    Perms not returned are the identity. "pooler" is returned only when the statistics hold the pooler
    feature (i.e. the models have a pooler); "emb" (with "res") only when they hold the emb feature (a
    projected ELECTRA's embedding space, matched on its own: the projection separates it from the stream).
    """
    L = config.num_hidden_layers
    H = config.num_attention_heads
    comps = variant.components
    perms: dict[str, np.ndarray] = {}
    if "ff" in comps:
        for l in range(L):
            perms[f"ff.{l}"] = match_ff(stats.correlation(f"ff.{l}", a, b))
    if "attn" in comps:
        for l in range(L):
            corr_qk = None
            if variant.qk == "separate":
                # Q and K need one common within-head order: match on the sum of their correlations.
                corr_qk = stats.correlation(f"q.{l}", a, b) + stats.correlation(f"k.{l}", a, b)
            p_ctx, p_qk = match_attention(stats.correlation(f"ctx.{l}", a, b), H, variant.attention, corr_qk)
            perms[f"attn.{l}"] = p_ctx
            perms[f"qk.{l}"] = p_qk
    if "res" in comps:
        perms["res"] = match_residual(stats, a, b, variant.residual, L)
        if "emb" in stats.features:
            perms["emb"] = match_ff(stats.correlation("emb", a, b))
    if "pooler" in comps and "pooler" in stats.features:
        perms["pooler"] = match_ff(stats.correlation("pooler", a, b))
    return perms


def pair_seed(name_a: str, name_b: str, base: int = 0) -> list[int]:
    """Weight matching's seed for a pair (the order it visits the permutations in): a stable hash of the
    pair's name "{name_a}-{name_b}", never Python's salted hash(), so reruns give the same permutations.
    The workflow names the pair seed{a}-seed{b}; ``permerge align`` by the two model directories' names,
    which for the workflow's models are the same (results/models/{task}/seed{s})."""
    return [int(base), zlib.crc32(f"{name_a}-{name_b}".encode())]


@dataclass(frozen=True)
class Pair:
    """What aligning model B to model A may read; each method reads what its registry entry says.

    statistics (activation, hybrid): ``stats`` holding the two models as ``a`` and ``b``, and ``config``
    (the models' HF config: layers, heads). weights (weight, hybrid): ``params_a`` / ``params_b`` (modules,
    or name -> tensor mappings with ``spec``), the ``spec`` (default: ``spec_for_model(params_a)``,
    checked against B) and ``seed``, weight matching's visiting order (``pair_seed``)."""

    config: Any = None
    stats: Any = None  # permerge.alignment.stats.Statistics
    a: str = "a"
    b: str = "b"
    params_a: Any = None
    params_b: Any = None
    spec: Any = None  # permerge.alignment.spec.PermutationSpec
    seed: Any = 0


@dataclass(frozen=True)
class Alignment:
    perms: dict[str, np.ndarray]  # B into A's basis; a perm not returned is the identity
    info: dict[str, str]  # what the method reports (weight matching: sweeps, convergence, objective, seed)


def align_pair(variant: Variant, pair: Pair, *, init: dict[str, np.ndarray] | None = None) -> Alignment:
    """The permutations aligning B to A for ``variant``, by its method (``matchers.METHOD``): the one entry
    point of the permutation jobs, the all-seed merge and ``permerge align``. Vanilla averaging (no
    components) is the identity, read from nothing. ``init``: the permutations weight matching starts from
    (hybrid: instead of the activation permutations)."""
    if not variant.components:
        return Alignment({}, {})
    m = method(variant.method)
    if m.statistics and init is None:
        if pair.stats is None or pair.config is None:
            raise ValueError(f"method {m.name!r} needs the pair's activation statistics and the models' config")
        missing = [f for f in required_features(variant, pair.config.num_hidden_layers) if f not in pair.stats.features]
        if missing:
            raise ValueError(f"the statistics lack features the variant needs: {missing}")
    if m.weights:
        if pair.params_a is None or pair.params_b is None:
            raise ValueError(f"method {m.name!r} needs the weights of both models")
        if pair.spec is None:
            from permerge.alignment.spec import check_spec, spec_for_model

            spec = spec_for_model(pair.params_a)
            check_spec(spec, pair.params_b)
            pair = replace(pair, spec=spec)
    perms, info = m.align(variant, pair, init)
    perms = dict(perms)
    if variant.within_head != "permutation":
        perms.update(rotate_within_heads(variant, pair, perms))
    return Alignment(perms, dict(info))


def rotate_within_heads(variant: Variant, pair: Pair, perms: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The attention permutations and per-head maps with rotations (``within_head``, permerge.alignment.headmaps):
    from the q, k and context statistics for activation matching, from the weights for weight and hybrid
    matching (whose permutations come from the weights)."""
    if variant.method == "activation":
        crosses = statistics_crosses(pair.stats, pair.a, pair.b, pair.config.num_hidden_layers)
        return rotate_heads(crosses, perms, {n: pair.config.num_attention_heads for n in crosses})
    from permerge.merging.permute import permute_params

    params_a, params_b = (
        dict(p.named_parameters()) if hasattr(p, "named_parameters") else p for p in (pair.params_a, pair.params_b)
    )
    # B in A's basis on every axis but the heads' (their assignment is chosen again, up to rotations)
    others = {k: v for k, v in perms.items() if k not in pair.spec.head_maps}
    crosses = weight_crosses(pair.spec, params_a, permute_params(params_b, pair.spec, others))
    return rotate_heads(crosses, perms, pair.spec.blocks)
