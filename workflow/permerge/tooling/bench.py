"""``permerge bench``: cost of the method's steps relative to plain forward passes, in one process.

Every figure is a ratio (or a size) taken within one run, so machine load cancels as far as possible:

* ``stats_vs_forward`` (pair) / ``stats_vs_forward_5seeds``: ``collect_statistics`` (all features) over the
  bare ``BertModel`` forward (``torch.no_grad``, no MLM head, no pooler) of the same models (hook-free
  copies) on the same batch, paired batch by batch: right after each statistics batch, the bare forward
  of that batch is timed, so load changes on a shared machine cancel. The headline is the median over the
  batches after the first (the first also allocates the accumulators); ``stats_vs_forward_whole_pass``
  puts all statistics time (allocation and final flush included) over all forward time. Floors:
  ``gemm_floor`` = 1 + (the bare float32 cross products of the same shapes, timed after each batch too)
  / forward; ``flop_floor`` = 1 + their multiply-adds / those of the forward.
* ``stats_peak_mb_pair_base``: MiB of statistics state for one pair at BERT-base size (12 layers, 768,
  3072, all features, no pooler as in BertForMaskedLM): the tensors the returned ``Statistics`` holds
  (``Statistics.nbytes``: float64 cross blocks, means, M2; checked against the exact formula) plus the
  float32 product buffer and the longest queue of pending rank-one corrections. Beside it, the process's
  peak increase during that pass (``VmHWM`` reset through ``/proc/self/clear_refs`` on Linux CPUs;
  ``torch.cuda.max_memory_allocated`` on GPU), which also holds the batch's activations.
* ``match_seconds_base``: ``compute_permutations`` (FF, head-aware attention, residual "all") for one pair
  on random correlations (scipy's LSA on the CPU, whatever ``--device``).
* ``sweep_vs_forward``: ``lambda_sweep`` with ``mlm_loss`` per λ (its one-time working copy included) over
  one ``mlm_loss`` pass on model A (mean of the passes before and after the sweep).
* ``scaling``: the same at several widths (FF = 4 x hidden, 64-dim heads) and two data sizes.
* ``--permutations-memory`` (a separate mode): synthetic float32 statistics files with the paper's features
  (ff, ctx, all residual nodes) for 2 models / 1 pair and 5 models / 10 pairs at BERT-base; a fresh
  process runs ``compute_permutations`` (ff + head_perm + residual all) over 1 pair and over all pairs and
  reports its peak RSS (VmHWM) and seconds per pair, plus statistics-file bytes before/after compaction.
* ``--weight-matching`` (a separate mode): data-free weight matching (ff + head-aware attention with Q/K's
  own order + residual; ``weight_matching``) of two random-init BertForMaskedLM at BERT-base: B = a planted
  function-preserving permutation of A plus Gaussian noise (``--noise`` x each tensor's std), and B = an
  independent init. Seconds per pair, sweeps to converge, perms recovered; beside it the activation
  matcher's ``match_seconds_base`` (same components, random correlations).

Models are randomly initialised; token ids are random (full blocks, no padding). On CUDA every timing is
bracketed by ``torch.cuda.synchronize()``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics as pystats
import sys
import time
from pathlib import Path
from types import SimpleNamespace

BASE = dict(layers=12, hidden=768, vocab=30522)
MIB = 2**20
SPECIAL_IDS = (0, 1, 2, 3, 4)  # ids never masked in the synthetic evaluation set; 4 plays [MASK]


# ------------------------------------------------------------------------------------------ helpers
def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device):
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - start, out


def bert_config(layers: int, hidden: int, vocab: int, seq_len: int):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        intermediate_size=4 * hidden,
        max_position_embeddings=max(512, seq_len),
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


def make_models(n: int, config, device, *, mlm: bool = False, seed: int = 0) -> list:
    """n randomly initialised models (BertModel without pooler, or BertForMaskedLM) in eval mode."""
    import torch
    from transformers import BertForMaskedLM, BertModel

    out = []
    for i in range(n):
        torch.manual_seed(seed + i)
        m = BertForMaskedLM(config) if mlm else BertModel(config, add_pooling_layer=False)
        out.append(m.to(device).eval())
    return out


def make_batches(num: int, batch_size: int, seq_len: int, vocab: int, device, seed: int = 0) -> list[dict]:
    import torch

    g = torch.Generator().manual_seed(seed)
    return [
        {
            "input_ids": torch.randint(len(SPECIAL_IDS), vocab, (batch_size, seq_len), generator=g).to(device),
            "attention_mask": torch.ones(batch_size, seq_len, dtype=torch.long, device=device),
        }
        for _ in range(num)
    ]


def forward_pass(models, batches, device="cpu") -> list[float]:
    """Bare forward of every model on every batch; returns the seconds each batch took."""
    import torch

    times = []
    with torch.no_grad():
        for batch in batches:
            _sync(device)
            start = time.perf_counter()
            for m in models:
                m(**batch)
            _sync(device)
            times.append(time.perf_counter() - start)
    return times


def stats_pass(models, batches, device="cpu", features=None):
    """collect_statistics over `features` (default: all) with the bench's model names."""
    from permerge.alignment.stats import collect_statistics

    return collect_statistics(
        models, batches, names=[f"s{i}" for i in range(len(models))], device=device, features=features
    )


def feature_dims(layers: int, hidden: int) -> list[int]:
    """Dimension of every feature collected from a BERT without pooler (same order as feature_names)."""
    return [hidden] * (2 * layers + 1) + [4 * hidden] * layers + [hidden] * (3 * layers)


def statistics_bytes(num_models: int, layers: int, hidden: int) -> dict[str, int]:
    """Exact bytes of the statistics state for all pairs of num_models models (no pooler).

    accumulators: float64 cross block per pair and feature, float64 mean and M2 per model and feature (what
    Statistics holds); workspace: the float32 product buffer (sized for the largest block); queue: pending
    rank-one corrections at their longest (2 float64 vectors per model, feature and queued batch).
    """
    from permerge.alignment.stats import _FLUSH_EVERY

    dims = feature_dims(layers, hidden)
    pairs = num_models * (num_models - 1) // 2
    acc = sum(8 * (pairs * d * d + 2 * num_models * d) for d in dims)
    workspace = 4 * max(dims) ** 2 if pairs else 0
    queue = sum(8 * 2 * _FLUSH_EVERY * num_models * d for d in dims)
    return {"accumulators": acc, "workspace": workspace, "queue": queue}


def flop_floor(num_models: int, layers: int, hidden: int, seq_len: int) -> float:
    """1 + (multiply-adds of the cross products) / (multiply-adds of the forward), per token."""
    ff = 4 * hidden
    fwd = num_models * layers * (4 * hidden * hidden + 2 * hidden * ff + 2 * seq_len * hidden)
    pairs = num_models * (num_models - 1) // 2
    cross = pairs * sum(d * d for d in feature_dims(layers, hidden))
    return 1.0 + cross / fwd


class _Products:
    """The bare float32 cross products collect_statistics computes for one pair and one batch (random
    data of the same shapes, buffers allocated once)."""

    def __init__(self, layers: int, hidden: int, tokens: int, device):
        import torch

        self.dims = feature_dims(layers, hidden)
        self.bufs = {
            d: (
                torch.randn(tokens, d, device=device),
                torch.randn(tokens, d, device=device),
                torch.empty(d, d, device=device),
            )
            for d in set(self.dims)
        }
        self.device = device
        self()  # warm-up

    def __call__(self) -> float:
        import torch

        _sync(self.device)
        start = time.perf_counter()
        for d in self.dims:
            x, y, out = self.bufs[d]
            torch.mm(x.T, y, out=out)
        _sync(self.device)
        return time.perf_counter() - start


def _rss_kib() -> tuple[int, int] | None:
    """(VmRSS, VmHWM) in KiB from /proc/self/status, or None."""
    try:
        vals = {}
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    vals[line.split(":")[0]] = int(line.split()[1])
        return vals["VmRSS"], vals["VmHWM"]
    except (OSError, KeyError, ValueError):
        return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


# ------------------------------------------------------------------------------------------ measurements
def measure_stats(
    s: SimpleNamespace, layers: int, hidden: int, batches_n: int, seeds: int, repeats: int, *, floors: bool = True
) -> dict:
    """Statistics pass vs bare forward for `seeds` models, paired batch by batch.

    After each statistics batch (inside collect_statistics' progress callback, excluded from the
    statistics time) the same batch goes through hook-free copies of the models (the bare forward) and,
    with `floors`, through the bare cross products of one pair; so every statistics batch is compared with
    a forward of the same tokens measured right after it, and load changes on a shared machine cancel.
    stats_vs_forward: median over the batches after the first of each pass (the first also allocates the
    accumulators); whole pass: all statistics time (allocation and final flush included) over all
    forward time; gemm_floor: 1 + S(S-1)/2 x (one pair's products) / forward, median over those batches.
    """
    import copy

    import torch

    from permerge.alignment.stats import collect_statistics

    if batches_n < 2:
        raise ValueError("the statistics timing needs at least 2 batches")
    cfg = bert_config(layers, hidden, s.vocab, s.seq_len)
    models = make_models(seeds, cfg, s.device)
    bare = [copy.deepcopy(m) for m in models]  # same weights, never hooked
    batches = make_batches(batches_n, s.batch_size, s.seq_len, s.vocab, s.device)
    tokens = s.batch_size * s.seq_len
    pairs = seeds * (seeds - 1) // 2
    products = _Products(layers, hidden, tokens, s.device) if floors else None
    # warm-up on a small slice (allocator, BLAS and kernel initialisation)
    warm = [{k: v[:1] for k, v in batches[0].items()}] * 2
    forward_pass(bare, warm, s.device)
    stats_pass(models, warm, s.device, features=["res.0", "ff.0"])

    rows: list[dict] = []  # one per batch: pass, index, stats, forward, products seconds
    whole_stats, whole_fwd = [], []
    for rep in range(repeats):
        clock = [0.0]
        mine: list[dict] = []

        def progress(step, n_tokens):
            _sync(s.device)
            t_stats = time.perf_counter() - clock[0]
            t_fwd = forward_pass(bare, [batches[step]], s.device)[0]
            t_prod = products() if products is not None else float("nan")
            mine.append({"pass": rep, "batch": step, "stats_s": t_stats, "forward_s": t_fwd, "products_s": t_prod})
            _sync(s.device)
            clock[0] = time.perf_counter()

        _sync(s.device)
        clock[0] = time.perf_counter()
        result = collect_statistics(
            models, batches, names=[f"s{i}" for i in range(seeds)], device=s.device, progress=progress
        )
        _sync(s.device)
        tail = time.perf_counter() - clock[0]  # final flush and result assembly
        del result
        rows += mine
        whole_stats.append(sum(r["stats_s"] for r in mine) + tail)
        whole_fwd.append(sum(r["forward_s"] for r in mine))
    steady = [r for r in rows if r["batch"] > 0]
    out = {
        "models": seeds,
        "layers": layers,
        "hidden": hidden,
        "batches": batches_n,
        "tokens": batches_n * tokens,
        "forward_s": pystats.median(whole_fwd),
        "stats_s": pystats.median(whole_stats),
        "stats_vs_forward": pystats.median(r["stats_s"] / r["forward_s"] for r in steady),
        "stats_vs_forward_whole_pass": pystats.median(a / b for a, b in zip(whole_stats, whole_fwd)),
        "flop_floor": flop_floor(seeds, layers, hidden, s.seq_len),
        "per_batch": rows,
    }
    if floors:
        out["products_s_per_batch"] = pystats.median(r["products_s"] for r in rows) * pairs
        out["gemm_floor"] = pystats.median(1.0 + pairs * r["products_s"] / r["forward_s"] for r in steady)
    del models, bare, batches, products
    if torch.device(s.device).type == "cuda":
        torch.cuda.empty_cache()
    return out


def measure_memory(s: SimpleNamespace) -> dict:
    """Statistics state for one pair at mem_layers x mem_hidden, measured on a short batch."""
    import torch

    cfg = bert_config(s.mem_layers, s.mem_hidden, s.vocab, s.seq_len)
    models = make_models(2, cfg, s.device)
    batches = make_batches(1, 1, min(s.seq_len, 32), s.vocab, s.device, seed=1)
    cuda = torch.device(s.device).type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        reset = True
    else:
        reset = _reset_hwm()
        rss = _rss_kib()
        before = rss[0] * 1024 if rss else None
    stats = stats_pass(models, batches, s.device)
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
        how_peak = "torch.cuda.max_memory_allocated() increase during the pass"
    else:
        rss = _rss_kib()
        peak = rss[1] * 1024 - before if (reset and rss and before is not None) else None
        how_peak = "VmHWM (reset via /proc/self/clear_refs) minus VmRSS before the pass"
    held = stats.nbytes()
    formula = statistics_bytes(2, s.mem_layers, s.mem_hidden)
    if held != formula["accumulators"]:
        raise RuntimeError(f"accumulator bytes {held} differ from the formula {formula['accumulators']}")
    total = held + formula["workspace"] + formula["queue"]
    del stats, models
    return {
        "layers": s.mem_layers,
        "hidden": s.mem_hidden,
        "accumulator_bytes": held,
        "workspace_bytes": formula["workspace"],
        "queue_bytes": formula["queue"],
        "total_bytes": total,
        "total_mib": total / MIB,
        "total_mb": total / 1e6,
        "process_peak_delta_mib": None if peak is None else peak / MIB,
        "process_peak_how": how_peak,
    }


def random_statistics(layers: int, hidden: int, seed: int = 0):
    """Statistics of one pair with random correlations (about N(0, 0.1^2)) for the matched features."""
    import torch

    from permerge.alignment.stats import Statistics

    g = torch.Generator().manual_seed(seed)
    n = 1000
    dims = {f"ff.{l}": 4 * hidden for l in range(layers)}
    dims.update({f"ctx.{l}": hidden for l in range(layers)})
    dims.update({f"res.{i}": hidden for i in range(2 * layers + 1)})
    tensors = {}
    for f, d in dims.items():
        tensors[f"mean/{f}"] = torch.zeros(2, d, dtype=torch.float64)
        tensors[f"m2/{f}"] = torch.full((2, d), float(n), dtype=torch.float64)
        tensors[f"cross/{f}/a/b"] = 0.1 * n * torch.randn(d, d, generator=g, dtype=torch.float64)
    return Statistics(["a", "b"], [("a", "b")], {f: n for f in dims}, tensors)


def measure_matching(layers: int, hidden: int) -> dict:
    from permerge.alignment.matching import compute_permutations
    from permerge.alignment.variants import Variant

    stats = random_statistics(layers, hidden)
    variant = Variant(components=frozenset({"ff", "attn", "res"}), attention="head_perm", residual="all")
    config = SimpleNamespace(num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64))
    start = time.perf_counter()
    perms = compute_permutations(stats, "a", "b", variant, config)
    seconds = time.perf_counter() - start
    return {"layers": layers, "hidden": hidden, "seconds": seconds, "permutations": len(perms)}


def measure_weight_matching(
    layers: int, hidden: int, vocab: int, *, noise: float = 0.1, seed: int = 0, log=print
) -> dict:
    """Weight matching of a planted pair (B = pi(A) + noise) and of two independent inits (see the docstring)."""
    import numpy as np
    import torch

    from permerge.alignment.spec import random_permutations, spec_for_model
    from permerge.alignment.weight_matching import weight_matching
    from permerge.merging.permute import apply_permutations

    cfg = bert_config(layers, hidden, vocab, 128)
    model_a, independent = make_models(2, cfg, "cpu", mlm=True, seed=seed)
    spec = spec_for_model(model_a)
    planted = random_permutations(spec, np.random.default_rng(seed), qk="separate")
    noisy = apply_permutations(model_a, planted)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in noisy.parameters():  # the tied decoder once
            if p.numel() > 1:
                p.add_(noise * p.std() * torch.randn(p.shape, generator=g))
    out = {
        "layers": layers,
        "hidden": hidden,
        "ff": 4 * hidden,
        "heads": cfg.num_attention_heads,
        "vocab": vocab,
        "noise": noise,
        "components": "ff + attn (head_perm, qk separate) + res",
    }
    for case, model_b in (("planted", noisy), ("independent", independent)):
        log(f"weight matching, {case} pair: {layers} layers x {hidden}")
        start = time.perf_counter()
        r = weight_matching(spec, model_a, model_b, components={"ff", "attn", "res"}, qk="separate", seed=seed)
        seconds = time.perf_counter() - start
        row = {
            "seconds": seconds,
            "sweeps": r.sweeps,
            "converged": r.converged,
            "seconds_per_sweep": seconds / r.sweeps,
            "objective_start": r.objective[0],
            "objective_end": r.objective[-1],
            "perms": len(r.perms),
        }
        if case == "planted":
            want = {k: np.argsort(v) for k, v in planted.items()}
            row["perms_recovered"] = sum(int(np.array_equal(r.perms[k], want[k])) for k in want)
            row["units_recovered_fraction"] = sum(int((r.perms[k] == want[k]).sum()) for k in want) / sum(
                len(v) for v in want.values()
            )
        out[case] = row
    del model_a, independent, noisy
    log(f"activation matching (random correlations): {layers} layers x {hidden}")
    out["match_seconds_base"] = measure_matching(layers, hidden)["seconds"]
    return out


def format_weight_matching(r: dict) -> str:
    lines = [
        f"weight matching at {r['layers']} layers x {r['hidden']} (FF {r['ff']}, {r['heads']} heads, vocab "
        f"{r['vocab']}), BertForMaskedLM, {r['components']}",
        f"{'pair':<13}{'s/pair':>8}{'sweeps':>8}{'s/sweep':>9}{'converged':>11}   recovered",
    ]
    for case in ("planted", "independent"):
        x = r[case]
        rec = (
            f"{x['perms_recovered']}/{x['perms']} perms, {100 * x['units_recovered_fraction']:.2f}% units "
            f"(noise {r['noise']:g} x std)"
            if case == "planted"
            else ""
        )
        lines.append(
            f"{case:<13}{x['seconds']:>8.1f}{x['sweeps']:>8}{x['seconds_per_sweep']:>9.1f}"
            f"{str(x['converged']):>11}   {rec}"
        )
    lines.append(
        f"activation matcher (match_seconds_base, same components, random correlations): {r['match_seconds_base']:.1f}s"
    )
    return "\n".join(lines)


def synthetic_evalset(blocks: int, seq_len: int, vocab: int, seed: int = 0) -> dict:
    """A fixed masked MLM set (BERT masking of random ids, drawn once) shaped like build_mlm_evalset's."""
    import torch

    from permerge.evaluation.evaluate import bert_mask

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(len(SPECIAL_IDS), vocab, (blocks, seq_len), generator=g)
    ids[:, 0], ids[:, -1] = 2, 3  # [CLS] ... [SEP]
    masked, labels = bert_mask(ids, special=list(SPECIAL_IDS), mask_token_id=4, vocab_size=vocab, generator=g)
    return {"input_ids": masked, "labels": labels}


def measure_sweep(s: SimpleNamespace, layers: int, hidden: int, blocks: int) -> dict:
    """Loss sweep over s.lambdas values vs one evaluation pass of model A (before and after the sweep)."""
    import torch

    from permerge.evaluation.evaluate import lambda_grid, lambda_sweep, mlm_loss

    cfg = bert_config(layers, hidden, s.vocab, s.seq_len)
    a, b = make_models(2, cfg, s.device, mlm=True)
    ev = synthetic_evalset(blocks, s.seq_len, s.vocab)
    grid = lambda_grid(s.lambdas)

    def evaluate(m):
        return mlm_loss(m, ev, batch_size=s.batch_size)

    mlm_loss(a, {k: v[:1] for k, v in ev.items()}, batch_size=1)  # warm-up
    t0 = _timed(lambda: evaluate(a), s.device)[0]
    t_sweep, rows = _timed(lambda: lambda_sweep(a, b, grid, evaluate), s.device)
    t1 = _timed(lambda: evaluate(a), s.device)[0]
    bare = (t0 + t1) / 2
    per_lambda = t_sweep / len(grid)
    if not all(math.isfinite(r["loss"]) for r in rows):
        raise RuntimeError("the sweep produced a non-finite loss")
    del a, b
    if torch.device(s.device).type == "cuda":
        torch.cuda.empty_cache()
    return {
        "layers": layers,
        "hidden": hidden,
        "blocks": blocks,
        "tokens": blocks * s.seq_len,
        "lambdas": len(grid),
        "bare_eval_s": bare,
        "sweep_s": t_sweep,
        "per_lambda_s": per_lambda,
        "sweep_vs_forward": per_lambda / bare,
    }


# ------------------------------------------------------------------------------------------ permutations memory
PAPER_VARIANT = {"components": ["ff", "attn", "res"], "attention": "head_perm", "residual": "all"}


def paper_features(layers: int, *, qk: bool = False, pooler: bool = False) -> list[str]:
    """Features of the paper's MLM variant set (ff, ctx, all 2L+1 residual nodes); qk/pooler optional."""
    out = [f"res.{i}" for i in range(2 * layers + 1)] + [f"ff.{l}" for l in range(layers)]
    out += [f"ctx.{l}" for l in range(layers)]
    if qk:
        out += [f"{k}.{l}" for k in ("q", "k") for l in range(layers)]
    return out + (["pooler"] if pooler else [])


def statistics_file_bytes(num_models: int, layers: int, hidden: int, features: list[str], cross_bytes: int) -> int:
    """Tensor bytes of a statistics file: cross blocks (cross_bytes per element) for all pairs, float64 means
    and M2 (the JSON header, a few KB, not counted)."""
    dims = [4 * hidden if f.startswith("ff.") else hidden for f in features]
    pairs = num_models * (num_models - 1) // 2
    return sum(cross_bytes * pairs * d * d + 8 * 2 * num_models * d for d in dims)


def write_synthetic_statistics(
    path, num_models: int, layers: int, hidden: int, *, rank: int = 64, seed: int = 0
) -> int:
    """A valid statistics file (float32 cross blocks) for the paper's features, written block by block.

    Model m's feature vector is W_m z for a shared latent z (isotropic, rank `rank`): cov(a, b) = W_a W_b^T,
    M2 = the row norms of W (count 1), means 0, so every correlation lies in [-1, 1]. W_m is W_0 with its
    units permuted and 40% fresh noise mixed in, so the matching has a real (not perfect) answer.
    Returns the file size in bytes.
    """
    import itertools

    import torch

    from permerge.alignment.stats import write_safetensors

    features = paper_features(layers)
    names = [f"s{i}" for i in range(num_models)]
    pairs = list(itertools.combinations(names, 2))
    dims = {f: 4 * hidden if f.startswith("ff.") else hidden for f in features}
    cache: dict = {}

    def weights(f: str) -> list:
        if f not in cache:
            cache.clear()  # one feature at a time: the writer asks for a feature's blocks together
            g = torch.Generator().manual_seed(seed * 100003 + features.index(f))
            d = dims[f]
            w0 = torch.randn(d, rank, generator=g, dtype=torch.float64)
            ws = [w0]
            for _ in range(1, num_models):
                perm = torch.randperm(d, generator=g)
                ws.append(0.8 * w0[perm] + 0.6 * torch.randn(d, rank, generator=g, dtype=torch.float64))
            cache[f] = ws
        return cache[f]

    def m2(f):
        return torch.stack([(w * w).sum(1) for w in weights(f)])

    entries = []
    for f in features:
        d = dims[f]
        entries.append(
            (f"mean/{f}", torch.float64, (num_models, d), lambda d=d: torch.zeros(num_models, d, dtype=torch.float64))
        )
        entries.append((f"m2/{f}", torch.float64, (num_models, d), lambda f=f: m2(f)))
    for f in features:
        for a, b in pairs:
            i, j = names.index(a), names.index(b)
            entries.append(
                (
                    f"cross/{f}/{a}/{b}",
                    torch.float32,
                    (dims[f], dims[f]),
                    lambda f=f, i=i, j=j: weights(f)[i] @ weights(f)[j].T,
                )
            )
    meta = {
        "names": json.dumps(names),
        "pairs": json.dumps(pairs),
        "counts": json.dumps({f: 1 for f in features}),
        "note": "synthetic (permerge bench --permutations-memory)",
    }
    write_safetensors(path, entries, meta)
    return Path(path).stat().st_size


def permutations_child(path: str, num_pairs: int, layers: int, heads: int) -> None:
    """Run in a fresh process: compute_permutations (the paper variant) for the first num_pairs pairs of a
    statistics file, then print one JSON line: seconds per pair, bytes held after each pair, VmHWM."""
    import torch  # noqa: F401  (imported before the baseline, as the script has it)

    from permerge.alignment.matching import compute_permutations
    from permerge.alignment.stats import Statistics
    from permerge.alignment.variants import Variant

    base = _rss_kib()
    stats = Statistics.load(path)
    variant = Variant.from_mapping(PAPER_VARIANT, name="all")
    config = SimpleNamespace(num_hidden_layers=layers, num_attention_heads=heads)
    seconds, held, hwm = [], [], []
    for a, b in stats.pairs[:num_pairs]:
        start = time.perf_counter()
        compute_permutations(stats, a, b, variant, config)
        seconds.append(time.perf_counter() - start)
        held.append(stats.nbytes())
        hwm.append((_rss_kib() or (0, 0))[1])
    print(
        json.dumps(
            {
                "pairs": len(seconds),
                "seconds_per_pair": seconds,
                "held_bytes_after_pair": held,
                "vmhwm_kib_after_pair": hwm,
                "vmhwm_kib_after_imports": None if base is None else base[1],
                "torch_threads": torch.get_num_threads(),
            }
        )
    )


def measure_permutations_memory(layers: int, hidden: int, seeds: int, tmpdir: str | None = None, log=print) -> dict:
    """Write synthetic float32 statistics files (2 models / 1 pair and `seeds` models / all pairs) with the
    paper's features, then run compute_permutations in a fresh subprocess over 1 pair and over all pairs:
    peak RSS (VmHWM) and seconds per pair. Files are deleted afterwards."""
    import shutil
    import subprocess
    import tempfile

    heads = max(1, hidden // 64)
    feats = paper_features(layers)
    sizes = {n: statistics_file_bytes(n, layers, hidden, feats, 4) for n in (2, seeds)}
    where = tmpdir or tempfile.gettempdir()
    free = shutil.disk_usage(where).free
    if free < 1.2 * (sizes[2] + sizes[seeds]):
        raise OSError(
            f"{where}: {free / 1e9:.1f} GB free, the synthetic statistics need "
            f"{(sizes[2] + sizes[seeds]) / 1e9:.1f} GB (pass --tmpdir)"
        )
    pkg_parent = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [pkg_parent, os.environ.get("PYTHONPATH")]))}
    runs = []
    with tempfile.TemporaryDirectory(prefix="permerge-bench-", dir=where) as d:
        for models, num_pairs in ((2, 1), (seeds, seeds * (seeds - 1) // 2)):
            path = os.path.join(d, f"stats{models}.safetensors")
            log(
                f"writing synthetic statistics: {models} models, {layers} layers x {hidden} ({sizes[models] / 1e9:.2f} GB)"
            )
            start = time.perf_counter()
            size = write_synthetic_statistics(path, models, layers, hidden)
            write_s = time.perf_counter() - start
            log(f"compute_permutations over {num_pairs} pair(s) in a fresh process")
            code = (
                f"from permerge.tooling.bench import permutations_child; "
                f"permutations_child({path!r}, {num_pairs}, {layers}, {heads})"
            )
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
            if proc.returncode:
                raise RuntimeError(f"permutations child failed:\n{proc.stderr[-3000:]}")
            child = json.loads(proc.stdout.strip().splitlines()[-1])
            os.unlink(path)
            runs.append(
                {
                    **child,
                    "models": models,
                    "pairs": num_pairs,
                    "file_bytes": size,
                    "write_s": write_s,
                    "process_s": time.perf_counter() - start,
                    "mean_seconds_per_pair": pystats.mean(child["seconds_per_pair"]),
                    "peak_rss_mib": child["vmhwm_kib_after_pair"][-1] / 1024,
                    "rss_after_imports_mib": (child["vmhwm_kib_after_imports"] or 0) / 1024,
                }
            )
    ff_bytes = 4 * hidden * 4 * hidden
    return {
        "layers": layers,
        "hidden": hidden,
        "heads": heads,
        "seeds": seeds,
        "features": len(feats),
        "variant": PAPER_VARIANT,
        "runs": runs,
        "largest_cross_block_float64_mib": 8 * ff_bytes / MIB,
        "peak_growth_mib": runs[1]["peak_rss_mib"] - runs[0]["peak_rss_mib"],
        # a paper-scale file: before (every feature incl. q/k, float64) vs now (the variants' features, float32)
        "file_bytes_paper": {
            f"{n}_models": {
                "before_float64_all_features": statistics_file_bytes(
                    n, layers, hidden, paper_features(layers, qk=True), 8
                ),
                "before_with_pooler": statistics_file_bytes(
                    n, layers, hidden, paper_features(layers, qk=True, pooler=True), 8
                ),
                "now_float32_paper_features": statistics_file_bytes(n, layers, hidden, feats, 4),
                "now_with_pooler": statistics_file_bytes(n, layers, hidden, paper_features(layers, pooler=True), 4),
            }
            for n in (2, seeds)
        },
    }


def format_permutations_memory(r: dict) -> str:
    lines = [
        f"compute_permutations memory at {r['layers']} layers x {r['hidden']} ({r['heads']} heads), variant "
        f"ff + attn head_perm + res all, float32 statistics; one fresh process per row",
        f"{'models':>7}{'pairs':>6}{'file GB':>9}{'s/pair':>8}{'peak RSS MiB':>14}{'after imports':>15}",
    ]
    for run in r["runs"]:
        lines.append(
            f"{run['models']:>7}{run['pairs']:>6}{run['file_bytes'] / 1e9:>9.2f}{run['mean_seconds_per_pair']:>8.1f}"
            f"{run['peak_rss_mib']:>14.0f}{run['rss_after_imports_mib']:>15.0f}"
        )
    lines.append(f"peak growth from 1 to {r['runs'][1]['pairs']} pairs: {r['peak_growth_mib']:+.0f} MiB")
    for key, b in r["file_bytes_paper"].items():
        lines.append(
            f"file bytes, {key}: before (float64, all features incl. q/k) {b['before_float64_all_features'] / 1e9:.2f} GB "
            f"(+pooler {b['before_with_pooler'] / 1e9:.2f}); now (float32, ff+ctx+res) "
            f"{b['now_float32_paper_features'] / 1e9:.2f} GB (+pooler {b['now_with_pooler'] / 1e9:.2f})"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ driver
def settings_from_args(args: argparse.Namespace) -> SimpleNamespace:
    import torch

    quick = bool(args.quick)
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    small_cpu = device == "cpu"

    def pick(value, full, quick_value, cpu_full=None):
        if value is not None:
            return value
        if quick:
            return quick_value
        return cpu_full if (cpu_full is not None and small_cpu) else full

    L = BASE["layers"]
    s = SimpleNamespace(
        quick=quick,
        device=device,
        layers=pick(args.layers, L, 2 if small_cpu else L),
        hidden=pick(args.hidden, BASE["hidden"], BASE["hidden"]),
        vocab=pick(args.vocab, BASE["vocab"], BASE["vocab"]),
        seq_len=pick(args.seq_len, 128, 128),
        batch_size=pick(args.batch_size, 32, 4, cpu_full=8),
        batches=pick(args.batches, 4, 2, cpu_full=3),
        seeds=pick(args.seeds, 5, 5),
        repeats=pick(args.repeats, 3, 1, cpu_full=2),
        lambdas=pick(args.lambdas, 5, 3),
        eval_blocks=pick(args.eval_blocks, 64, 4, cpu_full=8),
        mem_layers=pick(args.mem_layers, L, L),
        mem_hidden=pick(args.mem_hidden, BASE["hidden"], BASE["hidden"]),
        widths=None,
        threads=torch.get_num_threads(),
    )
    # 5 seeds at BERT-base hold 10 pairs of accumulators (11 GiB): on CPU they are timed with fewer layers.
    s.seeds_layers = pick(args.seeds_layers, s.layers, 1 if small_cpu else s.layers, cpu_full=min(4, s.layers))
    s.match_layers = pick(args.match_layers, L, 2 if small_cpu else L)
    s.scale_layers = pick(args.scale_layers, s.layers, s.layers, cpu_full=2)
    if args.widths is not None:
        s.widths = [int(w) for w in args.widths.split(",") if w.strip()]
    else:
        s.widths = [128, s.hidden] if quick else [128, 256, s.hidden]
    for name in (
        "layers",
        "hidden",
        "vocab",
        "seq_len",
        "batch_size",
        "repeats",
        "eval_blocks",
        "mem_layers",
        "mem_hidden",
        "match_layers",
        "seeds_layers",
        "scale_layers",
    ):
        if getattr(s, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be positive")
    if s.batches < 2:
        raise ValueError("--batches must be at least 2 (the first batch of a statistics pass is not timed)")
    if s.seeds < 2 or s.lambdas < 2:
        raise ValueError("--seeds and --lambdas must be at least 2")
    if s.vocab <= len(SPECIAL_IDS):
        raise ValueError(f"--vocab must exceed {len(SPECIAL_IDS)}")
    for w in [s.hidden, s.mem_hidden, *s.widths]:
        if w < 1 or w % max(1, w // 64):
            raise ValueError(f"width {w}: must be divisible by its number of heads, max(1, width // 64)")
    return s


def device_name(device: str) -> str:
    import torch

    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name()
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name} ({os.cpu_count()} CPUs visible, torch threads {torch.get_num_threads()})"


STATS_KEYS = ("layers", "batches", "tokens", "forward_s", "stats_s", "stats_vs_forward", "stats_vs_forward_whole_pass")
SWEEP_KEYS = ("layers", "blocks", "tokens", "bare_eval_s", "per_lambda_s", "sweep_vs_forward")


def run_bench(s: SimpleNamespace, log=print) -> dict:
    import torch
    import transformers

    started = time.perf_counter()
    plain_log = log

    def log(msg):
        plain_log(f"[{time.perf_counter() - started:6.1f}s] {msg}")

    log(f"bench on {device_name(s.device)}")
    # memory first: the process-peak figure is only meaningful before other passes have grown the heap
    log(f"memory: one pair at {s.mem_layers} layers, hidden {s.mem_hidden}")
    mem = measure_memory(s)
    log(f"statistics, pair: {s.layers} layers, hidden {s.hidden}, {s.batches} x {s.batch_size} x {s.seq_len} tokens")
    pair = measure_stats(s, s.layers, s.hidden, s.batches, 2, s.repeats)
    log(f"statistics, {s.seeds} seeds: {s.seeds_layers} layers")
    many = measure_stats(s, s.seeds_layers, s.hidden, s.batches, s.seeds, 1)
    log(f"matching: {s.match_layers} layers, hidden {s.hidden}")
    match = measure_matching(s.match_layers, s.hidden)
    log(f"sweep: {s.layers} layers, {s.lambdas} lambdas, {s.eval_blocks} blocks")
    sweep = measure_sweep(s, s.layers, s.hidden, s.eval_blocks)

    scaling = []
    for w in s.widths:
        log(f"scaling: {s.scale_layers} layers, hidden {w}")
        row = {
            "hidden": w,
            "ff": 4 * w,
            "heads": max(1, w // 64),
            "layers": s.scale_layers,
            "stats_state_mib_pair": sum(statistics_bytes(2, s.scale_layers, w).values()) / MIB,
            "flop_floor_pair": flop_floor(2, s.scale_layers, w, s.seq_len),
        }
        same = w == s.hidden and s.scale_layers == s.layers
        row["stats_pair"] = [
            {k: pair[k] for k in STATS_KEYS}
            if same and nb == s.batches
            else {
                k: v for k, v in measure_stats(s, s.scale_layers, w, nb, 2, 1, floors=False).items() if k in STATS_KEYS
            }
            for nb in (s.batches, 2 * s.batches)
        ]
        row["match_seconds"] = (
            match["seconds"]
            if w == s.hidden and s.match_layers == s.scale_layers
            else measure_matching(s.scale_layers, w)["seconds"]
        )
        row["sweep"] = [
            {k: sweep[k] for k in SWEEP_KEYS}
            if same and blocks == s.eval_blocks
            else {k: v for k, v in measure_sweep(s, s.scale_layers, w, blocks).items() if k in SWEEP_KEYS}
            for blocks in (s.eval_blocks, 2 * s.eval_blocks)
        ]
        scaling.append(row)

    match_base = match["seconds"]
    result = {
        "device": device_name(s.device),
        "stats_vs_forward": pair["stats_vs_forward"],
        "stats_vs_forward_5seeds": many["stats_vs_forward"],
        "stats_peak_mb_pair_base": mem["total_mib"],
        "match_seconds_base": match_base,
        "sweep_vs_forward": sweep["sweep_vs_forward"],
        "targets": {"stats_vs_forward": 1.3, "stats_peak_mb_pair_base": 1200, "sweep_vs_forward": 1.1},
        "details": {
            "stats_pair": pair,
            "stats_5seeds": many,
            "memory": mem,
            "matching": match,
            "sweep": sweep,
            "units": {
                "*_mb*, *_mib": "MiB (2**20 bytes); memory.total_mb is the same in 10**6 bytes",
                "*_s": "seconds of wall-clock time",
            },
        },
        "scaling": scaling,
        "settings": {
            "quick": s.quick,
            "device": s.device,
            "layers": s.layers,
            "hidden": s.hidden,
            "heads": max(1, s.hidden // 64),
            "ff": 4 * s.hidden,
            "vocab": s.vocab,
            "seq_len": s.seq_len,
            "batch_size": s.batch_size,
            "batches": s.batches,
            "seeds": s.seeds,
            "seeds_layers": s.seeds_layers,
            "repeats": s.repeats,
            "lambdas": s.lambdas,
            "eval_blocks": s.eval_blocks,
            "mem_layers": s.mem_layers,
            "mem_hidden": s.mem_hidden,
            "match_layers": s.match_layers,
            "scale_layers": s.scale_layers,
            "widths": s.widths,
            "torch_threads": s.threads,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": sys.version.split()[0],
            "fewer_layers_than_bert_base": min(s.layers, s.seeds_layers, s.mem_layers, s.match_layers) < BASE["layers"],
            "note": (
                "random init, random token ids (full blocks, no padding); the pair statistics and the "
                "sweep use `layers` layers, the many-seed statistics `seeds_layers`, memory "
                "`mem_layers`, matching `match_layers`, the scaling table `scale_layers`"
            ),
        },
    }
    if s.match_layers != BASE["layers"]:
        result["details"]["matching"]["seconds_12_layers_estimate"] = match_base * BASE["layers"] / s.match_layers
    result["settings"]["elapsed_s"] = time.perf_counter() - started
    log("done")
    return result


def format_table(r: dict) -> str:
    d = r["details"]
    p, m, mem, sw, mt = d["stats_pair"], d["stats_5seeds"], d["memory"], d["sweep"], d["matching"]
    st = r["settings"]
    lines = [
        f"permerge bench on {r['device']}",
        f"(hidden {st['hidden']}, vocab {st['vocab']}, {st['batches']} batches of {st['batch_size']} x "
        f"{st['seq_len']} tokens{', quick' if st['quick'] else ''})",
        "",
        f"{'figure':<30}{'value':>9}{'target':>8}   detail",
    ]

    def row(name, value, target, detail):
        tgt = "" if target is None else f"{target:g}"
        lines.append(f"{name:<30}{value:>9.3f}{tgt:>8}   {detail}")

    for label, x, key in (("pair", p, "stats_vs_forward"), (f"{m['models']} seeds", m, "stats_vs_forward_5seeds")):
        row(
            f"stats_vs_forward ({label})",
            r[key],
            1.3,
            f"{x['layers']} layers; whole pass {x['stats_vs_forward_whole_pass']:.2f} ({x['stats_s']:.1f}s / "
            f"{x['forward_s']:.1f}s); floors: products {x['gemm_floor']:.2f}, flops {x['flop_floor']:.2f}",
        )
    peak = mem["process_peak_delta_mib"]
    row(
        "stats_peak_mb_pair_base (MiB)",
        r["stats_peak_mb_pair_base"],
        1200,
        f"{mem['layers']} layers x {mem['hidden']}: accumulators {mem['accumulator_bytes'] / MIB:.1f} + "
        f"product buffer {mem['workspace_bytes'] / MIB:.1f} + queue {mem['queue_bytes'] / MIB:.1f} MiB "
        f"(= {mem['total_mb']:.0f} MB); process peak +{'n/a' if peak is None else f'{peak:.0f}'} MiB",
    )
    est = mt.get("seconds_12_layers_estimate")
    row(
        "match_seconds_base",
        r["match_seconds_base"],
        None,
        f"{mt['layers']} layers x {mt['hidden']}" + ("" if est is None else f"; 12 layers ~ {est:.1f}s"),
    )
    row(
        "sweep_vs_forward",
        r["sweep_vs_forward"],
        1.1,
        f"{sw['layers']} layers; {sw['per_lambda_s']:.2f}s per lambda / {sw['bare_eval_s']:.2f}s per eval "
        f"({sw['lambdas']} lambdas, {sw['tokens']} tokens)",
    )
    lines += [
        "",
        "scaling (pair; FF = 4 x hidden; ratio = steady-state stats / forward)",
        f"{'hidden':>7}{'layers':>7}{'state MiB':>10}{'flops':>7}{'match s':>9}{'tokens':>8}{'fwd s':>8}"
        f"{'stats s':>9}{'ratio':>7}{'eval tok':>9}{'eval s':>8}{'sweep':>7}",
    ]
    for sc in r["scaling"]:
        for k, (sp, sv) in enumerate(zip(sc["stats_pair"], sc["sweep"])):
            head = (
                (
                    f"{sc['hidden']:>7}{sc['layers']:>7}{sc['stats_state_mib_pair']:>10.1f}"
                    f"{sc['flop_floor_pair']:>7.2f}{sc['match_seconds']:>9.2f}"
                )
                if k == 0
                else " " * 40
            )
            lines.append(
                head + f"{sp['tokens']:>8}{sp['forward_s']:>8.2f}{sp['stats_s']:>9.2f}"
                f"{sp['stats_vs_forward']:>7.2f}{sv['tokens']:>9}{sv['bare_eval_s']:>8.2f}"
                f"{sv['sweep_vs_forward']:>7.2f}"
            )
    return "\n".join(lines)


def cmd_bench(args: argparse.Namespace) -> int:
    from permerge.io import atomic_path

    log = lambda msg: print(f"# {msg}", file=sys.stderr, flush=True)  # noqa: E731
    if args.permutations_memory and args.weight_matching:
        raise ValueError("--permutations-memory and --weight-matching are separate modes: give one")
    if args.permutations_memory:
        for name in ("layers", "hidden", "seeds"):
            if getattr(args, name) is not None and getattr(args, name) < (2 if name == "seeds" else 1):
                raise ValueError(f"--{name} is too small")
        hidden = args.hidden or BASE["hidden"]
        if hidden % max(1, hidden // 64):
            raise ValueError(f"--hidden {hidden}: must be divisible by its number of heads, max(1, hidden // 64)")
        result = measure_permutations_memory(
            args.layers or BASE["layers"], hidden, args.seeds or 5, args.tmpdir, log=log
        )
        result["device"] = device_name("cpu")
        print(format_permutations_memory(result))
    elif args.weight_matching:
        for name in ("layers", "hidden", "vocab"):
            if getattr(args, name) is not None and getattr(args, name) < 1:
                raise ValueError(f"--{name} must be positive")
        hidden = args.hidden or BASE["hidden"]
        if hidden % max(1, hidden // 64):
            raise ValueError(f"--hidden {hidden}: must be divisible by its number of heads, max(1, hidden // 64)")
        if args.noise < 0:
            raise ValueError("--noise must be non-negative")
        result = measure_weight_matching(
            args.layers or BASE["layers"], hidden, args.vocab or BASE["vocab"], noise=args.noise, log=log
        )
        result["device"] = device_name("cpu")
        print(format_weight_matching(result))
    else:
        s = settings_from_args(args)
        result = run_bench(s, log=log)
        print(format_table(result))
    print(json.dumps(result, sort_keys=True), flush=True)
    if args.out:
        with atomic_path(args.out) as tmp:
            Path(tmp).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return 0


def add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="time statistics, matching and the loss sweep relative to forward passes",
        description="Measure, in one run: statistics pass / bare forward (pair and several seeds), "
        "statistics memory for a pair at BERT-base size, matching time, loss-sweep cost per "
        "lambda / one evaluation pass, and how these grow with width and data. Prints a table "
        "and one JSON object (the last line of stdout).",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="CI-sized run (on CPU: 2 layers, 2 batches of 4 x 128 tokens; 5 seeds on 1 layer; matching on 2 layers)",
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--out", default=None, help="also write the JSON here (e.g. results/bench/bench.json)")
    p.add_argument(
        "--permutations-memory",
        action="store_true",
        help="instead: peak RSS and seconds per pair of compute_permutations (ff + attn + res all) "
        "from synthetic float32 statistics files for 1 pair and for all pairs of --seeds models "
        "(default BERT-base, 5 seeds: writes ~6 GB under --tmpdir, deleted afterwards)",
    )
    p.add_argument(
        "--weight-matching",
        action="store_true",
        help="instead: seconds and sweeps of data-free weight matching for a planted (+ noise) and an "
        "independent pair of random-init BertForMaskedLM (default BERT-base; a few GB of RAM, "
        "minutes of CPU), beside the activation matcher's time",
    )
    p.add_argument(
        "--noise",
        type=float,
        default=0.1,
        help="--weight-matching: noise added to the planted B, as a multiple of each tensor's std",
    )
    p.add_argument("--tmpdir", default=None, help="where --permutations-memory writes its files (default: $TMPDIR)")
    g = p.add_argument_group("sizes (defaults: BERT-base; see docs/performance.md for the CPU/quick defaults)")
    g.add_argument("--layers", type=int, help="layers for the pair statistics and the sweep (default 12)")
    g.add_argument("--hidden", type=int, help="hidden size (default 768); FF = 4 x hidden, 64-dim heads")
    g.add_argument("--vocab", type=int, help="vocabulary size (default 30522)")
    g.add_argument("--seq-len", type=int, help="tokens per sequence (default 128)")
    g.add_argument("--batch-size", type=int, help="sequences per batch (default 32; CPU 8; --quick 4)")
    g.add_argument("--batches", type=int, help="batches per pass, at least 2 (default 4; CPU 3; --quick 2)")
    g.add_argument("--seeds", type=int, help="models in the many-seed statistics pass (default 5)")
    g.add_argument(
        "--seeds-layers",
        type=int,
        help="layers for the many-seed statistics (default: --layers; CPU 4; --quick on CPU 1)",
    )
    g.add_argument("--repeats", type=int, help="timed statistics passes for the pair (default 3; CPU 2; --quick 1)")
    g.add_argument("--lambdas", type=int, help="lambda values in the timed sweep (default 5; --quick 3)")
    g.add_argument(
        "--eval-blocks", type=int, help="blocks of seq-len tokens in the MLM set (default 64; CPU 8; --quick 4)"
    )
    g.add_argument("--mem-layers", type=int, help="layers for the memory figure (default 12)")
    g.add_argument("--mem-hidden", type=int, help="hidden size for the memory figure (default 768)")
    g.add_argument("--match-layers", type=int, help="layers for the matching time (default 12; --quick on CPU 2)")
    g.add_argument(
        "--scale-layers", type=int, help="layers for the scaling table (default: --layers; CPU without --quick: 2)"
    )
    g.add_argument(
        "--widths",
        default=None,
        help="comma-separated hidden sizes for the scaling table (default 128,256,<hidden>; "
        "--quick 128,<hidden>; empty: none)",
    )
    p.set_defaults(func=cmd_bench)
