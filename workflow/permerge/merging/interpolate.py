"""Interpolate parameters: theta(lam) = (1 - lam) * theta_A + lam * theta_B' for every float parameter/buffer
(B' is the aligned B); non-float buffers come from A.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch


def _float_and_other_tensors(model: torch.nn.Module):
    seen: set[int] = set()
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if id(t) in seen:
            continue
        seen.add(id(t))
        yield name, t


@torch.no_grad()
def interpolate_(
    target: torch.nn.Module, params_a: Mapping[str, torch.Tensor], params_b: Mapping[str, torch.Tensor], lam: float
) -> torch.nn.Module:
    """Write theta(lam) = (1 - lam) * A + lam * B into target's own tensors (no reallocation).

    torch.lerp is exact at both ends, so lam=0 gives A and lam=1 gives B bit for bit.
    """
    for name, t in _float_and_other_tensors(target):
        if name not in params_a:
            raise KeyError(f"model A has no tensor {name!r}")
        a = params_a[name]
        if t.is_floating_point():
            if name not in params_b:
                raise KeyError(f"model B has no tensor {name!r}")
            b = params_b[name]
            if a.shape != t.shape or b.shape != t.shape:
                raise ValueError(f"shape mismatch for {name!r}: {tuple(a.shape)} vs {tuple(b.shape)}")
            torch.lerp(a.to(t), b.to(t), float(lam), out=t)
        else:
            t.copy_(a)
    return target


def model_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers by name (shared tensors once)."""
    return dict(_float_and_other_tensors(model))


def interpolate(model_a: torch.nn.Module, model_b: torch.nn.Module, lam: float) -> torch.nn.Module:
    """A new model holding theta(lam) between model_a and (already aligned) model_b."""
    out = copy.deepcopy(model_a)
    return interpolate_(out, model_tensors(model_a), model_tensors(model_b), lam)
