"""Merging all seeds at once (MergeMany, Ainsworth et al., "Git Re-Basin", 2023), over a ``PermutationSpec``.

Two ways to bring S models into one basis before averaging their parameters:

* ``to_reference``: every model is aligned to one reference model (seed 1 in the workflow) with the pair's
  permutations (activation matching reuses the pair files (ref, b); weight matching computes them with
  ``weight_matcher``, i.e. ``matching.align_pair``), then all S are averaged.
* ``iterative``: MergeMany — start from the reference-aligned perms (or the identity); in each round visit
  the models in a random order and re-align model i to the average of the *others* (as currently aligned);
  stop when a round changes no permutation. Needs a matcher that can align to an average model, i.e. the
  data-free weight matcher (activation matching would need statistics of every intermediate average).

Averages are plain means of every floating tensor; non-float buffers come from the reference. A ``match``
is any callable (target_params, params_b) -> perms mapping B into the target's basis, in the convention of
``permerge.alignment.matching`` (aligned_B[i] = B[p[i]]).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from permerge.alignment.spec import PermutationSpec
from permerge.merging.permute import permute_params

Params = Mapping[str, torch.Tensor]
Match = Callable[[Params, Params], Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class ManyResult:
    params: dict[str, torch.Tensor]  # the average of the aligned models
    perms: list[dict[str, np.ndarray]]  # per model, the perms into the common basis ({} = identity)
    rounds: int  # iterative rounds run (0 for to_reference)
    converged: bool


def average(params: Sequence[Params]) -> dict[str, torch.Tensor]:
    """Mean of every floating tensor over the models (float64 accumulation); others from the first."""
    out = {}
    for name, first in params[0].items():
        if first.is_floating_point():
            acc = torch.zeros_like(first, dtype=torch.float64)
            for p in params:
                acc += p[name].double()
            out[name] = (acc / len(params)).to(first.dtype)
        else:
            out[name] = first.clone()
    return out


def weight_matcher(variant, spec: PermutationSpec, *, seed=0) -> Callable[..., dict[str, np.ndarray]]:
    """The Match of a weight or hybrid variant: ``matching.align_pair`` on the weights, started from the
    identity, or from ``init`` (match(target, params_b, init=None)). MergeMany aligns to averages of models,
    which have no activation statistics: a hybrid variant starts from the identity there too."""
    from permerge.alignment.matching import Pair, align_pair

    def match(target: Params, params_b: Params, init: Mapping[str, np.ndarray] | None = None):
        pair = Pair(params_a=target, params_b=params_b, spec=spec, seed=seed)
        return align_pair(variant, pair, init=dict(init or {})).perms

    return match


def _aligned(spec: PermutationSpec, params: Sequence[Params], perms: Sequence[Mapping[str, np.ndarray]]):
    return [permute_params(p, spec, q) if q else dict(p) for p, q in zip(params, perms)]


def to_reference(
    spec: PermutationSpec,
    params: Sequence[Params],
    match: Match | None = None,
    *,
    reference: int = 0,
    perms: Sequence[Mapping[str, np.ndarray]] | None = None,
) -> ManyResult:
    """Align every model to ``params[reference]`` (with ``match``, or with given ``perms`` per model, the
    reference's own being ignored) and average them."""
    if len(params) < 2:
        raise ValueError(f"merging needs at least two models, got {len(params)}")
    if not 0 <= reference < len(params):
        raise ValueError(f"reference {reference} is not one of the {len(params)} models")
    if perms is None:
        if match is None:
            raise ValueError("give either a match function or the perms of every model")
        perms = [{} if i == reference else dict(match(params[reference], p)) for i, p in enumerate(params)]
    elif len(perms) != len(params):
        raise ValueError(f"{len(perms)} permutation sets for {len(params)} models")
    perms = [{} if i == reference else {k: np.asarray(v) for k, v in q.items()} for i, q in enumerate(perms)]
    return ManyResult(average(_aligned(spec, params, perms)), perms, 0, True)


def iterative(
    spec: PermutationSpec,
    params: Sequence[Params],
    match: Match,
    *,
    seed=0,
    max_rounds: int = 20,
    init: Sequence[Mapping[str, np.ndarray]] | None = None,
) -> ManyResult:
    """MergeMany: re-align each model to the average of the others until no permutation changes."""
    if len(params) < 2:
        raise ValueError(f"merging needs at least two models, got {len(params)}")
    perms = [dict(q) for q in init] if init is not None else [{} for _ in params]
    aligned = _aligned(spec, params, perms)
    rng = np.random.default_rng(seed)
    rounds, converged = 0, False
    while rounds < max_rounds and not converged:
        rounds += 1
        converged = True
        for i in rng.permutation(len(params)):
            others = average([a for j, a in enumerate(aligned) if j != i])
            new = {k: np.asarray(v) for k, v in match(others, params[i]).items()}
            if not _same(new, perms[i], spec):
                converged = False
                perms[i] = new
                aligned[i] = permute_params(params[i], spec, new) if new else dict(params[i])
    return ManyResult(average(aligned), perms, rounds, converged)


def _same(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], spec: PermutationSpec) -> bool:
    """Equal as permutations (a missing perm is the identity)."""
    for name in set(a) | set(b):
        ident = np.arange(spec.sizes[name])
        if not np.array_equal(np.asarray(a.get(name, ident)), np.asarray(b.get(name, ident))):
            return False
    return True


@torch.no_grad()
def into_model(model: torch.nn.Module, params: Params) -> torch.nn.Module:
    """Write params (names as ``interpolate.model_tensors`` gives them) into a copy of ``model``."""
    import copy

    from permerge.merging.interpolate import model_tensors

    out = copy.deepcopy(model)
    for name, t in model_tensors(out).items():
        if name not in params:
            raise KeyError(f"no tensor {name!r} in the merged parameters")
        t.copy_(params[name])
    return out
