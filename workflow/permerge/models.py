"""Loading seed checkpoints (HF directories, safetensors only) with clear errors, and making the local
safetensors copy of a hub or local seed checkpoint (`fetch_checkpoint`)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from .families import model_types, supported_classes
from .io import check_safetensors

# Every class of every family (families.FAMILIES), the ones a checkpoint directory may name.
ARCHITECTURES = tuple(supported_classes())
# Pre-trained seed checkpoints that `fetch_checkpoint` copies (the MultiBERTs are BertForPreTraining).
# Seed checkpoints the workflow takes, by model_type: the MLM task needs an MLM head (and fine-tuning a GLUE
# task starts from one).
SEED_ARCHITECTURES = {
    t: tuple(f.class_for(t, k) for k in ("pretraining", "mlm") if k in f.heads.values())
    for t, f in model_types().items()
}


def model_class(architecture: str):
    import transformers

    if architecture not in ARCHITECTURES:
        raise ValueError(f"unsupported architecture {architecture!r} (supported: {', '.join(ARCHITECTURES)})")
    return getattr(transformers, architecture)


def load_model(path: str | Path, *, device: str = "cpu", num_labels: int | None = None):
    """Load a checkpoint directory of a supported encoder (ARCHITECTURES; BertModel when config.json names
    none) in eval mode; refuses pickled weights (safetensors only)."""
    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{path}: not a model directory (no config.json)")
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        raise FileNotFoundError(f"{path}: no safetensors weights (pickled checkpoints are not loaded)")
    for f in weights:  # a file cut short fails here, by name
        check_safetensors(f)
    arch = (json.loads(cfg_file.read_text()).get("architectures") or ["BertModel"])[0]
    model = model_class(arch).from_pretrained(path, use_safetensors=True)
    if num_labels is not None and getattr(model.config, "num_labels", None) != num_labels:
        raise ValueError(
            f"{path}: the checkpoint's head has {model.config.num_labels} labels, the task needs {num_labels}"
        )
    return model.to(torch.device(device)).eval()


def load_tokenizer(path: str | Path):
    """The tokenizer of a local checkpoint directory. Never a hub id: a path that is not a folder would be
    looked up on the hub (and, offline, fail deep inside transformers), so it fails here, by name."""
    from transformers import AutoTokenizer

    if not Path(path).is_dir():
        raise FileNotFoundError(
            f"{path}: not a local checkpoint directory (tokenizers are read from the local copies fetch_model "
            "or pre-training wrote, never from the hub)"
        )
    return AutoTokenizer.from_pretrained(str(path))


def fetch_checkpoint(location: str | Path, out_dir: str | Path, *, log: logging.Logger | None = None) -> dict:
    """Copy a pre-trained seed checkpoint (hub id or local directory) to `out_dir` as safetensors plus a fast
    tokenizer, keeping every pre-trained weight (for BertForPreTraining: the pooler and the NSP head too).

    The class is the one config.json names (BertForPreTraining or BertForMaskedLM); anything else is refused.
    A pickled `pytorch_model.bin` (all the MultiBERTs ship) is read only through `from_pretrained`'s restricted
    `weights_only` unpickling. The tokenizer is built from the source's vocab.txt / tokenizer_config.json when it
    has no tokenizer.json. A weight missing from the source would be silently drawn at random, so it is an
    error. `out_dir` is written directly: wrap the call in `io.atomic_path`. Returns what was kept.
    """
    import transformers
    from transformers import AutoConfig, AutoTokenizer

    log = log or logging.getLogger("permerge.models")
    # Loading a hub .bin would otherwise start a background thread asking the hub's bot for a safetensors PR.
    os.environ["DISABLE_SAFETENSORS_CONVERSION"] = "1"
    config = AutoConfig.from_pretrained(str(location))
    archs = list(getattr(config, "architectures", None) or [])
    kind = getattr(config, "model_type", None)
    if len(archs) != 1 or archs[0] not in SEED_ARCHITECTURES.get(kind, ()):
        supported = "; ".join(f"{k}: {', '.join(v)}" for k, v in SEED_ARCHITECTURES.items())
        raise ValueError(
            f"model {str(location)!r}: config.json has model_type {kind!r}, architectures {archs}; "
            f"supported: {supported}"
        )
    cls = getattr(transformers, archs[0])
    model, info = cls.from_pretrained(str(location), config=config, weights_only=True, output_loading_info=True)
    tied = set(getattr(model, "all_tied_weights_keys", None) or getattr(model, "_tied_weights_keys", None) or ())
    missing = sorted(set(info.get("missing_keys") or ()) - tied)
    if missing:
        raise ValueError(
            f"model {str(location)!r}: weights missing from the checkpoint (they would be random): "
            f"{', '.join(missing[:8])}{' …' if len(missing) > 8 else ''}"
        )
    if info.get("unexpected_keys"):
        log.info("ignored tensors of %s: %s", location, ", ".join(sorted(info["unexpected_keys"])[:8]))
    tokenizer = AutoTokenizer.from_pretrained(str(location))
    if not tokenizer.is_fast:
        raise ValueError(f"model {str(location)!r}: no fast tokenizer could be built ({type(tokenizer).__name__})")
    if len(tokenizer) > config.vocab_size:  # ids past the embedding matrix would fail at the first batch
        raise ValueError(
            f"model {str(location)!r}: the tokenizer has {len(tokenizer)} tokens, the model's "
            f"vocab_size is {config.vocab_size}"
        )
    out_dir = Path(out_dir)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    base = model.base_model
    kept = {
        "architecture": archs[0],
        "pooler": getattr(base, "pooler", None) is not None,
        "nsp_head": hasattr(getattr(model, "cls", None), "seq_relationship"),
        "mlm_head": hasattr(getattr(model, "cls", None), "predictions"),
        "vocab_size": int(config.vocab_size),
        "tokenizer": type(tokenizer).__name__,
    }
    log.info(
        "kept from %s: %s (pooler: %s, NSP head: %s, MLM head: %s), tokenizer %s",
        location,
        archs[0],
        "yes" if kept["pooler"] else "no",
        "yes" if kept["nsp_head"] else "no",
        "yes" if kept["mlm_head"] else "no",
        kept["tokenizer"],
    )
    return kept
