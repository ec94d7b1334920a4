"""Matching: unit behaviour of the matchers and planted recovery end to end."""

import numpy as np
import pytest
import torch
from transformers import BertConfig

from permerge.alignment.matching import (
    compute_permutations,
    match_attention,
    match_ff,
    match_residual,
    required_features,
    residual_correlation,
)
from permerge.alignment.spec import head_assignment, random_permutations, spec_for_model
from permerge.alignment.stats import Statistics, collect_statistics
from permerge.alignment.variants import Variant
from permerge.merging.interpolate import interpolate
from permerge.merging.permute import apply_permutations
from tests import tiny

torch.set_num_threads(1)


def planted_corr(p_true, rng, noise=0.3):
    """A correlation-like matrix whose best signed assignment is p_true (A unit i <-> B unit p_true[i])."""
    n = len(p_true)
    corr = noise * rng.uniform(-1, 1, (n, n))
    corr[np.arange(n), p_true] = 0.9
    return corr


def test_match_ff_recovers_planted_and_uses_signed_correlation():
    rng = np.random.default_rng(0)
    p = rng.permutation(17)
    assert np.array_equal(match_ff(planted_corr(p, rng)), p)
    # strongly *negative* correlations must not attract matches (signed, not absolute)
    corr = np.array([[0.2, -0.99], [-0.99, 0.1]])
    assert match_ff(corr).tolist() == [0, 1]
    assert match_ff(torch.tensor(corr)).dtype == np.int64


def block_perm(heads, inner, dh):
    return np.concatenate([h * dh + inner[j] for j, h in enumerate(heads)])


def test_match_attention_modes():
    rng = np.random.default_rng(1)
    H, dh = 4, 5
    heads = np.array([2, 0, 3, 1])
    inner = [rng.permutation(dh) for _ in range(H)]
    inner_qk = [rng.permutation(dh) for _ in range(H)]
    p = block_perm(heads, inner, dh)
    corr = planted_corr(p, rng)
    corr_qk = planted_corr(block_perm(heads, inner_qk, dh), rng)

    p_ctx, p_qk = match_attention(corr, H, "head_perm")
    assert np.array_equal(p_ctx, p) and np.array_equal(p_qk, p)
    p_ctx, p_qk = match_attention(corr, H, "head_perm", corr_qk=corr_qk)
    assert np.array_equal(p_ctx, p)
    assert np.array_equal(p_qk, block_perm(heads, inner_qk, dh))  # own orders, same head assignment

    p_mono, _ = match_attention(corr, H, "monotonic")
    assert head_assignment(p_mono, H).tolist() == [0, 1, 2, 3]

    with pytest.raises(ValueError, match="divisible"):
        match_attention(corr, 3, "head_perm")
    with pytest.raises(ValueError, match="unknown attention mode"):
        match_attention(corr, H, "heads")


def test_monotonic_keeps_heads_where_head_perm_swaps_them():
    """Hand-worked, H = 2 heads of 2 units. Blocks (A head, B head) of the correlation:
    (0,0) [[.1,.3],[.2,0]]: best inner order swap (.3+.2 = .5 > .1);  (1,1) [[0,.1],[.6,.2]]: swap (.7 > .2);
    (0,1) [[.9,0],[0,.9]]: identity (1.8);  (1,0) [[0,.8],[.7,0]]: swap (1.5).
    head_perm: heads swapped (1.8 + 1.5 = 3.3 > .5 + .7), p = [2, 3, 1, 0];
    monotonic: head j <-> head j with the diagonal blocks' inner orders, p = [1, 0, 3, 2]."""
    corr = np.array([[0.1, 0.3, 0.9, 0.0], [0.2, 0.0, 0.0, 0.9], [0.0, 0.8, 0.0, 0.1], [0.7, 0.0, 0.6, 0.2]])
    assert match_attention(corr, 2, "head_perm")[0].tolist() == [2, 3, 1, 0]
    p_mono, p_mono_qk = match_attention(corr, 2, "monotonic")
    assert p_mono.tolist() == [1, 0, 3, 2] and p_mono_qk.tolist() == [1, 0, 3, 2]


def test_ignore_heads_is_one_flat_assignment_that_may_mix_heads():
    """Hand-worked: each row's maximum (.9, .8, .7, .6) sits in a different column, so the flat optimum is
    those columns, p = [2, 0, 3, 1] (unique: leaving any row's maximum loses). It sends A's head 0 to units
    of both B heads. head_perm instead scores blocks (0,0) .8, (0,1) 1.1, (1,0) .6, (1,1) 1.0, keeps the
    heads (1.8 > 1.7) and takes their inner orders: p = [1, 0, 3, 2]."""
    corr = np.array([[0.1, 0.0, 0.9, 0.0], [0.8, 0.1, 0.0, 0.2], [0.0, 0.2, 0.1, 0.7], [0.0, 0.6, 0.3, 0.0]])
    p_flat, p_flat_qk = match_attention(corr, 2, "ignore_heads")
    assert p_flat.tolist() == [2, 0, 3, 1] and p_flat_qk.tolist() == [2, 0, 3, 1]
    assert match_ff(corr).tolist() == [2, 0, 3, 1]
    assert match_attention(corr, 2, "head_perm")[0].tolist() == [1, 0, 3, 2]


def test_head_perm_uses_summed_block_score_not_single_units():
    """Algorithm 1: head k is chosen by the *sum* of its matched correlations, not by its best unit."""
    H = 2
    corr = np.zeros((4, 4))
    corr[0, 0] = corr[1, 1] = 0.5  # head 0 <-> head 0: score 1.0
    corr[0, 2], corr[1, 3] = 0.9, 0.0  # head 0 <-> head 1: score 0.9 despite the single 0.9
    corr[2, 2] = corr[3, 3] = 0.5  # head 1 <-> head 1: score 1.0
    p, _ = match_attention(corr, H, "head_perm")
    assert head_assignment(p, H).tolist() == [0, 1]
    assert match_attention(corr, H, "ignore_heads")[0].tolist() == [0, 1, 2, 3]


def fake_stats(corrs: dict[str, np.ndarray]) -> Statistics:
    """Statistics whose correlation(f, 'a', 'b') is exactly corrs[f] (unit variances)."""
    tensors, count = {}, {}
    for f, c in corrs.items():
        d = c.shape[0]
        tensors[f"mean/{f}"] = torch.zeros(2, d, dtype=torch.float64)
        tensors[f"m2/{f}"] = torch.ones(2, d, dtype=torch.float64)
        tensors[f"cross/{f}/a/b"] = torch.tensor(c)
        count[f] = 10
    return Statistics(["a", "b"], [("a", "b")], count, tensors)


def test_match_residual_modes():
    rng = np.random.default_rng(2)
    L, d = 2, 6
    p_first, p_last = rng.permutation(d), rng.permutation(d)
    corrs = {f"res.{i}": 0.1 * rng.uniform(-1, 1, (d, d)) for i in range(2 * L + 1)}
    corrs["res.0"] = planted_corr(p_first, rng, noise=0.1)
    corrs["res.4"] = planted_corr(p_last, rng, noise=0.1)
    stats = fake_stats(corrs)
    assert np.array_equal(match_residual(stats, "a", "b", "first", L), p_first)
    assert np.array_equal(match_residual(stats, "a", "b", "last", L), p_last)
    mean = sum(corrs.values()) / len(corrs)
    np.testing.assert_allclose(residual_correlation(stats, "a", "b", "all", L).numpy(), mean)


def test_match_residual_all_follows_the_mean_not_one_node():
    """Hand-worked, L = 1 (nodes res.0 .. res.2), d = 2: res.0 prefers the identity (1.8 vs 0), res.1 and
    res.2 the swap (1.0 vs 0). Mean over the three nodes: identity 0.6, swap 2/3, so `all` swaps while
    `first` keeps the identity."""
    same, swap = np.array([[0.9, 0.0], [0.0, 0.9]]), np.array([[0.0, 0.5], [0.5, 0.0]])
    stats = fake_stats({"res.0": same, "res.1": swap, "res.2": swap})
    np.testing.assert_allclose(residual_correlation(stats, "a", "b", "all", 1).numpy(), [[0.3, 1 / 3], [1 / 3, 0.3]])
    assert match_residual(stats, "a", "b", "all", 1).tolist() == [1, 0]
    assert match_residual(stats, "a", "b", "first", 1).tolist() == [0, 1]
    assert match_residual(stats, "a", "b", "last", 1).tolist() == [1, 0]


def test_compute_permutations_returns_only_requested_perms():
    rng = np.random.default_rng(3)
    L, d, inter = 2, 6, 7
    corrs = {f"res.{i}": rng.uniform(-1, 1, (d, d)) for i in range(2 * L + 1)}
    for l in range(L):
        corrs.update(
            {
                f"ff.{l}": rng.uniform(-1, 1, (inter, inter)),
                f"ctx.{l}": rng.uniform(-1, 1, (d, d)),
                f"q.{l}": rng.uniform(-1, 1, (d, d)),
                f"k.{l}": rng.uniform(-1, 1, (d, d)),
            }
        )
    stats = fake_stats(corrs)
    config = BertConfig(num_hidden_layers=L, hidden_size=d, num_attention_heads=2, intermediate_size=inter)
    get = lambda **kw: compute_permutations(stats, "a", "b", Variant(**kw), config)
    assert get() == {}
    assert set(get(components={"ff"})) == {"ff.0", "ff.1"}
    assert set(get(components={"attn"})) == {"attn.0", "attn.1", "qk.0", "qk.1"}
    assert set(get(components={"res", "pooler"})) == {"res"}  # no pooler statistics -> no pooler perm
    shared = get(components={"attn"})
    assert np.array_equal(shared["qk.1"], shared["attn.1"])
    sep = get(components={"attn"}, qk="separate")
    assert np.array_equal(sep["attn.1"], shared["attn.1"])
    assert np.array_equal(head_assignment(sep["qk.1"], 2), head_assignment(sep["attn.1"], 2))
    # Q/K orders come from the summed q and k correlations
    qk_sum = corrs["q.1"] + corrs["k.1"]
    assert np.array_equal(sep["qk.1"], match_attention(corrs["ctx.1"], 2, "head_perm", qk_sum)[1])
    assert set(required_features(Variant(components={"res"}, residual="first"), L)) == {"res.0"}
    assert set(required_features(Variant(components={"attn", "ff"}, qk="separate"), 1)) == {
        "ff.0",
        "ctx.0",
        "q.0",
        "k.0",
    }


# ------------------------------------------------------------------------------------------- planted recovery

CONFIG = dict(
    vocab_size=89,
    hidden_size=24,
    num_attention_heads=3,
    intermediate_size=40,
    num_hidden_layers=2,
    max_position_embeddings=20,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    initializer_range=0.2,
)


def random_batches(config, num=6, batch=8, length=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(num):
        ids = torch.randint(0, config.vocab_size, (batch, length), generator=g)
        lengths = torch.randint(4, length + 1, (batch,), generator=g)
        mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
        tt = (torch.arange(length)[None, :] >= lengths[:, None] // 2).long()
        out.append(dict(input_ids=ids, attention_mask=mask, token_type_ids=tt))
    return out


@pytest.mark.parametrize("head, qk", [("mlm", "separate"), ("cls", "shared"), ("cls1", "separate")])
def test_planted_recovery_and_flat_interpolation(head, qk):
    config = tiny.bert_config(CONFIG, num_labels=1 if head == "cls1" else 2)
    model_a = tiny.model(config, "mlm" if head == "mlm" else "cls", seed=0)
    spec = spec_for_model(model_a)
    planted = random_permutations(spec, np.random.default_rng(7), qk=qk)
    model_b = apply_permutations(model_a, planted)  # B unit i = A unit planted[i]

    batches = random_batches(config)
    stats = collect_statistics([model_a, model_b], batches, names=["A", "B"])
    variant = Variant(
        components=frozenset({"ff", "attn", "res", "pooler"}), residual="all", attention="head_perm", qk=qk
    )
    perms = compute_permutations(stats, "A", "B", variant, config)
    assert set(perms) == set(planted)
    for name, q in planted.items():
        assert np.array_equal(perms[name], np.argsort(q)), name  # exactly the inverse

    aligned = apply_permutations(model_b, perms)
    params_a = dict(model_a.named_parameters())
    for name, p in aligned.named_parameters():
        torch.testing.assert_close(p, params_a[name], rtol=0, atol=0)

    inputs = batches[0]
    with torch.no_grad():
        ref = model_a(**inputs).logits
        for lam in (0.0, 0.3, 0.5, 1.0):
            out = interpolate(model_a, aligned, lam)(**inputs).logits
            assert (out - ref).abs().max().item() <= 1e-5, lam
        # without alignment the midpoint is a different function
        naive = interpolate(model_a, model_b, 0.5)(**inputs).logits
    assert (naive - ref).abs().max().item() > 1e-3
