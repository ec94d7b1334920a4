"""Streamed statistics: numerics against numpy, hook points, one pass per model, I/O, batching."""

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertTokenizerFast

from permerge.stats import Statistics, _Accumulator, collect_statistics, feature_names, first_fraction, text_batches

torch.set_num_threads(1)

CONFIG = dict(vocab_size=97, hidden_size=36, num_attention_heads=3, intermediate_size=50, num_hidden_layers=2,
              max_position_embeddings=24, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
              initializer_range=0.2)


def make_models(cls=BertForSequenceClassification, n=3):
    config = BertConfig(**CONFIG)
    out = []
    for seed in range(n):
        torch.manual_seed(seed)
        out.append(cls(config).eval())
    return out


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
    np.testing.assert_allclose(stats.cross("res.4", "a", "c").numpy(),
                               np.cov(a.T, c.T, bias=True)[:d, d:], atol=1e-6)
    np.testing.assert_allclose(stats.mean("ctx.0", "b").numpy(), ref[1][1].mean(0), atol=1e-6)


def test_every_feature_has_the_documented_size_and_a_diagonal_of_one():
    ms = make_models(BertForMaskedLM, n=1)
    twin = make_models(BertForMaskedLM, n=1)[0]  # same seed: identical model
    stats = collect_statistics([ms[0], twin], make_batches(num=2), names=["x", "y"])
    L = CONFIG["num_hidden_layers"]
    assert stats.features == feature_names(ms[0])
    assert "pooler" not in stats.features  # BertForMaskedLM has no pooler
    assert sorted(stats.features) == sorted([f"res.{i}" for i in range(2 * L + 1)]
                                            + [f"{k}.{l}" for k in ("ff", "ctx", "q", "k") for l in range(L)])
    for f in stats.features:
        corr = stats.correlation(f, "x", "y")
        dim = CONFIG["intermediate_size"] if f.startswith("ff.") else CONFIG["hidden_size"]
        assert corr.shape == (dim, dim)
        np.testing.assert_allclose(torch.diagonal(corr).numpy(), 1.0, atol=1e-6)


def test_one_forward_per_model_per_batch_and_no_head():
    ms = make_models(BertForMaskedLM, n=2)
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
    stats = collect_statistics(ms, make_batches(num=2), names=["a", "b", "c"], pairs=[("a", "c")],
                               features=["res.0", "ff.1"])
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
    stats = Statistics(["a", "b"], [("a", "b")], {"f": 4},
                       {"mean/f": torch.zeros(2, 2, dtype=torch.float64), "m2/f": m2, "cross/f/a/b": cross})
    corr = stats.correlation("f", "a", "b")
    assert torch.isfinite(corr).all()
    np.testing.assert_allclose(corr.numpy(), [[0.0, 0.0], [0.0, 1.0]])


def test_save_and_load_roundtrip(tmp_path):
    ms = make_models(n=2)
    stats = collect_statistics(ms, make_batches(num=2), names=["s1", "s2"])
    path = tmp_path / "stats.safetensors"
    stats.save(path, metadata={"config": "tiny"})
    loaded = Statistics.load(path)
    assert loaded.names == ["s1", "s2"] and loaded.pairs == [("s1", "s2")]
    assert loaded.count == stats.count and loaded.metadata == {"config": "tiny"}
    assert loaded._tensors == {}  # nothing read yet
    for f in ("res.3", "ff.0", "pooler"):
        assert torch.equal(loaded.correlation(f, "s2", "s1"), stats.correlation(f, "s2", "s1"))
        assert torch.equal(loaded.var(f, "s1"), stats.var(f, "s1"))
    assert {k.split("/")[1] for k in loaded._tensors} == {"res.3", "ff.0", "pooler"}  # read lazily
    assert not list(tmp_path.glob(".*tmp"))


# ------------------------------------------------------------------------------------------- batching

def tiny_tokenizer():
    words = "the a cat dog sat on mat ran fast slow red blue big small house tree bird sings".split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words
    tok = Tokenizer(models.WordPiece(vocab={w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]")


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
