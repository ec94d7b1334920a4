"""Apply permutations to a model's parameters: check them against the spec, gather tensors along the
permuted axes, and permute a model (tied weights stay tied). Per-head maps (``map.{perm}`` entries,
``permerge.alignment.headmaps``) given with the permutations are applied after them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np
import torch

from permerge.alignment.headmaps import apply_maps, split_maps
from permerge.alignment.spec import PermutationSpec, spec_for_model


def validate_permutations(spec: PermutationSpec, perms: Mapping[str, np.ndarray]) -> None:
    """Raise ValueError unless every perm is named in the spec and is a permutation of the right size."""
    for name, p in perms.items():
        if name not in spec.axes:
            raise ValueError(f"unknown permutation {name!r} for this model (known: {', '.join(sorted(spec.axes))})")
        p = np.asarray(p)
        n = spec.sizes[name]
        if p.shape != (n,) or not np.array_equal(np.sort(p), np.arange(n)):
            raise ValueError(f"permutation {name!r} is not a permutation of {n} elements")


def permute_params(
    params: Mapping[str, torch.Tensor], spec: PermutationSpec, perms: Mapping[str, np.ndarray]
) -> dict[str, torch.Tensor]:
    """Return a new dict with every parameter gathered along the axes the given perms act on.

    Perms missing from ``perms`` are the identity. Aliases of tied weights (e.g. the MLM decoder weight in
    a state_dict) are permuted like the weight they are tied to. Untouched tensors are passed through.
    Per-head maps among ``perms`` (``map.{perm}``) are applied after the permutations.
    """
    perms, maps = split_maps(perms)
    validate_permutations(spec, perms)
    axes = spec.param_axes()
    missing = [n for n in axes if n not in params and any(p in perms for p in axes[n].values())]
    if missing:
        raise KeyError(f"parameters named by the spec are missing: {missing[:5]}")
    out: dict[str, torch.Tensor] = {}
    for name, tensor in params.items():
        w = tensor
        for axis, perm in axes.get(spec.aliases.get(name, name), {}).items():
            if perm in perms:
                index = torch.as_tensor(np.asarray(perms[perm]), dtype=torch.long, device=w.device)
                w = torch.index_select(w, axis, index)
        out[name] = w
    return apply_maps(out, spec, maps) if maps else out


@torch.no_grad()
def apply_permutations(model: torch.nn.Module, perms: Mapping[str, np.ndarray]) -> torch.nn.Module:
    """A permuted deep copy of the model. Tied weights stay tied (each shared tensor is written once)."""
    spec = spec_for_model(model)
    out = copy.deepcopy(model)
    named = dict(out.named_parameters())  # shared tensors appear once here
    permuted = permute_params(named, spec, perms)
    for name, param in named.items():
        if permuted[name] is not param:
            param.copy_(permuted[name])
    return out
