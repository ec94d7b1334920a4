"""Data-free matching from the weights alone: weight matching (Ainsworth et al., "Git Re-Basin", 2023) over a
``PermutationSpec``, with the structure of a transformer encoder (attention heads, one residual permutation,
tied decoder).

Objective: J(P) = sum over the spec's parameters (canonical names only, so a tied decoder counts once) of
<W_A, P(W_B)>, where P(W_B) permutes every axis the spec assigns. Coordinate descent: in every sweep the perm
groups are visited in a random order (numpy Generator from ``seed``); a group is re-solved exactly with the
other groups held fixed, by a linear assignment (scipy, maximise) on

    S_perm[i, j] = sum over the (parameter, axis) pairs of the perm of <row i of W_A, row j of W_B>

(rows taken along that axis, every OTHER axis of B permuted by the current perms). Sweeps stop when one
changes nothing (or after ``max_iter``).

Groups: a plain perm (ff.{l}, res, pooler) is one LSA. A perm with head ``blocks`` (attn.{l}) is solved
together with its Q/K partner qk.{l} (same suffix): for every (head j of A, head k of B) an inner LSA per
similarity block, the pair scored by the sum of matched similarities, and an outer LSA over the H x H scores
picks ONE head assignment for V/O and Q/K (Algorithm 1 of the paper, on weights). qk "shared" gives Q/K the
V/O within-head order (inner LSA on S_attn + S_qk); "separate" gives Q and K one common order of their own
(q.k is invariant to it). Both are exact symmetries. "monotonic" keeps head j <-> j; "ignore_heads" is a
flat LSA (mixes heads: not function-preserving), as in the activation matcher.

A parameter that a perm acts on along two axes (the MLM transform's res x res) makes J quadratic in that
perm, so its LSA step maximises a linearisation only; every step is therefore accepted only if it raises
the exact J of the parameters it touches. Hence J never decreases and the descent terminates.

Convention as in ``matching``: aligned_B[i] = B[p[i]] (p is a gather index).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from permerge.alignment.matchers import assign_heads, lsa  # noqa: F401  (assign_heads: the one head-aware assignment)
from permerge.alignment.spec import PermutationSpec
from permerge.alignment.variants import ATTENTION_MODES, COMPONENTS, QK_MODES, Variant
from permerge.merging.permute import validate_permutations

# Relative size (against the Cauchy-Schwarz bound of the touched terms) below which a gain is rounding.
_GAIN_TOL = 1e-9


@dataclass(frozen=True)
class WeightMatchingResult:
    perms: dict[str, np.ndarray]  # every perm of the selected components (identity ones included)
    sweeps: int  # sweeps run, the last (unchanged) one included when converged
    converged: bool  # a full sweep changed nothing (False: stopped at max_iter)
    objective: tuple[float, ...]  # J at the start (after init), then after every sweep


def component_of(perm: str) -> str:
    """The variant component a perm name belongs to (qk.{l} goes with attn; a projected ELECTRA's embedding
    space emb with res, as in the activation matcher)."""
    kind = perm.split(".", 1)[0]
    return {"qk": "attn", "emb": "res"}.get(kind, kind)


_lsa = lsa


class _Pair:
    """Both models' parameters as float32 tensors plus the spec's axis map; computes similarities and J."""

    def __init__(self, spec: PermutationSpec, params_a, params_b):
        self.axes = spec.param_axes()
        self.spec = spec
        self.a = _tensors(params_a, self.axes, "A")
        self.b = _tensors(params_b, self.axes, "B")
        bad = [
            f"{k}: {tuple(self.a[k].shape)} vs {tuple(self.b[k].shape)}"
            for k in self.axes
            if self.a[k].shape != self.b[k].shape
        ]
        if bad:
            raise ValueError("models A and B differ in shape: " + "; ".join(bad[:5]))
        for name, by_axis in self.axes.items():
            for axis, perm in by_axis.items():
                if self.a[name].dim() <= axis or self.a[name].shape[axis] != spec.sizes[perm]:
                    raise ValueError(
                        f"parameter {name!r} axis {axis} does not have perm {perm!r}'s size "
                        f"{spec.sizes[perm]} (shape {tuple(self.a[name].shape)})"
                    )
        # Cauchy-Schwarz bound of each parameter's term: the scale against which gains are judged.
        self.bound = {k: float(self.a[k].double().norm() * self.b[k].double().norm()) for k in self.axes}
        self.touched = {perm: sorted({name for name, _ in pairs}) for perm, pairs in spec.axes.items()}

    def permuted_b(self, name: str, perms: Mapping[str, np.ndarray], skip_axis: int | None = None):
        w = self.b[name]
        for axis, perm in self.axes[name].items():
            if axis != skip_axis and perm in perms:
                w = torch.index_select(w, axis, torch.as_tensor(perms[perm], dtype=torch.long))
        return w

    def similarity(self, perm: str, perms: Mapping[str, np.ndarray]) -> np.ndarray:
        n = self.spec.sizes[perm]
        total = torch.zeros(n, n, dtype=torch.float64)
        for name, axis in self.spec.axes[perm]:
            wa = self.a[name].movedim(axis, 0).reshape(n, -1)
            wb = self.permuted_b(name, perms, skip_axis=axis).movedim(axis, 0).reshape(n, -1)
            total += (wa @ wb.T).double()
        sim = total.numpy()
        if not np.isfinite(sim).all():
            raise ValueError(f"the weights behind perm {perm!r} contain NaN or inf")
        return sim

    def objective(self, names: Iterable[str], perms: Mapping[str, np.ndarray]) -> float:
        return float(
            sum(
                torch.dot(self.a[k].reshape(-1).double(), self.permuted_b(k, perms).reshape(-1).double()) for k in names
            )
        )


def _tensors(params, axes: Mapping[str, Mapping[int, str]], which: str) -> dict[str, torch.Tensor]:
    if isinstance(params, torch.nn.Module):
        params = dict(params.named_parameters())
    missing = [k for k in axes if k not in params]
    if missing:
        raise KeyError(f"model {which} lacks parameters the permutation spec names: {', '.join(missing[:5])}")
    return {k: params[k].detach().to("cpu", torch.float32).contiguous() for k in axes}


def _groups(spec: PermutationSpec, selected: Sequence[str]) -> list[tuple[str, ...]]:
    """Perms solved together: a blocked attn.{x} with its qk.{x} partner; every other perm alone."""
    chosen = set(selected)
    groups, taken = [], set()
    for perm in sorted(chosen):
        if perm in taken:
            continue
        kind, _, suffix = perm.partition(".")
        partner = f"qk.{suffix}" if kind == "attn" else f"attn.{suffix}" if kind == "qk" else None
        if perm in spec.blocks and partner in chosen and spec.blocks.get(partner) == spec.blocks[perm]:
            group = (f"attn.{suffix}", f"qk.{suffix}")
        else:
            group = (perm,)
        groups.append(group)
        taken.update(group)
    return groups


def _solve(
    pair: _Pair, group: tuple[str, ...], perms: Mapping[str, np.ndarray], attention: str, qk: str
) -> dict[str, np.ndarray]:
    spec = pair.spec
    sims = [pair.similarity(perm, perms) for perm in group]
    if group[0] not in spec.blocks:
        return {group[0]: _lsa(sims[0])}
    heads = spec.blocks[group[0]]
    if len(group) == 2 and qk == "shared":  # one order for V/O and Q/K: solve on the summed similarity
        (p,) = assign_heads([sims[0] + sims[1]], heads, attention)
        return {group[0]: p, group[1]: p.copy()}
    return dict(zip(group, assign_heads(sims, heads, attention)))


def weight_matching(
    spec: PermutationSpec,
    params_a,
    params_b,
    *,
    components: Iterable[str] = COMPONENTS,
    attention: str = "head_perm",
    qk: str = "shared",
    seed=0,
    max_iter: int = 100,
    init: Mapping[str, np.ndarray] | None = None,
) -> WeightMatchingResult:
    """Perms mapping model B into model A's basis, from the weights alone.

    params_a / params_b: modules or mappings name -> tensor holding (at least) every parameter the spec
    names (aliases of tied weights are never read, so a tied decoder counts once). Only the perms of
    ``components`` are optimised and returned; the others stay the identity. ``init``: starting perms
    (e.g. the activation matcher's, for "hybrid"); default the identity. ``seed``: anything
    ``numpy.random.default_rng`` takes; it fixes the visiting order, so the result is deterministic.
    """
    components = frozenset(components)
    unknown = sorted(components - COMPONENTS)
    if unknown:
        raise ValueError(f"unknown component {unknown[0]!r} (allowed: {', '.join(sorted(COMPONENTS))})")
    if attention not in ATTENTION_MODES:
        raise ValueError(f"unknown attention mode {attention!r} (allowed: {', '.join(ATTENTION_MODES)})")
    if qk not in QK_MODES:
        raise ValueError(f"unknown qk mode {qk!r} (allowed: {', '.join(QK_MODES)})")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    selected = [p for p in sorted(spec.axes) if component_of(p) in components]
    perms = {p: np.arange(spec.sizes[p]) for p in selected}
    if init:
        validate_permutations(spec, init)
        stray = sorted(set(init) - set(selected))
        if stray:
            raise ValueError(
                f"initial permutation {stray[0]!r} is not among the selected components "
                f"({', '.join(sorted(components)) or 'none'})"
            )
        perms.update({k: np.asarray(v, dtype=np.int64).copy() for k, v in init.items()})
    if not selected:
        return WeightMatchingResult({}, 0, True, ())
    pair = _Pair(spec, params_a, params_b)
    everything = sorted(pair.axes)
    objective = [pair.objective(everything, perms)]
    groups = _groups(spec, selected)
    rng = np.random.default_rng(seed)
    converged = False
    sweeps = 0
    while sweeps < max_iter and not converged:
        sweeps += 1
        changed = False
        for g in rng.permutation(len(groups)):
            group = groups[g]
            new = _solve(pair, group, perms, attention, qk)
            if all(np.array_equal(new[p], perms[p]) for p in group):
                continue
            touched = sorted({name for p in group for name in pair.touched[p]})
            trial = {**perms, **new}
            before, after = pair.objective(touched, perms), pair.objective(touched, trial)
            if after - before > _GAIN_TOL * sum(pair.bound[k] for k in touched):
                perms = trial
                changed = True
        objective.append(pair.objective(everything, perms))
        converged = not changed
    return WeightMatchingResult({p: perms[p] for p in selected}, sweeps, converged, tuple(objective))


def match_weights(
    spec: PermutationSpec,
    params_a,
    params_b,
    variant: Variant,
    *,
    seed=0,
    max_iter: int = 100,
    init: Mapping[str, np.ndarray] | None = None,
) -> WeightMatchingResult:
    """``weight_matching`` with a variant's components, attention mode and Q/K mode."""
    return weight_matching(
        spec,
        params_a,
        params_b,
        components=variant.components,
        attention=variant.attention,
        qk=variant.qk,
        seed=seed,
        max_iter=max_iter,
        init=init,
    )
