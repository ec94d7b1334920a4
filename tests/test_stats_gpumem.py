"""Statistics within a GPU budget (gpu_memory_gb): micro-batches and host-resident cross blocks give the same
statistics; the planner picks them from the shapes; the device peak it predicts is the measured one."""

import pytest
import torch
from transformers import BertForMaskedLM

from permerge import config as cfg
from permerge.alignment.stats import collect_statistics, force_path
from permerge.tooling import footprint as fp
from permerge.tooling.memtrace import LiveTensorBytes
from tests.test_stats import make_batches, make_models

torch.set_num_threads(1)


def _tensors(stats):
    return {k: v.clone() for k, v in stats._tensors.items()}, dict(stats.count)


@pytest.mark.parametrize("path", ["numpy", "torch"])
@pytest.mark.parametrize("micro_batch, cross_device", [(2, None), (1, "cpu"), (3, "cpu"), (None, "cpu")])
def test_micro_batches_and_host_cross_blocks_same_statistics(path, micro_batch, cross_device):
    models = make_models("mlm", n=3)
    batches = make_batches()  # padded, varying lengths
    names = ["a", "b", "c"]
    seen = {}
    with force_path(path):
        # the same snapshot (it flushes the queued corrections, which moves their rounding)
        ref, ref_count = _tensors(collect_statistics(models, batches, names=names, snapshots={2: lambda s: None}))
        got = collect_statistics(
            models,
            batches,
            names=names,
            micro_batch=micro_batch,
            cross_device=cross_device,
            progress=lambda step, tokens: seen.setdefault(step, tokens),
            snapshots={2: lambda s: seen.setdefault("snap", s.num_tokens)},
        )
    tensors, count = _tensors(got)
    assert count == ref_count and tensors.keys() == ref.keys()
    # micro-batches change the float32 forward's rounding (smaller matmuls), nothing else; the host-resident
    # cross blocks alone change nothing
    tol = 1e-5 if micro_batch else 0.0
    for k, v in ref.items():
        scale = max(1.0, float(v.abs().max()))
        assert torch.allclose(tensors[k], v, rtol=tol, atol=tol * scale), k
    # progress and snapshots still count whole batches
    assert sorted(k for k in seen if k != "snap") == list(range(len(batches)))
    assert seen["snap"] == sum(int(b["attention_mask"].sum()) for b in batches[:2])


def test_micro_batch_must_be_positive():
    models = make_models("mlm", n=2)
    with pytest.raises(ValueError, match="micro_batch"):
        collect_statistics(models, make_batches(1), names=["a", "b"], micro_batch=0)


SHAPE = fp.Shape(layers=12, hidden=768, heads=12, ff=3072, vocab=30522, positions=512)
DIMS = [3072] * 12 + [768] * 38  # the paper's MLM union: ff, ctx, 25 residual nodes, pooler


def test_plan_statistics_paper_scale():
    models = 5 * fp.param_bytes(SHAPE, "BertForPreTraining")
    big = fp.plan_statistics(SHAPE, 5, 10, DIMS, 64, 128, 40 * 10**9, models=models)
    assert big.micro_batch == 64 and big.cross_on_device and big.cross_device is None
    plan = fp.plan_statistics(SHAPE, 5, 10, DIMS, 64, 128, 15 * 10**9, models=models)
    assert plan.cross_on_device and 1 <= plan.micro_batch < 64 and plan.peak <= 15 * 10**9
    # the micro-batch is the largest that fits, evened out over the batch
    larger = fp.statistics_device_bytes(
        SHAPE, 5, 10, DIMS, plan.micro_batch + 1, 128, cross_on_device=True, models=models
    )
    assert sum(larger.values()) > 15 * 10**9 or 64 % plan.micro_batch
    small = fp.plan_statistics(SHAPE, 5, 10, DIMS, 64, 128, 8 * 10**9, models=models)
    assert not small.cross_on_device and small.cross_device == "cpu" and small.peak <= 8 * 10**9
    assert "accumulators" not in small.parts and "means + M2" in small.parts
    with pytest.raises(cfg.ConfigError, match="gpu_memory_gb"):
        fp.plan_statistics(SHAPE, 5, 10, DIMS, 64, 128, 2 * 10**9, models=models)


def _paper(**over):
    config = fp.load_config(["configs/paper.yaml"])
    config.update(over)
    return config


def test_paper_config_fits_the_default_budget():
    config = _paper()
    assert config["gpu_memory_gb"] == 16
    budget = fp.gpu_budget_bytes(config)
    for rule in fp.GPU_RULES:
        for e in fp.estimates(rule, config):
            assert 0 < e.gpu_bytes <= budget, (rule, e.task, e.gpu_bytes)
    plan = fp.statistics_plan(config, "mlm")
    assert plan.cross_on_device and plan.micro_batch < 64
    assert fp.statistics_plan(_paper(device="cpu"), "mlm") is None


def test_sweeps_lower_the_batch_and_finetune_fails_naming_the_key():
    config = _paper(gpu_memory_gb=4.8)
    b = fp.evaluation_batch(config, "mlm", "sweep_lambdas")
    assert 1 <= b < 64
    assert sum(fp.evaluation_gpu_parts(config, "mlm", "sweep_lambdas", b).values()) <= fp.gpu_budget_bytes(config)
    assert fp.evaluation_batch(_paper(device="cpu", gpu_memory_gb=1), "mlm") == 64  # the budget is the GPU's
    assert fp.evaluation_batch(_paper(), "mlm", "merge_many") == 64
    with pytest.raises(cfg.ConfigError, match="gpu_memory_gb"):
        fp.evaluation_batch(_paper(gpu_memory_gb=2), "mlm", "sweep_lambdas")
    fp.check_finetune_gpu(_paper(), "mnli")
    with pytest.raises(cfg.ConfigError, match="gpu_memory_gb: fine-tuning rte"):
        fp.check_finetune_gpu(_paper(gpu_memory_gb=3), "rte")


def test_footprint_table_lists_gpu_peaks(capsys):
    assert fp.main(["--configfile", "configs/paper.yaml"]) == 0
    out = capsys.readouterr().out
    assert "GPU peak" in out and "gpu_memory_gb = 16" in out
    for rule in fp.GPU_RULES:
        assert f"* {rule} (" in out


def test_live_tensor_bytes_counts_storages_once():
    w = torch.randn(100, 100)
    with LiveTensorBytes(ignore=[w]) as t:
        a = torch.randn(1000, 1000)
        b = a * 2
        v = b[10:]  # a view: no new bytes
        _ = w.T  # a view of an ignored tensor
        del a
        c = torch.empty(500, 1000, dtype=torch.float64)
        assert t.live == 8_000_000 and t.peak == 8_000_000
        del b
        assert t.live == 8_000_000  # the view keeps b's storage
        del v, c
        assert t.live == 0 and t.peak == 8_000_000


def test_statistics_device_peak_measured_within_10_percent():
    """Live tensor bytes of a real pass (3 BERTs, 2 layers, hidden 64, 4 sequences of 32 tokens per update,
    torch path as on a GPU) against statistics_device_bytes."""
    shape = fp.Shape(layers=2, hidden=64, heads=2, ff=256, vocab=300, positions=128)
    feats = [f"res.{i}" for i in range(5)] + ["ff.0", "ff.1", "ctx.0", "ctx.1"]
    r = fp.measure_statistics_peak(shape, 3, feats, 4, 32, batches=2)
    assert 0.9 <= r["ratio"] <= 1.1, r


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: the plan's peak on a real GPU")
def test_cuda_plan_same_statistics_and_peak_within_10_percent():
    """On a GPU: cross blocks on the host and micro-batches give the CPU's statistics, and the pass's
    torch.cuda.max_memory_allocated is within 10 % of statistics_device_bytes (cross blocks on the GPU)."""
    shape = fp.Shape(layers=2, hidden=64, heads=2, ff=256, vocab=300, positions=128)
    feats = [f"res.{i}" for i in range(5)] + ["ff.0", "ff.1", "ctx.0", "ctx.1"]
    models = make_models("mlm", n=3)
    batches = make_batches()
    ref = collect_statistics(models, batches, names=["a", "b", "c"])
    moved = [m.to("cuda") for m in make_models("mlm", n=3)]
    got = collect_statistics(moved, batches, names=["a", "b", "c"], device="cuda", micro_batch=2, cross_device="cpu")
    for f in ref.features:
        c_ref, c_got = ref.correlation(f, "a", "c"), got.correlation(f, "a", "c")
        assert c_got.device.type == "cpu" and torch.allclose(c_got, c_ref, atol=1e-5), f
    config = type(models[0].config)(
        vocab_size=300, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256
    )
    gpu = [BertForMaskedLM(config).eval().to("cuda") for _ in range(3)]
    g = torch.Generator().manual_seed(0)
    data = [{"input_ids": torch.randint(5, 300, (4, 32), generator=g), "attention_mask": torch.ones(4, 32, dtype=int)}]
    del moved, got
    # warm-up: cuBLAS's workspace (CUDA_DEVICE_RESERVE's share, not the model's) is allocated before the baseline
    collect_statistics(gpu, data, names=["a", "b", "c"], features=["res.0"], device="cuda")
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()  # the models and cuBLAS's workspace
    torch.cuda.reset_peak_memory_stats()
    collect_statistics(gpu, data, names=["a", "b", "c"], features=feats, device="cuda", micro_batch=4)
    torch.cuda.synchronize()
    models_bytes = sum(t.numel() * t.element_size() for m in gpu for t in m.parameters())
    measured = torch.cuda.max_memory_allocated() - base + models_bytes
    dims = [fp.feature_dim(shape, f) for f in feats]
    parts = fp.statistics_device_bytes(
        shape, 3, 3, dims, 4, 32, cross_on_device=True, models=3 * fp.param_bytes(shape, "BertForMaskedLM")
    )
    assert 0.9 <= measured / sum(parts.values()) <= 1.1, (measured, parts)
