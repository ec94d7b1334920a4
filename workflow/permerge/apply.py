"""Apply permutations, interpolate parameters, and write models/permutations safely.

Interpolation: theta(lam) = (1 - lam) * theta_A + lam * theta_B' for every float parameter/buffer (B' is the
aligned B); non-float buffers come from A.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .io import atomic_path
from .spec import PermutationSpec, spec_for_model

# Files a tokenizer directory may hold; copied verbatim next to a saved model.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
    "added_tokens.json",
)

# Config fields that must agree for two BERTs to be aligned/merged.
COMPATIBILITY_FIELDS = (
    "architectures",
    "num_hidden_layers",
    "hidden_size",
    "num_attention_heads",
    "intermediate_size",
    "vocab_size",
    "max_position_embeddings",
    "type_vocab_size",
    "num_labels",
)


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
    """
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
    return out


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


def check_compatible(config_a, config_b) -> None:
    """Raise ValueError naming every config field on which the two models disagree."""
    diffs = []
    for f in COMPATIBILITY_FIELDS:
        va, vb = getattr(config_a, f, None), getattr(config_b, f, None)
        if f == "architectures":
            va, vb = list(va or []), list(vb or [])
        if va != vb:
            diffs.append(f"{f}: {va!r} vs {vb!r}")
    if diffs:
        raise ValueError("models are not compatible (A vs B): " + "; ".join(diffs))


def save_permutations(
    perms: Mapping[str, np.ndarray], path: str | os.PathLike, metadata: Mapping[str, str] | None = None
) -> None:
    """Write perms as int64 tensors to a safetensors file (atomically, io.atomic_path)."""
    tensors = {k: torch.as_tensor(np.asarray(v, dtype=np.int64)).contiguous() for k, v in perms.items()}
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_permutations(path: str | os.PathLike) -> dict[str, np.ndarray]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k).numpy().astype(np.int64) for k in f.keys()}


def read_permutation_metadata(path: str | os.PathLike) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def save_pretrained_atomic(
    model,
    out_dir: str | os.PathLike,
    tokenizer_dir: str | os.PathLike | None = None,
    *,
    write_extra: Callable[[Path], None] | None = None,
) -> Path:
    """Save model (safetensors) + tokenizer files into out_dir, all or nothing.

    Everything is written into a temporary sibling directory which then replaces out_dir by rename, so
    out_dir is never half-written. ``write_extra(tmp_dir)`` may add further files before the rename.
    """
    # Not io.atomic_path(is_dir=True): that deletes the old out_dir before the rename; this puts it back on failure.
    out_dir = Path(out_dir).resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    old: Path | None = None
    try:
        model.save_pretrained(tmp)
        if tokenizer_dir is not None:
            copied = 0
            for fname in TOKENIZER_FILES:
                src = Path(tokenizer_dir) / fname
                if src.is_file():
                    shutil.copy2(src, tmp / fname)
                    copied += 1
            if not copied:
                raise FileNotFoundError(f"no tokenizer files in {tokenizer_dir}")
        if write_extra is not None:
            write_extra(tmp)
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.old-"))
            os.replace(out_dir, old / "x")
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and (old / "x").exists() and not out_dir.exists():
            os.replace(old / "x", out_dir)  # put the previous result back
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return out_dir


def json_metadata(**items) -> dict[str, str]:
    """Metadata values as strings (safetensors metadata is str -> str); non-strings are JSON-encoded."""
    return {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in items.items()}
