"""Evaluation along the interpolation path: MLM and GLUE-style losses, the λ sweep, loss tables.

* MLM evaluation set (docs/method.md): every non-empty line is tokenized normally with [CLS] ... [SEP], the
  lines are concatenated and cut into `block_size` blocks (remainder dropped). BERT masking: 15% of the
  non-special tokens are chosen; of those 80% become [MASK], 10% a uniformly random vocabulary id, 10% stay.
  Only chosen positions are scored (labels == -100 elsewhere). The masks are drawn ONCE from a
  `torch.Generator` with a fixed seed, saved, and reused for every λ, pair and variant.
* `paper_compat=True` reproduces a bug of the reference implementation: it joined the *characters* of each
  line with spaces before tokenizing (``" ".join(line)``), so it scored spelled-out text ("t h e   c a t").
  Only for comparison with the paper's absolute numbers; never the default.
* Losses are exact corpus means: the sum of the per-token (per-example) losses over the whole set divided by
  the count, accumulated in float64 — not a mean of batch means.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from permerge.evaluation.encode import encode_at
from permerge.families import family_of
from permerge.io import atomic_path

IGNORE_INDEX = -100


# ----------------------------------------------------------------------------------------------- masking
def special_ids(tokenizer) -> list[int]:
    """Ids that are never chosen for masking ([CLS], [SEP], [PAD], [UNK]-style specials, [MASK])."""
    return sorted(set(int(i) for i in tokenizer.all_special_ids))


def bert_mask(
    input_ids: torch.Tensor,
    *,
    special: Sequence[int] | torch.Tensor,
    mask_token_id: int,
    vocab_size: int,
    mask_prob: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking of a batch of ids. Returns (masked input ids, labels with -100 off the chosen positions).

    Each non-special token is chosen independently with probability `mask_prob` (the dynamic-masking scheme of
    HF's DataCollatorForLanguageModeling, written here so that the draws come from an explicit generator and
    are reproducible); of the chosen tokens 80% are replaced by [MASK], 10% by a uniformly random id from the
    whole vocabulary (as in BERT and HF), 10% are left unchanged.
    """
    special_t = torch.as_tensor(list(special) if not torch.is_tensor(special) else special, dtype=input_ids.dtype)
    candidates = ~torch.isin(input_ids, special_t)
    chosen = (torch.rand(input_ids.shape, generator=generator) < mask_prob) & candidates
    action = torch.rand(input_ids.shape, generator=generator)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator, dtype=input_ids.dtype)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    masked = input_ids.clone()
    masked[chosen & (action < 0.8)] = mask_token_id
    rand_pos = chosen & (action >= 0.8) & (action < 0.9)
    masked[rand_pos] = random_ids[rand_pos]
    return masked, labels


# ------------------------------------------------------------------------------------------ tokenization
def paper_compat_line(line: str) -> str:
    """The reference's bug: the characters of a line joined with spaces ("the cat" -> "t h e   c a t")."""
    return " ".join(line)


def tokenize_lines(tokenizer, lines: Iterable[str], *, paper_compat: bool = False, chunk: int = 4096) -> list[int]:
    """Tokenize every non-empty line with [CLS]/[SEP] and concatenate the ids (no truncation)."""
    ids: list[int] = []
    buf: list[str] = []
    # The raw `tokenizers` object gives the same ids ~2x faster than the transformers wrapper (no offsets,
    # no BatchEncoding); used when it is configured without truncation or padding.
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and (backend.truncation is not None or backend.padding is not None):
        backend = None
    encode = getattr(backend, "encode_batch_fast", None) or getattr(backend, "encode_batch", None)

    def flush():
        if buf:
            if encode is not None:
                enc = [e.ids for e in encode(buf, add_special_tokens=True)]
            else:
                enc = tokenizer(buf, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
            for seq in enc:
                ids.extend(seq)
            buf.clear()

    for line in lines:
        line = line.strip()
        if not line:
            continue
        buf.append(paper_compat_line(line) if paper_compat else line)
        if len(buf) >= chunk:
            flush()
    flush()
    return ids


def blocks_from_ids(ids: Sequence[int] | torch.Tensor, block_size: int, max_blocks: int | None = None) -> torch.Tensor:
    """Cut a flat id list (or 1-D tensor) into [n, block_size] int64 blocks, dropping the remainder."""
    n = len(ids) // block_size
    if max_blocks is not None:
        n = min(n, int(max_blocks))
    if n == 0:
        raise ValueError(f"only {len(ids)} tokens: not enough for one block of {block_size}")
    return torch.as_tensor(ids[: n * block_size], dtype=torch.long).reshape(n, block_size)


def build_mlm_evalset(
    tokenizer,
    lines: Iterable[str],
    *,
    block_size: int = 128,
    mask_prob: float = 0.15,
    seed: int = 0,
    paper_compat: bool = False,
    max_blocks: int | None = None,
) -> dict[str, torch.Tensor]:
    """The fixed masked MLM evaluation set: {"input_ids": [n, block], "labels": [n, block] (-100 = unscored)}.

    `paper_compat=True` reproduces the reference's character-spacing bug (see the module docstring).
    """
    ids = tokenize_lines(tokenizer, lines, paper_compat=paper_compat)
    blocks = blocks_from_ids(ids, block_size, max_blocks)
    gen = torch.Generator().manual_seed(int(seed))
    masked, labels = bert_mask(
        blocks,
        special=special_ids(tokenizer),
        mask_token_id=tokenizer.mask_token_id,
        vocab_size=len(tokenizer),
        mask_prob=mask_prob,
        generator=gen,
    )
    return {"input_ids": masked, "labels": labels}


def save_evalset(evalset: dict[str, torch.Tensor], path, metadata: dict | None = None) -> None:
    """Save an evaluation set as safetensors (atomically); metadata values are stored as strings/JSON."""
    from safetensors.torch import save_file

    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in evalset.items()}, str(tmp), metadata=meta)


def load_evalset(path, *, with_metadata: bool = False):
    """Load an evaluation set saved by `save_evalset` (optionally also its metadata dict)."""
    from safetensors import safe_open

    tensors = {}
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
        for k in f.keys():
            tensors[k] = f.get_tensor(k)
    return (tensors, meta) if with_metadata else tensors


# --------------------------------------------------------------------------------------------- MLM loss
def _device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _forward_inputs(model) -> tuple[str, ...]:
    """The inputs a model's forward takes among input_ids, token_type_ids, attention_mask (all of them for a
    model outside the family registry)."""
    try:
        fam, _ = family_of(model)
    except TypeError:
        return ("input_ids", "token_type_ids", "attention_mask")
    return tuple(fam.model_inputs(dict.fromkeys(("input_ids", "token_type_ids", "attention_mask"))))


def _masked_logits(model, input_ids: torch.Tensor, sel: torch.Tensor) -> torch.Tensor:
    """Logits at the selected positions only. For a model with an MLM head (families.Family.mlm_head: BERT's
    `cls.predictions`, RoBERTa's `lm_head`, ELECTRA's generator head, ...) the last layer and the head run on
    the masked positions alone (encode.encode_at; the vocabulary projection dominates small models; a family
    without BERT's layer structure runs its encoder in full); otherwise the full forward.
    `cls.predictions` is the MLM head of both BertForMaskedLM and BertForPreTraining (whose `cls` also holds
    the NSP head and takes the pooled output)."""
    try:
        fam, kind = family_of(model)
    except TypeError:
        kind = None
    if kind in ("mlm", "pretraining"):
        return fam.mlm_head(model, encode_at(fam.base(model), sel, input_ids=input_ids))
    return model(input_ids=input_ids).logits[sel]


@torch.inference_mode()
def mlm_loss(model, evalset: dict[str, torch.Tensor], *, batch_size: int = 32) -> dict:
    """Mean masked-token cross-entropy (nats) over the whole set, exact: sum of CE / number of masked tokens.

    Returns {"loss", "n_tokens", "pseudo_perplexity" (= exp(loss)), "accuracy" (masked-token top-1)}.
    """
    was_training = model.training
    model.eval()
    input_ids, labels = evalset["input_ids"], evalset["labels"]
    dev = _device(model)
    total = 0.0
    n = 0
    correct = 0
    for start in range(0, input_ids.shape[0], batch_size):
        x = input_ids[start : start + batch_size].to(dev)
        y = labels[start : start + batch_size].to(dev)
        sel = y != IGNORE_INDEX
        if not bool(sel.any()):
            continue
        logits = _masked_logits(model, x, sel).float()
        target = y[sel]
        total += float(F.cross_entropy(logits, target, reduction="sum").double())
        correct += int((logits.argmax(-1) == target).sum())
        n += int(target.numel())
    model.train(was_training)
    if n == 0:
        raise ValueError("the evaluation set has no masked tokens")
    loss = total / n
    return {"loss": loss, "n_tokens": n, "pseudo_perplexity": math.exp(loss), "accuracy": correct / n}


# --------------------------------------------------------------------------------------------- GLUE
def build_glue_evalset(
    tokenizer,
    examples: Sequence[dict],
    text_keys: Sequence[str],
    *,
    max_length: int = 128,
    label_key: str = "label",
    regression: bool | None = None,
) -> dict[str, torch.Tensor]:
    """Tokenize (sentence or sentence pair, truncated to `max_length` as in fine-tuning) and pad to the
    longest example. Returns input_ids, token_type_ids, attention_mask, lengths and labels (float for
    regression — inferred from float-typed labels when `regression` is None — else long)."""
    text_keys = list(text_keys)
    if not 1 <= len(text_keys) <= 2:
        raise ValueError(f"text_keys must name one or two fields, got {text_keys}")
    first = [str(ex[text_keys[0]]) for ex in examples]
    second = [str(ex[text_keys[1]]) for ex in examples] if len(text_keys) == 2 else None
    enc = tokenizer(
        first,
        second,
        truncation=True,
        max_length=max_length,
        padding="longest",
        return_tensors="pt",
        return_token_type_ids=True,
        return_attention_mask=True,
    )
    raw = [ex[label_key] for ex in examples]
    if regression is None:
        regression = any(isinstance(v, float) for v in raw)
    labels = torch.tensor(raw, dtype=torch.float32 if regression else torch.long)
    return {
        "input_ids": enc["input_ids"],
        "token_type_ids": enc["token_type_ids"],
        "attention_mask": enc["attention_mask"],
        "lengths": enc["attention_mask"].sum(1),
        "labels": labels,
    }


def length_batches(lengths: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Index batches of similar length (sorted, longest first) so each batch is trimmed to its own max."""
    order = torch.argsort(lengths, descending=True, stable=True)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def classification_metrics(preds: np.ndarray, labels: np.ndarray) -> dict:
    """accuracy; f1 of the positive class 1; Matthews correlation (binary or multi-class formula)."""
    preds = np.asarray(preds).astype(np.int64)
    labels = np.asarray(labels).astype(np.int64)
    acc = float((preds == labels).mean()) if len(labels) else float("nan")
    tp = float(((preds == 1) & (labels == 1)).sum())
    fp = float(((preds == 1) & (labels != 1)).sum())
    fn = float(((preds != 1) & (labels == 1)).sum())
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) > 0 else 0.0
    # Matthews (Gorodkin's multi-class generalisation; equals the binary formula for 2 classes).
    k = int(max(preds.max(initial=0), labels.max(initial=0))) + 1
    conf = np.zeros((k, k), dtype=np.float64)
    np.add.at(conf, (labels, preds), 1.0)
    t = conf.sum(1)
    p = conf.sum(0)
    c = np.trace(conf)
    s = conf.sum()
    denom = math.sqrt(max(s * s - (p * p).sum(), 0.0) * max(s * s - (t * t).sum(), 0.0))
    mcc = float((c * s - (t * p).sum()) / denom) if denom > 0 else 0.0
    return {"accuracy": acc, "f1": f1, "matthews": mcc}


def regression_metrics(preds: np.ndarray, labels: np.ndarray) -> dict:
    """Pearson and Spearman correlations (scipy.stats), 0 when a side is constant or there are fewer than two
    examples (where scipy gives NaN: an undefined correlation scores as no correlation)."""
    from scipy.stats import pearsonr, spearmanr

    preds = np.asarray(preds, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if len(preds) < 2 or np.ptp(preds) == 0 or np.ptp(labels) == 0:
        return {"pearson": 0.0, "spearman": 0.0}
    return {"pearson": float(pearsonr(preds, labels).statistic), "spearman": float(spearmanr(preds, labels).statistic)}


def glue_logits(model, data: dict[str, torch.Tensor], idx: torch.Tensor, dev) -> torch.Tensor:
    """float32 logits of the examples `idx` of a GLUE set, cut to the longest of them (no padding waste).

    A BertForSequenceClassification reads only [CLS] (its pooler takes position 0): its last layer runs
    there alone (encode.encode_at), in training too (fine-tuning)."""
    from transformers import BertForSequenceClassification

    width = int(data["lengths"][idx].max())
    inputs = {k: data[k][idx, :width].to(dev) for k in ("input_ids", "token_type_ids", "attention_mask")}
    if "token_type_ids" not in _forward_inputs(model):  # e.g. DistilBERT
        del inputs["token_type_ids"]
    base = getattr(model, "bert", None)
    if isinstance(model, BertForSequenceClassification) and base.pooler is not None:
        first = torch.zeros_like(inputs["input_ids"], dtype=torch.bool)
        first[:, 0] = True
        cls = encode_at(base, first, **inputs)
        return model.classifier(model.dropout(base.pooler(cls.unsqueeze(1)))).float()
    return model(**inputs).logits.float()


@torch.inference_mode()
def glue_predictions(model, evalset: dict[str, torch.Tensor], *, num_labels: int, batch_size: int = 64):
    """(summed loss in float64, predictions [n, num_labels] float32, in the evalset's order)."""
    was_training = model.training
    model.eval()
    labels = evalset["labels"]
    dev = _device(model)
    out = torch.empty(labels.shape[0], num_labels, dtype=torch.float32)
    total = 0.0
    for idx in length_batches(evalset["lengths"], batch_size):
        logits = glue_logits(model, evalset, idx, dev)
        y = labels[idx].to(dev)
        if num_labels == 1:
            total += float(F.mse_loss(logits.squeeze(-1), y.float(), reduction="sum").double())
        else:
            total += float(F.cross_entropy(logits, y.long(), reduction="sum").double())
        out[idx] = logits.cpu()
    model.train(was_training)
    return total, out


def glue_loss(model, evalset: dict[str, torch.Tensor], *, num_labels: int, metric: str, batch_size: int = 64) -> dict:
    """Validation loss (mean cross-entropy; MSE when num_labels == 1) and the task metric.

    Returns {"loss", metric: value, ...}: classification adds accuracy (and f1/matthews when that is the
    metric); regression returns pearson and spearman.
    """
    total, logits = glue_predictions(model, evalset, num_labels=num_labels, batch_size=batch_size)
    labels = evalset["labels"].numpy()
    row = {"loss": total / max(len(labels), 1)}
    if num_labels == 1:
        row.update(regression_metrics(logits.squeeze(-1).numpy(), labels))
    else:
        m = classification_metrics(logits.argmax(-1).numpy(), labels)
        row["accuracy"] = m["accuracy"]
        if metric in m and metric != "accuracy":
            row[metric] = m[metric]
    if metric not in row:
        raise ValueError(f"unknown metric {metric!r} for num_labels={num_labels}")
    return row


# --------------------------------------------------------------------------------------------- λ sweep
def _float_tensors(model) -> dict[str, torch.Tensor]:
    """Float parameters (deduplicated: tied weights appear once) and float buffers, by name."""
    out = {n: p for n, p in model.named_parameters() if p.is_floating_point()}
    out.update({n: b for n, b in model.named_buffers() if b.is_floating_point()})
    return out


def _work_copy(model):
    """A deep copy of `model` whose float parameters and buffers are fresh uninitialised tensors (tied ones
    stay tied); everything else (non-float buffers, config, structure) is copied. Copying the float data
    would cost as much as a λ step, for values lambda_sweep overwrites anyway."""
    memo: dict[int, torch.Tensor] = {}
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point() and id(t) not in memo:
            fresh = torch.empty_like(t)
            is_param = isinstance(t, torch.nn.Parameter)
            memo[id(t)] = torch.nn.Parameter(fresh, requires_grad=t.requires_grad) if is_param else fresh
    return copy.deepcopy(model, memo)


UNPERMUTED_SUFFIX = "_b_unpermuted"


def check_lambda_grid(lambdas: Iterable[float]) -> list[float]:
    """The λ grid as floats, or ValueError: the barriers need both endpoints (λ=0 is A, λ=1 is π(B)) and at
    least two points; non-finite or repeated values would give ambiguous loss rows."""
    grid = [float(x) for x in lambdas]
    if len(grid) < 2:
        raise ValueError(f"the λ grid needs at least two values including 0 and 1, got {grid}")
    bad = [x for x in grid if not math.isfinite(x)]
    if bad:
        raise ValueError(f"the λ grid has non-finite values: {bad}")
    missing = [e for e in (0.0, 1.0) if e not in grid]
    if missing:
        raise ValueError(f"the λ grid must contain both endpoints 0 and 1; missing {missing} in {grid}")
    if len(set(grid)) != len(grid):
        raise ValueError(f"the λ grid has repeated values: {grid}")
    return grid


def _check_same_tensors(ta: dict, tb: dict, what: str) -> None:
    if set(ta) != set(tb):
        raise ValueError(f"models differ in their float parameters ({what}): {sorted(set(ta) ^ set(tb))[:5]}")
    for n in ta:
        if ta[n].shape != tb[n].shape:
            raise ValueError(f"shape mismatch for {n} ({what}): {tuple(ta[n].shape)} vs {tuple(tb[n].shape)}")


def lambda_sweep(
    model_a,
    model_b_aligned,
    lambdas: Iterable[float],
    evaluate_fn: Callable[[object], dict],
    *,
    model_b=None,
    log=None,
    work_model=None,
    scores: dict | None = None,
) -> list[dict]:
    """Evaluate θ(λ) = (1−λ)·θ_A + λ·θ_B for each λ: rows {"lambda": λ, **evaluate_fn(model)}.

    ONE working copy (a copy of A unless `work_model` is given; its float tensors are allocated, not copied,
    as every λ overwrites them all before evaluating) has its float parameters and buffers overwritten in
    place with torch.lerp(θ_A, θ_B, λ, out=param): nothing is reallocated per λ, tied weights stay tied
    (named_parameters lists a tied tensor once) and non-float buffers are A's. torch.lerp computes
    a + λ(b − a) for λ < 0.5 and b − (1 − λ)(b − a) otherwise, so λ = 0 and λ = 1 give A and B exactly.

    `model_b`, the UNPERMUTED B, is evaluated once (in eval mode) and each float value of that evaluation
    is added to every row as `<key>_b_unpermuted` (e.g. `loss_b_unpermuted`, `accuracy_b_unpermuted`).
    λ=1 is π(B); for a function-preserving permutation its loss equals `loss_b_unpermuted` up to float
    rounding, so every loss file checks function preservation; for one that is not (attention matched
    ignoring heads) the two differ and barriers against the true endpoint B need the unpermuted loss.

    `scores` (optional): evaluate_fn's results already known for the seeds, {"a": A's, "b": the unpermuted
    B's}. θ(0) is A exactly, so its row takes A's result, and B is not evaluated again: a job sweeping
    several pairs evaluates each seed once (the same numbers: the same weights, data and kernels). When the
    aligned B equals B tensor for tensor (vanilla), θ(1) is B and its row takes B's result too.

    The grid must hold at least two distinct finite values including 0 and 1 (ValueError otherwise).
    """
    ta, tb = _float_tensors(model_a), _float_tensors(model_b_aligned)
    _check_same_tensors(ta, tb, "A vs aligned B")
    if model_b is not None:
        _check_same_tensors(ta, _float_tensors(model_b), "A vs unpermuted B")
    grid = check_lambda_grid(lambdas)
    work = _work_copy(model_a) if work_model is None else work_model
    work.eval()
    tw = _float_tensors(work)
    _check_same_tensors(ta, tw, "A vs working model")

    def show(row):
        return " ".join(f"{k}={v:.5g}" for k, v in row.items() if isinstance(v, float) and k != "lambda")

    scores = scores or {}
    extra: dict = {}
    if model_b is not None:
        was_training = model_b.training
        model_b.eval()  # like the working copy: no dropout
        try:
            res = scores["b"] if "b" in scores else evaluate_fn(model_b)
        finally:
            model_b.train(was_training)
        # Floats only: counts such as n_tokens are the same for every model.
        extra = {f"{k}{UNPERMUTED_SUFFIX}": v for k, v in res.items() if isinstance(v, float)}
        if log is not None:
            log.info("unpermuted B: %s", show(res))
    # θ(1) is π(B) exactly; when π is the identity (vanilla) that is B, whose result is known.
    b_unchanged = model_b is not None and "b" in scores
    if b_unchanged:
        tub = _float_tensors(model_b)
        b_unchanged = all(torch.equal(tb[n], tub[n]) for n in tb)
    rows = []
    with torch.no_grad():
        for lam in grid:
            if lam == 0.0 and "a" in scores:
                row = {"lambda": lam, **scores["a"]}
            elif lam == 1.0 and b_unchanged:
                row = {"lambda": lam, **scores["b"]}
            else:
                for n, dst in tw.items():
                    torch.lerp(ta[n].detach(), tb[n].detach(), lam, out=dst.data)
                row = {"lambda": lam, **evaluate_fn(work)}
            if log is not None:
                log.info("lambda=%.3f %s", lam, show(row))
            rows.append({**row, **extra})
    return rows


def lambda_grid(n_or_list) -> list[float]:
    """21 -> [0, 0.05, ..., 1]; an explicit list is returned as floats."""
    if isinstance(n_or_list, int):
        if n_or_list < 2:
            raise ValueError("need at least two lambdas")
        return [i / (n_or_list - 1) for i in range(n_or_list)]
    return [float(x) for x in n_or_list]


def write_loss_table(rows: Sequence[dict], path) -> None:
    """TSV (barriers.write_tsv, floats in full precision) with a header: `lambda`, `loss`, then every other
    column in order of first appearance, the `*_b_unpermuted` columns (the unpermuted B's values, the same on
    every row) last. barriers.read_curve reads it back."""
    from permerge.evaluation.barriers import write_tsv

    cols = ["lambda", "loss"]
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    # The unpermuted-B columns go last, so the columns before them are those of a file without them.
    cols = sorted(cols, key=lambda c: c.endswith(UNPERMUTED_SUFFIX))  # stable: order kept within each part
    with atomic_path(path) as tmp:
        write_tsv(rows, tmp, cols, float_format=None)


def task_evaluator(
    task: str,
    data_path,
    tokenizer_dir,
    *,
    batch_size: int,
    max_examples: int | None = None,
    max_length: int = 128,
    log=None,
):
    """(evaluate(model) -> row, num_labels) for a task's evaluation data: the fixed MLM set, or a GLUE
    validation file (its first max_examples), tokenized once."""
    if task == "mlm":
        evalset = load_evalset(data_path)
        return (lambda model: mlm_loss(model, evalset, batch_size=batch_size)), None
    from permerge.data.jsonl import read_jsonl
    from permerge.models import load_tokenizer
    from permerge.tasks import glue_task

    info = glue_task(task)
    examples = read_jsonl(data_path, max_examples or None)
    evalset = build_glue_evalset(load_tokenizer(tokenizer_dir), examples, info.text_keys, max_length=max_length)
    if log is not None:
        log.info("%s: %d validation examples from %s", task, len(examples), data_path)

    def evaluate(model):
        return glue_loss(model, evalset, num_labels=info.num_labels, metric=info.metric, batch_size=batch_size)

    return evaluate, info.num_labels
