"""Variants, the BERT permutation spec, and function preservation under random permutations."""

import itertools
import zlib

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertForPreTraining, BertForSequenceClassification, BertModel

from permerge.alignment.spec import (
    bert_spec,
    check_spec,
    head_assignment,
    is_function_preserving,
    random_permutations,
    spec_for_model,
)
from permerge.alignment.variants import COMPONENTS, VARIANT_KEYS, Variant, VariantError
from permerge.merging.permute import apply_permutations
from tests import tiny

torch.set_num_threads(1)

# Odd shapes on purpose: no dimension coincides with the hidden size except where the spec says so.
SHAPES = [
    dict(hidden_size=36, num_attention_heads=3, intermediate_size=50, vocab_size=97, num_hidden_layers=1),
    dict(hidden_size=32, num_attention_heads=4, intermediate_size=40, vocab_size=61, num_hidden_layers=2),
    dict(hidden_size=30, num_attention_heads=5, intermediate_size=37, vocab_size=53, num_hidden_layers=3),
    dict(
        hidden_size=24,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=97,
        num_hidden_layers=2,
        type_vocab_size=3,
    ),
]
HEADS = [("mlm", None), ("cls", 3), ("cls", 1), ("pretraining", None)]


def make_config(shape, num_labels=2):
    return tiny.bert_config(shape, max_position_embeddings=19, **tiny.PRESERVING, num_labels=num_labels)


def make_model(config, head, seed=0):
    model = tiny.model(config, head, seed=seed)
    with torch.no_grad():  # non-trivial LayerNorms and biases so that a wrong permutation shows
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.copy_(torch.randn_like(p) * 0.5 + (1.0 if name.endswith("LayerNorm.weight") else 0.0))
    return model


def make_inputs(config, seed=1, batch=3, length=11):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, config.vocab_size, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    tt = torch.zeros_like(ids)
    tt[:, 5:] = 1
    tt[-1, -2:] = config.type_vocab_size - 1
    return dict(input_ids=ids, attention_mask=mask, token_type_ids=tt)


def logits(model, inputs):
    """The model's logits; for BertForPreTraining the MLM logits of every token and the NSP logits, joined."""
    with torch.no_grad():
        out = model(**inputs)
    if hasattr(out, "seq_relationship_logits"):
        return torch.cat([out.prediction_logits.flatten(), out.seq_relationship_logits.flatten()])
    return out.logits


def variant_perms(spec, variant, rng):
    """Random perms for exactly the components a variant permutes, shaped the way its matcher would be."""
    qk = "separate" if variant.qk == "separate" else "shared"
    perms = random_permutations(spec, rng, qk=qk)
    out = {}
    for name, p in perms.items():
        kind = name.split(".")[0]
        comp = {"qk": "attn"}.get(kind, kind)
        if comp not in variant.components:
            continue
        if kind in ("attn", "qk") and variant.attention == "monotonic":
            # heads stay in place, the random within-head orders are kept
            nb = spec.blocks[name]
            dh = len(p) // nb
            heads = head_assignment(p, nb)
            p = np.concatenate([h * dh + p[h * dh : (h + 1) * dh] - heads[h] * dh for h in range(nb)])
            assert head_assignment(p, nb).tolist() == list(range(nb))
        out[name] = p
    return out


def all_variants():
    for r in range(len(COMPONENTS) + 1):
        for comps in itertools.combinations(sorted(COMPONENTS), r):
            for attention, qk in (("head_perm", "separate"), ("head_perm", "shared"), ("monotonic", "separate")):
                if "attn" not in comps and (attention, qk) != ("head_perm", "shared"):
                    continue
                yield Variant(components=frozenset(comps), attention=attention, qk=qk)


# ------------------------------------------------------------------------------------------- variants


def test_variant_from_mapping_and_defaults():
    v = Variant.from_mapping({"components": ["ff", "attn"], "attention": "monotonic"}, name="x")
    assert v.components == frozenset({"ff", "attn"}) and v.attention == "monotonic"
    assert (v.qk, v.residual, v.stats_fraction) == ("shared", "all", None)
    assert v.function_preserving
    assert Variant.from_mapping({}).components == frozenset()
    assert Variant.from_mapping(v.to_dict()) == v
    # within_head is recorded only when set (the permutation files of every other variant stay as they were)
    assert set(v.to_dict()) == set(VARIANT_KEYS) - {"within_head"}
    rotated = Variant.from_mapping({**v.to_dict(), "within_head": "orthogonal"})
    assert set(rotated.to_dict()) == set(VARIANT_KEYS) and Variant.from_mapping(rotated.to_dict()) == rotated
    assert not Variant(components=frozenset({"attn"}), attention="ignore_heads").function_preserving
    # ignore_heads without attention matching permutes nothing that could mix heads
    assert Variant(components=frozenset({"ff"}), attention="ignore_heads").function_preserving


def test_variant_method():
    assert Variant().method == "activation" and Variant.from_mapping({}).method == "activation"
    for method in ("activation", "weight", "hybrid"):
        v = Variant.from_mapping({"components": ["ff", "attn", "res"], "method": method, "qk": "separate"})
        assert v.method == method and v.to_dict()["method"] == method and Variant.from_mapping(v.to_dict()) == v
        assert v.function_preserving  # the matcher's source does not change what is a symmetry
        assert not Variant(components=frozenset({"attn"}), attention="ignore_heads", method=method).function_preserving
    assert Variant(method="weight") != Variant(method="hybrid")  # a rerun when only the method changes
    with pytest.raises(VariantError, match="variant 'variant': option 'method' has unknown value 'data'"):
        Variant(method="data")


@pytest.mark.parametrize(
    "mapping, needle",
    [
        (
            {"residul": "all"},
            "unknown option 'residul' (allowed: attention, components, method, qk, residual, stats_fraction, within_head)",
        ),
        ({"components": "ff"}, "'components' must be a list"),
        ({"components": ["ff", "mlp"]}, "'components' has unknown value 'mlp'"),
        ({"components": [1]}, "'components' must contain strings"),
        ({"attention": "heads"}, "'attention' has unknown value 'heads'"),
        ({"qk": 3}, "'qk' must be a string"),
        ({"method": "weights"}, "'method' has unknown value 'weights' (allowed: activation, weight, hybrid)"),
        ({"method": None}, "'method' must be a string"),
        ({"residual": "middle"}, "'residual' has unknown value 'middle'"),
        ({"stats_fraction": 0}, "'stats_fraction' must satisfy 0 < f <= 1"),
        ({"stats_fraction": 1.5}, "'stats_fraction' must satisfy 0 < f <= 1"),
        ({"stats_fraction": "half"}, "'stats_fraction' must be a number"),
        ({"stats_fraction": True}, "'stats_fraction' must be a number"),
    ],
)
def test_variant_errors_name_variant_and_key(mapping, needle):
    with pytest.raises(VariantError) as info:
        Variant.from_mapping(mapping, name="foo")
    assert str(info.value).startswith("variant 'foo': ")
    assert needle in str(info.value)
    assert isinstance(info.value, ValueError)


# ------------------------------------------------------------------------------------------- spec


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("cls", [BertForPreTraining, BertForMaskedLM, BertForSequenceClassification, BertModel])
def test_spec_matches_model_and_claims_every_hidden_axis(shape, cls):
    config = make_config(shape)
    model = cls(config)
    spec = spec_for_model(model)
    check_spec(spec, model)
    params = dict(model.named_parameters())
    claimed = spec.param_axes()
    d, inter = config.hidden_size, config.intermediate_size
    for name, p in params.items():
        for axis, size in enumerate(p.shape):
            if size in (d, inter):  # every hidden/FF-sized axis must be permuted by some perm
                assert axis in claimed.get(name, {}), f"{name} axis {axis} is not covered"
    L = config.num_hidden_layers
    expected = {"res"} | {f"{k}.{l}" for k in ("ff", "attn", "qk") for l in range(L)}
    if cls is not BertForMaskedLM:
        expected.add("pooler")
    assert set(spec.axes) == expected
    assert spec.sizes["res"] == d and spec.sizes["ff.0"] == inter
    assert spec.blocks["attn.0"] == config.num_attention_heads
    if cls is BertModel:
        assert all(not n.startswith("bert.") for n, _ in spec.param_axes().items())


def test_mlm_spec_permutes_transform_output_and_aliases_tied_decoder():
    config = make_config(SHAPES[0])
    spec = bert_spec(config, mlm_head=True, pooler=False, classifier=False)
    res = set(spec.axes["res"])
    assert ("cls.predictions.transform.dense.weight", 0) in res
    assert ("cls.predictions.transform.dense.weight", 1) in res
    assert ("cls.predictions.transform.LayerNorm.weight", 0) in res
    assert spec.aliases["cls.predictions.decoder.weight"] == "bert.embeddings.word_embeddings.weight"
    assert spec.perms_for("cls.predictions.decoder.weight") == {1: "res"}
    assert spec.perms_for("cls.predictions.bias") == {}
    untied = BertConfig(**SHAPES[0], tie_word_embeddings=False)
    assert ("cls.predictions.decoder.weight", 1) in bert_spec(
        untied, mlm_head=True, pooler=False, classifier=False
    ).axes["res"]


def test_pretraining_spec_pooler_feeds_nsp_head():
    config = make_config(SHAPES[1])
    spec = spec_for_model(BertForPreTraining(config))
    assert set(spec.axes["pooler"]) == {
        ("bert.pooler.dense.weight", 0),
        ("bert.pooler.dense.bias", 0),
        ("cls.seq_relationship.weight", 1),
    }
    assert ("bert.pooler.dense.weight", 1) in spec.axes["res"]
    assert spec.perms_for("cls.seq_relationship.bias") == {}  # two NSP classes: nothing to permute
    assert spec.perms_for("cls.predictions.decoder.weight") == {1: "res"}  # tied decoder, as for MaskedLM
    mlm_only = spec_for_model(BertForMaskedLM(config))
    assert {k: v for k, v in spec.axes.items() if k != "pooler"} == {
        k: v if k != "res" else v + (("bert.pooler.dense.weight", 1),) for k, v in mlm_only.axes.items()
    }
    with pytest.raises(ValueError, match="next-sentence-prediction head needs the pooler"):
        bert_spec(config, mlm_head=True, pooler=False, classifier=False, nsp_head=True)


def test_pretraining_nsp_logits_need_the_seq_relationship_columns():
    """Without permuting the NSP head's input columns, a pooler permutation breaks the NSP logits only: the
    function-preservation check above sees them."""
    from permerge.alignment.spec import PermutationSpec
    from permerge.merging.permute import permute_params

    config = make_config(SHAPES[2])
    model = make_model(config, "pretraining")
    spec = spec_for_model(model)
    inputs = make_inputs(config)
    perms = {"pooler": np.random.default_rng(3).permutation(config.hidden_size)}
    with torch.no_grad():
        ref = model(**inputs)
        good = apply_permutations(model, perms)(**inputs)
    torch.testing.assert_close(good.seq_relationship_logits, ref.seq_relationship_logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(good.prediction_logits, ref.prediction_logits, rtol=0, atol=1e-5)
    pooler_only = tuple(x for x in spec.axes["pooler"] if x[0].startswith("bert."))
    without = PermutationSpec({**spec.axes, "pooler": pooler_only}, spec.sizes, spec.blocks, spec.aliases)
    broken = apply_permutations(model, {})
    with torch.no_grad():
        for name, value in permute_params(dict(model.named_parameters()), without, perms).items():
            dict(broken.named_parameters())[name].copy_(value)
        out = broken(**inputs)
    assert (out.seq_relationship_logits - ref.seq_relationship_logits).abs().max().item() > 1e-2
    torch.testing.assert_close(out.prediction_logits, ref.prediction_logits, rtol=0, atol=0)


def test_check_spec_reports_wrong_sizes():
    config = make_config(SHAPES[1])
    model = BertForMaskedLM(config)
    other = bert_spec(make_config(SHAPES[0]), mlm_head=True, pooler=False, classifier=False)
    with pytest.raises(ValueError, match="expected 36"):
        check_spec(other, model)


def test_unsupported_configs_are_rejected():
    with pytest.raises(ValueError, match="position_embedding_type"):
        bert_spec(
            BertConfig(**SHAPES[0], position_embedding_type="relative_key"),
            mlm_head=True,
            pooler=False,
            classifier=False,
        )
    with pytest.raises(TypeError, match="unsupported model class"):
        spec_for_model(torch.nn.Linear(2, 2))


# ------------------------------------------------------------------------------------------- function preservation


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("head, num_labels", HEADS)
def test_function_preserving_variants_keep_logits(shape, head, num_labels):
    config = make_config(shape, num_labels=num_labels or 2)
    model = make_model(config, head)
    spec = spec_for_model(model)
    inputs = make_inputs(config)
    ref = logits(model, inputs)
    rng = np.random.default_rng(zlib.crc32(repr((shape, head, num_labels)).encode()))
    checked = 0
    for variant in all_variants():
        perms = variant_perms(spec, variant, rng)
        assert is_function_preserving(spec, perms)
        permuted = apply_permutations(model, perms)
        if perms:  # the permutation really moved parameters
            moved = any(not torch.equal(a, b) for a, b in zip(model.parameters(), permuted.parameters()))
            assert moved, variant
        diff = (logits(permuted, inputs) - ref).abs().max().item()
        assert diff <= 1e-4, (variant, diff)
        checked += 1
    assert checked >= 16


@pytest.mark.parametrize("head", ["mlm", "cls", "pretraining"])
def test_ignore_heads_flat_permutation_changes_logits(head):
    config = make_config(SHAPES[1])
    model = make_model(config, head)
    spec = spec_for_model(model)
    inputs = make_inputs(config)
    variant = Variant(components=frozenset({"attn"}), attention="ignore_heads")
    assert not variant.function_preserving
    rng = np.random.default_rng(5)
    d = config.hidden_size
    flat = rng.permutation(d)
    while head_assignment(flat, config.num_attention_heads) is not None:
        flat = rng.permutation(d)
    perms = {"attn.0": flat, "qk.0": flat}
    assert not is_function_preserving(spec, perms)
    diff = (logits(apply_permutations(model, perms), inputs) - logits(model, inputs)).abs().max().item()
    assert diff > 1e-2


def test_mismatched_head_assignment_is_not_preserving():
    config = make_config(SHAPES[1])
    spec = bert_spec(config, mlm_head=True, pooler=False, classifier=False)
    perms = random_permutations(spec, np.random.default_rng(0), qk="separate")
    assert is_function_preserving(spec, perms)
    dh = config.hidden_size // config.num_attention_heads
    perms["qk.0"] = np.roll(perms["qk.0"], dh)  # another head assignment than attn.0
    assert not is_function_preserving(spec, perms)
    # a head swap for V/O with Q/K left as the identity
    assert not is_function_preserving(spec, {"attn.1": np.roll(np.arange(config.hidden_size), dh)})


def test_reference_tied_decoder_bug_breaks_mlm():
    """Permuting the embeddings (hence the tied decoder) but not the transform output changes the logits:
    the spec must permute both, as test_function_preserving_variants_keep_logits checks."""
    from permerge.alignment.spec import PermutationSpec
    from permerge.merging.permute import permute_params

    config = make_config(SHAPES[1])
    model = make_model(config, "mlm")
    spec = spec_for_model(model)
    reference_like = PermutationSpec(
        {**spec.axes, "res": tuple(x for x in spec.axes["res"] if not (x[0].startswith("cls.") and x[1] == 0))},
        spec.sizes,
        spec.blocks,
        spec.aliases,
    )
    perms = {"res": np.random.default_rng(0).permutation(config.hidden_size)}
    inputs = make_inputs(config)
    params = dict(model.named_parameters())
    broken = apply_permutations(model, {})
    with torch.no_grad():
        for name, value in permute_params(params, reference_like, perms).items():
            dict(broken.named_parameters())[name].copy_(value)
    assert (logits(broken, inputs) - logits(model, inputs)).abs().max().item() > 1e-1
    assert (logits(apply_permutations(model, perms), inputs) - logits(model, inputs)).abs().max().item() <= 1e-4
