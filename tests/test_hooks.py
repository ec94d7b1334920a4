"""Every hooked feature checked by value against a forward pass written out by hand from the modules' weights.

The reference runs the embeddings, then per layer Q/K/V, softmax attention with the padding mask, the
context, the attention output dense + LayerNorm, the intermediate dense + GELU and the output dense +
LayerNorm, and the pooler, in float64. `collect_statistics` must record exactly these features (over the
non-padding tokens, in the same token order): its means, variances and cross-model covariances are compared
with those of the hand-computed features.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from permerge.alignment.stats import collect_statistics, feature_names
from tests import tiny

torch.set_num_threads(1)

CONFIG = dict(
    vocab_size=101,
    hidden_size=32,
    num_attention_heads=2,
    intermediate_size=64,
    num_hidden_layers=2,
    max_position_embeddings=24,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    initializer_range=0.3,
)


def batches():
    g = torch.Generator().manual_seed(0)
    out = []
    for length in (12, 9):
        ids = torch.randint(0, CONFIG["vocab_size"], (4, length), generator=g)
        lengths = torch.tensor([length, 3, length - 2, 5])  # padding in most rows, one full row
        mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
        tt = (torch.arange(length)[None, :] >= 2).long() * mask
        out.append(dict(input_ids=ids, attention_mask=mask, token_type_ids=tt))
    return out


def W(linear):
    return linear.weight.detach().double(), linear.bias.detach().double()


def dense(x, linear):
    w, b = W(linear)
    return x @ w.T + b


def layer_norm(x, ln):
    return F.layer_norm(x, x.shape[-1:], ln.weight.detach().double(), ln.bias.detach().double(), ln.eps)


def hand_features(model, batch) -> dict[str, torch.Tensor]:
    """Every feature of feature_names(model) for one batch, rows = non-padding tokens (pooler: sequences)."""
    bert, cfg = model.bert, model.config
    ids, mask, tt = batch["input_ids"], batch["attention_mask"].bool(), batch["token_type_ids"]
    B, T = ids.shape
    H, d = cfg.num_attention_heads, cfg.hidden_size
    dh = d // H
    emb = bert.embeddings
    x = (
        emb.word_embeddings.weight.detach().double()[ids]
        + emb.position_embeddings.weight.detach().double()[torch.arange(T)][None]
        + emb.token_type_embeddings.weight.detach().double()[tt]
    )
    x = layer_norm(x, emb.LayerNorm)
    feats = {"res.0": x}
    for l, layer in enumerate(bert.encoder.layer):
        att = layer.attention
        q, k, v = (dense(x, m) for m in (att.self.query, att.self.key, att.self.value))
        feats[f"q.{l}"], feats[f"k.{l}"] = q, k
        heads = lambda t: t.view(B, T, H, dh).transpose(1, 2)  # (B, H, T, dh)
        scores = heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(dh)
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))  # padded keys get no weight
        ctx = (scores.softmax(-1) @ heads(v)).transpose(1, 2).reshape(B, T, d)
        feats[f"ctx.{l}"] = ctx
        x = layer_norm(dense(ctx, att.output.dense) + x, att.output.LayerNorm)
        feats[f"res.{2 * l + 1}"] = x
        inter = F.gelu(dense(x, layer.intermediate.dense))  # BERT's exact (erf) GELU
        feats[f"ff.{l}"] = inter
        x = layer_norm(dense(inter, layer.output.dense) + x, layer.output.LayerNorm)
        feats[f"res.{2 * l + 2}"] = x
    out = {f: t[mask] for f, t in feats.items()}
    out["pooler"] = torch.tanh(dense(x[:, 0], bert.pooler.dense))
    return out


@pytest.fixture(scope="module")
def models():
    return tiny.models(tiny.bert_config(CONFIG), "cls", seeds=(0, 1))


def test_hand_forward_matches_the_model(models):
    """The reference itself is right: its last node and pooler equal the model's own outputs."""
    for b in batches():
        with torch.no_grad():
            out = models[0].bert(**b)
        ref = hand_features(models[0], b)
        keep = b["attention_mask"].bool()
        L = CONFIG["num_hidden_layers"]
        torch.testing.assert_close(ref[f"res.{2 * L}"].float(), out.last_hidden_state[keep], atol=2e-5, rtol=0)
        torch.testing.assert_close(ref["pooler"].float(), out.pooler_output, atol=2e-5, rtol=0)


def test_every_hook_records_the_documented_feature(models):
    bs = batches()
    stats = collect_statistics(models, bs, names=["a", "b"])
    per_model = [[hand_features(m, b) for b in bs] for m in models]
    feats = [{f: torch.cat([h[f] for h in hs]) for f in hs[0]} for hs in per_model]
    assert set(stats.features) == set(feature_names(models[0])) == set(feats[0])
    n_tokens = sum(int(b["attention_mask"].sum()) for b in bs)
    for f in stats.features:
        xa, xb = feats[0][f].numpy(), feats[1][f].numpy()
        assert stats.count[f] == len(xa) == (8 if f == "pooler" else n_tokens), f
        for name, x in (("a", xa), ("b", xb)):
            np.testing.assert_allclose(stats.mean(f, name).numpy(), x.mean(0), atol=2e-6, err_msg=f"{f} {name}")
            np.testing.assert_allclose(
                stats.var(f, name).numpy(), x.var(0), rtol=1e-4, atol=1e-8, err_msg=f"{f} {name}"
            )
        # the cross block pairs token t of A with token t of B: padding removed the same way, same order
        d = xa.shape[1]
        np.testing.assert_allclose(
            stats.cross(f, "a", "b").numpy(), np.cov(xa.T, xb.T, bias=True)[:d, d:], atol=2e-6, err_msg=f
        )
