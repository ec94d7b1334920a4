"""Fine-tuning a pre-trained seed on a GLUE(-shaped) task: one BertForSequenceClassification per seed.

The classification head (the pooler when the checkpoint has none, and the classifier) is initialised
IDENTICALLY across seeds from `head_seed` (method.md); the seed controls only the data order. num_labels == 1
is regression with an MSE loss (STS-B).

A plain training loop rather than HF Trainer: on CPU it is simpler and faster (batches padded to their own
longest example, no accelerate/callback machinery, no intermediate checkpoints), the whole state is the
model, an AdamW and a linear schedule, and the data order is an explicit seeded permutation per epoch.
"""

from __future__ import annotations

import json
import logging
import math
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .evaluate import build_glue_evalset, glue_logits, glue_loss
from .pretrain import linear_schedule, param_groups

HEAD_PREFIXES = ("classifier.", "bert.pooler.")


@dataclass(frozen=True)
class TaskInfo:
    text_keys: tuple[str, ...]
    num_labels: int
    metric: str
    eval_split: str = "validation"


# Local fallback; permerge.standins.TASKS (when present) is the source of truth for the workflow.
_LOCAL_TASKS = {
    "mnli": TaskInfo(("premise", "hypothesis"), 3, "accuracy", "validation_mismatched"),
    "qqp": TaskInfo(("question1", "question2"), 2, "f1"),
    "qnli": TaskInfo(("question", "sentence"), 2, "accuracy"),
    "sst2": TaskInfo(("sentence",), 2, "accuracy"),
    "cola": TaskInfo(("sentence",), 2, "matthews"),
    "stsb": TaskInfo(("sentence1", "sentence2"), 1, "pearson"),
    "mrpc": TaskInfo(("sentence1", "sentence2"), 2, "f1"),
    "rte": TaskInfo(("sentence1", "sentence2"), 2, "accuracy"),
}


def task_info(task: str):
    """(text_keys, num_labels, metric, eval_split) of a GLUE task: permerge.standins.TASKS if it exists."""
    try:
        from .standins import TASKS  # type: ignore[attr-defined]

        return TASKS[task]
    except ImportError:
        return _LOCAL_TASKS[task]


def _checkpoint_keys(model_dir) -> set[str]:
    from safetensors import safe_open

    keys: set[str] = set()
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as fh:
            keys.update(fh.keys())
    return keys


def init_head(model, *, head_seed: int, reinit_pooler: bool) -> list[str]:
    """Re-initialise the classifier (and the pooler if asked) from `head_seed` alone, BERT-style:
    normal(0, initializer_range) weights, zero biases. Each tensor gets its own generator seeded from
    (head_seed, parameter name), so the classifier's draw does not depend on whether the pooler is redrawn.
    Returns the names re-initialised."""
    std = float(getattr(model.config, "initializer_range", 0.02))
    names = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("classifier.") or (reinit_pooler and name.startswith("bert.pooler.")):
                if name.endswith("bias"):
                    p.zero_()
                else:
                    gen = torch.Generator().manual_seed(int(head_seed) * 1_000_003 + zlib.crc32(name.encode()))
                    p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32).mul_(std).to(p.dtype))
                names.append(name)
    return names


def load_for_classification(model_dir, *, num_labels: int, head_seed: int = 0, log=None):
    """BertForSequenceClassification from a pre-trained (MLM) directory with a seed-independent head."""
    import transformers
    from transformers import BertForSequenceClassification

    keys = _checkpoint_keys(model_dir)
    has_pooler = any(k.endswith("pooler.dense.weight") for k in keys)
    kwargs = {"num_labels": int(num_labels)}
    if num_labels == 1:
        kwargs["problem_type"] = "regression"
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the "newly initialized head" warning is expected here
    try:
        model = BertForSequenceClassification.from_pretrained(str(model_dir), use_safetensors=True, **kwargs)
    finally:
        transformers.logging.set_verbosity(verbosity)
    names = init_head(model, head_seed=head_seed, reinit_pooler=not has_pooler)
    if log is not None:
        log.info("head initialised from head_seed=%d: %s (pooler %s)", head_seed, ", ".join(names),
                 "pre-trained" if has_pooler else "new")
    return model


def length_grouped_batches(lengths: torch.Tensor, batch_size: int, generator: torch.Generator,
                           group: int = 50) -> list[torch.Tensor]:
    """One epoch of index batches of similar length, in random order (as HF Trainer's group_by_length).

    Shuffle, sort each run of `group` batches by length, cut it into batches, shuffle the batches: every
    example once, ceil(n / batch_size) batches, and each batch is trimmed to its own longest example.
    """
    order = torch.randperm(lengths.shape[0], generator=generator)
    batches = []
    for chunk in order.split(batch_size * group):
        chunk = chunk[torch.argsort(lengths[chunk], descending=True, stable=True)]
        batches.extend(chunk.split(batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=generator)]


def finetune(
    *,
    model_dir,
    train_examples: Sequence[dict],
    eval_examples: Sequence[dict],
    text_keys: Sequence[str],
    num_labels: int,
    metric: str,
    out_dir,
    seed: int,
    head_seed: int = 0,
    lr: float = 2e-5,
    epochs: float = 3,
    batch_size: int = 32,
    max_length: int = 128,
    warmup: float = 0.1,
    weight_decay: float = 0.0,
    grad_clip: float = 1.0,
    group_by_length: bool = True,
    device: str = "cpu",
    eval_batch_size: int = 64,
    log: logging.Logger | None = None,
) -> dict:
    """Fine-tune one seed and save it (safetensors + tokenizer + metrics.json). Returns the metrics.

    `epochs` may be fractional (the last epoch is cut short). Loss: cross-entropy, or MSE when num_labels == 1.
    """
    from transformers import AutoTokenizer

    log = log or logging.getLogger("permerge.finetune")
    t0 = time.time()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    regression = num_labels == 1
    train = build_glue_evalset(tokenizer, train_examples, text_keys, max_length=max_length, regression=regression)
    evalset = build_glue_evalset(tokenizer, eval_examples, text_keys, max_length=max_length, regression=regression)
    model = load_for_classification(model_dir, num_labels=num_labels, head_seed=head_seed, log=log)
    dev = torch.device(device)
    model.to(dev).train()

    n = train["labels"].shape[0]
    steps_per_epoch = math.ceil(n / batch_size)
    total_steps = max(1, math.ceil(steps_per_epoch * float(epochs)))
    # Same parameter groups and warm-up/decay schedule as pre-training.
    opt = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr)
    sched = linear_schedule(opt, int(math.ceil(warmup * total_steps)), total_steps)
    gen = torch.Generator().manual_seed(int(seed))
    log.info("seed %d: %d train / %d eval examples, %d steps (%.3g epochs of %d), lr %.2e",
             seed, n, evalset["labels"].shape[0], total_steps, float(epochs), steps_per_epoch, lr)

    step, losses, first_losses = 0, [], []
    log_every = max(1, min(50, total_steps // 10))
    while step < total_steps:
        if group_by_length:
            batches = length_grouped_batches(train["lengths"], batch_size, gen)
        else:
            batches = torch.randperm(n, generator=gen).split(batch_size)
        for idx in batches:
            if step >= total_steps:
                break
            logits = glue_logits(model, train, idx, dev)
            y = train["labels"][idx].to(dev)
            loss = F.mse_loss(logits.squeeze(-1), y) if regression else F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
            sched.step()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(f"non-finite loss at step {step}")
            losses.append(value)
            if len(first_losses) < 20:
                first_losses.append(value)
            step += 1
            if step % log_every == 0 or step == total_steps:
                window = losses[-log_every:]
                log.info("step %d/%d loss %.4f lr %.2e", step, total_steps, sum(window) / len(window),
                         sched.get_last_lr()[0])
    train_minutes = (time.time() - t0) / 60
    model.eval()
    result = glue_loss(model, evalset, num_labels=num_labels, metric=metric, batch_size=eval_batch_size)
    tail = losses[-min(len(losses), max(1, steps_per_epoch // 2, 20)):]
    metrics = {
        "metric": metric,
        "value": result[metric],
        **{f"eval_{k}": v for k, v in result.items()},
        "train_loss_first": sum(first_losses) / len(first_losses),
        "train_loss_final": sum(tail) / len(tail),
        "steps": total_steps,
        "epochs": float(epochs),
        "n_train": int(n),
        "n_eval": int(evalset["labels"].shape[0]),
        "seed": int(seed),
        "head_seed": int(head_seed),
        "lr": float(lr),
        "train_minutes": train_minutes,
        "minutes": (time.time() - t0) / 60,
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.to("cpu").save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    log.info("validation %s=%.4f loss=%.4f (%.1f min)", metric, result[metric], result["loss"], metrics["minutes"])
    return metrics
