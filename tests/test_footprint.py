"""permerge.tooling.footprint: the sizes it computes from shapes against real models, statistics and files."""

import copy
import subprocess
import sys

import pytest
import torch
import transformers

from permerge.alignment.matching import compute_permutations
from permerge.alignment.stats import collect_statistics
from permerge.checkpoints import save_permutations
from permerge.tooling import bench
from permerge.tooling import footprint as fp

TINY = fp.Shape(layers=2, hidden=32, heads=2, ff=64, vocab=100, positions=64, type_vocab=2)


bert_config = fp.bert_config


def numel(model) -> int:
    return sum(p.numel() for p in model.parameters())  # parameters() lists a tied tensor once


@pytest.mark.parametrize("arch", fp.ARCHITECTURES)
@pytest.mark.parametrize("labels", [1, 3])
def test_param_count_matches_real_tiny_models(arch, labels):
    torch.manual_seed(0)
    model = getattr(transformers, arch)(bert_config(TINY, num_labels=labels))
    assert fp.param_count(TINY, arch, labels) == numel(model)
    assert fp.param_bytes(TINY, arch, labels) == sum(p.numel() * p.element_size() for p in model.parameters())


def test_param_count_matches_bert_base_pretraining():
    """The MultiBERTs' class at BERT-base size, randomly initialised (~0.5 GB, a few seconds)."""
    model = transformers.BertForPreTraining(bert_config(fp.BERT_BASE))
    assert fp.param_count(fp.BERT_BASE, "BertForPreTraining") == numel(model) == 110_106_428
    del model
    # the other classes at BERT-base size, without allocating their weights
    with torch.device("meta"):
        for arch in ("BertModel", "BertForMaskedLM", "BertForSequenceClassification"):
            assert fp.param_count(fp.BERT_BASE, arch, 3) == numel(
                getattr(transformers, arch)(bert_config(fp.BERT_BASE, num_labels=3))
            ), arch


def test_checkpoint_weights_file_size(tmp_path):
    shape = fp.Shape(layers=2, hidden=64, heads=2, ff=256, vocab=500, positions=64)
    model = transformers.BertForSequenceClassification(bert_config(shape, num_labels=3))
    model.save_pretrained(tmp_path, safe_serialization=True)
    real = (tmp_path / "model.safetensors").stat().st_size
    tensors = sum(t for _, t in fp._parts(shape, "BertForSequenceClassification", 3).values())
    predicted = fp.param_bytes(shape, "BertForSequenceClassification", 3) + fp.HEADER_BYTES_PER_TENSOR * tensors
    assert abs(predicted - real) / real < 0.01, (predicted, real)
    assert fp.checkpoint_bytes(shape, "BertForSequenceClassification", 3) >= real


# ---------------------------------------------------------------------------------------------- statistics
@pytest.fixture(scope="module")
def tiny_config():
    """config.yaml with 3 seeds of a tiny pre-trained shape and an mlm variant set on two fractions."""
    config = copy.deepcopy(fp.load_config())
    config["seeds"] = [1, 2, 3]
    config.pop("pairs", None)
    config["tasks"] = ["mlm"]
    config["models"]["pretrain"].update(
        num_hidden_layers=2,
        hidden_size=64,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=64,
        vocab_size=200,
        objective="mlm",  # BertForMaskedLM seeds, as the models below
    )
    config["variants"] = {
        "vanilla": {"components": []},
        "ff_attn_half": {"components": ["ff", "attn"], "stats_fraction": 0.5},
        "all": {"components": ["ff", "attn", "res", "pooler"], "residual": "all", "stats_fraction": 1.0},
    }
    config["task_variants"] = {"mlm": ["vanilla", "ff_attn_half", "all"], "glue": ["vanilla"]}
    config["many"] = {"variants": []}
    return fp.cfg.validate_config(config)


@pytest.fixture(scope="module")
def tiny_statistics(tiny_config):
    shape = fp.model_shape(tiny_config)
    models = []
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        models.append(transformers.BertForMaskedLM(bert_config(shape)).eval())
    g = torch.Generator().manual_seed(0)
    batches = [
        {
            "input_ids": torch.randint(5, shape.vocab, (4, 16), generator=g),
            "attention_mask": torch.ones(4, 16, dtype=torch.long),
        }
        for _ in range(2)
    ]
    names, pairs = fp._names_pairs(tiny_config)
    by_fraction = fp.fraction_features(tiny_config, "mlm")
    stats = {
        f: collect_statistics(models, batches, names=names, pairs=pairs, features=feats)
        for f, feats in by_fraction.items()
    }
    return shape, models[0].config, names, pairs, by_fraction, stats


def test_fraction_features(tiny_statistics):
    *_, by_fraction, _ = tiny_statistics
    ff_attn = [f"ctx.{l}" for l in range(2)] + [f"ff.{l}" for l in range(2)]
    # BertForMaskedLM has no pooler: "all" needs no pooler statistics
    assert by_fraction == {0.5: ff_attn, 1.0: sorted(ff_attn + [f"res.{i}" for i in range(5)])}


def test_accumulators_match_statistics_in_memory(tiny_statistics):
    shape, _, names, pairs, by_fraction, stats = tiny_statistics
    for f, feats in by_fraction.items():
        dims = [fp.feature_dim(shape, x) for x in feats]
        assert stats[f].nbytes() == fp.accumulator_bytes(len(names), len(pairs), dims)


def test_statistics_file_sizes(tiny_config, tiny_statistics, tmp_path):
    shape, _, names, pairs, by_fraction, stats = tiny_statistics
    meta = {"text": "results/data/text/books.txt", "fraction": "0.5", "examples": "1000", "tokens": "20000"}
    total = 0
    for f, feats in by_fraction.items():
        path = tmp_path / f"fraction{f:g}.safetensors"
        stats[f].save(path, metadata=meta)
        real = path.stat().st_size
        total += real
        predicted = fp.statistics_file_bytes(names, pairs, feats, shape, metadata_bytes=len(str(meta)))
        assert abs(predicted - real) / real < 0.01, (f, predicted, real)
    job = fp.estimate("collect_statistics", tiny_config, "mlm")
    assert job.outputs_per_job == 2
    assert abs(job.disk_per_job - total) / total < 0.03, (job.disk_per_job, total)


def test_permutation_file_sizes(tiny_config, tiny_statistics, tmp_path):
    shape, model_config, names, pairs, _, stats = tiny_statistics
    variant = fp.cfg.variant_options(tiny_config, "all")
    perms = compute_permutations(stats[1.0], *pairs[0], variant, model_config)
    predicted_perms = fp.permutation_perms(tiny_config, "mlm", "all")
    assert {k: len(v) for k, v in perms.items()} == predicted_perms
    meta = {"variant": "all", "options": repr(variant.to_dict()), "function_preserving": "True", "pair": "seed1-seed2"}
    save_permutations(perms, tmp_path / "p.safetensors", metadata=meta)
    real = (tmp_path / "p.safetensors").stat().st_size
    predicted = fp.permutation_file_bytes(predicted_perms, metadata_bytes=len(str(meta)))
    assert abs(predicted - real) / real < 0.02, (predicted, real)


def test_bert_base_statistics_file_by_hand():
    """5 seeds, 10 pairs, FF + attention features of BERT-base: the data bytes worked out by hand."""
    names = [f"seed{s}" for s in range(1, 6)]
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    feats = [f"ff.{l}" for l in range(12)] + [f"ctx.{l}" for l in range(12)]
    data = 10 * 4 * (12 * 3072**2 + 12 * 768**2) + 2 * 8 * 5 * (12 * 3072 + 12 * 768)
    assert data == 4_816_650_240
    size = fp.statistics_file_bytes(names, pairs, feats, fp.BERT_BASE)
    assert data < size < data + 64_000


def test_statistics_state_matches_bench():
    """The bench's stats_peak_mb_pair_base (one pair, all features, no pooler) is the same sum."""
    dims = bench.feature_dims(12, 768)
    for seeds in (2, 5):
        pairs = seeds * (seeds - 1) // 2
        ours = fp.accumulator_bytes(seeds, pairs, dims) + sum(
            fp.statistics_workspace_bytes(seeds, pairs, dims).values()
        )
        assert ours == sum(bench.statistics_bytes(seeds, 12, 768).values())
    one_pair = fp.accumulator_bytes(2, 1, dims) + sum(fp.statistics_workspace_bytes(2, 1, dims).values())
    assert one_pair / 2**20 == pytest.approx(1187.3, abs=0.05)  # docs/performance.md, measured +1224 MiB


# ---------------------------------------------------------------------------------------------- activations
def test_training_activations_bound_saved_tensors():
    """What autograd saves for one step of BertForSequenceClassification (dropout on, as in fine-tuning)
    lies below the formula, and the formula is not far above it."""
    shape = fp.Shape(layers=8, hidden=128, heads=2, ff=512, vocab=300, positions=128)
    B, T = 4, 32
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(bert_config(shape, num_labels=3)).train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            saved[s.data_ptr()] = s.nbytes()
        return t

    x = torch.randint(5, shape.vocab, (B, T))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logits = model(input_ids=x, attention_mask=torch.ones_like(x), token_type_ids=torch.zeros_like(x)).logits
        torch.nn.functional.cross_entropy(logits, torch.zeros(B, dtype=torch.long))
    measured = sum(saved.values())
    predicted = fp.training_activation_bytes(shape, B, T)
    assert measured <= predicted <= 1.35 * measured, (predicted, measured)


# ---------------------------------------------------------------------------------------------- API
def test_mem_mb(tiny_config):
    e = fp.estimate("collect_statistics", tiny_config, "mlm")
    mb = fp.mem_mb("collect_statistics", tiny_config, "mlm")
    assert mb % fp.ROUND_MB == 0 and mb * fp.MB >= fp.SAFETY * e.host_bytes > (mb - fp.ROUND_MB) * fp.MB
    assert e.host["overhead"] == fp.OVERHEAD_BYTES
    assert fp.mem_mb("collect_statistics", tiny_config) == mb  # task None: the largest task (only mlm)
    with pytest.raises(KeyError, match="build_texts"):
        fp.mem_mb("build_texts", tiny_config, "mlm")
    with pytest.raises(ValueError, match="GLUE"):
        fp.mem_mb("finetune", tiny_config, "mlm")


def test_paper_scale_parts():
    """BERT-base, 5 seeds, 10 pairs on a GPU: the parts that dominate, worked out by hand."""
    config = fp.load_config()
    config.update(seeds=[1, 2, 3, 4, 5], device="cuda", tasks=["mlm", "rte"])
    config["models"]["source"] = "hub"
    config["data"]["glue"]["source"] = "hub"  # the real GLUE sizes
    config["finetune"]["max_train_examples"] = None
    config["task_variants"] = {"mlm": ["ff_attn"], "glue": ["vanilla", "all"]}
    m = 4 * 110_106_428
    sweep = fp.estimate("sweep_lambdas", config, "mlm")
    assert sweep.gpu["seed models"] == 5 * m and sweep.host["model being loaded"] == m
    merge = fp.estimate("merge_checkpoints", config, "mlm")
    assert merge.host["seed models"] == 5 * m and not merge.gpu  # merging runs on the CPU
    assert merge.outputs_per_job == 10 * len(config["merged_lambdas"])
    stats = fp.estimate("collect_statistics", config, "mlm")
    assert stats.gpu["accumulators"] == 8 * (10 * 12 * (3072**2 + 768**2) + 2 * 5 * 12 * (3072 + 768))
    ft = fp.estimate("finetune", config, "rte")
    assert ft.jobs == 5 and ft.gpu["weights+grads+AdamW"] == 5 * 4 * (109_482_240 + 2 * 768 + 2)  # 2 labels
    assert ft.host["tokenized splits"] == (2490 + 277) * 128 * fp.TOKENIZE_BYTES_PER_TOKEN


def test_cli_merges_config_like_snakemake(capsys, tmp_path):
    config = fp.load_config(["configs/paper.yaml"])
    assert config["models"]["source"] == "hub" and config["finetune"]["batch_size"] == 8
    (tmp_path / "part.yaml").write_text("evaluation: {batch_size: 7}\n")
    config = fp.load_config([tmp_path / "part.yaml"])
    # deep merge: the nested key config.yaml sets beside it (schema default: null) is kept
    assert config["evaluation"] == {"batch_size": 7, "max_examples": 100}
    assert fp.main(["--configfile", "configs/paper.yaml"]) == 0
    out = capsys.readouterr().out
    for rule in fp.HEAVY_RULES:
        assert f"| {rule} |" in out
    with pytest.raises(SystemExit, match="nope.yaml"):
        fp.main(["--configfile", "nope.yaml"])


def test_overhead_covers_a_fresh_interpreter():
    """OVERHEAD_BYTES >= the RSS of python with torch, transformers' BERT classes and scipy imported."""
    code = (
        "import torch, transformers, scipy.optimize\n"
        "from transformers import BertForPreTraining, BertForSequenceClassification\n"
        "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    rss = int(out.split()[-1]) * 1024
    assert 0.5 * fp.OVERHEAD_BYTES < rss <= fp.OVERHEAD_BYTES, rss


def test_statistics_pass_memory_on_cpu():
    """The process's peak growth while collect_statistics runs (3 random BERTs, 4 layers, hidden 256, every
    feature but q/k, 16 x 128-token batches; in a fresh interpreter) against statistics_pass_bytes."""
    code = r"""
import gc, sys, torch, transformers
from permerge.tooling import footprint as fp
from permerge.alignment.stats import collect_statistics, feature_names
torch.set_num_threads(1)
def rss():
    s = open("/proc/self/status").read()
    return [int(s.split(k)[1].split()[0]) * 1024 for k in ("VmRSS:", "VmHWM:")]
S, B, T = 3, 16, 128
shape = fp.Shape(layers=4, hidden=256, heads=4, ff=1024, vocab=1000, positions=512)
c = transformers.BertConfig(vocab_size=1000, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                            intermediate_size=1024)
models = [transformers.BertForMaskedLM(c).eval() for _ in range(S)]
feats = [x for x in feature_names(models[0]) if not x.startswith(("q.", "k."))]
g = torch.Generator().manual_seed(0)
batches = [{"input_ids": torch.randint(5, 1000, (B, T), generator=g),
            "attention_mask": torch.ones(B, T, dtype=torch.long)} for _ in range(3)]
collect_statistics(models, batches[:1], names=["a", "b", "c"], features=["res.0"])  # allocator warm-up
gc.collect()
open("/proc/self/clear_refs", "w").write("5")
before = rss()[0]
collect_statistics(models, batches, names=["a", "b", "c"], features=feats)
peak = rss()[1] - before
parts = fp.statistics_pass_bytes(shape, S, 3, [fp.feature_dim(shape, x) for x in feats], B, T)
print(peak, sum(parts.values()))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    measured, predicted = (int(x) for x in out.split())
    assert 0.8 * predicted <= measured <= fp.SAFETY * predicted, (measured, predicted)


def test_architecture_follows_the_pretraining_objective():
    config = copy.deepcopy(fp.load_config())
    assert fp.architecture(config, "mlm") == "BertForPreTraining"  # embedded default: mlm_nsp, with a pooler
    assert fp.architecture(config, "rte") == "BertForSequenceClassification"
    config["models"]["pretrain"]["objective"] = "mlm"
    assert fp.architecture(config, "mlm") == "BertForMaskedLM" and not fp.has_pooler("BertForMaskedLM")
    config["models"]["source"] = "hub"
    assert fp.architecture(config, "mlm") == "BertForPreTraining"
