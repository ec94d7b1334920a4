"""Intermediate pre-training checkpoints (`models/mlm/seed{s}/steps/step{k}.safetensors`) and their export as
model directories (the workflow's `mlm_step{k}` task).

Standard library only: exporting a step is a file copy, so the workflow's `extract_step` jobs start in a
fraction of a second instead of importing torch and transformers.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from permerge.io import check_safetensors

STEPS_DIR = "steps"  # intermediate checkpoints inside a seed's folder
WEIGHTS = "model.safetensors"
# A seed folder's files that are not the model's: the final weights and the pre-training record.
_NOT_COPIED = {WEIGHTS, "train_metrics.json"}


def step_file(seed_dir, step: int) -> Path:
    """The weights-only checkpoint of a pre-trained seed at an intermediate step."""
    return Path(seed_dir) / STEPS_DIR / f"step{int(step)}.safetensors"


def step_metadata(step: int) -> dict[str, str]:
    """Metadata of a step file: `format: pt` makes it loadable as a model directory's weights as it is."""
    return {"format": "pt", "step": str(int(step))}


def export_step(seed_dir, step: int, out_dir) -> Path:
    """The seed's checkpoint at `step` as a HuggingFace model directory: the final checkpoint's config and
    tokenizer files, and the step file as its weights. `from_pretrained(out_dir)` loads it. `out_dir` is
    written directly: wrap the call in `io.atomic_path`."""
    seed_dir, out_dir = Path(seed_dir), Path(out_dir)
    path = step_file(seed_dir, step)
    if not path.is_file():
        saved = sorted(int(f.stem.removeprefix("step")) for f in path.parent.glob("step*.safetensors"))
        raise FileNotFoundError(
            f"{seed_dir} has no checkpoint at step {step} (saved: {saved or 'none'}); pre-training saves every "
            "models.pretrain.checkpoint_every steps"
        )
    meta = check_safetensors(path)  # a step file cut short fails here, by name
    if meta.get("format") != "pt" or meta.get("step") != str(int(step)):
        raise ValueError(
            f"{path} is not a step-{step} checkpoint of this workflow (metadata {meta}); rerun pretrain_seed "
            "for this seed"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in sorted(seed_dir.iterdir()):
        if f.is_file() and not f.name.startswith(".") and f.name not in _NOT_COPIED:
            shutil.copy2(f, out_dir / f.name)
    shutil.copyfile(path, out_dir / WEIGHTS)
    return out_dir
