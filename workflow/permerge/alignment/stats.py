"""Streamed activation statistics: per-feature means/variances and cross-model covariance blocks.

Features (L layers, index l; module names are BERT's, other families' come from their families.FAMILIES
entry, e.g. DistilBERT's sa_layer_norm, ffn.activation, attention.out_lin):
  res.0        embeddings LayerNorm output
  res.{2l+1}   layer l attention-output LayerNorm output
  res.{2l+2}   layer l FF-output LayerNorm output
  ff.{l}       FF intermediate activation (after GELU)
  ctx.{l}      input of attention.output.dense (concatenated per-head context)
  q.{l}, k.{l} query / key Linear outputs
  pooler       pooler output (one row per sequence; only for models with a pooler, or with a classification
               head whose hidden layer plays the pooler's role: RoBERTa / ELECTRA, the input of
               classifier.out_proj; DistilBERT, the output of pre_classifier)
  emb          embeddings LayerNorm output of an ELECTRA whose embedding_size differs from hidden_size
               (the input of embeddings_project: the embedding space, spec's "emb" permutation)
res.0 is the first node of the residual stream: the embeddings LayerNorm output, or for an ELECTRA whose
embedding_size differs from hidden_size the output of embeddings_project.
Token features drop padding positions (attention_mask == 0).

All models run on each batch once; for every feature we keep per model the count, mean and M2 (sum of
squared deviations) and per model pair the cross block sum (a - mean_a)(b - mean_b)^T (d_a x d_b), merged
batch by batch with Chan's parallel formula: the batch is centred on (an estimate of) its own mean, the
product is a float32 matmul added into float64 accumulators, and the difference between the centre and the
exact batch mean is corrected for in float64. Cost per batch and pair: one float32 matmul per feature
(T x d by T x d) plus one pass over the float64 block; nothing else is quadratic in d.

Several prefixes of the data in one pass: ``collect_statistics(..., snapshots={k: callback})`` hands the
statistics of the first k batches to the callback (``segmented_batches`` builds batches that never straddle
a prefix end and says after how many batches each prefix ends).

Storage (``Statistics.save``): means and M2 float64, cross blocks float32 by default (half the bytes; the
correlations are computed in float64 from them; tests/test_stats_storage.py checks that the permutations of
every variant kind are the same as from float64 storage), written tensor by tensor so saving needs no
second copy of the accumulators. A Statistics read from a file caches means and M2 but never a cross block:
the memory of a job that matches many pairs does not grow with the number of pairs.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from permerge.families import family_of

FEATURE_KINDS = ("res", "ff", "ctx", "q", "k", "pooler", "emb")


def base_model(model: torch.nn.Module) -> torch.nn.Module:
    """The encoder (BertModel, RobertaModel, ElectraModel, ...) inside a task model (running it skips the
    MLM/classification head)."""
    try:
        fam, _ = family_of(model)
    except TypeError as err:
        raise TypeError(f"{type(model).__name__} does not look like a BERT-family encoder ({err})") from None
    return fam.base(model)


def _pooler_point(model: torch.nn.Module):
    """(module, 'pre' | 'out') of the pooler feature, or None: the encoder's pooler, else the hidden layer of
    a classification head that has one (families.Family.classifier_feature, e.g. the input of RoBERTa's
    classifier.out_proj: activation(dense(first token)))."""
    fam, kind = family_of(model)
    base = fam.base(model)
    if getattr(base, "pooler", None) is not None:
        return base.pooler, "out"
    if kind == "classification" and fam.classifier_feature is not None:
        module, where = fam.classifier_feature
        return model.get_submodule(module), where
    return None


def feature_names(model: torch.nn.Module) -> list[str]:
    """All features collectable from this model, in a stable order."""
    fam, _ = family_of(model)
    L = len(fam.layer_list(model))
    names = [f"res.{i}" for i in range(2 * L + 1)]
    for kind in ("ff", "ctx", "q", "k"):
        names += [f"{kind}.{l}" for l in range(L)]
    if _pooler_point(model) is not None:
        names.append("pooler")
    if _projected(model):
        names.append("emb")
    return names


def _projected(model: torch.nn.Module) -> bool:
    """Whether the embeddings live in their own space, projected into the residual stream (ELECTRA-small)."""
    return getattr(base_model(model), "embeddings_project", None) is not None


def _hook_points(model: torch.nn.Module, feature: str):
    """(module, 'pre' | 'out') whose input/output is the feature (model: a task model or its encoder)."""
    fam, _ = family_of(model)
    base = fam.base(model)
    layers = fam.layer_list(model)
    n = fam.layer
    kind, _, idx = feature.partition(".")
    if kind == "pooler":
        point = _pooler_point(model)
        if point is None:
            raise KeyError(f"{type(model).__name__} has no pooler feature")
        return point
    if kind == "emb":
        if not _projected(model):
            raise KeyError(f"{type(model).__name__} has no embedding space apart from the residual stream")
        return base.embeddings.LayerNorm, "out"
    i = int(idx)
    if kind == "res":
        if i == 0:  # an ELECTRA with embedding_size != hidden_size: the stream starts after the projection
            proj = getattr(base, "embeddings_project", None)
            return (proj if proj is not None else base.embeddings.LayerNorm), "out"
        layer = layers[(i - 1) // 2]
        return layer.get_submodule(n.attn_norm if i % 2 == 1 else n.out_norm), "out"
    layer = layers[i]
    if kind == "ff":
        return layer.get_submodule(n.ff_act), "out"
    if kind == "ctx":
        return layer.get_submodule(n.attn_out), "pre"
    if kind in ("q", "k"):
        return layer.get_submodule(n.query if kind == "q" else n.key), "out"
    raise KeyError(f"unknown feature {feature!r}")


def _matmul_fp32(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """A true float32 matmul even where TF32 was enabled globally (TF32 keeps ~3 digits)."""
    if a.device.type != "cuda":
        return torch.mm(a, b, out=out)
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        return torch.mm(a, b, out=out)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


# The rank-one mean corrections of the cross blocks are queued and applied as one float64 matmul every this
# many batches (each queued batch holds 2 float64 vectors per model).
_FLUSH_EVERY = 4


# On CPUs where torch runs at most this many threads, the per-batch elementwise work (centring, column
# sums, adding the product into the float64 sums) is done with numpy: single-threaded, but it needs no
# float64 temporaries and no thread wake-ups, which on a small or shared CPU cost more than the work.
_NUMPY_MAX_THREADS = 4


_FORCED_PATH: str | None = None  # None: choose by thread count; "numpy" / "torch": see force_path


@contextlib.contextmanager
def force_path(path: str | None) -> Iterator[None]:
    """Use the numpy ("numpy") or torch ("torch") elementwise path on CPU inside the block, whatever the
    thread count (so tests exercise both; None restores the automatic choice)."""
    global _FORCED_PATH
    if path not in ("numpy", "torch", None):
        raise ValueError(f"force_path: expected 'numpy', 'torch' or None, got {path!r}")
    old, _FORCED_PATH = _FORCED_PATH, path
    try:
        yield
    finally:
        _FORCED_PATH = old


def _numpy_path(t: torch.Tensor) -> bool:
    if t.device.type != "cpu":
        return False
    if _FORCED_PATH is not None:
        return _FORCED_PATH == "numpy"
    return torch.get_num_threads() <= _NUMPY_MAX_THREADS


def _centre(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(shift, x - shift) in float32; the shift is the mean of about 64 evenly spaced rows."""
    x = x.detach().float()
    step = max(1, len(x) // 64)
    if _numpy_path(x):
        a = x.numpy()
        c = a[::step].mean(0)
        return torch.from_numpy(c), torch.from_numpy(a - c)
    c = x[::step].mean(0)
    return c, x - c


def _column_sums(d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 sums of the columns of float32 d (rows x n) and of their squares, without rounding."""
    if _numpy_path(d):  # numpy casts in small buffers: no float64 copy of d
        a = d.detach().numpy()
        s1 = np.add.reduce(a, axis=0, dtype=np.float64)
        s2 = np.einsum("ij,ij->j", a, a, dtype=np.float64)
        return torch.from_numpy(s1), torch.from_numpy(s2)
    d64 = d.double()
    ones = torch.ones(len(d), dtype=torch.float64, device=d.device)
    return torch.mv(d64.T, ones), torch.mv(d64.square_().T, ones)


def _add_into(acc: torch.Tensor, x: torch.Tensor) -> None:
    """acc += x for a float64 acc and float32 x (torch on CPU first makes a float64 copy of x)."""
    if _numpy_path(acc) and acc.is_contiguous():
        a = acc.numpy()
        np.add(a, x.detach().numpy(), out=a)
    elif acc.device.type == "cpu":  # bound the float64 copy: row slabs of 2**20 elements
        rows = max(1, (1 << 20) // max(1, acc.shape[1]))
        for r0 in range(0, len(acc), rows):
            acc[r0 : r0 + rows].add_(x[r0 : r0 + rows])
    else:
        acc.add_(x)


class _Accumulator:
    """Running count / mean / M2 per model and cross sums per pair for one feature.

    Per batch, the cross blocks receive the float32 product of the batch-centred features (formed in a
    float32 buffer that accumulators share through ``workspace``, and added to the float64 sums);
    the exact float64 corrections (centring remainder, Chan's merge term) are rank-one and are queued, then
    applied together as one float64 matmul (``cross`` flushes them).
    """

    def __init__(
        self,
        num_models: int,
        dim: int,
        pairs: Sequence[tuple[int, int]],
        device,
        workspace: dict | None = None,
        cross_device=None,
    ):
        self.n = 0
        self._workspace = {} if workspace is None else workspace
        self.device = torch.device(device)
        # the float64 cross blocks live on cross_device (default: device); elsewhere than device (host memory
        # beside a GPU), each float32 product is formed on device and added on cross_device, one at a time
        self.cross_device = self.device if cross_device is None else torch.device(cross_device)
        self.mean = torch.zeros(num_models, dim, dtype=torch.float64, device=device)
        self.m2 = torch.zeros(num_models, dim, dtype=torch.float64, device=device)
        self._cross = {p: torch.zeros(dim, dim, dtype=torch.float64, device=self.cross_device) for p in pairs}
        # queued corrections: cross[i, j] += sum_k coef[k] * rows[i][k] rows[j][k]^T
        self._rows: list[list[torch.Tensor]] = [[] for _ in range(num_models)]
        self._coef: list[float] = []

    @property
    def cross(self) -> dict[tuple[int, int], torch.Tensor]:
        self._flush()
        return self._cross

    def _buffer(self, block: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
        """A float32 buffer shaped like block on device (default: block's), carved from one flat buffer per
        device shared through the workspace (pinned host memory when it receives copies from a GPU)."""
        device = block.device if device is None else device
        key = ("float32", device)
        flat = self._workspace.get(key)
        if flat is None or flat.numel() < block.numel():
            self._workspace.pop(key, None)  # free the smaller buffer before allocating the larger one
            pin = device.type == "cpu" and self.device.type == "cuda"
            flat = torch.empty(block.numel(), dtype=torch.float32, device=device, pin_memory=pin)
            self._workspace[key] = flat
        return flat[: block.numel()].view(block.shape)

    def _flush(self) -> None:
        if not self._coef:
            return
        coef = torch.tensor(self._coef, dtype=torch.float64, device=self.cross_device)
        rows = [torch.stack(r).to(self.cross_device) for r in self._rows]
        for (i, j), c in self._cross.items():
            c.addmm_((rows[i] * coef[:, None]).T, rows[j])
        for r in self._rows:
            r.clear()
        self._coef.clear()

    def update(self, xs: Sequence[torch.Tensor]) -> None:
        nb = xs[0].shape[0]
        if nb == 0:
            return
        n_old, n_new = self.n, self.n + nb
        # Centre on a float32 shift close to the batch mean (the mean of about 64 evenly spaced rows) so the
        # float32 matmul sees small numbers; the exact (float64) remainder r between the batch mean and the
        # shift is corrected for below, so large offsets cost nothing.
        xc, r, sq = [], [], []
        shift = []
        for x in xs:
            c, d = _centre(x)
            s1, s2 = _column_sums(d)
            shift.append(c)
            xc.append(d)
            r.append(s1 / nb)
            sq.append(s2)
        r = torch.stack(r)
        mu_b = torch.stack(shift).double() + r
        delta = mu_b - self.mean
        w = n_old * nb / n_new
        for (i, j), c in self._cross.items():
            product = _matmul_fp32(xc[i].T, xc[j], out=self._buffer(c, self.device))
            if c.device != product.device:  # one product at a time through a (pinned) host buffer
                product = self._buffer(c).copy_(product)
            _add_into(c, product)
        # cross[i, j] += -nb r_i r_j^T + w delta_i delta_j^T, queued
        for k in range(len(xs)):
            self._rows[k] += [r[k], delta[k]]
        self._coef += [-nb, w]
        if len(self._coef) >= 2 * _FLUSH_EVERY:
            self._flush()
        m2_b = torch.stack(sq) - nb * r**2
        self.m2 += m2_b + w * delta**2
        self.mean += delta * (nb / n_new)
        self.n = n_new


@torch.no_grad()
def collect_statistics(
    models: Sequence[torch.nn.Module],
    batches: Iterable[Mapping[str, torch.Tensor]],
    *,
    names: Sequence[str],
    pairs: Sequence[tuple[str, str]] | None = None,
    features: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
    snapshots: Mapping[int, Callable[[Statistics], None]] | None = None,
    micro_batch: int | None = None,
    cross_device: str | torch.device | None = None,
) -> Statistics:
    """Run every model on every batch once and accumulate statistics of ``features`` (default: all).

    names: one name per model; pairs: model-name pairs whose cross blocks are kept (default all i<j).
    Models are used in eval mode where they are (their training flag is restored afterwards); batches are
    moved to each model's device; accumulators live on ``device``. progress(batch_index, tokens) is
    called after each batch.

    snapshots: {k: callback}: after the k-th batch (k >= 1; after progress), callback(statistics of the
    first k batches) -- several data prefixes from one pass. The snapshot shares the live accumulators,
    which the following batches change: save it (or copy what you keep) inside the callback. Every k must
    be reached (ValueError otherwise).

    Memory (``permerge.tooling.footprint.plan_statistics`` picks both for a GPU budget): micro_batch: run the models
    and update the accumulators on at most this many sequences of a batch at a time (the captured features
    of every model are held for one micro-batch only; progress and snapshots still count whole batches);
    cross_device: where the float64 cross blocks live (default ``device``; "cpu" beside a GPU keeps them in
    host memory: each float32 product is formed on ``device`` and added on the host, one block at a time).
    Either choice changes the results only by float rounding.
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
    # Cross blocks need every model's features to have the same sizes: compare the shapes up front (a
    # mismatch would otherwise surface as a matmul error deep inside the accumulation).
    shape_keys = ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads")
    shapes = [{k: getattr(base_model(m).config, k, None) for k in shape_keys} for m in models]
    for name, m, shape in zip(names[1:], models[1:], shapes[1:]):
        diffs = [f"{k}={shape[k]} vs {shapes[0][k]}" for k in shape_keys if shape[k] != shapes[0][k]]
        if diffs:
            raise ValueError(f"model {name!r} differs in shape from model {names[0]!r}: {', '.join(diffs)}")
        if feature_names(m) != available:
            raise ValueError(f"model {name!r} and model {names[0]!r} differ in pooler presence")
    features = available if features is None else list(features)
    unknown = [f for f in features if f not in available]
    if unknown:
        raise ValueError(f"features not available in these models: {unknown}")
    if not features:  # nothing to hook: running the models would be wasted (vanilla needs no statistics)
        raise ValueError("no features requested (a variant set without components needs no statistics)")
    if micro_batch is not None and (isinstance(micro_batch, bool) or int(micro_batch) < 1):
        raise ValueError(f"micro_batch must be a positive number of sequences, got {micro_batch!r}")
    snapshots = dict(snapshots or {})
    bad = [k for k in snapshots if isinstance(k, bool) or not isinstance(k, int) or k < 1]
    if bad:
        raise ValueError(f"snapshot keys must be batch counts >= 1, got {bad}")

    device = torch.device(device)
    captured: dict[str, torch.Tensor] = {}
    state: dict[str, torch.Tensor] = {}
    handles = []

    def make_hook(feature: str, where: str):
        def grab(t: torch.Tensor) -> None:
            if feature == "pooler":
                captured[feature] = t.detach()
            elif state["full"]:  # no padding: all tokens, as a view
                captured[feature] = t.detach().reshape(-1, t.shape[-1])
            else:  # boolean-mask gather drops padding for the whole batch at once
                captured[feature] = t.detach()[state["mask"]]

        if where == "pre":
            return lambda mod, args: grab(args[0])
        return lambda mod, args, out: grab(out)

    bases = [base_model(m) for m in models]
    # A pooler feature outside the encoder (RoBERTa / ELECTRA classification head): run the whole model.
    runners = [m if "pooler" in features and getattr(b, "pooler", None) is None else b for m, b in zip(models, bases)]
    families = [family_of(m)[0] for m in models]
    was_training = [m.training for m in models]
    accs: dict[str, _Accumulator] = {}
    workspace: dict = {}  # the float32 product buffer, shared by all accumulators
    total_tokens = 0
    consumed = 0
    try:
        for m in models:
            for f in features:
                module, where = _hook_points(m, f)
                hook = make_hook(f, where)
                handles.append(
                    module.register_forward_pre_hook(hook) if where == "pre" else module.register_forward_hook(hook)
                )
        for m in models:
            m.eval()
        for step, batch in enumerate(batches):
            tokens = 0
            for part in _micro_batches(batch, micro_batch):
                outs: list[dict[str, torch.Tensor]] = []
                for base, fam in zip(runners, families):
                    dev = next(base.parameters()).device
                    inputs = {k: v.to(dev) for k, v in fam.model_inputs(part).items()}
                    if "attention_mask" not in inputs:
                        inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
                    state["mask"] = inputs["attention_mask"].bool()
                    state["full"] = bool(state["mask"].all())
                    captured.clear()
                    base(**inputs)
                    outs.append({f: captured[f].to(device) for f in features})
                captured.clear()
                tokens += int(state["mask"].sum())
                for f in features:
                    if f not in accs:
                        dim = outs[0][f].shape[-1]
                        accs[f] = _Accumulator(len(models), dim, pair_idx, device, workspace, cross_device=cross_device)
                # the widest features first, each model's captures freed once used: the peak is the first
                # update (footprint.statistics_device_bytes)
                for f in sorted(features, key=lambda f: -accs[f].mean.shape[-1]):
                    accs[f].update([o[f] for o in outs])
                    for o in outs:
                        del o[f]
                del outs
            total_tokens += tokens
            if progress is not None:
                progress(step, tokens)
            if step + 1 in snapshots:
                if not accs:
                    raise ValueError(f"no tokens in the first {step + 1} batches")
                snapshots[step + 1](_assemble(accs, names, pairs, pair_idx))
            consumed = step + 1
    finally:
        for h in handles:
            h.remove()
        for m, t in zip(models, was_training):
            m.train(t)
    if not accs:
        raise ValueError("no batches: statistics need at least one token")
    unreached = sorted(k for k in snapshots if k > consumed)
    if unreached:
        raise ValueError(f"snapshots after {unreached} batches requested, but there were only {consumed} batches")
    return _assemble(accs, names, pairs, pair_idx)


def _micro_batches(batch: Mapping[str, torch.Tensor], size: int | None) -> Iterator[dict[str, torch.Tensor]]:
    """The model inputs of a batch, in slices of at most ``size`` sequences (None: the whole batch)."""
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    n = len(inputs["input_ids"])
    if size is None or size >= n:
        yield inputs
        return
    for start in range(0, n, size):
        yield {k: v[start : start + size] for k, v in inputs.items()}


def _assemble(
    accs: Mapping[str, _Accumulator],
    names: Sequence[str],
    pairs: Sequence[tuple[str, str]],
    pair_idx: Sequence[tuple[int, int]],
) -> Statistics:
    """Statistics holding the accumulators' own tensors (no copies, but for means and M2 beside host-resident
    cross blocks; pending corrections are flushed)."""
    tensors: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    for f, acc in accs.items():
        counts[f] = acc.n
        # beside host-resident cross blocks, means and M2 are handed out on the host too (one device per
        # Statistics: correlation() combines them)
        tensors[f"mean/{f}"] = acc.mean.to(acc.cross_device)
        tensors[f"m2/{f}"] = acc.m2.to(acc.cross_device)
        for (i, j), c in acc.cross.items():
            tensors[f"cross/{f}/{names[i]}/{names[j]}"] = c
    return Statistics(names, pairs, counts, tensors)


class Statistics:
    """Accumulated statistics. Tensors are kept in memory or read lazily from a safetensors file.

    names: model names; pairs: model pairs with cross blocks; count: feature -> number of rows (tokens,
    or sequences for "pooler"); num_tokens: the token count.
    """

    def __init__(
        self,
        names: Sequence[str],
        pairs: Sequence[tuple[str, str]],
        count: Mapping[str, int],
        tensors: Mapping[str, torch.Tensor] | None = None,
        *,
        path: str | os.PathLike | None = None,
        metadata: Mapping[str, str] | None = None,
    ):
        self.names = list(names)
        self.pairs = [tuple(p) for p in pairs]
        self.count = dict(count)  # feature -> number of rows (tokens, or sequences for the pooler)
        self.metadata = dict(metadata or {})
        self._tensors = dict(tensors or {})
        self._path = None if path is None else str(path)

    @property
    def features(self) -> list[str]:
        return list(self.count)

    def nbytes(self) -> int:
        """Bytes of the tensors held in memory: all of them for statistics just collected; for a loaded
        file only the means and M2 read so far (cross blocks read from a file are never kept)."""
        return sum(t.numel() * t.element_size() for t in self._tensors.values())

    @property
    def num_tokens(self) -> int:
        """Token count (every token feature has it; 0 when only the pooler or nothing was collected)."""
        return next((n for f, n in self.count.items() if f != "pooler"), 0)

    def _get(self, key: str, *, cache: bool = True) -> torch.Tensor:
        """A tensor held in memory, else read from the file (kept for later calls only when ``cache``)."""
        if key in self._tensors:
            return self._tensors[key]
        if self._path is None:
            raise KeyError(key)
        with safe_open(self._path, framework="pt") as f:
            if key not in f.keys():
                raise KeyError(key)
            t = f.get_tensor(key)
        if cache:
            self._tensors[key] = t
        return t

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
        """The stored block (float64 in memory, float32 or float64 from a file); a block read from a file
        is not cached: each pair's blocks are used once, and caching them grows memory with the pairs."""
        self._check(feature, a, b)
        if (a, b) in self.pairs:
            return self._get(f"cross/{feature}/{a}/{b}", cache=False)
        if (b, a) in self.pairs:
            return self._get(f"cross/{feature}/{b}/{a}", cache=False).T
        raise KeyError(f"no cross statistics for the pair ({a!r}, {b!r})")

    def cross(self, feature: str, a: str, b: str) -> torch.Tensor:
        """Population covariance block cov(a_i, b_j), shape (d_a, d_b), float64."""
        return self._cross_sum(feature, a, b).double() / self.count[feature]

    def correlation(self, feature: str, a: str, b: str) -> torch.Tensor:
        """Pearson correlation block (float64); features with zero variance correlate 0 with everything."""
        c = self._cross_sum(feature, a, b).double()
        m2 = self._get(f"m2/{feature}").double()
        # one d_a x d_b result and no other block-sized temporaries (this runs on 3072^2 blocks per layer);
        # a spread below sqrt(smallest normal float64) counts as zero (its inverse could overflow)
        tiny = math.sqrt(torch.finfo(torch.float64).tiny)
        inv_a, inv_b = (
            torch.where(sd > tiny, 1.0 / sd, 0.0)
            for sd in (m2[self.names.index(a)].sqrt(), m2[self.names.index(b)].sqrt())
        )
        corr = c * inv_a[:, None]
        corr *= inv_b[None, :]
        return corr.clamp_(-1.0, 1.0)

    def save(
        self,
        path: str | os.PathLike,
        metadata: Mapping[str, str] | None = None,
        *,
        features: Sequence[str] | None = None,
        cross_dtype: torch.dtype = torch.float32,
    ) -> None:
        """Write names/pairs/counts (and extra string metadata) and the tensors of ``features`` (default:
        all) to a safetensors file, atomically.

        Means and M2 are stored as float64, cross blocks as ``cross_dtype`` (float32 by default: half the
        bytes, and the correlations computed from them give the same permutations, see
        tests/test_stats_storage.py; float64 keeps the accumulators exactly).
        """
        if cross_dtype not in (torch.float32, torch.float64):
            raise ValueError(f"cross_dtype must be torch.float32 or torch.float64, got {cross_dtype}")
        features = self.features if features is None else list(features)
        missing = [f for f in features if f not in self.count]
        if missing:
            raise KeyError(f"cannot save features {missing}: no statistics for them (have: {', '.join(self.features)})")
        counts = {f: self.count[f] for f in features}
        entries = []
        for f in features:  # float64 first: every tensor then starts 8-byte aligned
            for k in ("mean", "m2"):
                key = f"{k}/{f}"
                entries.append((key, torch.float64, self._shape(key), lambda key=key: self._get(key, cache=False)))
        for f in features:
            for a, b in self.pairs:
                key = f"cross/{f}/{a}/{b}"
                entries.append((key, cross_dtype, self._shape(key), lambda key=key: self._get(key, cache=False)))
        meta = {**self.metadata, **{str(k): str(v) for k, v in (metadata or {}).items()}}
        meta.update(names=json.dumps(self.names), pairs=json.dumps(self.pairs), counts=json.dumps(counts))
        write_safetensors(path, entries, meta)

    def _shape(self, key: str) -> tuple[int, ...]:
        if key in self._tensors:
            return tuple(self._tensors[key].shape)
        if self._path is None:
            raise KeyError(key)
        with safe_open(self._path, framework="pt") as f:
            if key not in f.keys():
                raise KeyError(f"{self._path} has no tensor {key!r}")
            return tuple(f.get_slice(key).get_shape())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Statistics:
        """Open a saved file; tensors are read on first use."""
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such statistics file")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
        except Exception as err:  # safetensors raises its own error type for a file it cannot parse
            raise ValueError(f"{path} is not a statistics file (not a readable safetensors file: {err})") from None
        try:
            names = json.loads(meta["names"])
            pairs = [tuple(p) for p in json.loads(meta["pairs"])]
            counts = json.loads(meta["counts"])
        except KeyError as err:
            raise ValueError(f"{path} is not a statistics file (missing metadata {err})") from None
        except (ValueError, TypeError) as err:
            raise ValueError(f"{path} is not a statistics file (bad metadata: {err})") from None
        extra = {k: v for k, v in meta.items() if k not in ("names", "pairs", "counts")}
        return cls(names, pairs, counts, path=path, metadata=extra)


_SAFETENSORS_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def write_safetensors(
    path: str | os.PathLike,
    entries: Iterable[tuple[str, torch.dtype, Sequence[int], Callable[[], torch.Tensor]]],
    metadata: Mapping[str, str] | None = None,
    *,
    fsync: bool = False,
) -> None:
    """Write a safetensors file one tensor at a time, atomically (a temporary sibling renamed into place;
    with fsync, its bytes are on disk before the rename).

    safetensors' own ``save_file`` needs every tensor in memory at once (with float32 copies of the
    float64 accumulators: half their size again at BERT-base with 10 pairs); here each entry
    (key, dtype, shape, make) calls make() only when its bytes are written and casts the result to dtype.
    The layout is the format's: little-endian u64 header length, JSON header (padded with spaces to 8
    bytes), then the tensors' bytes in the order given.
    """
    entries = list(entries)
    meta = {str(k): v for k, v in (metadata or {}).items()}
    if not all(isinstance(v, str) for v in meta.values()):
        raise TypeError("safetensors metadata values must be strings")
    header: dict = {"__metadata__": meta} if meta else {}
    offset = 0
    for key, dtype, shape, _ in entries:
        if key in header or key == "__metadata__":
            raise ValueError(f"duplicate or reserved tensor name {key!r}")
        if dtype not in _SAFETENSORS_DTYPES:
            raise ValueError(f"{key}: unsupported dtype {dtype}")
        size = math.prod(shape) * dtype.itemsize
        header[key] = {
            "dtype": _SAFETENSORS_DTYPES[dtype],
            "shape": [int(n) for n in shape],
            "data_offsets": [offset, offset + size],
        }
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(struct.pack("<Q", len(blob)))
            fh.write(blob)
            for key, dtype, shape, make in entries:
                t = make().detach().to("cpu", dtype).contiguous()
                if tuple(t.shape) != tuple(shape):
                    raise ValueError(f"{key}: tensor of shape {tuple(t.shape)}, header says {tuple(shape)}")
                fh.write(t.reshape(-1).view(torch.uint8).numpy().data)  # raw bytes, no extra copy
                del t
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def text_batches(
    tokenizer,
    examples: Iterable,
    *,
    batch_size: int = 32,
    max_length: int = 128,
    text_keys: Sequence[str] = ("text",),
    by_length: bool = False,
) -> Iterator[dict[str, torch.Tensor]]:
    """Tokenized, padded batches. Examples are strings or dicts; two text_keys make sentence pairs.

    by_length: batch the examples in order of their token count (stable), so that a batch pads little: the
    statistics are sums over tokens, and padded positions cost attention (a masked, slower kernel) and
    matmuls for nothing (a GLUE pair task's statistics pass took 3/4 of the time).
    """
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
        enc = tokenizer(
            *[list(c) for c in cols],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
            return_token_type_ids=True,
        )
        return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")}

    if by_length:
        rows = [fields(ex) for ex in examples]
        if not rows:
            return
        keys = ("input_ids", "attention_mask", "token_type_ids")
        enc = tokenizer(
            *[list(c) for c in zip(*rows)], truncation=True, max_length=max_length, return_token_type_ids=True
        )
        order = sorted(range(len(rows)), key=lambda i: len(enc["input_ids"][i]))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            padded = tokenizer.pad({k: [enc[k][i] for i in idx] for k in keys}, return_tensors="pt")
            yield {k: padded[k] for k in keys}
        return

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
    n = fraction_count(len(seq), fraction)
    if hasattr(seq, "select"):
        return seq.select(range(n))
    return seq[:n]


def fraction_count(n: int, fraction: float) -> int:
    """How many of n examples a data fraction uses: floor(fraction * n), at least one."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must satisfy 0 < f <= 1, got {fraction}")
    return max(1, math.floor(n * fraction + 1e-9))


def segmented_batches(
    tokenizer,
    examples: Sequence,
    ends: Sequence[int],
    *,
    batch_size: int = 32,
    max_length: int = 128,
    text_keys: Sequence[str] = ("text",),
    by_length: bool = True,
) -> tuple[Iterator[dict[str, torch.Tensor]], list[int]]:
    """Batches over examples[:max(ends)], none straddling an end; and for each end the number of batches
    that covers exactly examples[:end] (the ``snapshots`` keys of collect_statistics).

    Each segment between consecutive ends is batched on its own (its last batch may be short), so the
    batches of every prefix are those a separate pass over that prefix makes for the first segment, and
    the same examples for every later one. by_length: within a segment, examples are batched in order of
    length (text_batches); otherwise in their order.
    """
    ends = [int(e) for e in ends]
    if not ends or any(not 1 <= e <= len(examples) for e in ends):
        raise ValueError(f"prefix ends must lie in 1..{len(examples)} (the number of examples), got {ends}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    bounds = [0, *sorted(set(ends))]
    after = {0: 0}
    for lo, hi in zip(bounds, bounds[1:]):
        after[hi] = after[lo] + math.ceil((hi - lo) / batch_size)

    def take(lo: int, hi: int):
        return examples.select(range(lo, hi)) if hasattr(examples, "select") else examples[lo:hi]

    def batches():
        for lo, hi in zip(bounds, bounds[1:]):
            yield from text_batches(
                tokenizer,
                take(lo, hi),
                batch_size=batch_size,
                max_length=max_length,
                text_keys=text_keys,
                by_length=by_length,
            )

    return batches(), [after[e] for e in ends]
