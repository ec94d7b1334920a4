"""Saved models and permutations: the config check before two models are aligned or merged, permutation
files (safetensors) and their metadata, and writing a model directory all or nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file  # numpy, not torch: reading or writing permutations needs no torch

from permerge.alignment.headmaps import MAP_PREFIX

from .io import atomic_path

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


def _family_fields(config) -> tuple[str, ...]:
    """The config fields of the model's dimensions (families.Family.fields) that COMPATIBILITY_FIELDS lacks."""
    from .families import model_types

    fam = model_types().get(getattr(config, "model_type", None))
    if fam is None:
        return ()
    names = (*fam.fields.values(), fam.embedding_size)
    return tuple(f for f in names if f and f not in COMPATIBILITY_FIELDS)


def check_compatible(config_a, config_b) -> None:
    """Raise ValueError naming every config field on which the two models disagree (COMPATIBILITY_FIELDS and
    the dimensions their families name differently, e.g. DistilBERT's hidden_dim, ELECTRA's embedding_size)."""
    diffs = []
    for f in COMPATIBILITY_FIELDS + tuple(dict.fromkeys(_family_fields(config_a) + _family_fields(config_b))):
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
    """Write perms as int64 tensors to a safetensors file (atomically, io.atomic_path); per-head maps
    (``map.{perm}``, permerge.alignment.headmaps) as float64."""
    tensors = {
        k: np.ascontiguousarray(v, dtype=np.float64 if k.startswith(MAP_PREFIX) else np.int64) for k, v in perms.items()
    }
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_permutations(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The permutations (int64) and per-head maps (``map.{perm}``, float64) of a file; a file written before
    the maps existed has none (the identity)."""
    with safe_open(str(path), framework="numpy") as f:
        return {k: f.get_tensor(k).astype(np.float64 if k.startswith(MAP_PREFIX) else np.int64) for k in f.keys()}


def read_permutation_metadata(path: str | os.PathLike) -> dict[str, str]:
    with safe_open(str(path), framework="numpy") as f:
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
