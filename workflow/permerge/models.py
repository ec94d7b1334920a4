"""Loading seed checkpoints (HF directories, safetensors only) with clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import torch

ARCHITECTURES = ("BertForMaskedLM", "BertForSequenceClassification", "BertModel")


def model_class(architecture: str):
    import transformers

    if architecture not in ARCHITECTURES:
        raise ValueError(f"unsupported architecture {architecture!r} (supported: {', '.join(ARCHITECTURES)})")
    return getattr(transformers, architecture)


def load_model(path: str | Path, *, device: str = "cpu", num_labels: int | None = None):
    """Load a BERT checkpoint directory in eval mode; refuses pickled weights (safetensors only)."""
    path = Path(path)
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{path}: not a model directory (no config.json)")
    if not any(path.glob("*.safetensors")):
        raise FileNotFoundError(f"{path}: no safetensors weights (pickled checkpoints are not loaded)")
    arch = (json.loads(cfg_file.read_text()).get("architectures") or ["BertModel"])[0]
    model = model_class(arch).from_pretrained(path, use_safetensors=True)
    if num_labels is not None and getattr(model.config, "num_labels", None) != num_labels:
        raise ValueError(
            f"{path}: the checkpoint's head has {model.config.num_labels} labels, the task needs {num_labels}"
        )
    return model.to(torch.device(device)).eval()


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))
