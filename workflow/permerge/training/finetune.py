"""Fine-tuning a pre-trained seed on a GLUE(-shaped) task: one sequence classifier per seed, of the seed's
family (families.FAMILIES: BertForSequenceClassification, RobertaForSequenceClassification, ...).

The classifier (and the pooler when the checkpoint has none) is initialised IDENTICALLY across seeds from
`head_seed` (docs/configuration.md); a checkpoint's own pre-trained pooler (BertForPreTraining, e.g. the
MultiBERTs) is kept. Families whose classification head has its own hidden layer instead of a pooler (RoBERTa
and ELECTRA: classifier.dense -> out_proj, as the hub ships them) draw the whole head from `head_seed`.
The data order comes from `data_seed` (None: the model's seed). The paper's protocol (run_glue defaults) is
lr 2e-5, batch 8, 3 epochs (MRPC 5), max length 128, warmup 0, fp16, head_seed = data_seed = 42 for every seed.
num_labels == 1 is regression with an MSE loss (STS-B).

The training loop is train.py's (shared with pre-training) rather than HF Trainer: on CPU it is simpler and
faster (batches padded to their own longest example, no accelerate/callback machinery, no intermediate
checkpoints), the whole state is the model, an AdamW and transformers' linear warm-up/decay schedule, and the
data order is an explicit seeded permutation per epoch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from permerge.evaluation.evaluate import build_glue_evalset, glue_logits, glue_loss
from permerge.families import family_of, family_of_type
from permerge.models import load_tokenizer
from permerge.training.train import amp_in_effect, train


def task_info(task: str):
    """The registry entry of a GLUE task (text_keys, num_labels, metric, eval_split, ...)."""
    from permerge.tasks import glue_task

    return glue_task(task)


def _checkpoint_keys(model_dir) -> set[str]:
    from safetensors import safe_open

    keys: set[str] = set()
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as fh:
            keys.update(fh.keys())
    return keys


def init_head(model, *, head_seed: int, reinit_pooler: bool) -> list[str]:
    """Re-initialise the classifier (the family's ``classifier_prefixes``; and the pooler if asked) from
    `head_seed` alone, BERT-style: normal(0, initializer_range) weights, zero biases. Each tensor gets its own
    generator seeded from (head_seed, parameter name), so the classifier's draw does not depend on whether the
    pooler is redrawn. Returns the names re-initialised."""
    fam, _ = family_of(model)
    std = float(getattr(model.config, "initializer_range", 0.02))
    names = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(fam.classifier_prefixes) or (reinit_pooler and name.startswith(fam.pooler_prefix)):
                if name.endswith("bias"):
                    p.zero_()
                else:
                    gen = torch.Generator().manual_seed(int(head_seed) * 1_000_003 + zlib.crc32(name.encode()))
                    p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32).mul_(std).to(p.dtype))
                names.append(name)
    return names


def checkpoint_has_pooler(model_dir) -> bool:
    """True if the checkpoint holds pre-trained pooler weights (BertForPreTraining; not BertForMaskedLM)."""
    return any(k.endswith("pooler.dense.weight") for k in _checkpoint_keys(model_dir))


def shared_pooler_init(model_dirs) -> str | None:
    """The sha256 of the pooler initialisation that every fine-tuned model in `model_dirs` shares, when all of
    them drew their pooler from `head_seed` (a checkpoint without one); None otherwise (pre-trained poolers,
    such as the MultiBERTs', or models that are not fine-tuned here).

    Such poolers start identical, so they are aligned by index, like the classifier that reads them; an
    activation permutation of them is close to random (they see different encoders) and would undo that.
    """
    shas = set()
    for d in model_dirs:
        path = Path(d) / "metrics.json"
        if not path.is_file():
            return None
        m = json.loads(path.read_text())
        if m.get("pooler_init") != "head_seed" or not m.get("pooler_init_sha256"):
            return None
        shas.add(m["pooler_init_sha256"])
    return shas.pop() if len(shas) == 1 else None


def without_shared_pooler(variant, model_dirs):
    """(variant, note): `variant` without its `pooler` component when the seeds in `model_dirs` share their
    pooler's initialisation (`shared_pooler_init`), with a note saying so; otherwise `variant` and None."""
    sha = "pooler" in variant.components and shared_pooler_init(model_dirs)
    if not sha:
        return variant, None
    return variant.without(
        "pooler"
    ), f"not permuted: every seed's pooler was drawn from finetune.head_seed (sha256 {sha})"


def load_for_classification(model_dir, *, num_labels: int, head_seed: int = 0, dropout: float | None = None, log=None):
    """The family's sequence classifier (BertForSequenceClassification, RobertaForSequenceClassification, ...:
    the class config.json's model_type names in families.FAMILIES) from a pre-trained directory (e.g.
    BertForPreTraining or BertForMaskedLM): the checkpoint's own pooler when it has one and the family's
    classifier reads it, the classifier (and a missing pooler) from `head_seed`.
    `dropout` (None: the checkpoint's) sets the family's hidden, attention and classifier dropout of
    fine-tuning (Family.dropouts)."""
    import transformers

    model_type = json.loads((Path(model_dir) / "config.json").read_text()).get("model_type")
    fam = family_of_type(model_type)
    cls = getattr(transformers, fam.class_for(model_type, "classification"))
    has_pooler = fam.classifier_hidden is None and checkpoint_has_pooler(model_dir)
    kwargs = {"num_labels": int(num_labels)}
    if num_labels == 1:
        kwargs["problem_type"] = "regression"
    if dropout is not None:
        kwargs.update(dict.fromkeys(fam.dropouts, float(dropout)))
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the "newly initialized head" warning is expected here
    try:
        model = cls.from_pretrained(str(model_dir), use_safetensors=True, **kwargs)
    finally:
        transformers.logging.set_verbosity(verbosity)
    names = init_head(model, head_seed=head_seed, reinit_pooler=not has_pooler)
    if log is not None:
        log.info(
            "head initialised from head_seed=%d: %s (pooler %s)",
            head_seed,
            ", ".join(names),
            "pre-trained" if has_pooler else "new",
        )
    return model


def length_grouped_batches(
    lengths: torch.Tensor, batch_size: int, generator: torch.Generator, group: int = 50
) -> list[torch.Tensor]:
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


def training_batches(
    lengths: torch.Tensor,
    batch_size: int,
    total_steps: int,
    generator: torch.Generator,
    *,
    group_by_length: bool = True,
) -> Iterator[torch.Tensor]:
    """The index batches of `total_steps` steps, epoch after epoch; the order depends only on the generator."""
    n = lengths.shape[0]
    step = 0
    while step < total_steps:
        if group_by_length:
            batches = length_grouped_batches(lengths, batch_size, generator)
        else:
            batches = torch.randperm(n, generator=generator).split(batch_size)
        for idx in batches:
            if step >= total_steps:
                return
            yield idx
            step += 1


def weights_sha256(model_dir) -> str:
    """sha256 of a model directory's weight files (its *.safetensors in name order, read as one stream): for
    a single model.safetensors, `sha256sum model.safetensors`."""
    h = hashlib.sha256()
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _sha256_float32(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()).hexdigest()


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
    data_seed: int | None = None,
    lr: float = 2e-5,
    epochs: float = 3,
    batch_size: int = 32,
    max_length: int = 128,
    warmup: float = 0.1,
    fp16: bool = False,
    weight_decay: float = 0.0,
    grad_clip: float = 1.0,
    group_by_length: bool = True,
    device: str = "cpu",
    eval_batch_size: int = 64,
    dropout: float | None = None,
    log: logging.Logger | None = None,
    resume_dir=None,
    resume_every_steps: int | None = None,
) -> dict:
    """Fine-tune one seed and save it (safetensors + tokenizer + metrics.json). Returns the metrics.

    `epochs` may be fractional (the last epoch is cut short). Loss: cross-entropy, or MSE when num_labels == 1.
    `data_seed` (None: `seed`) alone decides the batch order. `fp16`: float16 autocast with a GradScaler on CUDA
    (as HF Trainer's fp16; optimizer steps skipped for overflowing gradients do not advance the schedule, as
    there); ignored on other devices. Evaluation runs in float32.
    `resume_dir` (None: not resumable): the training state is saved there every `resume_every_steps`
    optimizer steps (None: not within epochs), at every epoch end and after the last step; a later call with the same
    arguments resumes from it and ends with the weights and metrics of an uninterrupted run
    (permerge.training.resume; a state of other arguments, input model or data is ignored). The caller removes the
    directory (permerge.training.resume.discard) once the output is in place.
    """
    log = log or logging.getLogger("permerge.training.finetune")
    t0 = time.time()
    tokenizer = load_tokenizer(model_dir)
    regression = num_labels == 1
    train_set = build_glue_evalset(tokenizer, train_examples, text_keys, max_length=max_length, regression=regression)
    evalset = build_glue_evalset(tokenizer, eval_examples, text_keys, max_length=max_length, regression=regression)
    model = load_for_classification(model_dir, num_labels=num_labels, head_seed=head_seed, dropout=dropout, log=log)
    fam, _ = family_of(model)
    pooler_init = "pretrained" if fam.classifier_hidden is None and checkpoint_has_pooler(model_dir) else "head_seed"
    # before any step: provenance of the pooler (or the classifier's hidden layer that plays its role)
    pooler_sha = _sha256_float32(model.get_parameter(fam.pooler_weight()))
    dev = torch.device(device)
    model.to(dev)
    amp = amp_in_effect(fp16, dev)

    n = train_set["labels"].shape[0]
    steps_per_epoch = math.ceil(n / batch_size)
    total_steps = max(1, math.ceil(steps_per_epoch * float(epochs)))
    data_seed = int(seed if data_seed is None else data_seed)
    gen = torch.Generator().manual_seed(data_seed)
    # Dropout draws from torch's global generator, which every process seeds at random: seed it as
    # run_glue's set_seed does (from the training seed), or a rerun fine-tunes to other weights.
    torch.manual_seed(data_seed)
    log.info(
        "seed %d: %d train / %d eval examples, %d steps (%.3g epochs of %d), lr %.2e, warmup %.3g, "
        "batch %d, data_seed %d, head_seed %d, pooler %s, fp16 %s",
        seed,
        n,
        evalset["labels"].shape[0],
        total_steps,
        float(epochs),
        steps_per_epoch,
        lr,
        warmup,
        batch_size,
        data_seed,
        head_seed,
        pooler_init,
        "on" if amp else "off",
    )

    order = hashlib.sha256()

    def batches(start: int = 0):
        """The batches from step `start` on. The order (and its hash) is replayed from the seed up to there
        at once (also when no step is left), which rebuilds the epoch that a resumed run continues."""
        gen.manual_seed(data_seed)
        drawn = training_batches(train_set["lengths"], batch_size, total_steps, gen, group_by_length=group_by_length)
        for _ in range(start):
            order.update(next(drawn).to(torch.int64).numpy().tobytes())

        def rest():
            for idx in drawn:
                order.update(idx.to(torch.int64).numpy().tobytes())
                yield idx

        return rest()

    # the run's settings, named once: in the resume fingerprint and in metrics.json
    hparams = {
        "seed": int(seed),
        "head_seed": int(head_seed),
        "data_seed": data_seed,
        "lr": float(lr),
        "batch_size": int(batch_size),
        "max_length": int(max_length),
        "warmup": float(warmup),
        "weight_decay": float(weight_decay),
        "grad_clip": float(grad_clip),
        "dropout": float(getattr(model.config, fam.dropouts[0])),  # the hidden dropout, by its family's name
        "group_by_length": bool(group_by_length),
    }
    resume = None
    if resume_dir is not None:
        from permerge.training.resume import TrainingState, model_identity, sha256_tensors

        def data_state_at(step):
            g = torch.Generator().manual_seed(data_seed)
            for _ in training_batches(train_set["lengths"], batch_size, step, g, group_by_length=group_by_length):
                pass
            return g.get_state()

        fingerprint = {
            "model": model_identity(model_dir),
            "train_data": sha256_tensors(train_set[k] for k in ("input_ids", "token_type_ids", "labels")),
            "n_train": int(n),
            "num_labels": int(num_labels),
            **hparams,
            "epochs": float(epochs),
            "fp16_in_effect": amp,
            "device": dev.type,
            "total_steps": total_steps,
            "steps_per_epoch": steps_per_epoch,
        }
        resume = TrainingState(
            resume_dir,
            every_steps=resume_every_steps,
            steps_per_epoch=steps_per_epoch,
            total_steps=total_steps,
            fingerprint=fingerprint,
            data_generator=gen,
            data_state_at=data_state_at,
            log=log,
        )

    def step_loss(idx):
        logits = glue_logits(model, train_set, idx, dev)  # float32 logits: the loss is computed in float32
        y = train_set["labels"][idx].to(dev)
        return F.mse_loss(logits.squeeze(-1), y) if regression else F.cross_entropy(logits, y)

    run = train(
        model,
        batches,
        step_loss,
        total_steps=total_steps,
        lr=lr,
        warmup=warmup,
        weight_decay=weight_decay,
        grad_clip=grad_clip,
        fp16=fp16,
        log=log,
        log_every=max(1, min(50, total_steps // 10)),
        resume=resume,
    )
    if resume is not None and resume.saves:
        log.info(
            "resume state: %d saves, %.3f s each, in %s", resume.saves, resume.save_seconds / resume.saves, resume_dir
        )
    losses, lrs, skipped = run.losses, run.lrs, run.skipped
    train_minutes = (time.time() - t0) / 60
    model.eval()
    result = glue_loss(model, evalset, num_labels=num_labels, metric=metric, batch_size=eval_batch_size)
    tail = losses[-min(len(losses), max(1, steps_per_epoch // 2, 20)) :]
    metrics = {
        "metric": metric,
        "value": result[metric],
        **{f"eval_{k}": v for k, v in result.items()},
        "train_loss_first": sum(losses[:20]) / len(losses[:20]),
        "train_loss_final": sum(tail) / len(tail),
        "steps": total_steps,
        "epochs": float(epochs),
        "n_train": int(n),
        "n_eval": int(evalset["labels"].shape[0]),
        **hparams,
        "fp16": bool(fp16),
        "fp16_in_effect": amp,
        "fp16_skipped_steps": skipped,
        "lr_first_step": lrs[0],
        "lr_last_step": lrs[-1],
        "pretrained_sha256": weights_sha256(model_dir),  # the checkpoint fine-tuning started from
        "pooler_init": pooler_init,
        "pooler_init_sha256": pooler_sha,
        "data_order_sha256": order.hexdigest(),
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
