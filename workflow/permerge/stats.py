"""Streamed activation statistics: per-feature means/variances and cross-model covariance blocks.

Features (L layers, index l):
  res.0        embeddings LayerNorm output
  res.{2l+1}   layer l attention-output LayerNorm output
  res.{2l+2}   layer l FF-output LayerNorm output
  ff.{l}       FF intermediate activation (after GELU)
  ctx.{l}      input of attention.output.dense (concatenated per-head context)
  q.{l}, k.{l} query / key Linear outputs
  pooler       pooler output (one row per sequence; only for models with a pooler)
Token features drop padding positions (attention_mask == 0).

All models run on each batch once; for every feature we keep per model the count, mean and M2 (sum of
squared deviations) and per model pair the cross block sum (a - mean_a)(b - mean_b)^T (d_a x d_b), merged
batch by batch with Chan's parallel formula: the batch is centred on its own mean (float32 matmul) and the
result merged into float64 accumulators (the float32 rounding of the centre is corrected exactly).
"""

from __future__ import annotations

import itertools
import json
import math
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

FEATURE_KINDS = ("res", "ff", "ctx", "q", "k", "pooler")


def base_model(model: torch.nn.Module) -> torch.nn.Module:
    """The BertModel inside a task model (running it skips the MLM/classification head)."""
    base = getattr(model, "base_model", model)
    if not hasattr(base, "encoder") or not hasattr(base, "embeddings"):
        raise TypeError(f"{type(model).__name__} does not look like a BERT model")
    return base


def feature_names(model: torch.nn.Module) -> list[str]:
    """All features collectable from this model, in a stable order."""
    base = base_model(model)
    L = len(base.encoder.layer)
    names = [f"res.{i}" for i in range(2 * L + 1)]
    for kind in ("ff", "ctx", "q", "k"):
        names += [f"{kind}.{l}" for l in range(L)]
    if getattr(base, "pooler", None) is not None:
        names.append("pooler")
    return names


def _hook_points(base: torch.nn.Module, feature: str):
    """(module, 'pre' | 'out') whose input/output is the feature."""
    kind, _, idx = feature.partition(".")
    if kind == "pooler":
        return base.pooler, "out"
    i = int(idx)
    if kind == "res":
        if i == 0:
            return base.embeddings.LayerNorm, "out"
        layer = base.encoder.layer[(i - 1) // 2]
        return (layer.attention.output.LayerNorm if i % 2 == 1 else layer.output.LayerNorm), "out"
    layer = base.encoder.layer[i]
    if kind == "ff":
        return layer.intermediate, "out"
    if kind == "ctx":
        return layer.attention.output.dense, "pre"
    if kind in ("q", "k"):
        return getattr(layer.attention.self, {"q": "query", "k": "key"}[kind]), "out"
    raise KeyError(f"unknown feature {feature!r}")


def _matmul_fp32(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A true float32 matmul even where TF32 was enabled globally (TF32 keeps ~3 digits)."""
    if a.device.type != "cuda":
        return a @ b
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        return a @ b
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


class _Accumulator:
    """Running count / mean / M2 per model and cross sums per pair for one feature."""

    def __init__(self, num_models: int, dim: int, pairs: Sequence[tuple[int, int]], device):
        self.n = 0
        self.mean = torch.zeros(num_models, dim, dtype=torch.float64, device=device)
        self.m2 = torch.zeros(num_models, dim, dtype=torch.float64, device=device)
        self.cross = {p: torch.zeros(dim, dim, dtype=torch.float64, device=device) for p in pairs}

    def update(self, xs: Sequence[torch.Tensor]) -> None:
        nb = xs[0].shape[0]
        if nb == 0:
            return
        n_old, n_new = self.n, self.n + nb
        # Centre on the batch mean rounded to float32 so the float32 matmul sees small numbers; the exact
        # (float64) remainder r of that rounding is corrected for below, so large offsets cost nothing.
        shift = [x.mean(0, dtype=torch.float64).float() for x in xs]
        xc = [x.float() - c for x, c in zip(xs, shift)]
        r = torch.stack([x.sum(0, dtype=torch.float64) / nb for x in xc])
        mu_b = torch.stack([c.double() for c in shift]) + r
        delta = mu_b - self.mean
        w = n_old * nb / n_new
        for (i, j), c in self.cross.items():
            c += _matmul_fp32(xc[i].T, xc[j]).double()
            c -= nb * torch.outer(r[i], r[j])
            c += w * torch.outer(delta[i], delta[j])
        m2_b = torch.stack([(x.double() ** 2).sum(0) for x in xc]) - nb * r**2
        self.m2 += m2_b + w * delta**2
        self.mean += delta * (nb / n_new)
        self.n = n_new


@torch.no_grad()
def collect_statistics(models: Sequence[torch.nn.Module], batches: Iterable[Mapping[str, torch.Tensor]], *,
                       names: Sequence[str], pairs: Sequence[tuple[str, str]] | None = None,
                       features: Sequence[str] | None = None, device: str | torch.device = "cpu",
                       progress: Callable[[int, int], None] | None = None) -> "Statistics":
    """Run every model on every batch once and accumulate statistics of ``features`` (default: all).

    names: one name per model; pairs: model-name pairs whose cross blocks are kept (default all i<j).
    Models are used in eval mode where they are (their training flag is restored afterwards); batches are
    moved to each model's device; accumulators live on ``device``. progress(batch_index, tokens) is
    called after each batch.
    """
    names = list(names)
    if len(names) != len(models):
        raise ValueError(f"{len(models)} models but {len(names)} names")
    if len(set(names)) != len(names) or any("/" in n for n in names):
        raise ValueError(f"model names must be unique and contain no '/': {names}")
    pairs = list(itertools.combinations(names, 2)) if pairs is None else [tuple(p) for p in pairs]
    index = {n: i for i, n in enumerate(names)}
    for a, b in pairs:
        if a not in index or b not in index or a == b:
            raise ValueError(f"bad pair ({a!r}, {b!r}) for models {names}")
    pair_idx = [(index[a], index[b]) for a, b in pairs]

    available = feature_names(models[0])
    for m in models[1:]:
        if feature_names(m) != available:
            raise ValueError("models have different layer counts or pooler presence")
    features = available if features is None else list(features)
    unknown = [f for f in features if f not in available]
    if unknown:
        raise ValueError(f"features not available in these models: {unknown}")

    device = torch.device(device)
    captured: dict[str, torch.Tensor] = {}
    state: dict[str, torch.Tensor] = {}
    handles = []

    def make_hook(feature: str, where: str):
        def grab(t: torch.Tensor) -> None:
            if feature == "pooler":
                captured[feature] = t.detach()
            else:  # boolean-mask gather drops padding for the whole batch at once
                captured[feature] = t.detach()[state["mask"]]
        if where == "pre":
            return lambda mod, args: grab(args[0])
        return lambda mod, args, out: grab(out)

    bases = [base_model(m) for m in models]
    was_training = [m.training for m in models]
    accs: dict[str, _Accumulator] = {}
    total_tokens = 0
    try:
        for base in bases:
            for f in features:
                module, where = _hook_points(base, f)
                hook = make_hook(f, where)
                handles.append(module.register_forward_pre_hook(hook) if where == "pre"
                               else module.register_forward_hook(hook))
        for m in models:
            m.eval()
        for step, batch in enumerate(batches):
            outs: list[dict[str, torch.Tensor]] = []
            for base in bases:
                dev = next(base.parameters()).device
                inputs = {k: v.to(dev) for k, v in batch.items()
                          if k in ("input_ids", "attention_mask", "token_type_ids")}
                if "attention_mask" not in inputs:
                    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
                state["mask"] = inputs["attention_mask"].bool()
                captured.clear()
                base(**inputs)
                outs.append({f: captured[f].to(device) for f in features})
            tokens = int(state["mask"].sum())
            total_tokens += tokens
            for f in features:
                xs = [o[f] for o in outs]
                if f not in accs:
                    accs[f] = _Accumulator(len(models), xs[0].shape[-1], pair_idx, device)
                accs[f].update(xs)
            if progress is not None:
                progress(step, tokens)
    finally:
        for h in handles:
            h.remove()
        for m, t in zip(models, was_training):
            m.train(t)
    if not accs:
        raise ValueError("no batches: statistics need at least one token")

    tensors: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    for f, acc in accs.items():
        counts[f] = acc.n
        tensors[f"mean/{f}"] = acc.mean
        tensors[f"m2/{f}"] = acc.m2
        for (i, j), c in acc.cross.items():
            tensors[f"cross/{f}/{names[i]}/{names[j]}"] = c
    return Statistics(names, pairs, counts, tensors)


class Statistics:
    """Accumulated statistics. Tensors are kept in memory or read lazily from a safetensors file.

    names: model names; pairs: model pairs with cross blocks; count: feature -> number of rows (tokens,
    or sequences for "pooler"); num_tokens: the token count.
    """

    def __init__(self, names: Sequence[str], pairs: Sequence[tuple[str, str]], count: Mapping[str, int],
                 tensors: Mapping[str, torch.Tensor] | None = None, *, path: str | os.PathLike | None = None,
                 metadata: Mapping[str, str] | None = None):
        self.names = list(names)
        self.pairs = [tuple(p) for p in pairs]
        self.count = dict(count)  # feature -> number of rows (tokens, or sequences for the pooler)
        self.metadata = dict(metadata or {})
        self._tensors = dict(tensors or {})
        self._path = None if path is None else str(path)

    @property
    def features(self) -> list[str]:
        return list(self.count)

    @property
    def num_tokens(self) -> int:
        return self.count.get("res.0", 0)

    def _get(self, key: str) -> torch.Tensor:
        if key not in self._tensors:
            if self._path is None:
                raise KeyError(key)
            with safe_open(self._path, framework="pt") as f:
                if key not in f.keys():
                    raise KeyError(key)
                self._tensors[key] = f.get_tensor(key)
        return self._tensors[key]

    def _check(self, feature: str, *models: str) -> None:
        if feature not in self.count:
            raise KeyError(f"no statistics for feature {feature!r} (have: {', '.join(self.features)})")
        for m in models:
            if m not in self.names:
                raise KeyError(f"no model named {m!r} (have: {', '.join(self.names)})")

    def mean(self, feature: str, name: str) -> torch.Tensor:
        self._check(feature, name)
        return self._get(f"mean/{feature}")[self.names.index(name)]

    def var(self, feature: str, name: str) -> torch.Tensor:
        """Population variance (divided by the count)."""
        self._check(feature, name)
        return self._get(f"m2/{feature}")[self.names.index(name)] / self.count[feature]

    def _cross_sum(self, feature: str, a: str, b: str) -> torch.Tensor:
        self._check(feature, a, b)
        if (a, b) in self.pairs:
            return self._get(f"cross/{feature}/{a}/{b}")
        if (b, a) in self.pairs:
            return self._get(f"cross/{feature}/{b}/{a}").T
        raise KeyError(f"no cross statistics for the pair ({a!r}, {b!r})")

    def cross(self, feature: str, a: str, b: str) -> torch.Tensor:
        """Population covariance block cov(a_i, b_j), shape (d_a, d_b)."""
        return self._cross_sum(feature, a, b) / self.count[feature]

    def correlation(self, feature: str, a: str, b: str) -> torch.Tensor:
        """Pearson correlation block (float64); features with zero variance correlate 0 with everything."""
        c = self._cross_sum(feature, a, b).double()
        m2 = self._get(f"m2/{feature}").double()
        sa = m2[self.names.index(a)].sqrt()
        sb = m2[self.names.index(b)].sqrt()
        denom = torch.outer(sa, sb)
        corr = torch.where(denom > 0, c / torch.where(denom > 0, denom, 1.0), torch.zeros_like(c))
        return corr.clamp_(-1.0, 1.0)

    def save(self, path: str | os.PathLike, metadata: Mapping[str, str] | None = None) -> None:
        """Write all tensors plus names/pairs/counts (and extra string metadata) to a safetensors file."""
        keys = [f"{k}/{f}" for f in self.features for k in ("mean", "m2")]
        keys += [f"cross/{f}/{a}/{b}" for f in self.features for a, b in self.pairs]
        tensors = {k: self._get(k).detach().cpu().contiguous() for k in keys}
        meta = {**self.metadata, **{str(k): str(v) for k, v in (metadata or {}).items()}}
        meta.update(names=json.dumps(self.names), pairs=json.dumps(self.pairs), counts=json.dumps(self.count))
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            save_file(tensors, str(tmp), metadata=meta)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Statistics":
        """Open a saved file; tensors are read on first use."""
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        try:
            names = json.loads(meta["names"])
            pairs = [tuple(p) for p in json.loads(meta["pairs"])]
            counts = json.loads(meta["counts"])
        except KeyError as err:
            raise ValueError(f"{path} is not a statistics file (missing metadata {err})") from None
        extra = {k: v for k, v in meta.items() if k not in ("names", "pairs", "counts")}
        return cls(names, pairs, counts, path=path, metadata=extra)


def text_batches(tokenizer, examples: Iterable, *, batch_size: int = 32, max_length: int = 128,
                 text_keys: Sequence[str] = ("text",)) -> Iterator[dict[str, torch.Tensor]]:
    """Tokenized, padded batches. Examples are strings or dicts; two text_keys make sentence pairs."""
    if not 1 <= len(text_keys) <= 2:
        raise ValueError(f"text_keys must name one or two fields, got {text_keys}")

    def fields(ex) -> tuple:
        if isinstance(ex, str):
            if len(text_keys) != 1:
                raise ValueError("plain strings cannot form sentence pairs")
            return (ex,)
        return tuple(ex[k] for k in text_keys)

    def encode(chunk: list[tuple]) -> dict[str, torch.Tensor]:
        cols = list(zip(*chunk))
        enc = tokenizer(*[list(c) for c in cols], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt", return_token_type_ids=True)
        return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")}

    chunk: list[tuple] = []
    for ex in examples:
        chunk.append(fields(ex))
        if len(chunk) == batch_size:
            yield encode(chunk)
            chunk = []
    if chunk:
        yield encode(chunk)


def first_fraction(seq, fraction: float):
    """The first floor(fraction * len) items (at least one); HF datasets are cut with .select()."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must satisfy 0 < f <= 1, got {fraction}")
    n = max(1, math.floor(len(seq) * fraction + 1e-9))
    if hasattr(seq, "select"):
        return seq.select(range(n))
    return seq[:n]
