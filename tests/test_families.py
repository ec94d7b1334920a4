"""Other encoder families (RoBERTa / XLM-R / CamemBERT, ELECTRA): the spec matches the real parameters, random
function-preserving perms keep every head's logits, the activation matcher recovers planted perms, the rest of
the library (statistics hooks, MLM evaluation, `permerge align` / `merge`) accepts them, and unsupported
architectures are refused by name."""

import zlib

import numpy as np
import pytest
import torch
from transformers import (
    BertConfig,
    BertForMaskedLM,
    CamembertConfig,
    CamembertForMaskedLM,
    ElectraConfig,
    ElectraForMaskedLM,
    ElectraForPreTraining,
    ElectraForSequenceClassification,
    ElectraModel,
    GPT2Config,
    GPT2LMHeadModel,
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaForSequenceClassification,
    RobertaModel,
    RobertaPreLayerNormConfig,
    RobertaPreLayerNormForMaskedLM,
    XLMRobertaConfig,
    XLMRobertaForMaskedLM,
    XLMRobertaForSequenceClassification,
)

from permerge.alignment.matching import compute_permutations
from permerge.alignment.spec import (
    SUPPORTED_CLASSES,
    PermutationSpec,
    check_spec,
    is_function_preserving,
    random_permutations,
    spec_for_model,
)
from permerge.alignment.stats import _hook_points, collect_statistics, feature_names
from permerge.alignment.variants import Variant
from permerge.checkpoints import load_permutations
from permerge.evaluation.evaluate import _masked_logits, mlm_loss
from permerge.merging.interpolate import interpolate
from permerge.merging.permute import apply_permutations, permute_params

torch.set_num_threads(1)

PAD = 1  # RoBERTa's padding_idx: position ids start after it

# Odd sizes: no axis length coincides with another unless the architecture makes it so.
ROBERTA_SHAPES = [
    dict(hidden_size=36, num_attention_heads=3, intermediate_size=50, vocab_size=97, num_hidden_layers=1),
    dict(
        hidden_size=30,
        num_attention_heads=5,
        intermediate_size=37,
        vocab_size=53,
        num_hidden_layers=2,
        type_vocab_size=2,
    ),
]
ELECTRA_SHAPES = [
    dict(
        hidden_size=32,
        num_attention_heads=4,
        intermediate_size=40,
        vocab_size=61,
        num_hidden_layers=2,
        embedding_size=32,
    ),
    dict(
        hidden_size=36,
        num_attention_heads=3,
        intermediate_size=50,
        vocab_size=97,
        num_hidden_layers=2,
        embedding_size=22,
    ),  # ELECTRA-small-like: embeddings projected into the residual stream
    dict(
        hidden_size=24,
        num_attention_heads=2,
        intermediate_size=44,
        vocab_size=53,
        num_hidden_layers=1,
        embedding_size=34,
        type_vocab_size=3,
    ),
]
COMMON = dict(
    max_position_embeddings=29, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, initializer_range=0.2
)

# (config class, model class, shapes)
CASES = (
    [(RobertaConfig, c, ROBERTA_SHAPES) for c in (RobertaForMaskedLM, RobertaForSequenceClassification, RobertaModel)]
    + [(XLMRobertaConfig, c, ROBERTA_SHAPES[1:]) for c in (XLMRobertaForMaskedLM, XLMRobertaForSequenceClassification)]
    + [(CamembertConfig, CamembertForMaskedLM, ROBERTA_SHAPES[:1])]
    + [
        (ElectraConfig, c, ELECTRA_SHAPES)
        for c in (ElectraForPreTraining, ElectraForMaskedLM, ElectraForSequenceClassification, ElectraModel)
    ]
)
PARAMS = [
    pytest.param(cc, mc, s, num_labels, id=f"{mc.__name__}-{i}-labels{num_labels}")
    for cc, mc, shapes in CASES
    for i, s in enumerate(shapes)
    for num_labels in ((3, 1) if "Classification" in mc.__name__ else (2,))
]


def make_config(config_cls, shape, num_labels=2):
    return config_cls(**shape, **COMMON, num_labels=num_labels, pad_token_id=PAD)


def make_model(model_cls, config, seed=0):
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    with torch.no_grad():  # non-trivial LayerNorms and biases so that a wrong permutation shows
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name or name.endswith("bias"):
                p.copy_(torch.randn_like(p) * 0.5 + (1.0 if name.endswith("weight") else 0.0))
    return model


def make_inputs(config, seed=1, batch=3, length=11):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(PAD + 1, config.vocab_size, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    ids[mask == 0] = PAD  # RoBERTa derives position ids from the pad token
    tt = torch.zeros_like(ids)
    if config.type_vocab_size > 1:
        tt[:, 5:] = 1
        tt[-1, -2:] = config.type_vocab_size - 1
    return dict(input_ids=ids, attention_mask=mask, token_type_ids=tt)


def outputs(model, inputs):
    """Every output the model's head computes: MLM / classification / discriminator logits, or for a bare
    encoder its last hidden state (and pooled output when it has a pooler)."""
    with torch.no_grad():
        out = model(**inputs)
    if hasattr(out, "logits"):
        return out.logits
    parts = [out.last_hidden_state.flatten()]
    if getattr(out, "pooler_output", None) is not None:
        parts.append(out.pooler_output.flatten())
    return torch.cat(parts)


def bare_outputs_in_a_basis(model, inputs, perms):
    """A bare encoder's outputs live in the residual basis: undo the permutation to compare them."""
    with torch.no_grad():
        out = model(**inputs)
    parts = [out.last_hidden_state[..., np.argsort(perms["res"])].flatten()]
    if getattr(out, "pooler_output", None) is not None:
        parts.append(out.pooler_output[..., np.argsort(perms["pooler"])].flatten())
    return torch.cat(parts)


# ------------------------------------------------------------------------------------------- spec


@pytest.mark.parametrize("config_cls, model_cls, shape, num_labels", PARAMS)
def test_spec_matches_model_and_claims_every_hidden_axis(config_cls, model_cls, shape, num_labels):
    config = make_config(config_cls, shape, num_labels)
    model = model_cls(config)
    spec = spec_for_model(model)
    check_spec(spec, model)
    claimed = spec.param_axes()
    d, inter = config.hidden_size, config.intermediate_size
    e = getattr(config, "embedding_size", d)
    for name, p in model.named_parameters(remove_duplicate=False):
        for axis, size in enumerate(p.shape):
            if size in (d, inter, e):  # every hidden / FF / embedding-sized axis is permuted by some perm
                assert axis in spec.perms_for(name), f"{name} axis {axis} is not covered"
    L = config.num_hidden_layers
    expected = {"res"} | {f"{k}.{l}" for k in ("ff", "attn", "qk") for l in range(L)}
    name = model_cls.__name__
    if e != d:
        expected.add("emb")
    if name.endswith(("SequenceClassification", "ForPreTraining")) or name == "RobertaModel":
        expected.add("pooler")  # classifier.dense / discriminator dense / RobertaModel's own pooler
    assert set(spec.axes) == expected
    assert spec.sizes["res"] == d and spec.sizes["ff.0"] == inter and spec.blocks["qk.0"] == config.num_attention_heads
    if name.endswith("Model"):
        assert not any(n.startswith(("roberta.", "electra.")) for n in claimed)


def test_family_heads_are_wired_as_transformers_builds_them():
    rob = spec_for_model(RobertaForMaskedLM(make_config(RobertaConfig, ROBERTA_SHAPES[0])))
    assert rob.aliases["lm_head.decoder.weight"] == "roberta.embeddings.word_embeddings.weight"
    assert rob.perms_for("lm_head.decoder.weight") == {1: "res"}
    assert rob.perms_for("lm_head.dense.weight") == {0: "res", 1: "res"}  # output read by the tied decoder
    assert rob.perms_for("lm_head.layer_norm.weight") == {0: "res"}
    assert rob.perms_for("lm_head.bias") == {}
    cls = spec_for_model(RobertaForSequenceClassification(make_config(RobertaConfig, ROBERTA_SHAPES[0], 3)))
    assert set(cls.axes["pooler"]) == {
        ("classifier.dense.weight", 0),
        ("classifier.dense.bias", 0),
        ("classifier.out_proj.weight", 1),
    }
    assert cls.perms_for("classifier.dense.weight") == {0: "pooler", 1: "res"}
    assert cls.perms_for("classifier.out_proj.bias") == {}
    gen = spec_for_model(ElectraForMaskedLM(make_config(ElectraConfig, ELECTRA_SHAPES[1])))
    assert gen.perms_for("electra.embeddings_project.weight") == {0: "res", 1: "emb"}
    assert gen.perms_for("electra.embeddings.position_embeddings.weight") == {1: "emb"}
    assert gen.perms_for("generator_predictions.dense.weight") == {0: "emb", 1: "res"}
    assert gen.perms_for("generator_lm_head.weight") == {1: "emb"}  # tied to the word embeddings
    disc = spec_for_model(ElectraForPreTraining(make_config(ElectraConfig, ELECTRA_SHAPES[0])))
    assert set(disc.axes["pooler"]) == {
        ("discriminator_predictions.dense.weight", 0),
        ("discriminator_predictions.dense.bias", 0),
        ("discriminator_predictions.dense_prediction.weight", 1),
    }
    assert "emb" not in disc.axes  # embedding_size == hidden_size: the embeddings are in the residual stream
    assert disc.perms_for("electra.embeddings.word_embeddings.weight") == {1: "res"}


# ------------------------------------------------------------------------------------------- function preservation


@pytest.mark.parametrize("config_cls, model_cls, shape, num_labels", PARAMS)
def test_random_permutations_keep_the_function(config_cls, model_cls, shape, num_labels):
    config = make_config(config_cls, shape, num_labels)
    model = make_model(model_cls, config)
    spec = spec_for_model(model)
    inputs = make_inputs(config)
    bare = model_cls.__name__.endswith("Model")
    ref = outputs(model, inputs)
    rng = np.random.default_rng(zlib.crc32(repr((model_cls.__name__, shape, num_labels)).encode()))
    for qk in ("separate", "shared"):
        perms = random_permutations(spec, rng, qk=qk)
        assert is_function_preserving(spec, perms)
        permuted = apply_permutations(model, perms)
        moved = {
            n
            for (n, a), (_, b) in zip(
                model.named_parameters(remove_duplicate=False), permuted.named_parameters(remove_duplicate=False)
            )
            if not torch.equal(a, b)
        }
        assert set(spec.param_axes()) <= moved  # every parameter the spec names really moved
        out = bare_outputs_in_a_basis(permuted, inputs, perms) if bare else outputs(permuted, inputs)
        diff = (out - ref).abs().max().item()
        assert diff <= 1e-4, (qk, diff)
        if not bare:  # and a permutation that is not a symmetry changes them: the check can fail
            flat = {"res": perms["res"]}
            assert (outputs(apply_permutations(model, {"ff.0": perms["ff.0"]}), inputs) - ref).abs().max() <= 1e-4
            broken = permute_params(
                dict(model.named_parameters()),
                PermutationSpec({"res": spec.axes["res"][1:]}, spec.sizes, {}, spec.aliases),
                flat,
            )
            with torch.no_grad():
                for n, p in permuted.named_parameters():
                    p.copy_(broken[n])
            assert (outputs(permuted, inputs) - ref).abs().max().item() > 1e-3


@pytest.mark.parametrize(
    "model_cls, drop",
    [
        (RobertaForSequenceClassification, ("classifier.out_proj.weight", 1)),
        (ElectraForSequenceClassification, ("classifier.out_proj.weight", 1)),
        (ElectraForPreTraining, ("discriminator_predictions.dense_prediction.weight", 1)),
        (ElectraForMaskedLM, ("electra.embeddings_project.weight", 1)),
        (ElectraForMaskedLM, ("generator_predictions.dense.weight", 0)),
        (RobertaForMaskedLM, ("lm_head.dense.weight", 0)),
    ],
)
def test_each_head_axis_is_needed(model_cls, drop):
    """Leaving out one (parameter, axis) the spec names changes the logits: the head wiring is not vacuous."""
    config_cls = RobertaConfig if model_cls.__name__.startswith("Roberta") else ElectraConfig
    config = make_config(config_cls, ELECTRA_SHAPES[1] if config_cls is ElectraConfig else ROBERTA_SHAPES[0], 3)
    model = make_model(model_cls, config)
    spec = spec_for_model(model)
    perm = next(p for p, pairs in spec.axes.items() if drop in pairs)
    perms = {perm: np.random.default_rng(0).permutation(spec.sizes[perm])}
    inputs = make_inputs(config)
    ref = outputs(model, inputs)
    assert (outputs(apply_permutations(model, perms), inputs) - ref).abs().max().item() <= 1e-4
    without = PermutationSpec(
        {**spec.axes, perm: tuple(x for x in spec.axes[perm] if x != drop)}, spec.sizes, spec.blocks, spec.aliases
    )
    broken = apply_permutations(model, {})
    with torch.no_grad():
        for name, value in permute_params(dict(model.named_parameters()), without, perms).items():
            dict(broken.named_parameters())[name].copy_(value)
    assert (outputs(broken, inputs) - ref).abs().max().item() > 1e-3


# ------------------------------------------------------------------------------------------- planted recovery


def random_batches(config, num=6, batch=8, length=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(num):
        ids = torch.randint(PAD + 1, config.vocab_size, (batch, length), generator=g)
        lengths = torch.randint(4, length + 1, (batch,), generator=g)
        mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
        ids[mask == 0] = PAD
        tt = (
            torch.zeros_like(ids)
            if config.type_vocab_size == 1
            else (torch.arange(length)[None, :] >= lengths[:, None] // 2).long()
        )
        out.append(dict(input_ids=ids, attention_mask=mask, token_type_ids=tt))
    return out


@pytest.mark.parametrize(
    "config_cls, model_cls, shape, qk, residual",
    [
        (RobertaConfig, RobertaForMaskedLM, ROBERTA_SHAPES[1], "separate", "all"),
        (RobertaConfig, RobertaForSequenceClassification, ROBERTA_SHAPES[1], "shared", "all"),
        (XLMRobertaConfig, XLMRobertaForSequenceClassification, ROBERTA_SHAPES[0], "separate", "last"),
        (ElectraConfig, ElectraForPreTraining, ELECTRA_SHAPES[0], "separate", "all"),
        (ElectraConfig, ElectraForPreTraining, ELECTRA_SHAPES[1], "shared", "first"),
        (ElectraConfig, ElectraForMaskedLM, ELECTRA_SHAPES[0], "separate", "first"),
        (ElectraConfig, ElectraForSequenceClassification, ELECTRA_SHAPES[1], "separate", "all"),
    ],
)
def test_planted_recovery(config_cls, model_cls, shape, qk, residual):
    config = make_config(config_cls, shape, num_labels=3)
    model_a = make_model(model_cls, config)
    spec = spec_for_model(model_a)
    # The discriminator head's hidden units are per-token, not the per-sequence "pooler" feature: not matched.
    # A projected ELECTRA's embedding space ("emb") is matched from the embeddings LayerNorm output.
    matchable = [p for p in spec.axes if not (p == "pooler" and "pooler" not in feature_names(model_a))]
    planted = random_permutations(spec, np.random.default_rng(7), qk=qk, names=matchable)
    model_b = apply_permutations(model_a, planted)  # B unit i = A unit planted[i]

    batches = random_batches(config)
    stats = collect_statistics([model_a, model_b], batches, names=["A", "B"])
    variant = Variant(
        components=frozenset({"ff", "attn", "res", "pooler"}), residual=residual, attention="head_perm", qk=qk
    )
    perms = compute_permutations(stats, "A", "B", variant, config)
    assert set(perms) == set(planted)
    assert ("pooler" in perms) == model_cls.__name__.endswith("SequenceClassification")
    assert ("emb" in perms) == (getattr(config, "embedding_size", config.hidden_size) != config.hidden_size)
    for name, q in planted.items():
        assert np.array_equal(perms[name], np.argsort(q)), name  # exactly the inverse

    aligned = apply_permutations(model_b, perms)
    params_a = dict(model_a.named_parameters())
    for name, p in aligned.named_parameters():
        torch.testing.assert_close(p, params_a[name], rtol=0, atol=0)
    inputs = batches[0]
    ref = outputs(model_a, inputs)
    assert (outputs(interpolate(model_a, aligned, 0.5), inputs) - ref).abs().max().item() <= 1e-5
    assert (outputs(interpolate(model_a, model_b, 0.5), inputs) - ref).abs().max().item() > 1e-3


@pytest.mark.parametrize("model_cls", [ElectraForMaskedLM, ElectraForSequenceClassification])
def test_projected_electra_embedding_space_is_matched_by_both_methods(model_cls):
    """The emb permutation (embeddings, their LayerNorm, embeddings_project's input, the generator head's
    output) goes with the res component: activation and weight matching both recover a planted one."""
    from permerge.alignment.matching import Pair, align_pair

    config = make_config(ElectraConfig, ELECTRA_SHAPES[1], num_labels=3)
    model_a = make_model(model_cls, config)
    spec = spec_for_model(model_a)
    planted = random_permutations(spec, np.random.default_rng(3), names=["emb", "res"])
    model_b = apply_permutations(model_a, planted)
    stats = collect_statistics([model_a, model_b], random_batches(config), names=["A", "B"])
    found = {
        "activation": compute_permutations(stats, "A", "B", Variant(components=frozenset({"res"})), config),
        "weight": align_pair(
            Variant(components=frozenset({"res"}), method="weight"), Pair(params_a=model_a, params_b=model_b)
        ).perms,
    }
    for method, perms in found.items():
        assert set(perms) == {"res", "emb"}, method
        assert np.array_equal(perms["emb"], np.argsort(planted["emb"])), method
        assert np.array_equal(perms["res"], np.argsort(planted["res"])), method
    only_res = compute_permutations(stats, "A", "B", Variant(components=frozenset({"ff"})), config)
    assert "emb" not in only_res  # no res component, no emb


# ------------------------------------------------------------------------------------------- library hooks


def test_statistics_hooks_read_the_right_nodes():
    """res.0 of a projected ELECTRA is the projection's output (the stream's first node, hidden-sized); the
    pooler feature of a RoBERTa classifier is tanh(classifier.dense(first token)), one row per sequence."""
    config = make_config(ElectraConfig, ELECTRA_SHAPES[1])
    electra = make_model(ElectraForPreTraining, config)
    assert _hook_points(electra, "res.0")[0] is electra.electra.embeddings_project
    assert _hook_points(electra, "emb")[0] is electra.electra.embeddings.LayerNorm  # the projection's input
    assert "pooler" not in feature_names(electra) and feature_names(electra)[-1] == "emb"
    flat = make_model(ElectraForPreTraining, make_config(ElectraConfig, ELECTRA_SHAPES[0]))
    assert "emb" not in feature_names(flat)  # embedding_size == hidden_size: the stream starts at the LayerNorm
    batch = random_batches(config, num=1)[0]
    stats = collect_statistics(
        [electra, make_model(ElectraForPreTraining, config, seed=1)],
        [batch],
        names=["A", "B"],
        features=["res.0", "emb"],
    )
    with torch.no_grad():
        h0 = electra.electra(**batch, output_hidden_states=True).hidden_states[0]
        e0 = electra.electra.embeddings(input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"])
    mask = batch["attention_mask"].bool()
    torch.testing.assert_close(stats.mean("res.0", "A"), h0[mask].double().mean(0), rtol=0, atol=1e-5)
    assert stats.mean("emb", "A").shape == (config.embedding_size,)
    torch.testing.assert_close(stats.mean("emb", "A"), e0[mask].double().mean(0), rtol=0, atol=1e-5)

    rconfig = make_config(RobertaConfig, ROBERTA_SHAPES[1], num_labels=3)
    rob = make_model(RobertaForSequenceClassification, rconfig)
    assert feature_names(rob)[-1] == "pooler" and "pooler" not in feature_names(make_model(RobertaForMaskedLM, rconfig))
    batch = random_batches(rconfig, num=1)[0]
    stats = collect_statistics(
        [rob, make_model(RobertaForSequenceClassification, rconfig, seed=1)],
        [batch],
        names=["A", "B"],
        features=["pooler", "res.4"],
    )
    with torch.no_grad():
        hidden = rob.roberta(**batch).last_hidden_state
        pooled = torch.tanh(rob.classifier.dense(hidden[:, 0]))
    assert stats.count["pooler"] == len(pooled) == 8  # one row per sequence
    assert stats.count["res.4"] == int(batch["attention_mask"].sum())  # one row per non-padding token
    torch.testing.assert_close(stats.mean("pooler", "A"), pooled.double().mean(0), rtol=0, atol=1e-5)
    torch.testing.assert_close(
        stats.mean("res.4", "A"), hidden[batch["attention_mask"].bool()].double().mean(0), rtol=0, atol=1e-5
    )


@pytest.mark.parametrize(
    "model_cls, config_cls, shape",
    [(RobertaForMaskedLM, RobertaConfig, ROBERTA_SHAPES[0]), (ElectraForMaskedLM, ElectraConfig, ELECTRA_SHAPES[1])],
)
def test_masked_logits_head_only_path_matches_full_forward(model_cls, config_cls, shape):
    config = make_config(config_cls, shape)
    model = make_model(model_cls, config)
    ids = make_inputs(config, length=12)["input_ids"]
    ids[ids == PAD] = PAD + 1  # evaluation blocks have no padding
    sel = torch.zeros_like(ids, dtype=torch.bool)
    sel[:, [1, 4, 9]] = True
    head = model.lm_head if hasattr(model, "lm_head") else model.generator_predictions
    seen = []
    handle = head.register_forward_pre_hook(lambda mod, args: seen.append(tuple(args[0].shape)))
    with torch.no_grad():
        head_only = _masked_logits(model, ids, sel)
        handle.remove()
        full = model(input_ids=ids).logits[sel]
    assert seen == [(9, config.hidden_size)]  # the head ran on the 9 selected positions only
    assert head_only.shape == (9, config.vocab_size)
    torch.testing.assert_close(head_only, full, rtol=0, atol=1e-5)
    labels = torch.where(sel, ids, torch.full_like(ids, -100))
    loss = mlm_loss(model, {"input_ids": ids, "labels": labels})
    expected = torch.nn.functional.cross_entropy(full, ids[sel]).item()
    assert loss["n_tokens"] == 9 and abs(loss["loss"] - expected) < 1e-5


# ------------------------------------------------------------------------------------------- unsupported


def test_unsupported_architectures_are_named():
    gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=50, n_positions=16))
    with pytest.raises(TypeError, match="unsupported model class GPT2LMHeadModel") as info:
        spec_for_model(gpt2)
    assert "RobertaForMaskedLM" in str(info.value) and "ElectraForPreTraining" in str(info.value)
    pre_ln = RobertaPreLayerNormForMaskedLM(RobertaPreLayerNormConfig(**ROBERTA_SHAPES[0], **COMMON))
    with pytest.raises(TypeError, match="unsupported model class RobertaPreLayerNormForMaskedLM"):
        spec_for_model(pre_ln)
    for model_cls, config_cls in ((BertForMaskedLM, BertConfig), (RobertaForMaskedLM, RobertaConfig)):
        model = model_cls(config_cls(**ROBERTA_SHAPES[0], **COMMON))
        model.config.position_embedding_type = "relative_key"
        with pytest.raises(ValueError, match="unsupported position_embedding_type 'relative_key'"):
            spec_for_model(model)


# ------------------------------------------------------------------------------------------- command line


def test_align_and_merge_roberta_end_to_end(tmp_path):
    from permerge.cli import main
    from permerge.models import load_model
    from tests.test_cli import WORDS, save_tokenizer

    vocab = save_tokenizer(tmp_path / "tok")  # WordPiece is fine for random weights; [PAD] is id 0
    config = RobertaConfig(
        vocab_size=vocab,
        hidden_size=16,
        num_attention_heads=2,
        intermediate_size=24,
        num_hidden_layers=2,
        max_position_embeddings=40,
        pad_token_id=0,
    )
    for seed in (1, 2):
        torch.manual_seed(seed)
        RobertaForMaskedLM(config).save_pretrained(tmp_path / f"m{seed}")
        save_tokenizer(tmp_path / f"m{seed}")
    rng = np.random.default_rng(0)
    (tmp_path / "text.txt").write_text(
        "\n".join(" ".join(rng.choice(WORDS, size=rng.integers(2, 12))) for _ in range(30)) + "\n"
    )
    (tmp_path / "v.yaml").write_text("components: [ff, attn, res]\nresidual: all\nqk: separate\n")
    assert (
        main(
            [
                "align",
                "--model-a",
                str(tmp_path / "m1"),
                "--model-b",
                str(tmp_path / "m2"),
                "--text",
                str(tmp_path / "text.txt"),
                "--options",
                str(tmp_path / "v.yaml"),
                "--out",
                str(tmp_path / "aligned"),
                "--batch-size",
                "8",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    perms = load_permutations(tmp_path / "aligned" / "permutations.safetensors")
    assert set(perms) == {"res", "ff.0", "ff.1", "attn.0", "attn.1", "qk.0", "qk.1"}
    assert not np.array_equal(perms["res"], np.arange(16))
    b, aligned = load_model(tmp_path / "m2"), load_model(tmp_path / "aligned")
    assert type(aligned).__name__ == "RobertaForMaskedLM"
    ids = torch.randint(1, vocab, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(aligned(input_ids=ids).logits, b(input_ids=ids).logits, atol=1e-4, rtol=0)
    assert (
        main(
            [
                "merge",
                "--model-a",
                str(tmp_path / "m1"),
                "--aligned-b",
                str(tmp_path / "aligned"),
                "--lam",
                "0.5",
                "--out",
                str(tmp_path / "merged"),
            ]
        )
        == 0
    )
    merged, a = load_model(tmp_path / "merged"), load_model(tmp_path / "m1")
    for (name, p), pa, pb in zip(merged.named_parameters(), a.parameters(), aligned.parameters()):
        torch.testing.assert_close(p, (pa + pb) / 2, msg=name)


def test_cli_refuses_an_unsupported_model_type(tmp_path, capsys):
    from permerge.cli import main

    GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=50, architectures=["GPT2LMHeadModel"]).save_pretrained(
        tmp_path / "g"
    )
    (tmp_path / "t.txt").write_text("a b\n")
    (tmp_path / "v.yaml").write_text("components: [ff]\n")
    assert (
        main(
            [
                "merge",
                "--model-a",
                str(tmp_path / "g"),
                "--aligned-b",
                str(tmp_path / "g"),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "model_type 'gpt2' is not supported" in err and "roberta" in err and "electra" in err


# ------------------------------------------------------------------------------------------- footprint


@pytest.mark.parametrize(
    "arch, embedding",
    [(arch, None) for arch in SUPPORTED_CLASSES] + [(a, 22) for a in SUPPORTED_CLASSES if a.startswith("Electra")],
)
def test_footprint_counts_every_family_class(arch, embedding):
    """footprint's parameter and tensor counts, from the Shape hf_shape reads through the family's config
    fields, match the real model of every class of every family (ELECTRA also with a projected embedding)."""
    import transformers

    from permerge.families import FAMILIES
    from permerge.tooling import footprint as fp

    fam = FAMILIES[SUPPORTED_CLASSES[arch][0]]
    model_type = next(t for t, prefix in fam.model_types.items() if arch.startswith(prefix))
    dims = dict(layers=2, hidden=36, heads=3, ff=50, vocab=97, positions=29, type_vocab=3)
    kwargs = {fam.fields[k]: v for k, v in dims.items() if k in fam.fields}
    if embedding is not None:
        kwargs[fam.embedding_size] = embedding
    config = transformers.AutoConfig.for_model(model_type, **kwargs, num_labels=3)
    model = getattr(transformers, arch)(config)
    shape = fp.hf_shape(config)
    assert (shape.hidden, shape.ff, shape.layers) == (36, 50, 2)
    params = list(model.parameters())  # a tied tensor once
    assert fp.param_count(shape, arch, 3) == sum(p.numel() for p in params)
    assert sum(t for _, t in fp._parts(shape, arch, 3).values()) == len(params)
