"""Streamed statistics: numerics against numpy, hook points, one pass per model, I/O, batching."""

import numpy as np
import pytest
import torch
from safetensors import safe_open
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertTokenizerFast

from permerge.alignment.stats import (
    Statistics,
    _Accumulator,
    collect_statistics,
    feature_names,
    first_fraction,
    fraction_count,
    segmented_batches,
    text_batches,
    write_safetensors,
)
from tests import tiny

torch.set_num_threads(1)

CONFIG = dict(
    vocab_size=97,
    hidden_size=36,
    num_attention_heads=3,
    intermediate_size=50,
    num_hidden_layers=2,
    max_position_embeddings=24,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    initializer_range=0.2,
)


def make_models(head="cls", n=3):
    return tiny.models(tiny.bert_config(CONFIG), head, seeds=range(n))


def make_batches(num=4, batch=5, length=12, vocab=97, seed=0):
    g = torch.Generator().manual_seed(seed)
    batches = []
    for i in range(num):
        ids = torch.randint(0, vocab, (batch, length - i), generator=g)  # varying lengths
        mask = torch.ones_like(ids)
        mask[1, 6:] = 0
        mask[3, 2:] = 0
        tt = torch.zeros_like(ids)
        tt[:, 5:] = 1
        batches.append(dict(input_ids=ids, attention_mask=mask, token_type_ids=tt))
    return batches


def raw_features(model, batches):
    """Reference features computed without the statistics hooks (hidden states / manual attention)."""
    res, ctx0, pooled = [], [], []
    layer = model.bert.encoder.layer[0].attention.self
    H = model.config.num_attention_heads
    with torch.no_grad():
        for b in batches:
            out = model.bert(**b, output_hidden_states=True)
            keep = b["attention_mask"].bool()
            res.append([h[keep] for h in out.hidden_states])
            # context of layer 0 from its input hidden state, by hand
            x = out.hidden_states[0]
            B, T, d = x.shape
            split = lambda t: t.view(B, T, H, d // H).transpose(1, 2)
            q, k, v = split(layer.query(x)), split(layer.key(x)), split(layer.value(x))
            scores = q @ k.transpose(-1, -2) / (d // H) ** 0.5
            scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
            c = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, d)
            ctx0.append(c[keep])
            pooled.append(out.pooler_output)
    cat = lambda xs: torch.cat(xs).double().numpy()
    return ([cat([r[i] for r in res]) for i in range(len(res[0]))], cat(ctx0), cat(pooled))


def test_streamed_correlation_equals_numpy_corrcoef():
    ms = make_models()
    batches = make_batches()
    stats = collect_statistics(ms, batches, names=["a", "b", "c"])
    ref = [raw_features(m, batches) for m in ms]
    n_tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    assert stats.count["res.0"] == n_tokens and stats.count["ff.1"] == n_tokens
    assert stats.count["pooler"] == sum(b["input_ids"].shape[0] for b in batches)
    d = CONFIG["hidden_size"]
    for x, y in (("a", "b"), ("a", "c"), ("c", "b")):  # (c, b) reads the stored (b, c) block transposed
        i, j = "abc".index(x), "abc".index(y)
        # hidden_states[l + 1] is the output LayerNorm of layer l = res.{2l+2}; [0] is res.0
        for node, hs in ((0, 0), (2, 1), (4, 2)):
            want = np.corrcoef(ref[i][0][hs].T, ref[j][0][hs].T)[:d, d:]
            got = stats.correlation(f"res.{node}", x, y)
            assert got.dtype == torch.float64
            np.testing.assert_allclose(got.numpy(), want, atol=1e-6)
        want = np.corrcoef(ref[i][1].T, ref[j][1].T)[:d, d:]
        np.testing.assert_allclose(stats.correlation("ctx.0", x, y).numpy(), want, atol=1e-6)
        want = np.corrcoef(ref[i][2].T, ref[j][2].T)[:d, d:]
        np.testing.assert_allclose(stats.correlation("pooler", x, y).numpy(), want, atol=1e-6)
    # means, variances and covariances against numpy too
    a, c = ref[0][0][2], ref[2][0][2]
    np.testing.assert_allclose(stats.mean("res.4", "a").numpy(), a.mean(0), atol=1e-6)
    np.testing.assert_allclose(stats.var("res.4", "c").numpy(), c.var(0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(stats.cross("res.4", "a", "c").numpy(), np.cov(a.T, c.T, bias=True)[:d, d:], atol=1e-6)
    np.testing.assert_allclose(stats.mean("ctx.0", "b").numpy(), ref[1][1].mean(0), atol=1e-6)


def test_every_feature_has_the_documented_size_and_a_diagonal_of_one():
    ms = make_models("mlm", n=1)
    twin = make_models("mlm", n=1)[0]  # same seed: identical model
    stats = collect_statistics([ms[0], twin], make_batches(num=2), names=["x", "y"])
    L = CONFIG["num_hidden_layers"]
    assert stats.features == feature_names(ms[0])
    assert "pooler" not in stats.features  # BertForMaskedLM has no pooler
    assert sorted(stats.features) == sorted(
        [f"res.{i}" for i in range(2 * L + 1)] + [f"{k}.{l}" for k in ("ff", "ctx", "q", "k") for l in range(L)]
    )
    for f in stats.features:
        corr = stats.correlation(f, "x", "y")
        dim = CONFIG["intermediate_size"] if f.startswith("ff.") else CONFIG["hidden_size"]
        assert corr.shape == (dim, dim)
        np.testing.assert_allclose(torch.diagonal(corr).numpy(), 1.0, atol=1e-6)


def test_one_forward_per_model_per_batch_and_no_head():
    ms = make_models("mlm", n=2)
    calls = {"base": [0, 0], "head": [0, 0]}
    for i, m in enumerate(ms):
        m.bert.register_forward_hook(lambda *_, i=i: calls["base"].__setitem__(i, calls["base"][i] + 1))
        m.cls.register_forward_hook(lambda *_, i=i: calls["head"].__setitem__(i, calls["head"][i] + 1))
    ms[0].train()
    batches = make_batches(num=3)
    collect_statistics(ms, iter(batches), names=["a", "b"])  # a one-shot iterator is enough
    assert calls == {"base": [3, 3], "head": [0, 0]}
    assert ms[0].training and not ms[1].training  # training flags restored


def test_pairs_and_features_subset():
    ms = make_models()
    stats = collect_statistics(
        ms, make_batches(num=2), names=["a", "b", "c"], pairs=[("a", "c")], features=["res.0", "ff.1"]
    )
    assert stats.features == ["res.0", "ff.1"]
    assert stats.correlation("ff.1", "c", "a").shape == (50, 50)
    with pytest.raises(KeyError, match="pair"):
        stats.correlation("ff.1", "a", "b")
    with pytest.raises(KeyError, match="no statistics for feature 'ctx.0'"):
        stats.correlation("ctx.0", "a", "c")
    with pytest.raises(ValueError, match="not available"):
        collect_statistics(ms, make_batches(num=1), names=["a", "b", "c"], features=["ff.7"])
    with pytest.raises(ValueError, match="names"):
        collect_statistics(ms, make_batches(num=1), names=["a", "b"])


def test_chan_merge_is_stable_for_large_offsets():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((900, 6))
    x = 1e4 + z @ rng.standard_normal((6, 5))  # offsets dwarf the spread
    y = -3e3 + 0.01 * z @ rng.standard_normal((6, 5))
    x, y = x.astype(np.float32), y.astype(np.float32)
    acc = _Accumulator(2, 5, [(0, 1)], "cpu")
    for s in (slice(0, 1), slice(1, 300), slice(300, 301), slice(301, 900)):  # uneven batches
        acc.update([torch.from_numpy(x[s]), torch.from_numpy(y[s])])
    xf, yf = x.astype(np.float64), y.astype(np.float64)
    got = acc.cross[0, 1].numpy() / np.sqrt(np.outer(acc.m2[0].numpy(), acc.m2[1].numpy()))
    np.testing.assert_allclose(got, np.corrcoef(xf.T, yf.T)[:5, 5:], atol=1e-6)
    np.testing.assert_allclose(acc.mean[0].numpy(), xf.mean(0), rtol=1e-12)
    np.testing.assert_allclose(acc.m2[1].numpy() / 900, yf.var(0), rtol=1e-6)
    assert acc.n == 900


def test_zero_variance_gives_zero_correlation():
    cross = torch.tensor([[0.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    m2 = torch.tensor([[0.0, 4.0], [1.0, 1.0]], dtype=torch.float64)
    stats = Statistics(
        ["a", "b"],
        [("a", "b")],
        {"f": 4},
        {"mean/f": torch.zeros(2, 2, dtype=torch.float64), "m2/f": m2, "cross/f/a/b": cross},
    )
    corr = stats.correlation("f", "a", "b")
    assert torch.isfinite(corr).all()
    np.testing.assert_allclose(corr.numpy(), [[0.0, 0.0], [0.0, 1.0]])


def test_save_and_load_roundtrip(tmp_path):
    ms = make_models(n=2)
    stats = collect_statistics(ms, make_batches(num=2), names=["s1", "s2"])
    path = tmp_path / "stats.safetensors"
    stats.save(path, metadata={"config": "tiny"}, cross_dtype=torch.float64)  # exact storage
    loaded = Statistics.load(path)
    assert loaded.names == ["s1", "s2"] and loaded.pairs == [("s1", "s2")]
    assert loaded.count == stats.count and loaded.metadata == {"config": "tiny"}
    assert loaded._tensors == {}  # nothing read yet
    for f in ("res.3", "ff.0", "pooler"):
        assert torch.equal(loaded.correlation(f, "s2", "s1"), stats.correlation(f, "s2", "s1"))
        assert torch.equal(loaded.cross(f, "s1", "s2"), stats.cross(f, "s1", "s2"))
        assert torch.equal(loaded.var(f, "s1"), stats.var(f, "s1"))
    # read lazily; means/M2 are kept, cross blocks never (memory must not grow with the pairs matched)
    assert {k.split("/")[1] for k in loaded._tensors} == {"res.3", "ff.0", "pooler"}
    assert not any(k.startswith("cross/") for k in loaded._tensors)
    assert not list(tmp_path.glob(".*tmp"))
    # default storage: float32 cross blocks, float64 means/M2; correlation still float64 and close
    small = tmp_path / "small.safetensors"
    stats.save(small, metadata={"config": "tiny"}, features=["ff.0", "res.3"])
    with safe_open(str(small), framework="pt") as fh:
        dtypes = {k: fh.get_slice(k).get_dtype() for k in fh.keys()}
    assert dtypes == {
        "mean/ff.0": "F64",
        "m2/ff.0": "F64",
        "cross/ff.0/s1/s2": "F32",
        "mean/res.3": "F64",
        "m2/res.3": "F64",
        "cross/res.3/s1/s2": "F32",
    }
    assert small.stat().st_size < 0.6 * path.stat().st_size
    f32 = Statistics.load(small)
    assert f32.features == ["ff.0", "res.3"] and f32.count == {
        "ff.0": stats.count["ff.0"],
        "res.3": stats.count["res.3"],
    }
    corr = f32.correlation("ff.0", "s1", "s2")
    assert corr.dtype == torch.float64 and f32.cross("ff.0", "s1", "s2").dtype == torch.float64
    diff = (corr - stats.correlation("ff.0", "s1", "s2")).abs().max()
    assert 0 < diff < 1e-6  # float32 rounding of the block, nothing more
    # a loaded file re-saves (read block by block, nothing cached) to the same bytes as the original
    again = tmp_path / "again.safetensors"
    loaded.save(again, features=["ff.0", "res.3"])
    assert again.read_bytes() == small.read_bytes() and not any(k.startswith("cross/") for k in loaded._tensors)
    with pytest.raises(KeyError, match=r"cannot save features \['ff.9'\]"):
        stats.save(tmp_path / "x.safetensors", features=["ff.0", "ff.9"])
    assert not (tmp_path / "x.safetensors").exists()


# ------------------------------------------------------------------------------------------- batching


def tiny_tokenizer():
    words = "the a cat dog sat on mat ran fast slow red blue big small house tree bird sings".split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words
    tok = Tokenizer(models.WordPiece(vocab={w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return BertTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def test_text_batches_single_pairs_and_strings():
    tok = tiny_tokenizer()
    texts = ["the cat sat", "a dog ran fast on the mat", "red bird", "big house", "the tree"]
    batches = list(text_batches(tok, texts, batch_size=2, max_length=6))
    assert [b["input_ids"].shape[0] for b in batches] == [2, 2, 1]
    assert batches[0]["input_ids"].shape[1] == 6  # truncated to max_length
    assert batches[0]["input_ids"][0].tolist() == [2, 5, 7, 9, 3, 0]  # [CLS] the cat sat [SEP] [PAD]
    assert batches[0]["attention_mask"][0].tolist() == [1, 1, 1, 1, 1, 0]
    same = list(text_batches(tok, [{"text": t} for t in texts], batch_size=2, max_length=6))
    assert all(torch.equal(x["input_ids"], y["input_ids"]) for x, y in zip(batches, same))
    pairs = [{"s1": "the cat", "s2": "sat on the mat"}, {"s1": "a dog", "s2": "ran"}]
    (b,) = text_batches(tok, pairs, batch_size=8, text_keys=("s1", "s2"))
    assert b["token_type_ids"][0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1]
    assert b["token_type_ids"][1][:4].tolist() == [0, 0, 0, 0] and b["token_type_ids"][1][4:6].tolist() == [1, 1]


def test_text_batches_feed_collect_statistics():
    tok = tiny_tokenizer()
    config = BertConfig(**{**CONFIG, "vocab_size": len(tok)})
    torch.manual_seed(0)
    ms = [BertForMaskedLM(config).eval() for _ in range(2)]
    pairs = [{"p": "the cat", "h": "sat on the mat"}, {"p": "a dog", "h": "ran"}] * 3
    stats = collect_statistics(ms, text_batches(tok, pairs, batch_size=4, text_keys=("p", "h")), names=["a", "b"])
    assert stats.num_tokens == 3 * (9 + 6)


def test_first_fraction():
    xs = list(range(10))
    assert first_fraction(xs, 1.0) == xs
    assert first_fraction(xs, 0.3) == [0, 1, 2]
    assert first_fraction(xs, 0.001) == [0]  # at least one example
    assert first_fraction(list(range(1000)), 0.001) == [0]
    with pytest.raises(ValueError):
        first_fraction(xs, 0.0)


# ------------------------------------------------------------------------------------ one pass, many prefixes


def sentences(n, seed=0):
    import random

    words = "the a cat dog sat on mat ran fast slow red blue big small house tree bird sings".split()
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(1, 9))) for _ in range(n)]


def test_segmented_batches_never_straddle_a_prefix_end():
    tok = tiny_tokenizer()
    texts = sentences(23)
    batches, after = segmented_batches(tok, texts, [5, 11, 23], batch_size=4, max_length=16, by_length=False)
    batches = list(batches)
    assert after == [2, 4, 7]
    assert [len(b["input_ids"]) for b in batches] == [4, 1, 4, 2, 4, 4, 4]
    # the same examples in the same order as plain batching of the whole list
    plain = list(text_batches(tok, texts, batch_size=1, max_length=16))
    plain_rows = [b["input_ids"][0].tolist() for b in plain]

    def rows(bs):
        return [row[m.bool()].tolist() for b in bs for row, m in zip(b["input_ids"], b["attention_mask"])]

    assert rows(batches) == plain_rows
    # by length (the default): each segment holds the same examples, shortest first, so batches pad less
    by_len, after_len = segmented_batches(tok, texts, [5, 11, 23], batch_size=4, max_length=16)
    by_len = list(by_len)
    assert after_len == after and [len(b["input_ids"]) for b in by_len] == [4, 1, 4, 2, 4, 4, 4]
    got = rows(by_len)
    for lo, hi in ((0, 5), (5, 11), (11, 23)):
        assert sorted(got[lo:hi]) == sorted(plain_rows[lo:hi])
        assert [len(r) for r in got[lo:hi]] == sorted(len(r) for r in plain_rows[lo:hi])
    pads = [int((b["attention_mask"] == 0).sum()) for b in by_len]
    assert sum(pads) < sum(int((b["attention_mask"] == 0).sum()) for b in batches)
    assert all(b["token_type_ids"].shape == b["input_ids"].shape for b in by_len)
    # equal ends share their batch count; the fraction rounding is first_fraction's
    _, after = segmented_batches(tok, texts, [1, 1, 23], batch_size=4)
    assert after == [1, 1, 7]
    assert [fraction_count(1000, f) for f in (0.001, 0.0015, 0.1, 1.0)] == [1, 1, 100, 1000]
    assert fraction_count(7, 0.0001) == 1 and len(first_fraction(list(range(7)), 0.3)) == fraction_count(7, 0.3)
    with pytest.raises(ValueError, match="1..23"):
        segmented_batches(tok, texts, [0, 24], batch_size=4)


def test_snapshots_equal_separate_passes_over_each_prefix():
    tok = tiny_tokenizer()
    config = BertConfig(**{**CONFIG, "vocab_size": len(tok)})
    ms = []
    for seed in range(3):
        torch.manual_seed(seed)
        ms.append(BertForSequenceClassification(config).eval())
    names = ["a", "b", "c"]
    texts = sentences(23, seed=1)
    ends = [fraction_count(len(texts), f) for f in (0.25, 0.5, 1.0)]
    assert ends == [5, 11, 23]
    batches, after = segmented_batches(tok, texts, ends, batch_size=4, max_length=16)
    batches = list(batches)
    got = {}

    def keep(k):  # the snapshot shares the live accumulators: copy inside the callback
        return lambda s: got.__setitem__(k, (dict(s.count), {key: t.clone() for key, t in s._tensors.items()}))

    final = collect_statistics(ms, batches, names=names, snapshots={k: keep(k) for k in after})
    assert sorted(got) == after
    for end, k in zip(ends, after):
        count, tensors = got[k]
        ref = collect_statistics(ms, batches[:k], names=names)  # a separate pass over the prefix
        assert count == ref.count and count["res.0"] == sum(int(b["attention_mask"].sum()) for b in batches[:k])
        assert count["pooler"] == end
        for key, want in ref._tensors.items():
            scale = want.abs().max()
            assert (tensors[key] - want).abs().max() <= 1e-9 * scale, key
        # the prefix itself: a pass over text_batches(first_fraction(...)), batched across the earlier ends
        plain = collect_statistics(ms, text_batches(tok, texts[:end], batch_size=4, max_length=16), names=names)
        assert plain.count == count
        for f in ("res.0", "ff.1", "ctx.0", "pooler"):
            np.testing.assert_allclose(tensors[f"mean/{f}"].numpy(), plain._get(f"mean/{f}").numpy(), atol=1e-6)
    assert got[after[-1]][0] == final.count
    # an unreached or invalid snapshot is an error, not a missing file
    with pytest.raises(ValueError, match=r"snapshots after \[8\] batches.*only 7"):
        collect_statistics(ms, batches, names=names, features=["res.0"], snapshots={8: lambda s: None})
    with pytest.raises(ValueError, match="batch counts >= 1"):
        collect_statistics(ms, batches, names=names, features=["res.0"], snapshots={0: lambda s: None})
    with pytest.raises(ValueError, match="no features requested"):
        collect_statistics(ms, batches, names=names, features=[])


def test_write_safetensors_streams_tensors_in_order(tmp_path):
    from safetensors.torch import load_file

    made = []

    def maker(key, t):
        return lambda: made.append(key) or t

    tensors = {
        "x": torch.arange(6, dtype=torch.float64).reshape(2, 3),
        "s": torch.tensor(2.5),
        "y": torch.randn(3, 5, dtype=torch.float64),
        "z": torch.arange(3, dtype=torch.int64),
    }
    entries = [
        ("x", torch.float64, (2, 3), maker("x", tensors["x"])),
        ("s", torch.float64, (), maker("s", tensors["s"])),
        ("y", torch.float32, (3, 5), maker("y", tensors["y"])),
        ("z", torch.int64, (3,), maker("z", tensors["z"])),
    ]
    path = tmp_path / "t.safetensors"
    write_safetensors(path, entries, {"k": "v"})
    assert made == ["x", "s", "y", "z"]
    back = load_file(str(path))
    assert torch.equal(back["x"], tensors["x"]) and back["s"].item() == 2.5 and torch.equal(back["z"], tensors["z"])
    assert back["y"].dtype == torch.float32 and torch.equal(back["y"], tensors["y"].float())
    with safe_open(str(path), framework="pt") as fh:
        assert fh.metadata() == {"k": "v"}
    bad = [("x", torch.float64, (3, 2), lambda: tensors["x"])]
    with pytest.raises(ValueError, match="shape"):
        write_safetensors(tmp_path / "bad.safetensors", bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.safetensors"]  # nothing half-written
