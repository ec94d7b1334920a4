"""The one training loop of pre-training (pretrain.py) and fine-tuning (finetune.py).

Per step: the caller's loss on the next batch (under float16 autocast when fp16 is in effect), a non-finite
check, backward (through a GradScaler), optional gradient-norm clipping of the true (unscaled) gradients,
an AdamW step (no weight decay on biases and LayerNorm weights), a schedule step. The caller owns the data:
every random draw (batch order, masks) happens inside its batch iterator or loss, in step order.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import torch


def param_groups(model, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on matrices, none on biases and LayerNorm weights (as BERT)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_schedule(optimizer, warmup: float, total_steps: int, *, warmup_from_zero: bool = True):
    """Linear warm-up over ceil(warmup * total_steps) steps, then linear decay to 0 at total_steps.

    `warmup_from_zero` (fine-tuning, as run_glue): transformers' get_linear_schedule_with_warmup, whose warm-up
    step k (0-based) uses k/W of the peak lr, so the first step uses lr 0 unless warmup is 0. False
    (pre-training, kept so its checkpoints stay bit-identical): warm-up step k uses (k+1)/W, i.e. HF's warm-up
    shifted one step earlier; the decay (T-k)/(T-W) is HF's exactly.
    """
    if not 0.0 <= float(warmup) <= 1.0:
        raise ValueError(f"warmup must be a fraction of the steps in [0, 1], got {warmup!r}")
    warmup_steps = int(math.ceil(float(warmup) * total_steps))
    if warmup_from_zero:
        from transformers import get_linear_schedule_with_warmup

        return get_linear_schedule_with_warmup(optimizer, warmup_steps, total_steps)

    def factor(step):
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def amp_in_effect(fp16: bool, device: torch.device | str) -> bool:
    """fp16 (float16 autocast + GradScaler) runs only on CUDA; elsewhere it is ignored."""
    return bool(fp16) and torch.device(device).type == "cuda"


@dataclass
class Trained:
    losses: list[float]  # the loss of each step
    lrs: list[float]  # the lr each step used
    skipped: int  # fp16: optimizer steps skipped for overflowing gradients
    seconds: float  # wall time of the loop, `after_step` included


@dataclass
class Progress:
    """Where a loop stands after `step` optimizer steps: what `Trained` reports about those steps."""

    step: int
    losses: list[float]
    lrs: list[float]
    skipped: int


class Resumable(Protocol):
    """Saves a loop's state now and then and restores it in a later process (permerge.training.resume)."""

    def restore(self, model, opt, sched, scaler) -> Progress | None:
        """Load a saved state into the model, optimizer, schedule, scaler and RNGs; None: start at step 0."""

    def due(self, done: int) -> bool:
        """Whether to save after `done` steps."""

    def save(self, progress: Progress, model, opt, sched, scaler) -> None:
        """Save everything the remaining steps depend on (without drawing from any generator)."""


def train(
    model: torch.nn.Module,
    batches: Iterable | Callable[[int], Iterable],
    step_loss: Callable[[object], torch.Tensor],
    *,
    total_steps: int,
    lr: float,
    warmup: float,
    weight_decay: float = 0.0,
    grad_clip: float = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    warmup_from_zero: bool = True,
    fp16: bool = False,
    log: logging.Logger | None = None,
    log_every: int = 50,
    after_step: Callable[[int], None] | None = None,
    resume: Resumable | None = None,
) -> Trained:
    """Train `model` (in place) for `total_steps` steps on `step_loss(batch)` for the batches of `batches`.

    AdamW(lr, betas, eps, `weight_decay` per `param_groups`) with `make_schedule(warmup, warmup_from_zero)`;
    `grad_clip` 0 = no clipping. `fp16` on CUDA: as HF Trainer's fp16, a step skipped for overflowing gradients
    does not advance the schedule. A non-finite loss raises FloatingPointError naming the step (0-based).
    `after_step(steps_done)` runs after every step (e.g. a held-out evaluation); its time is left out of the
    logged s/step.
    `resume`: restore a saved state before the first step (then `batches` must be a callable that returns
    the batches from a given step on) and save one after each step it says is due (after `after_step`).
    A loop resumed at step S ends exactly as an uninterrupted one (same weights, losses, lrs), provided
    `batches(S)` yields the batches the uninterrupted loop would have drawn from step S on.
    """
    log = log or logging.getLogger("permerge.training.train")
    device = next(model.parameters()).device
    amp = amp_in_effect(fp16, device)
    if fp16 and not amp:
        log.info("fp16 requested but ignored on device %s (float16 autocast + loss scaling only on CUDA)", device)
    model.train()
    opt = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, eps=eps)
    sched = make_schedule(opt, warmup, total_steps, warmup_from_zero=warmup_from_zero)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    losses: list[float] = []
    lrs: list[float] = []
    skipped = start = 0
    if resume is not None:
        progress = resume.restore(model, opt, sched, scaler)
        if progress is not None:
            start, losses, lrs, skipped = progress.step, list(progress.losses), list(progress.lrs), progress.skipped
    if callable(batches):
        batches = batches(start)
    elif start:
        raise ValueError("a resumed loop needs `batches` as a callable of the step to start from")
    logged = start  # steps covered by the log lines so far
    t0 = t_window = time.perf_counter()
    paused = 0.0  # time spent in after_step (and saving) during the current log window
    # range first: no batch is drawn past the last step
    for step, batch in zip(range(start, total_steps), batches):
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
            loss = step_loss(batch)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"non-finite loss at step {step}")
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip:
            scaler.unscale_(opt)  # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        lrs.append(opt.param_groups[0]["lr"])
        scale = scaler.get_scale() if amp else None
        scaler.step(opt)
        scaler.update()
        if amp and scaler.get_scale() < scale:  # overflow: the optimizer step was skipped
            skipped += 1
        else:
            sched.step()
        losses.append(value)
        done = step + 1
        if done % log_every == 0 or done == total_steps:
            window = losses[logged:]
            now = time.perf_counter()
            log.info(
                "step %d/%d loss %.4f lr %.2e %.3f s/step",
                done,
                total_steps,
                sum(window) / len(window),
                sched.get_last_lr()[0],
                (now - t_window - paused) / len(window),
            )
            t_window, paused, logged = now, 0.0, done
        if after_step is not None:
            t = time.perf_counter()
            after_step(done)
            paused += time.perf_counter() - t
        if resume is not None and resume.due(done):
            t = time.perf_counter()
            resume.save(Progress(done, losses, lrs, skipped), model, opt, sched, scaler)
            paused += time.perf_counter() - t
    if len(losses) < total_steps:
        raise ValueError(f"the batch iterator ran out after {len(losses)} of {total_steps} steps")
    if skipped:
        log.info("fp16: %d of %d optimizer steps skipped for overflowing gradients", skipped, total_steps)
    return Trained(losses=losses, lrs=lrs, skipped=skipped, seconds=time.perf_counter() - t0)
