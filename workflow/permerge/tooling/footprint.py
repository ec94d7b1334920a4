"""Memory and disk of every heavy rule at a configuration's scale, computed from the model and data shapes.

    python -m permerge.tooling.footprint --configfile configs/paper.yaml    # a Markdown table (docs/performance.md)

The Snakemake rules size their ``resources`` with ``mem_mb(rule, config, task)``. Every figure is a sum of
named parts (``estimate``), each a product of shapes and counts:

* a checkpoint holds its float32 parameters (``param_count``; tied weights once), safetensors headers and
  the tokenizer files;
* statistics hold, per needed feature (``matching.required_features``; ff: FF dim, everything else: hidden),
  count/mean/M2 float64 per model and one float64 cross block d² per pair (the accumulators), and the file
  stores the cross blocks as float32 (means/M2 float64); the file is written one block at a time;
* fine-tuning holds the weights, gradients, AdamW's two moments and its step's temporaries (5 x params x
  4 bytes) plus the activations autograd saves, (L+1)·(12h + 2f + 3aT) + 4h floats per token (checked
  against the saved tensors of a real BertForSequenceClassification in tests/test_footprint.py: about
  10 % above them; the extra layer covers backward's transients);
* tokenizing a whole split at once (finetune, the GLUE evaluation sets) peaks at about 185 bytes per padded
  token (fast tokenizer encodings, python lists, the tensors; measured on 20k-60k pairs padded to 93);
* a fixed per-job overhead: 380 MB measured as the RSS of a fresh python with torch, transformers (the BERT
  classes) and scipy imported (torch 2.13 CPU); jobs on a GPU add the host side of the CUDA context and
  libraries (an estimate, ``CUDA_HOST_BYTES``: no GPU was at hand to measure it).

Host memory (``mem_mb``) = safety factor x the sum of the host parts, rounded up to 500 MB. With
``device: cuda`` the models, accumulators and activations of collect_statistics, sweep_lambdas and finetune
count as GPU memory instead (reported beside); the host then holds one model while it is loaded.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field

from permerge import config as cfg
from permerge.families import FAMILIES, family_of_type, supported_classes
from permerge.tasks import base_task, is_evaluation_only, is_mlm, mlm_evalset

MB = 10**6

# ---------------------------------------------------------------------------------------------- constants
OVERHEAD_BYTES = (
    500 * 10**6
)  # python + torch + transformers + scipy imported: 380-427 MB measured (a clean venv is the larger)
CUDA_HOST_BYTES = 2000 * MB  # host RSS of a CUDA context + cuBLAS/cuDNN (estimate, not measured here)
# Of the card's gpu_memory_gb, what torch's tensors may not use: the CUDA context, cuBLAS workspaces and the
# caching allocator's slack (an estimate: no GPU was at hand; a "16 GB" card holds 16 GiB = 17.2e9 bytes,
# so 16e9 - this leaves a further 2.2 GB of the card unplanned).
CUDA_DEVICE_RESERVE = 1000 * MB
SAFETY = 1.25
ROUND_MB = 500
TOKENIZE_BYTES_PER_TOKEN = 200  # tokenizing a whole split: 185 B per padded token measured at peak
EXAMPLE_BYTES = 800  # one GLUE example held as a dict (read_jsonl): 705 B measured with 165 characters
LINE_BYTES = 400  # one statistics text line held as {"text": line}: 315 B measured with 70 characters
TOKENIZER_BYTES_PER_ENTRY = 24  # tokenizer.json + vocab.txt of a WordPiece vocabulary (bert-base: 700 KB)
DIR_EXTRA_BYTES = 16_000  # config.json, tokenizer_config.json, special tokens, metrics.json
HEADER_BYTES_PER_TENSOR = 120  # a safetensors header entry (name, dtype, shape, offsets)
LOSS_ROW_BYTES = 400  # one λ row of a loss table (loss, metric, counts, the unpermuted B's columns)
FLUSH_EVERY = 4  # stats._FLUSH_EVERY: queued rank-one corrections per feature (2 float64 vectors per model)

# Examples per split of the real GLUE tasks (nyu-mll/glue), and the eval split the workflow uses.
# Token counts assumed where the configuration does not bound them (hub/local sources without a cap).
MLM_EVAL_TOKENS = 300_000  # Wikitext-103 validation: ~218k words, ~250k WordPiece tokens
MLM_COMPAT_EVAL_TOKENS = 1_300_000  # the same lines character-spaced (mlm_compat): ~one token per character
TEXT_LINES_UNCAPPED = 1_000_000  # a statistics text (hub/local) without sample/max_lines
EMBEDDED_TEXT_LINES = 50_000  # the embedded Books stand-in: 20,000 lines

HEAVY_RULES = (
    "fetch_model",
    "finetune",
    "collect_statistics",
    "compute_permutations",
    "merge_checkpoints",
    "sweep_lambdas",
    "merge_many",
)
GPU_RULES = ("collect_statistics", "finetune", "sweep_lambdas", "merge_many")  # resources: gpu=1 with cuda


# ---------------------------------------------------------------------------------------------- shapes
@dataclass(frozen=True)
class Shape:
    """An encoder's dimensions (a BERT's, or another family's read through families.Family.fields)."""

    layers: int
    hidden: int
    heads: int
    ff: int
    vocab: int
    positions: int
    type_vocab: int = 2
    embedding: int | None = None  # an embedding width apart from hidden (ELECTRA-small); None: hidden


def hf_shape(hf_config) -> Shape:
    """The Shape of a loaded model's (transformers) config, read through its family's config fields
    (families.Family.fields; a config without a model_type is read as a BertConfig; a family without token
    types has type_vocab 0)."""
    fam = family_of_type(getattr(hf_config, "model_type", None) or "bert")
    fields = fam.fields
    hidden = getattr(hf_config, fields["hidden"])
    embedding = getattr(hf_config, fam.embedding_size, hidden) if fam.embedding_size else hidden
    return Shape(
        layers=getattr(hf_config, fields["layers"]),
        hidden=getattr(hf_config, fields["hidden"]),
        heads=getattr(hf_config, fields["heads"]),
        ff=getattr(hf_config, fields["ff"]),
        vocab=getattr(hf_config, fields["vocab"]),
        positions=getattr(hf_config, fields["positions"]),
        type_vocab=getattr(hf_config, fields["type_vocab"], 2) if "type_vocab" in fields else 0,
        embedding=None if embedding == hidden else embedding,
    )


def bert_config(shape: Shape, **kw):
    """A transformers BertConfig of a Shape (hf_shape's inverse for BERT); kw: further config fields."""
    import transformers

    return transformers.BertConfig(
        vocab_size=shape.vocab,
        hidden_size=shape.hidden,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        intermediate_size=shape.ff,
        max_position_embeddings=shape.positions,
        type_vocab_size=shape.type_vocab,
        **kw,
    )


BERT_BASE = Shape(layers=12, hidden=768, heads=12, ff=3072, vocab=30522, positions=512, type_vocab=2)
# the classes `architecture` names: the BERT family's (the workflow's planned seeds); _parts counts every
# family's (families.FAMILIES)
ARCHITECTURES = tuple(FAMILIES["bert"].classes())


def model_shape(config) -> Shape:
    """models.pretrain's shape for source: pretrain; otherwise BERT-base (the MultiBERTs)."""
    if config["models"]["source"] == "pretrain":
        p = config["models"]["pretrain"]
        return Shape(
            layers=int(p["num_hidden_layers"]),
            hidden=int(p["hidden_size"]),
            heads=int(p["num_attention_heads"]),
            ff=int(p["intermediate_size"]),
            vocab=int(p["vocab_size"]),
            positions=int(p["max_position_embeddings"]),
            type_vocab=2,
        )
    return BERT_BASE


def architecture(config, task: str) -> str:
    """The class of a task's seed checkpoints: fine-tuned GLUE models are BertForSequenceClassification;
    pre-trained from scratch: BertForMaskedLM (objective mlm) or BertForPreTraining (mlm_nsp); hub/local (the
    MultiBERTs): BertForPreTraining."""
    if task != "mlm":
        return "BertForSequenceClassification"
    if config["models"]["source"] == "pretrain" and config["models"]["pretrain"].get("objective", "mlm") == "mlm":
        return "BertForMaskedLM"
    return "BertForPreTraining"


def _family_kind(arch: str):
    known = supported_classes()
    if arch not in known:
        raise ValueError(f"unknown architecture {arch!r} (known: {', '.join(known)})")
    name, kind = known[arch]
    return FAMILIES[name], kind


def has_pooler(arch: str) -> bool:
    """Whether the class has the statistics' pooler feature: the encoder's pooler, or a classifier's own
    hidden layer (RoBERTa, ELECTRA, DistilBERT)."""
    fam, kind = _family_kind(arch)
    return fam.has_pooler_layer(kind) or (kind == "classification" and fam.classifier_hidden is not None)


def num_labels(task: str) -> int:
    from permerge.data.standins import TASKS

    return TASKS[task].num_labels


def _parts(shape: Shape, arch: str, labels: int = 2) -> dict[str, tuple[int, int]]:
    """(parameters, tensors) of each block of a model of any family's class; tied weights (the MLM decoder)
    counted once."""
    fam, kind = _family_kind(arch)
    h, f, L = shape.hidden, shape.ff, shape.layers
    e = shape.embedding or h
    layer = 4 * (h * h + h) + 2 * h + (h * f + f) + (f * h + h) + 2 * h  # Q K V O, LN, FF in/out, LN
    types = shape.type_vocab if fam.token_types else 0
    parts = {"embeddings": ((shape.vocab + shape.positions + types) * e + 2 * e, 4 + fam.token_types)}
    if e != h:
        parts["embeddings_project"] = (e * h + h, 2)
    parts["encoder"] = (L * layer, 16 * L)
    if fam.has_pooler_layer(kind):
        parts["pooler"] = (h * h + h, 2)
    if kind in ("mlm", "pretraining"):
        parts["mlm_head"] = (
            h * e + e + 2 * e + shape.vocab,
            5,
        )  # dense + LN (output in the embedding space), decoder bias
    if kind == "pretraining":
        parts["nsp_head"] = (2 * h + 2, 2)
    if kind == "discriminator":
        parts["discriminator_head"] = (h * h + h + h + 1, 4)
    if kind == "classification":
        hidden = (h * h + h, 2) if fam.classifier_hidden is not None else (0, 0)  # e.g. RoBERTa's classifier.dense
        parts["classifier"] = (hidden[0] + h * labels + labels, hidden[1] + 2)
    return parts


def param_count(shape: Shape, arch: str, labels: int = 2) -> int:
    """Parameters of a model of this shape and class (``sum(p.numel() for p in model.parameters())``)."""
    return sum(n for n, _ in _parts(shape, arch, labels).values())


def param_bytes(shape: Shape, arch: str, labels: int = 2) -> int:
    """Bytes of the float32 parameters (the model in memory, the weights in its checkpoint)."""
    return 4 * param_count(shape, arch, labels)


def checkpoint_bytes(shape: Shape, arch: str, labels: int = 2) -> int:
    """A checkpoint directory: model.safetensors (weights + header), tokenizer files, config, metrics."""
    tensors = sum(t for _, t in _parts(shape, arch, labels).values())
    return (
        param_bytes(shape, arch, labels)
        + HEADER_BYTES_PER_TENSOR * tensors
        + TOKENIZER_BYTES_PER_ENTRY * shape.vocab
        + DIR_EXTRA_BYTES
    )


def task_shape(config, task: str) -> tuple[Shape, str, int]:
    return model_shape(config), architecture(config, task), (2 if task == "mlm" else num_labels(task))


def model_bytes(config, task: str) -> int:
    return param_bytes(*task_shape(config, task))


# ---------------------------------------------------------------------------------------------- statistics
def feature_dim(shape: Shape, feature: str) -> int:
    # emb (a projected ELECTRA's embedding space) is narrower than hidden: counted as hidden, an upper bound
    return shape.ff if feature.startswith("ff.") else shape.hidden


def _fraction(config, task: str, variant: str) -> float:
    fn = getattr(cfg, "stats_fraction", None)
    if fn is not None:
        return float(fn(config, task, variant))
    own = cfg.variant_options(config, variant).stats_fraction
    return float(own if own is not None else 1.0)


def fraction_features(config, task: str) -> dict[float, list[str]]:
    """Statistics fraction -> the features its file holds (what the task's variants with that fraction
    need), fractions ascending; one entry per statistics file of the task."""
    from permerge.alignment.matching import required_features

    shape, arch, _ = task_shape(config, task)
    from permerge.alignment.variants import Variant

    out: dict[float, set[str]] = {}
    for v in cfg.variants_for(config, task):
        if not cfg.needs_statistics(config, v):  # vanilla, weight matching
            continue
        opts = cfg.variant_options(config, v)
        # the pass collects every residual node once any variant aligns the stream (common.smk)
        needs = Variant(components=opts.components, residual="all", qk=opts.qk)
        feats = required_features(needs, shape.layers, pooler=has_pooler(arch))
        out.setdefault(_fraction(config, task, v), set()).update(feats)
    return {f: sorted(out[f]) for f in sorted(out)}


def accumulator_bytes(num_models: int, num_pairs: int, dims) -> int:
    """float64 count-free state of collect_statistics: mean and M2 per model, a cross block per pair."""
    return sum(8 * (num_pairs * d * d + 2 * num_models * d) for d in dims)


def statistics_workspace_bytes(num_models: int, num_pairs: int, dims) -> dict[str, int]:
    """Beside the accumulators: the shared float32 product buffer and the queue of rank-one corrections."""
    dims = list(dims)
    return {
        "workspace": 4 * max(dims) ** 2 if num_pairs and dims else 0,
        "queue": sum(8 * 2 * FLUSH_EVERY * num_models * d for d in dims),
    }


def statistics_pass_bytes(
    shape: Shape, num_models: int, num_pairs: int, dims, batch: int, seq_len: int
) -> dict[str, int]:
    """Memory of collect_statistics besides the models, at its peak: the accumulators, the product buffer
    and queue, every model's captured features of one batch (all held until the update), the centred
    float32 copies of one feature for every model (+ a float64 column temporary) and one forward."""
    tokens = batch * seq_len
    dims = list(dims)
    return {
        "accumulators": accumulator_bytes(num_models, num_pairs, dims),
        "product buffer + queue": sum(statistics_workspace_bytes(num_models, num_pairs, dims).values()),
        "captured features": 4 * num_models * tokens * sum(dims),
        "centred copies": tokens * max(dims) * (4 * num_models + 8),
        "forward": inference_activation_bytes(shape, batch, seq_len),
    }


def statistics_device_bytes(
    shape: Shape,
    num_models: int,
    num_pairs: int,
    dims,
    micro_batch: int,
    seq_len: int,
    *,
    cross_on_device: bool,
    models: int,
) -> dict[str, int]:
    """What collect_statistics holds on its device at its peak, with ``micro_batch`` sequences per update
    and the float64 cross blocks on the device (``cross_on_device``) or in host memory.

    The peak is the first update of a micro-batch (the largest feature is updated first): every model's
    captured features of the micro-batch, the centred float32 copies of the largest feature for every model
    and one float64 column temporary (larger than the last forward's own temporaries); beside them the
    models, the means/M2 (and the cross blocks when on the device), the float32 product buffer and the queue
    of rank-one corrections. Measured against the live tensors of a real pass in tests/test_footprint.py.
    """
    dims = list(dims)
    tokens = micro_batch * seq_len
    state = (
        accumulator_bytes(num_models, num_pairs, dims) if cross_on_device else accumulator_bytes(num_models, 0, dims)
    )
    work = statistics_workspace_bytes(num_models, num_pairs, dims)
    return {
        "models": models,
        "accumulators" if cross_on_device else "means + M2": state,
        "product buffer + queue": work["workspace"] + work["queue"],
        "captured features": 4 * num_models * tokens * sum(dims),
        "centred copies": max(
            tokens * max(dims) * (4 * num_models + 8), inference_activation_bytes(shape, micro_batch, seq_len)
        ),
    }


def gpu_budget_bytes(config) -> int:
    """Bytes of tensors a GPU job may hold: gpu_memory_gb (10^9 bytes) less CUDA_DEVICE_RESERVE."""
    return int(float(config.get("gpu_memory_gb", 16)) * 10**9) - CUDA_DEVICE_RESERVE


@dataclass(frozen=True)
class StatisticsPlan:
    """How collect_statistics runs within a GPU budget: sequences per update, where the cross blocks live,
    and the device bytes by part at the peak."""

    micro_batch: int
    cross_on_device: bool
    parts: dict
    budget: int

    @property
    def peak(self) -> int:
        return sum(self.parts.values())

    @property
    def cross_device(self) -> str | None:
        """collect_statistics' cross_device: None (the device itself) or "cpu" (host memory)."""
        return None if self.cross_on_device else "cpu"


def plan_statistics(
    shape: Shape, num_models: int, num_pairs: int, dims, batch: int, seq_len: int, budget: int, *, models: int
) -> StatisticsPlan:
    """The fastest plan whose device peak fits ``budget`` bytes: cross blocks on the device if they fit with
    some micro-batch (the largest that fits, evened out over the batch: 64 with room for 11 runs 6 updates
    of 11 or fewer), else in host memory with the largest micro-batch that fits (each product then crosses
    to the host: fewer, larger updates are cheaper). Raises cfg.ConfigError naming gpu_memory_gb when even
    one sequence per update with the cross blocks in host memory does not fit."""
    dims = list(dims)
    for on_device in (True, False):

        def parts(m, on_device=on_device):
            return statistics_device_bytes(
                shape, num_models, num_pairs, dims, m, seq_len, cross_on_device=on_device, models=models
            )

        if sum(parts(1).values()) > budget:
            continue
        lo, hi = 1, batch  # the largest m in [1, batch] that fits (the peak grows with m)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if sum(parts(mid).values()) <= budget else (lo, mid - 1)
        micro = math.ceil(batch / math.ceil(batch / lo))
        return StatisticsPlan(micro, on_device, parts(micro), budget)
    smallest = statistics_device_bytes(
        shape, num_models, num_pairs, dims, 1, seq_len, cross_on_device=False, models=models
    )
    raise cfg.ConfigError(
        f"gpu_memory_gb: collect_statistics needs at least {_size(sum(smallest.values()) + CUDA_DEVICE_RESERVE)} of "
        f"GPU memory ({len(dims)} features of {num_models} models, one sequence of {seq_len} tokens per update, "
        f"cross blocks in host memory: {', '.join(f'{k} {_size(v)}' for k, v in smallest.items())}); "
        f"gpu_memory_gb plans for {_size(budget + CUDA_DEVICE_RESERVE)}"
    )


def measure_statistics_peak(
    shape: Shape,
    num_models: int,
    features: list[str],
    micro_batch: int,
    seq_len: int,
    *,
    batches: int = 1,
    threads: int | None = None,
) -> dict:
    """Run collect_statistics on random-init BertForMaskedLM of ``shape`` (all pairs of ``num_models``,
    ``batches`` batches of ``micro_batch`` full sequences, one update each, cross blocks beside the
    features) on the CPU, counting live tensors with memtrace.LiveTensorBytes through the torch elementwise
    path a GPU runs; returns the measured peak (models included) and statistics_device_bytes' figure."""
    import torch
    import transformers

    from permerge.alignment.stats import collect_statistics, force_path
    from permerge.tooling.memtrace import LiveTensorBytes

    if threads:
        torch.set_num_threads(threads)
    config = bert_config(shape)
    torch.manual_seed(0)
    models = [transformers.BertForMaskedLM(config).eval() for _ in range(num_models)]
    g = torch.Generator().manual_seed(0)
    data = [
        {
            "input_ids": torch.randint(5, shape.vocab, (micro_batch, seq_len), generator=g),
            "attention_mask": torch.ones(micro_batch, seq_len, dtype=torch.long),
        }
        for _ in range(batches)
    ]
    held = [t for m in models for t in (*m.parameters(), *m.buffers())] + [t for b in data for t in b.values()]
    model_bytes = sum({id(t.untyped_storage()): t.untyped_storage().nbytes() for t in held[: -2 * batches]}.values())
    names = [f"m{i}" for i in range(num_models)]
    with force_path("torch"), LiveTensorBytes(ignore=held) as trace:
        stats = collect_statistics(models, data, names=names, features=features, micro_batch=micro_batch)
        del stats
    pairs = num_models * (num_models - 1) // 2
    dims = [feature_dim(shape, f) for f in features]
    parts = statistics_device_bytes(
        shape,
        num_models,
        pairs,
        dims,
        micro_batch,
        seq_len,
        cross_on_device=True,
        models=num_models * param_bytes(shape, "BertForMaskedLM"),
    )
    measured = model_bytes + trace.peak
    return {
        "layers": shape.layers,
        "hidden": shape.hidden,
        "ff": shape.ff,
        "models": num_models,
        "pairs": pairs,
        "features": len(features),
        "micro_batch": micro_batch,
        "seq_len": seq_len,
        "model_bytes_measured": model_bytes,
        "measured_peak": measured,
        "model_peak": sum(parts.values()),
        "ratio": measured / sum(parts.values()),
        "parts": parts,
    }


def _safetensors_header(entries: list[tuple[str, str, list[int]]], metadata: dict[str, str]) -> int:
    """Exact header bytes of a safetensors file (8-byte length + JSON padded to 8) with these entries."""
    header: dict = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, dtype, shape in entries:
        size = math.prod(shape) * {"F64": 8, "F32": 4, "I64": 8}[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    blob = len(json.dumps(header, separators=(",", ":")).encode())
    return 8 + blob + (-blob % 8)


def statistics_file_bytes(
    names, pairs, features: list[str], shape: Shape, *, metadata_bytes: int = 512, cross_itemsize: int = 4
) -> int:
    """A statistics file (Statistics.save): means/M2 float64, cross blocks float32, and its header
    (names, pairs, counts and ``metadata_bytes`` of other metadata: text path, fraction, ...)."""
    S = len(names)
    dims = {f: feature_dim(shape, f) for f in features}
    data = sum(16 * S * d + cross_itemsize * len(pairs) * d * d for d in dims.values())
    entries = [(f"{k}/{f}", "F64", [S, d]) for f, d in dims.items() for k in ("mean", "m2")]
    entries += [(f"cross/{f}/{a}/{b}", "F32", [d, d]) for f, d in dims.items() for a, b in pairs]
    meta = {
        "names": json.dumps(list(names)),
        "pairs": json.dumps([list(p) for p in pairs]),
        "counts": json.dumps({f: 10**9 for f in features}),
        "other": "x" * metadata_bytes,
    }
    return data + _safetensors_header(entries, meta)


def _names_pairs(config) -> tuple[list[str], list[tuple[str, str]]]:
    return ([f"seed{s}" for s in sorted(config["seeds"])], [(f"seed{a}", f"seed{b}") for a, b in cfg.pairs(config)])


def permutation_perms(config, task: str, variant: str) -> dict[str, int]:
    """Permutation name -> length, as compute_permutations returns them for this variant."""
    shape, arch, _ = task_shape(config, task)
    v = cfg.variant_options(config, variant)
    out = {}
    if "ff" in v.components:
        out.update({f"ff.{l}": shape.ff for l in range(shape.layers)})
    if "attn" in v.components:
        for l in range(shape.layers):
            out[f"attn.{l}"] = out[f"qk.{l}"] = shape.hidden
    if "res" in v.components:
        out["res"] = shape.hidden
    if "pooler" in v.components and has_pooler(arch):
        out["pooler"] = shape.hidden
    return out


def permutation_file_bytes(perms: dict[str, int], metadata_bytes: int = 512) -> int:
    """int64 permutations plus the header (variant, options, pair metadata: ``metadata_bytes``)."""
    entries = [(name, "I64", [n]) for name, n in perms.items()]
    return 8 * sum(perms.values()) + _safetensors_header(entries, {"m": "x" * metadata_bytes})


# ---------------------------------------------------------------------------------------------- activations
def training_activation_bytes(shape: Shape, batch: int, seq_len: int) -> int:
    """float32 tensors autograd saves for one training step, plus one layer's worth for backward."""
    h, f, a, T = shape.hidden, shape.ff, shape.heads, seq_len
    per_token = (shape.layers + 1) * (12 * h + 2 * f + 3 * a * T) + 4 * h
    return 4 * batch * T * per_token


def inference_activation_bytes(shape: Shape, batch: int, seq_len: int) -> int:
    """Peak of one no-grad forward: one layer's FF (before and after GELU), a few hidden-size tensors and
    the attention scores and probabilities."""
    tokens = batch * seq_len
    return 4 * (tokens * (2 * shape.ff + 4 * shape.hidden) + 2 * batch * shape.heads * seq_len * seq_len)


# ---------------------------------------------------------------------------------------------- data sizes
def glue_sizes(config, task: str) -> tuple[int, int]:
    """(train, eval) examples of a GLUE task: the real ones (hub) or the embedded stand-ins'."""
    if config["data"]["glue"]["source"] == "embedded":
        from permerge.data.standins import TASKS

        info = TASKS[task]
        return info.sizes["train"], info.sizes[info.eval_split]
    from permerge.tasks import glue_task

    return glue_task(task).hub_sizes


def _finetune_hp(config, task: str) -> dict:
    ft = config["finetune"]
    hp = {k: v for k, v in ft.items() if k != "tasks"}
    hp.update((ft.get("tasks") or {}).get(task, {}) or {})
    return hp


def stats_examples(config, task: str) -> int:
    """Statistics examples a collect_statistics job holds in memory: the whole text or training split is
    read before statistics.max_lines cuts it."""
    if task != "mlm":
        return glue_sizes(config, task)[0]
    spec = config["data"]["stats_text"]
    known = [n for n in (spec.get("sample"), spec.get("max_lines")) if n]
    if known:
        return min(known)
    return EMBEDDED_TEXT_LINES if spec["source"] == "embedded" else TEXT_LINES_UNCAPPED


def mlm_eval_tokens(config, evalset: str = "mlm") -> int:
    """Tokens of an MLM evaluation set (data/evalsets/{evalset}): max_blocks' worth, else Wikitext's."""
    spec = config["data"]["mlm_eval"]
    if spec.get("max_blocks"):
        return int(spec["max_blocks"]) * int(spec.get("block_size", 128))
    return MLM_COMPAT_EVAL_TOKENS if evalset != "mlm" or spec.get("paper_compat") else MLM_EVAL_TOKENS


# ---------------------------------------------------------------------------------------------- estimates
@dataclass
class Estimate:
    """One job of a rule: host and GPU memory by part (bytes), its outputs and their bytes."""

    rule: str
    task: str | None
    jobs: int
    host: dict[str, int]
    gpu: dict[str, int] = field(default_factory=dict)
    outputs_per_job: int = 1
    disk_per_job: int = 0
    note: str = ""

    @property
    def host_bytes(self) -> int:
        return sum(self.host.values())

    @property
    def gpu_bytes(self) -> int:
        return sum(self.gpu.values())

    @property
    def mem_mb(self) -> int:
        return round_mb(SAFETY * self.host_bytes)

    def peak_what(self, top: int = 3) -> str:
        parts = sorted(self.host.items(), key=lambda kv: -kv[1])[:top]
        return ", ".join(f"{k} {v / 1e9:.2f} GB" if v >= 10**8 else f"{k} {v / 1e6:.0f} MB" for k, v in parts)


def round_mb(nbytes: float) -> int:
    """Bytes -> MB (10^6), rounded up to a multiple of ROUND_MB."""
    return max(ROUND_MB, int(math.ceil(nbytes / MB / ROUND_MB)) * ROUND_MB)


def _on_gpu(config) -> bool:
    return str(config.get("device", "cpu")).startswith("cuda")


def _place(config, host: dict, device_parts: dict, loaded_model: int) -> tuple[dict, dict]:
    """Device parts live on the GPU with device: cuda (the host then holds the CUDA context and the model
    being loaded), else on the host."""
    if _on_gpu(config):
        return {**host, "CUDA context": CUDA_HOST_BYTES, "model being loaded": loaded_model}, dict(device_parts)
    return {**host, **device_parts}, {}


def estimate(rule: str, config, task: str | None = None, variant: str | None = None) -> Estimate:
    """The footprint of one job of `rule` for `task` (and `variant`: compute_permutations; default the
    variant with the largest footprint)."""
    if rule not in HEAVY_RULES:
        raise KeyError(f"footprint: no estimate for rule {rule!r} (known: {', '.join(HEAVY_RULES)})")
    S, P = len(config["seeds"]), len(cfg.pairs(config))
    if rule == "fetch_model":
        shape, arch, _ = task_shape(config, "mlm")
        m = param_bytes(shape, arch)
        return Estimate(
            rule,
            "mlm",
            S,
            {"overhead": OVERHEAD_BYTES, "model": m, "loaded state dict": m},
            disk_per_job=checkpoint_bytes(shape, arch),
            note="plus the download in the HuggingFace cache (about one checkpoint per seed)",
        )
    if task is None:
        raise ValueError(f"footprint: rule {rule!r} needs a task")
    # a task at an intermediate step (mlm_step250) has the task's shapes and data, and a subset of its variants
    evalset = mlm_evalset(task)  # mlm_compat: mlm's models on its own (character-spaced) evaluation set
    task = base_task(task)
    if rule == "finetune" and task == "mlm":
        raise ValueError("footprint: finetune runs on GLUE tasks, not 'mlm'")
    shape, arch, labels = task_shape(config, task)
    m = param_bytes(shape, arch, labels)
    V = len(cfg.variants_for(config, task))

    if rule == "finetune":
        hp = _finetune_hp(config, task)
        n_train, n_eval = glue_sizes(config, task)
        if hp.get("max_train_examples"):
            n_train = min(n_train, int(hp["max_train_examples"]))
        T, B = int(hp.get("max_length", 128)), int(hp.get("batch_size", 32))
        host = {
            "overhead": OVERHEAD_BYTES,
            "examples": (n_train + n_eval) * EXAMPLE_BYTES,
            "tokenized splits": (n_train + n_eval) * T * TOKENIZE_BYTES_PER_TOKEN,
        }
        host, gpu = _place(config, host, finetune_gpu_parts(config, task), m)
        return Estimate(
            rule,
            task,
            S,
            host,
            gpu,
            1,
            checkpoint_bytes(shape, arch, labels),
            note=f"{n_train} train + {n_eval} eval examples, batch {B} x {T}",
        )

    if rule == "collect_statistics":
        names, pairs = _names_pairs(config)
        by_fraction = fraction_features(config, task)
        files = {f: statistics_file_bytes(names, pairs, feats, shape) for f, feats in by_fraction.items()}
        union = sorted({x for feats in by_fraction.values() for x in feats})
        if not union:  # vanilla only: empty files, no models loaded
            return Estimate(rule, task, 1, {"overhead": OVERHEAD_BYTES}, {}, len(files), sum(files.values()))
        dims = [feature_dim(shape, x) for x in union]
        st = config["statistics"]
        B, T = int(st["batch_size"]), int(st["max_length"])
        held = stats_examples(config, task)
        host = {
            "overhead": OVERHEAD_BYTES,
            "examples": held * (LINE_BYTES if task == "mlm" else EXAMPLE_BYTES),
            "block being written": 4 * max(dims) ** 2,
        }
        note = f"{len(union)} features, {len(files)} fraction files"
        if _on_gpu(config):
            plan = plan_statistics(shape, S, P, dims, B, T, gpu_budget_bytes(config), models=S * m)
            dev = plan.parts
            if not plan.cross_on_device:  # float64 cross blocks and a pinned float32 product in host memory
                host["cross blocks"] = 8 * P * sum(d * d for d in dims)
                host["product copy"] = 4 * max(dims) ** 2
            note += f"; {plan.micro_batch} of {B} sequences per update, cross blocks on the {'GPU' if plan.cross_on_device else 'host'}"
        else:
            dev = {**statistics_pass_bytes(shape, S, P, dims, B, T), "models": S * m}
        host, gpu = _place(config, host, dev, m)
        return Estimate(rule, task, 1, host, gpu, len(files), sum(files.values()), note=note)

    if rule == "compute_permutations":
        by_fraction = fraction_features(config, task)
        variants = [variant] if variant else cfg.variants_for(config, task)
        best = None
        for v in variants:
            opts = cfg.variant_options(config, v)
            file_feats = by_fraction.get(_fraction(config, task, v), []) if cfg.needs_statistics(config, v) else []
            h, d_max = shape.hidden, max([feature_dim(shape, x) for x in file_feats], default=0)
            # correlation(): float32 block read + float64 copy + result; LSA copies the float64 cost
            work = 20 * d_max * d_max
            if "res" in opts.components and opts.residual == "all":
                work = max(work, 28 * h * h)  # the running sum beside one correlation
            if "attn" in opts.components and opts.qk == "separate":
                work = max(work, 36 * h * h)  # q and k correlations and their sum
            host = {
                "overhead": OVERHEAD_BYTES,
                "means+M2": sum(16 * S * feature_dim(shape, x) for x in file_feats),
                "correlation + LSA": work,
            }
            if cfg.needs_weights(config, v):  # weight matching: the pair's two models + float64 similarities
                host["pair models"] = 2 * model_bytes(config, task)
                host["similarity"] = 8 * max(shape.vocab * shape.hidden, shape.ff * shape.ff, shape.hidden**2)
            perm = permutation_file_bytes(permutation_perms(config, task, v))
            e = Estimate(rule, task, V, host, {}, P, P * perm, note=f"variant {v}")
            if best is None or (e.host_bytes, e.disk_per_job) > (best.host_bytes, best.disk_per_job):
                best = e
        return best

    if rule == "merge_checkpoints":
        M = len(config.get("merged_lambdas") or [])
        # seed models + the previous pair's aligned B + a permuted copy + the permuted tensors (or the
        # interpolated model being saved)
        host = {"overhead": OVERHEAD_BYTES, "seed models": S * m, "aligned/working copies": 3 * m}
        return Estimate(rule, task, V, host, {}, P * M, P * M * checkpoint_bytes(shape, arch, labels))

    if rule in ("sweep_lambdas", "merge_many"):
        B = evaluation_batch(config, task, rule)
        host = {"overhead": OVERHEAD_BYTES, "evaluation set": _evaluation_set_bytes(config, task, evalset)}
        dev = evaluation_gpu_parts(config, task, rule, B)
        note = f"evaluation batch {B}" + (
            f" (evaluation.batch_size {config['evaluation']['batch_size']} lowered for gpu_memory_gb)"
            if B < int(config["evaluation"]["batch_size"])
            else ""
        )
        if rule == "merge_many":  # the seeds and their merges on the host, one model at a time on the GPU
            host.update({"seed models": S * m, "aligned/working copies": 3 * m})
            if not _on_gpu(config):  # the model evaluated is one of those above
                dev = {k: v for k, v in dev.items() if k != "model"}
            host, gpu = _place(config, host, dev, 0)
            jobs = sum(len(cfg.many_variants(config, t)) for t in [task])
            # merges saved as checkpoints: the average, to the reference, MergeMany's iterative one
            return Estimate(rule, task, jobs, host, gpu, 1, 3 * checkpoint_bytes(shape, arch, labels), note=note)
        host, gpu = _place(config, host, dev, m)
        rows = len(cfg.lambdas(config))
        return Estimate(rule, task, V, host, gpu, P, P * (LOSS_ROW_BYTES * (rows + 1)), note=note)
    raise AssertionError(rule)


def _evaluation_set_bytes(config, task: str, evalset: str = "mlm") -> int:
    if task == "mlm":
        return 16 * mlm_eval_tokens(config, evalset)
    T = int(config["finetune"]["max_length"])
    n_eval = glue_sizes(config, task)[1]
    if config["evaluation"].get("max_examples"):
        n_eval = min(n_eval, int(config["evaluation"]["max_examples"]))
    return n_eval * (EXAMPLE_BYTES + T * TOKENIZE_BYTES_PER_TOKEN)


def evaluation_gpu_parts(config, task: str, rule: str, batch: int) -> dict[str, int]:
    """GPU bytes of an evaluating job with evaluation batches of ``batch``: sweep_lambdas holds the seed
    models, the aligned B and the working copies; merge_many one model at a time; plus one no-grad forward
    (and, for the MLM loss, the logits at the masked positions and their log-softmax)."""
    shape, arch, labels = task_shape(config, base_task(task))
    m = param_bytes(shape, arch, labels)
    S = len(config["seeds"])
    if base_task(task) == "mlm":
        spec = config["data"]["mlm_eval"]
        T = int(spec.get("block_size", 128))
        masked = math.ceil(batch * T * float(spec.get("mask_prob", 0.15)))
        logits = 2 * 4 * masked * shape.vocab
    else:
        T, logits = int(config["finetune"]["max_length"]), 0
    models = {"seed models": S * m, "aligned/working copies": 3 * m} if rule == "sweep_lambdas" else {"model": m}
    return {**models, "forward": inference_activation_bytes(shape, batch, T) + logits}


def evaluation_batch(config, task: str, rule: str = "sweep_lambdas") -> int:
    """evaluation.batch_size, lowered (to the largest that fits) where the job's GPU peak would exceed
    gpu_memory_gb with device cuda; a batch of one that does not fit is a ConfigError naming the key."""
    B = int(config["evaluation"]["batch_size"])
    if not _on_gpu(config):
        return B
    budget = gpu_budget_bytes(config)

    def fits(b):
        return sum(evaluation_gpu_parts(config, task, rule, b).values()) <= budget

    if not fits(1):
        need = sum(evaluation_gpu_parts(config, task, rule, 1).values()) + CUDA_DEVICE_RESERVE
        raise cfg.ConfigError(
            f"gpu_memory_gb: {rule} for {task} needs at least {_size(need)} of GPU memory (evaluation batch 1), "
            f"gpu_memory_gb plans for {_size(gpu_budget_bytes(config) + CUDA_DEVICE_RESERVE)}"
        )
    lo, hi = 1, B
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def finetune_gpu_parts(config, task: str) -> dict[str, int]:
    """GPU bytes of fine-tuning: weights, gradients, AdamW's two moments and the step's temporaries (foreach
    ops: about one more), fp16 autocast's half-precision weight copies, and the saved activations."""
    shape, arch, labels = task_shape(config, base_task(task))
    m = param_bytes(shape, arch, labels)
    hp = _finetune_hp(config, base_task(task))
    T, B = int(hp.get("max_length", 128)), int(hp.get("batch_size", 32))
    parts = {"weights+grads+AdamW": 5 * m, "activations": training_activation_bytes(shape, B, T)}
    if hp.get("fp16"):
        parts["fp16 weight copies"] = m // 2
    return parts


def check_finetune_gpu(config, task: str) -> None:
    """With device cuda: a ConfigError naming gpu_memory_gb when fine-tuning's GPU peak exceeds it (no
    gradient accumulation: lower finetune.batch_size or max_length yourself, knowing it changes the run)."""
    if not _on_gpu(config):
        return
    parts = finetune_gpu_parts(config, task)
    if sum(parts.values()) > gpu_budget_bytes(config):
        hp = _finetune_hp(config, base_task(task))
        raise cfg.ConfigError(
            f"gpu_memory_gb: fine-tuning {task} (batch {hp.get('batch_size')} x {hp.get('max_length')}) needs about "
            f"{_size(sum(parts.values()) + CUDA_DEVICE_RESERVE)} of GPU memory "
            f"({', '.join(f'{k} {_size(v)}' for k, v in parts.items())}); gpu_memory_gb plans for "
            f"{_size(gpu_budget_bytes(config) + CUDA_DEVICE_RESERVE)}"
        )


def statistics_plan(config, task: str, shape: Shape | None = None, dims=None, models: int | None = None):
    """The StatisticsPlan of a collect_statistics job under gpu_memory_gb (None with device cpu). shape,
    dims, models: the job's real ones (default: the configuration's)."""
    if not _on_gpu(config):
        return None
    task = base_task(task)
    cshape, arch, _ = task_shape(config, task)
    shape = shape or cshape
    if dims is None:
        union = sorted({x for feats in fraction_features(config, task).values() for x in feats})
        dims = [feature_dim(shape, x) for x in union]
    S, P = len(config["seeds"]), len(cfg.pairs(config))
    st = config["statistics"]
    models = S * param_bytes(shape, arch) if models is None else models
    return plan_statistics(
        shape, S, P, dims, int(st["batch_size"]), int(st["max_length"]), gpu_budget_bytes(config), models=models
    )


def estimates(rule: str, config) -> list[Estimate]:
    """One estimate per task the rule runs for (fetch_model: one)."""
    if rule == "fetch_model":
        return [] if config["models"]["source"] == "pretrain" else [estimate(rule, config)]
    tasks = [
        t
        for t in config["tasks"]
        if not (rule == "finetune" and is_mlm(t)) and not (rule != "sweep_lambdas" and is_evaluation_only(t))
    ]
    if rule == "merge_many":
        tasks = [t for t in tasks if cfg.many_variants(config, t)]
    return [estimate(rule, config, t) for t in tasks]


def mem_mb(rule: str, config, task: str | None = None, variant: str | None = None) -> int:
    """Host memory (MB) to request for one job of `rule` (for `task`; None: the largest over the tasks;
    `variant` only matters for compute_permutations: None is the variant with the largest footprint)."""
    if task is not None or rule == "fetch_model":
        return estimate(rule, config, task, variant).mem_mb
    found = estimates(rule, config)
    if not found:
        raise ValueError(f"footprint: rule {rule!r} runs for no task of this configuration")
    return max(e.mem_mb for e in found)


def gpu_mb(rule: str, config, task: str | None = None) -> int:
    """GPU memory (MB, rounded like mem_mb) of one job; 0 for CPU jobs or device: cpu."""
    found = [estimate(rule, config, task)] if task is not None or rule == "fetch_model" else estimates(rule, config)
    gpu = max((e.gpu_bytes for e in found), default=0)
    return round_mb(SAFETY * gpu) if gpu else 0


def disk_mb(rule: str, config, task: str | None = None) -> int:
    """Disk (MB, rounded up) that one job's outputs take."""
    found = [estimate(rule, config, task)] if task is not None or rule == "fetch_model" else estimates(rule, config)
    return max(1, math.ceil(max(e.disk_per_job for e in found) / MB))


# ---------------------------------------------------------------------------------------------- table
def _size(nbytes: float) -> str:
    if nbytes >= 10**12:
        return f"{nbytes / 1e12:.2f} TB"
    if nbytes >= 10**9:
        return f"{nbytes / 1e9:.1f} GB"
    if nbytes >= 10**6:
        return f"{nbytes / 1e6:.0f} MB"
    return f"{nbytes / 1e3:.0f} kB"


def _row(rule: str, found: list[Estimate], config) -> dict:
    worst = max(found, key=lambda e: (e.mem_mb, e.gpu_bytes))
    if rule == "compute_permutations":  # permutation files differ in size from variant to variant
        total = sum(
            estimate(rule, config, e.task, v).disk_per_job for e in found for v in cfg.variants_for(config, e.task)
        )
    else:
        total = sum(e.jobs * e.disk_per_job for e in found)
    return {
        "rule": rule,
        "jobs": sum(e.jobs for e in found),
        "mem_mb": worst.mem_mb,
        "task": worst.task,
        "gpu": worst.gpu_bytes,
        "what": worst.peak_what(),
        "disk_per_job": max(e.disk_per_job for e in found),
        "outputs": sum(e.jobs * e.outputs_per_job for e in found),
        "total_disk": total,
    }


def table_rows(config, per_task: bool = False) -> list[dict]:
    """One row per rule (mem_mb: the task with the largest), or per rule and task."""
    rows = []
    for rule in HEAVY_RULES:
        found = estimates(rule, config)
        if per_task:
            rows += [_row(rule, [e], config) for e in found]
        elif found:
            rows.append(_row(rule, found, config))
    return rows


def disk_totals(config) -> dict[str, int]:
    """Bytes on disk of each kind of output of the whole grid."""
    by_rule = {r["rule"]: r for r in table_rows(config)}
    seeds = by_rule.get("fetch_model", {}).get("total_disk")
    if seeds is None:  # pre-trained from scratch: S checkpoints of the pretrain shape
        shape, arch, _ = task_shape(config, "mlm")
        seeds = len(config["seeds"]) * checkpoint_bytes(shape, arch)
    return {
        "statistics files": by_rule.get("collect_statistics", {}).get("total_disk", 0),
        "seed + fine-tuned checkpoints": seeds + by_rule.get("finetune", {}).get("total_disk", 0),
        "permutation files": by_rule.get("compute_permutations", {}).get("total_disk", 0),
        "loss files": by_rule.get("sweep_lambdas", {}).get("total_disk", 0),
        "merged checkpoints (separate target)": by_rule.get("merge_checkpoints", {}).get("total_disk", 0),
    }


def format_table(config, title: str = "", per_task: bool = False) -> str:
    """The Markdown table of ``table_rows`` and a line of disk totals."""
    lines = [f"#### {title}", ""] if title else []
    lines += [
        "| rule | jobs | mem_mb per job | GPU peak per job | largest host parts (task) | disk per job | outputs "
        "| total disk |",
        "|---|--:|--:|--:|---|--:|--:|--:|",
    ]
    for r in table_rows(config, per_task):
        gpu = _size(r["gpu"]) if r["gpu"] else "—"
        lines.append(
            f"| {r['rule']} | {r['jobs']} | {r['mem_mb']:,} | {gpu} | {r['what']} ({r['task']}) | "
            f"{_size(r['disk_per_job'])} | {r['outputs']:,} | {_size(r['total_disk'])} |"
        )
    parts = disk_totals(config)
    lines += [
        "",
        "Disk: " + "; ".join(f"{k} {_size(v)}" for k, v in parts.items()) + f"; total {_size(sum(parts.values()))}.",
        "",
        f"mem_mb: {SAFETY:g} x the parts' sum, rounded up to {ROUND_MB} MB; the largest host parts "
        "are listed before that factor. Disk in 10^9 / 10^6 bytes.",
    ]
    if _on_gpu(config):
        lines += ["", gpu_summary(config)]
    return "\n".join(lines)


def measure_config(config, layers: list[int], log=print) -> dict:
    """measure_statistics_peak for the configuration's MLM statistics at each layer count (widths, seeds,
    sequence length and the micro-batch planned at full depth under gpu_memory_gb), with the model's figure,
    and both extrapolated linearly to the full depth."""
    import dataclasses
    import time

    shape = model_shape(config)
    S = len(config["seeds"])
    T = int(config["statistics"]["max_length"])
    plan = statistics_plan({**config, "device": "cuda"}, "mlm")
    union = sorted({x for feats in fraction_features(config, "mlm").values() for x in feats})
    rows = []
    for L in layers:
        sh = dataclasses.replace(shape, layers=L)
        feats = [
            f for f in union if f != "pooler" and int(f.partition(".")[2]) < (2 * L + 1 if f.startswith("res.") else L)
        ]
        start = time.perf_counter()
        r = measure_statistics_peak(sh, S, feats, plan.micro_batch, T)
        r["seconds"] = time.perf_counter() - start
        log(
            f"# {L} layers: measured {r['measured_peak'] / 1e9:.3f} GB, model {r['model_peak'] / 1e9:.3f} GB ({r['seconds']:.0f} s)"
        )
        rows.append(r)
    out = {"plan": dataclasses.asdict(plan), "plan_peak": plan.peak, "budget": plan.budget, "rows": rows}
    if len(rows) >= 2:
        (a, b) = rows[0], rows[-1]
        for key in ("measured_peak", "model_peak"):
            slope = (b[key] - a[key]) / (b["layers"] - a["layers"])
            out[f"{key}_at_{shape.layers}"] = a[key] + slope * (shape.layers - a["layers"])
        out["ratio_at_full_depth"] = out[f"measured_peak_at_{shape.layers}"] / out[f"model_peak_at_{shape.layers}"]
        out["layers"] = shape.layers
    return out


def format_measurement(r: dict) -> str:
    lines = [
        "| layers | features | micro-batch | measured peak | model | measured / model |",
        "|--:|--:|--:|--:|--:|--:|",
    ]
    for x in r["rows"]:
        lines.append(
            f"| {x['layers']} | {x['features']} | {x['micro_batch']} x {x['seq_len']} | {x['measured_peak'] / 1e9:.3f} GB "
            f"| {x['model_peak'] / 1e9:.3f} GB | {x['ratio']:.3f} |"
        )
    if "ratio_at_full_depth" in r:
        L = r["layers"]
        lines += [
            f"| {L} (extrapolated) | | | {r[f'measured_peak_at_{L}'] / 1e9:.2f} GB | {r[f'model_peak_at_{L}'] / 1e9:.2f} GB "
            f"| {r['ratio_at_full_depth']:.3f} |",
            "",
            f"Planned at {L} layers (with the pooler feature): peak {r['plan_peak'] / 1e9:.2f} GB, budget for tensors "
            f"{r['budget'] / 1e9:.2f} GB (gpu_memory_gb less {CUDA_DEVICE_RESERVE / 1e9:.1f} GB).",
        ]
    return "\n".join(lines + ["", json.dumps(r, default=str)])


def gpu_summary(config) -> str:
    """The GPU rules' planned peaks (the task with the largest) under gpu_memory_gb, and how they fit."""
    budget = gpu_budget_bytes(config)
    out = [
        f"GPU peak: the tensors a job holds at once (no safety factor), planned under gpu_memory_gb = "
        f"{config.get('gpu_memory_gb', 16):g} ({_size(budget)} for tensors after {_size(CUDA_DEVICE_RESERVE)} for "
        "the CUDA context, cuBLAS and the allocator):"
    ]
    for rule in GPU_RULES:
        found = estimates(rule, config)
        if not found:
            continue
        worst = max(found, key=lambda e: e.gpu_bytes)
        parts = ", ".join(f"{k} {_size(v)}" for k, v in sorted(worst.gpu.items(), key=lambda kv: -kv[1]))
        out.append(f"* {rule} ({worst.task}): {_size(worst.gpu_bytes)} = {parts}; {worst.note}")
    return "\n".join(out)


def load_config(configfiles=()) -> dict:
    """config.yaml, then each configfile merged over it as Snakemake does (snakemake.utils.update_config),
    validated with the schema's defaults filled."""
    import yaml
    from snakemake.utils import update_config

    config: dict = {}
    for path in (cfg.SCHEMA.parents[2] / "config.yaml", *configfiles):
        try:
            with open(path) as fh:
                update_config(config, yaml.safe_load(fh) or {})
        except OSError as err:
            raise SystemExit(f"footprint: cannot read config file {path}: {err}") from None
    return cfg.validate_config(config)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m permerge.tooling.footprint", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--configfile",
        action="append",
        default=[],
        help="merged over config.yaml in order, as snakemake --configfile does",
    )
    ap.add_argument("--per-task", action="store_true", help="one row per rule and task")
    ap.add_argument(
        "--measure",
        metavar="LAYERS",
        help="instead: measure the MLM statistics pass's peak of live tensors on the CPU (random BERTs of the "
        "configuration's widths, its seeds, the planned micro-batch) at these layer counts (e.g. 1,2), against "
        "the model; both are affine in the layers, so the line through them is extrapolated to the real depth",
    )
    args = ap.parse_args(argv)
    try:
        config = load_config(args.configfile)
    except cfg.ConfigError as err:
        raise SystemExit(f"footprint: {err}") from None
    if args.measure:
        print(format_measurement(measure_config(config, [int(x) for x in args.measure.split(",")])))
        return 0
    title = " + ".join(["config.yaml", *args.configfile])
    print(format_table(config, title, per_task=args.per_task))
    return 0


if __name__ == "__main__":
    sys.exit(main())
