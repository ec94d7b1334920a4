"""Pre-training of tiny BERTs from scratch: the offline stand-ins for the MultiBERTs seeds.

* `train_wordpiece`: a lowercase WordPiece tokenizer (BERT normalizer and pre-tokenizer) saved so that
  `AutoTokenizer.from_pretrained(dir)` returns a `BertTokenizer` whose post-processor adds [CLS]/[SEP] and
  gives sentence pairs token_type_ids.
* `pretrain_bert`: BertForMaskedLM (post-LN, dropout 0, decoder tied to the word embeddings, two token
  types) trained with BERT's dynamic 15% / 80-10-10 masking by the shared loop of train.py. The seed controls the initialisation, the data
  order and the masks. For speed the MLM head runs only at the masked positions (the vocabulary projection
  dominates a tiny model's cost). `objective="mlm_nsp"`: a BertForPreTraining trained as BERT was, the masked
  tokens plus next-sentence prediction on [CLS] A [SEP] B [SEP] pairs (segment_pairs.py) at the same tokens
  per step, so each seed has its own pooler and NSP head (as the MultiBERTs), which fine-tuning keeps.
  NSP rather than sentence-order prediction: SOP's two classes hold the same two segments, so their shared
  words cannot tell them apart, while NSP's random second segments share fewer of the first's words, the
  comparison the pair stand-ins (paraphrase, entailment, similarity) ask for.
* `checkpoint_every`: the weights at every multiple of it below the final step (step 0, the initialisation,
  included) are also saved, weights only, as `steps/step{k}.safetensors` inside the seed's folder; saving
  draws nothing random, so the final weights are the same with or without it. `export_step` turns one into
  a HuggingFace model directory (the workflow's `mlm_step{k}` task).
* `unigram_loss_from_ids`: the unigram plateau — the masked-token cross-entropy of a model that ignores the context and
  predicts training-text token frequencies. A pre-trained seed must beat it clearly.

Measured on the embedded corpus (10 MB, 2.76 M tokens; held-out Moby Dick, unigram plateau 6.88 nats), one
thread, L4-H128-A4-I512: steps=1000, batch_size=8, seq_len=128, lr=1e-3 (init 0.049, see pretrain_bert)
reach held-out 6.53-6.57 for seeds 2-5 in ~3 CPU-minutes per seed (~6k tokens/s). At equal tokens smaller
batches did better (B32x300: 6.63, B16x600: 6.55, B8x1200: 6.50); with BERT's init 0.02 the models were
still on the plateau after 1.2 M tokens.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from permerge.evaluation.encode import encode_at
from permerge.evaluation.evaluate import (
    IGNORE_INDEX,
    bert_mask,
    blocks_from_ids,
    build_mlm_evalset,
    mlm_loss,
    special_ids,
    tokenize_lines,
)
from permerge.models import load_tokenizer
from permerge.training.segment_pairs import corpus_lines, nsp_batch
from permerge.training.steps import step_file, step_metadata
from permerge.training.train import train

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# mlm: BertForMaskedLM on blocks of the text; mlm_nsp: BertForPreTraining, MLM + next-sentence prediction on
# segment pairs (segment_pairs.py), with its own pooler and NSP head.
OBJECTIVES = ("mlm", "mlm_nsp")
HELDOUT_PAIRS = 512  # held-out NSP pairs scored at the end (mlm_nsp)


def _read_lines(path) -> Iterable[str]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                yield line


# ------------------------------------------------------------------------------------------- tokenizer
def train_wordpiece(
    text_files: Sequence[str | os.PathLike] | str | os.PathLike,
    out_dir,
    vocab_size: int = 8192,
    *,
    min_frequency: int = 2,
    model_max_length: int = 512,
    cache_ids: bool = True,
):
    """Train a lowercase WordPiece tokenizer on the text files and save it to `out_dir`. Returns it.

    With `cache_ids`, each text file's token ids are also stored in `out_dir` (`corpus_ids-<sha>.safetensors`,
    keyed by the file's content hash), so that the pre-training jobs of all seeds skip re-tokenizing the corpus.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import BertTokenizer

    if isinstance(text_files, (str, os.PathLike)):
        text_files = [text_files]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, clean_text=True, handle_chinese_chars=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(
        vocab_size=int(vocab_size), min_frequency=int(min_frequency), special_tokens=SPECIAL_TOKENS
    )

    def lines():
        for path in text_files:
            yield from _read_lines(path)

    tok.train_from_iterator(lines(), trainer)
    # BertTokenizer (tokenizers-backed in transformers 5) rebuilds BERT's normalizer, pre-tokenizer and the
    # [CLS] A [SEP] (B [SEP]) post-processor with token types around this vocabulary.
    # The trainer breaks ties between equally frequent tokens in hash-map order, so the same text gives the
    # same token set with ~2 % of the ids shuffled from run to run (and hence other seed models): number the
    # tokens canonically, the special tokens first as trained, then the rest in string order.
    trained = tok.get_vocab()
    specials = sorted((t for t in trained if t in SPECIAL_TOKENS), key=trained.get)
    vocab = {t: i for i, t in enumerate(specials + sorted(t for t in trained if t not in SPECIAL_TOKENS))}
    hf = BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=int(model_max_length))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(str(out_dir))
    if cache_ids:
        for path in text_files:
            save_corpus_ids(out_dir, path, tokenize_file(hf, path))
    # vocab.txt too, for tools that expect the classic BERT layout.
    with open(out_dir / "vocab.txt", "w", encoding="utf-8") as f:
        for token, _ in sorted(vocab.items(), key=lambda kv: kv[1]):
            f.write(token + "\n")
    return hf


def _sha256(path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tokenize_file(tokenizer, text_file) -> torch.Tensor:
    """All non-empty lines with [CLS]/[SEP], concatenated (int32)."""
    return torch.tensor(tokenize_lines(tokenizer, _read_lines(text_file)), dtype=torch.int32)


def _cache_path(tokenizer_dir, digest: str) -> Path:
    return Path(tokenizer_dir) / f"corpus_ids-{digest[:16]}.safetensors"


def save_corpus_ids(tokenizer_dir, text_file, ids: torch.Tensor) -> Path:
    from safetensors.torch import save_file

    digest = _sha256(text_file)
    path = _cache_path(tokenizer_dir, digest)
    save_file({"ids": ids.to(torch.int32).contiguous()}, str(path), metadata={"sha256": digest})
    return path


def corpus_ids(tokenizer, tokenizer_dir, text_file, log=None) -> torch.Tensor:
    """The text file's ids from the tokenizer directory's cache when its content hash matches, else tokenized."""
    from safetensors import safe_open

    digest = _sha256(text_file)
    path = _cache_path(tokenizer_dir, digest)
    if path.is_file():
        with safe_open(str(path), framework="pt") as f:
            if (f.metadata() or {}).get("sha256") == digest:
                if log is not None:
                    log.info("token ids of %s from %s", text_file, path.name)
                return f.get_tensor("ids").long()
    return tokenize_file(tokenizer, text_file).long()


# ------------------------------------------------------------------------------------------- model
def make_config(
    *,
    vocab_size: int,
    num_hidden_layers: int = 4,
    hidden_size: int = 128,
    num_attention_heads: int = 4,
    intermediate_size: int = 512,
    max_position_embeddings: int = 128,
    pad_token_id: int = 0,
    initializer_range: float = 0.02,
):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=int(vocab_size),
        hidden_size=int(hidden_size),
        num_hidden_layers=int(num_hidden_layers),
        num_attention_heads=int(num_attention_heads),
        intermediate_size=int(intermediate_size),
        max_position_embeddings=int(max_position_embeddings),
        type_vocab_size=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=int(pad_token_id),
        initializer_range=float(initializer_range),
        tie_word_embeddings=True,
    )


def default_initializer_range(hidden_size: int) -> float:
    """0.02·sqrt(768/d), never below BERT's 0.02: the init gain of BERT-base for a width-d model."""
    return 0.02 * math.sqrt(max(768 / int(hidden_size), 1.0))


def mlm_step_loss(model, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean masked-token CE with the last layer and the MLM head applied at the masked positions only."""
    sel = labels != IGNORE_INDEX
    logits = model.cls(encode_at(model.bert, sel, input_ids=input_ids))
    return F.cross_entropy(logits, labels[sel])


def pretraining_step_loss(
    model, input_ids: torch.Tensor, token_type_ids: torch.Tensor, labels: torch.Tensor, nsp_labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BertForPreTraining's two losses, (masked-token CE, next-sentence CE, next-sentence logits), with the last
    layer applied at the masked positions and [CLS] only. Position 0 ([CLS]) is never masked."""
    masked = labels != IGNORE_INDEX
    sel = masked.clone()
    sel[:, 0] = True
    hidden = encode_at(model.bert, sel, input_ids=input_ids, token_type_ids=token_type_ids)
    first = torch.zeros_like(sel)
    first[:, 0] = True
    # hidden's rows follow sel in row-major order: each row's [CLS] first, then its masked positions.
    mlm = F.cross_entropy(model.cls.predictions(hidden[masked[sel]]), labels[masked])
    pooled = model.bert.pooler(hidden[first[sel]].unsqueeze(1))
    nsp_logits = model.cls.seq_relationship(pooled)
    return mlm, F.cross_entropy(nsp_logits, nsp_labels), nsp_logits


@torch.inference_mode()
def nsp_accuracy(model, pairs: dict[str, torch.Tensor], *, batch_size: int = 64) -> float:
    """Next-sentence accuracy of a BertForPreTraining on fixed pairs (`segment_pairs.nsp_batch`)."""
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(pairs["input_ids"]), batch_size):
        out = model(
            input_ids=pairs["input_ids"][i : i + batch_size],
            token_type_ids=pairs["token_type_ids"][i : i + batch_size],
        )
        correct += int(
            (out.seq_relationship_logits.argmax(-1) == pairs["next_sentence_label"][i : i + batch_size]).sum()
        )
    model.train(was_training)
    return correct / len(pairs["input_ids"])


def block_batches(blocks: torch.Tensor, batch_size: int, generator: torch.Generator, progress: dict) -> Iterator:
    """Endless batches of `blocks`: each epoch visits them in a fresh order drawn from `generator` (the last
    incomplete batch of an epoch is dropped). `progress` keeps "tokens" and "epochs" (fractional) up to date."""
    order = torch.randperm(len(blocks), generator=generator)
    pos = epochs = 0
    while True:
        if pos + batch_size > len(order):
            order = torch.randperm(len(blocks), generator=generator)
            pos = 0
            epochs += 1
        batch = blocks[order[pos : pos + batch_size]]
        pos += batch_size
        progress["tokens"] = progress.get("tokens", 0) + batch.numel()
        progress["epochs"] = epochs + pos / max(len(order), 1)
        yield batch


def pretrain_bert(
    *,
    tokenizer_dir,
    text_file,
    seed: int,
    out_dir,
    num_hidden_layers: int = 4,
    hidden_size: int = 128,
    num_attention_heads: int = 4,
    intermediate_size: int = 512,
    max_position_embeddings: int = 128,
    vocab_size: int | None = None,
    steps: int = 800,
    batch_size: int = 32,
    seq_len: int = 128,
    lr: float = 2e-3,
    warmup: float = 0.06,
    weight_decay: float = 0.01,
    mask_prob: float = 0.15,
    grad_clip: float = 1.0,
    objective: str = "mlm",
    nsp_weight: float = 1.0,
    nsp_min_distance: float = 0.01,
    initializer_range: float | None = None,
    heldout_file=None,
    heldout_max_blocks: int | None = 256,
    heldout_every: int = 0,
    checkpoint_every: int = 0,
    log_every: int = 50,
    log: logging.Logger | None = None,
) -> dict:
    """Pre-train a BertForMaskedLM from scratch and save it (safetensors + tokenizer + train_metrics.json).

    The text is tokenized line by line with [CLS]/[SEP], concatenated and cut into `seq_len` blocks; each
    epoch visits the blocks in a seed-dependent order, and masks are drawn afresh each step (dynamic masking)
    from a seed-dependent generator. `heldout_file` (optional): lines scored at the end with a fixed masked
    set (block size max_position_embeddings, mask seed 0), reported with the unigram baseline of the same set;
    with `heldout_every` > 0 the first 32 of those blocks are also scored (and logged) every that many steps.
    `checkpoint_every` > 0: the weights after every multiple k of it below `steps` (k = 0: the initialisation)
    are saved as `out_dir/steps/step{k}.safetensors` (`step_file`).

    `initializer_range` None: 0.02·sqrt(768/hidden_size), i.e. BERT-base's init gain (std·sqrt(d)) kept for
    narrower models (0.049 for d=128; 0.02 at d=768). With BERT's 0.02 a d=128 model sits on the unigram
    plateau far longer (measured: still on it after 300×32×128 tokens, while 0.05 is well below it).
    """
    log = log or logging.getLogger("permerge.training.pretrain")
    t0 = time.time()
    tokenizer = load_tokenizer(tokenizer_dir)
    vocab_size = int(vocab_size or len(tokenizer))
    if vocab_size < len(tokenizer):
        raise ValueError(f"vocab_size {vocab_size} < tokenizer size {len(tokenizer)}")
    if seq_len > max_position_embeddings:
        raise ValueError(f"seq_len {seq_len} > max_position_embeddings {max_position_embeddings}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be 0 (none) or positive, got {checkpoint_every}")

    if objective not in OBJECTIVES:
        raise ValueError(f"models.pretrain.objective {objective!r}: expected one of {', '.join(OBJECTIVES)}")
    nsp = objective == "mlm_nsp"

    ids = corpus_ids(tokenizer, tokenizer_dir, text_file, log=log)
    if nsp:
        content, starts = corpus_lines(ids, cls_id=tokenizer.cls_token_id, sep_id=tokenizer.sep_token_id)
        min_distance = max(1, int(nsp_min_distance * len(content)))
        log.info(
            "seed %d: %d lines, %d tokens; NSP negatives >= %d tokens away",
            seed,
            len(starts),
            len(content),
            min_distance,
        )
    else:
        blocks = blocks_from_ids(ids, seq_len)
        log.info(
            "seed %d: %d tokens -> %d blocks of %d (%.1fs)", seed, len(ids), len(blocks), seq_len, time.time() - t0
        )

    if initializer_range is None:
        initializer_range = default_initializer_range(hidden_size)
    torch.manual_seed(int(seed))
    config = make_config(
        vocab_size=vocab_size,
        num_hidden_layers=num_hidden_layers,
        hidden_size=hidden_size,
        num_attention_heads=num_attention_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
        initializer_range=initializer_range,
    )
    from transformers import BertForMaskedLM, BertForPreTraining

    model = BertForPreTraining(config) if nsp else BertForMaskedLM(config)

    evalset = None
    if heldout_file is not None:
        evalset = build_mlm_evalset(
            tokenizer,
            _read_lines(heldout_file),
            block_size=max_position_embeddings,
            seed=0,
            max_blocks=heldout_max_blocks,
        )
    heldout_pairs = None
    if nsp and heldout_file is not None:
        h_content, h_starts = corpus_lines(
            tokenize_file(tokenizer, heldout_file), cls_id=tokenizer.cls_token_id, sep_id=tokenizer.sep_token_id
        )
        heldout_pairs = nsp_batch(
            h_content,
            h_starts,
            batch_size=HELDOUT_PAIRS,
            seq_len=seq_len,
            cls_id=tokenizer.cls_token_id,
            sep_id=tokenizer.sep_token_id,
            min_distance=max(1, int(nsp_min_distance * len(h_content))),
            generator=torch.Generator().manual_seed(0),
        )
    curve = []

    data_gen = torch.Generator().manual_seed(int(seed))
    mask_gen = torch.Generator().manual_seed(int(seed) + 7919)
    special = torch.tensor(special_ids(tokenizer), dtype=torch.long)
    progress: dict = {}

    nsp_record: list[tuple[float, float]] = []  # (NSP loss, NSP accuracy) of each step

    def masked(ids):
        return bert_mask(
            ids,
            special=special,
            mask_token_id=tokenizer.mask_token_id,
            vocab_size=len(tokenizer),
            mask_prob=mask_prob,
            generator=mask_gen,
        )

    def step_loss(batch):
        if not nsp:
            return mlm_step_loss(model, *masked(batch))
        x, y = masked(batch["input_ids"])
        target = batch["next_sentence_label"]
        mlm, nsp_loss, logits = pretraining_step_loss(model, x, batch["token_type_ids"], y, target)
        nsp_record.append((float(nsp_loss.detach()), float((logits.detach().argmax(-1) == target).float().mean())))
        return mlm + nsp_weight * nsp_loss

    def pair_batches():
        while True:
            batch = nsp_batch(
                content,
                starts,
                batch_size=batch_size,
                seq_len=seq_len,
                cls_id=tokenizer.cls_token_id,
                sep_id=tokenizer.sep_token_id,
                min_distance=min_distance,
                generator=data_gen,
            )
            progress["tokens"] = progress.get("tokens", 0) + batch["input_ids"].numel()
            progress["epochs"] = progress["tokens"] / len(content)
            yield batch

    saved: list[int] = []

    def checkpoint(done):
        if checkpoint_every and done % checkpoint_every == 0 and done < steps:
            save_step(model, out_dir, done)
            saved.append(done)

    def after_step(done):
        checkpoint(done)
        if evalset is not None and heldout_every and done % heldout_every == 0:
            h = mlm_loss(model, {k: v[:32] for k, v in evalset.items()})["loss"]
            model.train()
            curve.append([done, h])
            log.info("step %d held-out (32 blocks) loss %.4f", done, h)

    checkpoint(0)  # the initialisation
    run = train(
        model,
        pair_batches() if nsp else block_batches(blocks, batch_size, data_gen, progress),
        step_loss,
        total_steps=steps,
        lr=lr,
        warmup=warmup,
        warmup_from_zero=False,
        weight_decay=weight_decay,
        grad_clip=grad_clip,
        betas=(0.9, 0.98),
        eps=1e-6,
        log=log,
        log_every=log_every,
        after_step=after_step,
    )
    losses, train_s, tokens = run.losses, run.seconds, progress["tokens"]

    metrics = {
        "seed": int(seed),
        "steps": int(steps),
        "batch_size": int(batch_size),
        "seq_len": int(seq_len),
        "lr": float(lr),
        "objective": objective,
        "initializer_range": float(initializer_range),
        "train_tokens": int(tokens),
        "epochs": progress["epochs"],
        "initial_train_loss": sum(losses[:10]) / len(losses[:10]),
        "final_train_loss": sum(losses[-50:]) / len(losses[-50:]),
        "train_minutes": train_s / 60,
        "tokens_per_s": tokens / max(train_s, 1e-9),
        "n_params": sum(p.numel() for p in model.parameters()),
    }
    if nsp:
        tail = nsp_record[-100:]
        metrics["nsp_weight"] = float(nsp_weight)
        metrics["final_nsp_loss"] = sum(v[0] for v in tail) / len(tail)
        metrics["final_nsp_train_accuracy"] = sum(v[1] for v in tail) / len(tail)
        if heldout_pairs is not None:
            metrics["heldout_nsp_accuracy"] = nsp_accuracy(model, heldout_pairs)
            log.info("held-out NSP accuracy %.3f (%d pairs)", metrics["heldout_nsp_accuracy"], HELDOUT_PAIRS)
    if curve:
        metrics["heldout_curve"] = curve
    if saved:
        metrics["checkpoint_steps"] = saved
    if evalset is not None:
        t_eval = time.time()
        res = mlm_loss(model, evalset)
        metrics["heldout_loss"] = res["loss"]
        metrics["heldout_accuracy"] = res["accuracy"]
        metrics["heldout_tokens_per_s"] = evalset["input_ids"].numel() / max(time.time() - t_eval, 1e-9)
        metrics["unigram_loss"] = unigram_loss_from_ids(ids, evalset, vocab_size=vocab_size, special=special)
        log.info(
            "held-out MLM loss %.4f (unigram plateau %.4f, masked acc %.3f)",
            metrics["heldout_loss"],
            metrics["unigram_loss"],
            metrics["heldout_accuracy"],
        )
    metrics["minutes"] = (time.time() - t0) / 60

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    (out_dir / "train_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    log.info(
        "saved %s: %s", out_dir, json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()})
    )
    return metrics


# ------------------------------------------------------------------------------------------- steps
def save_step(model, seed_dir, step: int) -> Path:
    """Save the model's weights (tied weights once) as `step_file(seed_dir, step)`."""
    from safetensors.torch import save_model

    path = step_file(seed_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, str(path), metadata=step_metadata(step))
    return path


# ------------------------------------------------------------------------------------------- unigram
def unigram_loss_from_ids(
    train_ids, evalset: dict[str, torch.Tensor], *, vocab_size: int, special=(), smoothing: float = 1.0
) -> float:
    """Mean CE of the evalset's masked targets under add-`smoothing` unigram frequencies of `train_ids`
    (special tokens excluded from the counts: they are never targets)."""
    counts = torch.bincount(torch.as_tensor(train_ids, dtype=torch.long), minlength=vocab_size).double()
    counts = counts[:vocab_size] + smoothing
    counts[torch.as_tensor(list(special), dtype=torch.long)] = 0.0
    logp = torch.log(counts / counts.sum())
    labels = evalset["labels"]
    targets = labels[labels != IGNORE_INDEX]
    return float(-logp[targets].mean())
