"""Resumable training: the state of a fine-tuning loop, saved every N optimizer steps and at every epoch
end, so that a job killed by a time limit or a preemption goes on from its last save in the next attempt
and ends with the weights of an uninterrupted run (bit-identical on the CPU).

What is saved (one file, `state.safetensors` in the job's resume directory):
- tensors (safetensors): the model's parameters (`model/<name>`), AdamW's per-parameter state
  (`optimizer/<name>/exp_avg`, `.../exp_avg_sq`, `.../step`), the RNG states that training draws from
  (`rng/torch`: torch's global CPU generator, i.e. dropout on the CPU; `rng/cuda`: the device's generator,
  dropout on CUDA; `rng/data`: the data-order generator), and the loss and lr of every step done
  (`history/losses`, `history/lrs`, float64: the metrics of the finished run need them);
- scalars (JSON, in the file's safetensors metadata under `permerge_resume`): the step, the optimizer's
  hyper-parameters per group (with the parameter names of each), the lr schedule's and the fp16
  GradScaler's state, the count of skipped fp16 steps, and the fingerprint of the run the state belongs to
  (hyper-parameters, the input model's files, the training data, the step counts).
Scalars and tensors share one file so that a single rename makes a save visible: a save is written to a
temporary sibling (`permerge.io.atomic_path`), flushed to disk and renamed over the previous one, so a kill
during a save leaves the previous state intact (the temporary is removed at the next start).

Nothing is unpickled (no torch.load): tensors come from safetensors, scalars from JSON.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from pathlib import Path

import torch

from permerge.alignment.stats import write_safetensors
from permerge.io import DamagedFile, atomic_path, check_safetensors
from permerge.training.train import Progress

FORMAT = 1  # bump when the layout changes: a state of another format is not resumed
STATE = "state.safetensors"
META_KEY = "permerge_resume"


def sha256_files(paths) -> str:
    """sha256 over the names and bytes of `paths` (the identity of an input model's files)."""
    h = hashlib.sha256()
    for path in paths:
        path = Path(path)
        h.update(path.name.encode() + b"\0")
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


def model_identity(model_dir) -> str:
    """sha256 of a checkpoint directory's weights (*.safetensors) and config.json."""
    d = Path(model_dir)
    files = sorted(d.glob("*.safetensors")) + [f for f in [d / "config.json"] if f.is_file()]
    return sha256_files(files)


def sha256_tensors(tensors) -> str:
    """sha256 over the dtypes, shapes and bytes of `tensors` (the identity of a tokenized training set)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().to("cpu").contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().data)  # no copy of the data
    return h.hexdigest()


def discard(directory, log: logging.Logger | None = None) -> None:
    """Remove a resume directory (after the job's output is in place)."""
    directory = Path(directory)
    if directory.exists():
        shutil.rmtree(directory)
        if log is not None:
            log.info("removed the resume state %s", directory)


class Mismatch(ValueError):
    """A resume state that is unreadable or belongs to another run."""


def _param_names(model) -> dict[int, str]:
    return {id(p): n for n, p in model.named_parameters()}


def _rng_device(model) -> torch.device | None:
    dev = next(model.parameters()).device
    return dev if dev.type == "cuda" else None


class TrainingState:
    """Saves and restores a training loop's state in `directory` (train.Resumable).

    `every_steps` (None: only at epoch ends) and every `steps_per_epoch`-th step and the last step are due.
    `fingerprint` (JSON values) names the run; a state whose fingerprint differs is not resumed.
    `data_state_at(step)` returns the data-order generator's state after `step` steps' batches (replayed
    from its seed); the restored state must agree with it, so a change in how batches are drawn cannot
    resume into another order (the caller's batches replay the order from the seed: the current epoch's
    batches are rebuilt that way). `data_generator` is the live data-order generator whose state is saved.
    """

    def __init__(
        self,
        directory,
        *,
        every_steps: int | None,
        steps_per_epoch: int,
        total_steps: int,
        fingerprint: dict,
        data_generator: torch.Generator | None = None,
        data_state_at=None,
        log: logging.Logger | None = None,
    ):
        if every_steps is not None and int(every_steps) < 1:
            raise ValueError(f"every_steps must be at least 1 (or None), got {every_steps!r}")
        self.directory = Path(directory)
        self.path = self.directory / STATE
        self.every = None if every_steps is None else int(every_steps)
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.total_steps = int(total_steps)
        self.fingerprint = {"format": FORMAT, **fingerprint}
        self.data_generator = data_generator
        self.data_state_at = data_state_at
        self.log = log or logging.getLogger("permerge.training.resume")
        self.saves = 0
        self.save_seconds = 0.0

    # ------------------------------------------------------------------ saving

    def due(self, done: int) -> bool:
        return (
            (self.every is not None and done % self.every == 0)
            or done % self.steps_per_epoch == 0
            or done == self.total_steps
        )

    def save(self, progress: Progress, model, opt, sched, scaler) -> None:
        """Write the state after `progress.step` steps atomically. Draws from no generator."""
        t = time.perf_counter()
        names = _param_names(model)
        tensors: dict[str, torch.Tensor] = {}
        for name, p in model.named_parameters():
            tensors[f"model/{name}"] = p.detach()  # copied off the device one at a time, when written
        groups = []
        for group in opt.param_groups:
            hp = {k: (list(v) if isinstance(v, tuple) else v) for k, v in group.items() if k != "params"}
            hp["params"] = [names[id(p)] for p in group["params"]]
            groups.append(hp)
            for p in group["params"]:
                for key, value in opt.state.get(p, {}).items():
                    if not torch.is_tensor(value):
                        value = torch.tensor(value, dtype=torch.float64)
                    tensors[f"optimizer/{names[id(p)]}/{key}"] = value.detach()
        tensors["rng/torch"] = torch.get_rng_state()
        cuda = _rng_device(model)
        if cuda is not None:
            tensors["rng/cuda"] = torch.cuda.get_rng_state(cuda)
        if self.data_generator is not None:
            tensors["rng/data"] = self.data_generator.get_state()
        tensors["history/losses"] = torch.tensor(progress.losses, dtype=torch.float64)
        tensors["history/lrs"] = torch.tensor(progress.lrs, dtype=torch.float64)
        meta = {
            "fingerprint": self.fingerprint,
            "step": int(progress.step),
            "skipped": int(progress.skipped),
            "optimizer_groups": groups,
            "scheduler": sched.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else {},
        }
        # one tensor at a time (safetensors' save_file would copy bert-base's whole 1.3 GB state off the GPU,
        # which the job's footprint does not allow for), widest dtype first (each offset a multiple of its
        # element size), fsynced before the rename makes it the state
        order = sorted(tensors, key=lambda k: -tensors[k].element_size())
        entries = [(k, tensors[k].dtype, tensors[k].shape, lambda t=tensors[k]: t) for k in order]
        with atomic_path(self.path) as tmp:
            write_safetensors(tmp, entries, {META_KEY: json.dumps(meta)}, fsync=True)
        self.saves += 1
        self.save_seconds += time.perf_counter() - t

    # ------------------------------------------------------------------ restoring

    def _clean_temporaries(self) -> None:
        # A save killed half-way leaves its temporary (`.state.safetensors.XXXX/`); the state itself is intact.
        for tmp in self.directory.glob(f".{STATE}.*"):
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)

    def _read(self, model, opt) -> tuple[dict, dict[str, torch.Tensor]]:
        """The state's scalars and tensors, checked against this run; Mismatch says why not."""
        from safetensors.torch import load_file

        try:
            header = check_safetensors(self.path)
            meta = json.loads(header[META_KEY])
        except (DamagedFile, KeyError, json.JSONDecodeError) as err:
            raise Mismatch(f"unreadable ({err})") from None
        saved = meta.get("fingerprint", {})
        if saved != self.fingerprint:
            keys = sorted(k for k in set(saved) | set(self.fingerprint) if saved.get(k) != self.fingerprint.get(k))
            diff = ", ".join(f"{k}: {saved.get(k)!r} there, {self.fingerprint.get(k)!r} here" for k in keys)
            raise Mismatch(f"it belongs to another run ({diff})")
        step = meta.get("step")
        if not isinstance(step, int) or not 0 < step <= self.total_steps:
            raise Mismatch(f"step {step!r} outside 1..{self.total_steps}")
        tensors = load_file(str(self.path))
        params = dict(model.named_parameters())
        for name, p in params.items():
            t = tensors.get(f"model/{name}")
            if t is None or t.shape != p.shape or t.dtype != p.dtype:
                raise Mismatch(f"parameter {name} missing or of another shape/dtype")
        groups = meta["optimizer_groups"]
        if [g["params"] for g in groups] != [
            [_param_names(model)[id(p)] for p in g["params"]] for g in opt.param_groups
        ]:
            raise Mismatch("the optimizer's parameter groups differ")
        if len(tensors["history/losses"]) != step or len(tensors["history/lrs"]) != step:
            raise Mismatch("the loss/lr history does not cover the saved steps")
        if self.data_state_at is not None:
            if "rng/data" not in tensors or not torch.equal(tensors["rng/data"], self.data_state_at(step)):
                raise Mismatch(f"its data-order generator disagrees with this run's order at step {step}")
        return meta, tensors

    def restore(self, model, opt, sched, scaler) -> Progress | None:
        """Load the saved state into model, optimizer, schedule, scaler and RNGs; None: no usable state.

        A state that is unreadable or belongs to another run (other hyper-parameters, input model or data)
        is ignored with a warning naming the file, and training starts from step 0; its file is replaced by
        the first save. Why not refuse: the state lives outside the job's outputs and survives failures, so
        a refused state would fail every automatic retry or requeue of the job until someone deletes it by
        hand, whereas ignoring it loses nothing that this run could have used.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        self._clean_temporaries()
        if not self.path.is_file():
            self.log.info("no resume state: starting from step 0 (state: %s)", self.path)
            return None
        try:
            meta, tensors = self._read(model, opt)
        except Mismatch as err:
            self.log.warning("ignoring the resume state %s: %s; starting from step 0", self.path, err)
            return None
        except Exception as err:  # noqa: BLE001  any other unreadable content: ignored the same way
            self.log.warning(
                "ignoring the resume state %s: unreadable (%s: %s); starting from step 0",
                self.path,
                type(err).__name__,
                err,
            )
            return None
        step = int(meta["step"])
        names = _param_names(model)
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(tensors[f"model/{name}"])
        state, groups = {}, []
        index = 0
        for group, saved in zip(opt.param_groups, meta["optimizer_groups"]):
            ids = []
            for p in group["params"]:
                prefix = f"optimizer/{names[id(p)]}/"
                st = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
                if st:
                    state[index] = st
                ids.append(index)
                index += 1
            hp = {k: (tuple(v) if k == "betas" else v) for k, v in saved.items() if k != "params"}
            groups.append({**hp, "params": ids})
        opt.load_state_dict({"state": state, "param_groups": groups})
        sched.load_state_dict(meta["scheduler"])
        if scaler is not None and meta["scaler"]:
            scaler.load_state_dict(meta["scaler"])
        torch.set_rng_state(tensors["rng/torch"])
        cuda = _rng_device(model)
        if cuda is not None and "rng/cuda" in tensors:
            torch.cuda.set_rng_state(tensors["rng/cuda"], cuda)
        # The data order is not set from rng/data: the caller replays it from its seed up to `step` (which
        # also rebuilds the current epoch's batches), and _read checked that the replay reaches rng/data.
        self.log.info(
            "resuming from step %d of %d (epoch %d) from %s",
            step,
            self.total_steps,
            min(step // self.steps_per_epoch + 1, math.ceil(self.total_steps / self.steps_per_epoch)),
            self.path,
        )
        return Progress(
            step=step,
            losses=tensors["history/losses"].tolist(),
            lrs=tensors["history/lrs"].tolist(),
            skipped=int(meta["skipped"]),
        )
