"""DistilBERT, the family added as one registry entry (permerge.families): its spec matches the real
parameters, random function-preserving perms keep the MLM and classification logits, activation and weight
matching recover planted perms exactly, the statistics hooks read its own modules (no token types), and
`permerge align` / `merge` plus a λ sweep run end to end."""

import zlib

import numpy as np
import pytest
import torch
from transformers import DistilBertConfig, DistilBertForMaskedLM, DistilBertForSequenceClassification, DistilBertModel

from permerge.alignment.matching import Pair, align_pair, compute_permutations
from permerge.alignment.spec import (
    PermutationSpec,
    check_spec,
    is_function_preserving,
    random_permutations,
    spec_for_model,
)
from permerge.alignment.stats import _hook_points, collect_statistics, feature_names
from permerge.alignment.variants import Variant
from permerge.checkpoints import load_permutations
from permerge.evaluation.evaluate import _masked_logits, glue_loss, lambda_sweep, mlm_loss
from permerge.merging.interpolate import interpolate
from permerge.merging.permute import apply_permutations, permute_params

torch.set_num_threads(1)

# Odd sizes: no axis length coincides with another unless the architecture makes it so.
SHAPES = [
    dict(dim=30, n_heads=5, hidden_dim=37, vocab_size=53, n_layers=2),
    dict(dim=36, n_heads=3, hidden_dim=50, vocab_size=97, n_layers=1, sinusoidal_pos_embds=True),
]
CLASSES = (DistilBertForMaskedLM, DistilBertForSequenceClassification, DistilBertModel)
PARAMS = [
    pytest.param(cls, shape, labels, id=f"{cls.__name__}-{i}-labels{labels}")
    for cls in CLASSES
    for i, shape in enumerate(SHAPES)
    for labels in ((3, 1) if cls is DistilBertForSequenceClassification else (2,))
]
ALL = frozenset({"ff", "attn", "res", "pooler"})


def make_config(shape, num_labels=2):
    return DistilBertConfig(
        **shape,
        max_position_embeddings=29,
        dropout=0.0,
        attention_dropout=0.0,
        seq_classif_dropout=0.0,
        initializer_range=0.2,
        num_labels=num_labels,
    )


def make_model(model_cls, config, seed=0):
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    with torch.no_grad():  # non-trivial LayerNorms and biases so that a wrong permutation shows
        for name, p in model.named_parameters():
            if "norm" in name.lower() or name.endswith("bias"):
                p.copy_(torch.randn_like(p) * 0.5 + (1.0 if name.endswith("weight") else 0.0))
    return model


def random_batches(config, num=6, batch=8, length=16, seed=0):
    """Padded batches with the token_type_ids a BERT tokenizer gives: the library must drop them."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(num):
        ids = torch.randint(1, config.vocab_size, (batch, length), generator=g)
        lengths = torch.randint(4, length + 1, (batch,), generator=g)
        mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
        ids[mask == 0] = 0
        tt = (torch.arange(length)[None, :] >= lengths[:, None] // 2).long()
        out.append(dict(input_ids=ids, attention_mask=mask, token_type_ids=tt))
    return out


def outputs(model, batch):
    """The head's logits, or for the bare encoder its last hidden state."""
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


@pytest.mark.parametrize("model_cls, shape, num_labels", PARAMS)
def test_spec_matches_model_and_claims_every_hidden_axis(model_cls, shape, num_labels):
    config = make_config(shape, num_labels)
    model = model_cls(config)
    spec = spec_for_model(model)
    check_spec(spec, model)
    for name, p in model.named_parameters(remove_duplicate=False):
        for axis, size in enumerate(p.shape):
            if size in (config.dim, config.hidden_dim):  # every hidden / FF axis is permuted by some perm
                assert axis in spec.perms_for(name), f"{name} axis {axis} is not covered"
    L = config.n_layers
    expected = {"res"} | {f"{k}.{l}" for k in ("ff", "attn", "qk") for l in range(L)}
    if model_cls is DistilBertForSequenceClassification:
        expected.add("pooler")  # pre_classifier plays the pooler's role
    assert set(spec.axes) == expected
    assert spec.sizes["ff.0"] == config.hidden_dim and spec.blocks["qk.0"] == config.n_heads
    if model_cls is DistilBertForMaskedLM:
        assert spec.aliases["vocab_projector.weight"] == "distilbert.embeddings.word_embeddings.weight"
        assert spec.perms_for("vocab_projector.weight") == {1: "res"}
        assert spec.perms_for("vocab_transform.weight") == {0: "res", 1: "res"}  # read by the tied projector
        assert spec.perms_for("vocab_projector.bias") == {}
    if model_cls is DistilBertForSequenceClassification:
        assert spec.perms_for("pre_classifier.weight") == {0: "pooler", 1: "res"}
        assert spec.perms_for("classifier.weight") == {1: "pooler"}


@pytest.mark.parametrize("model_cls, shape, num_labels", PARAMS)
def test_random_permutations_keep_the_function(model_cls, shape, num_labels):
    config = make_config(shape, num_labels)
    model = make_model(model_cls, config)
    spec = spec_for_model(model)
    batch = random_batches(config, num=1)[0]
    ref = outputs(model, batch)
    rng = np.random.default_rng(zlib.crc32(repr((model_cls.__name__, shape, num_labels)).encode()))
    for qk in ("separate", "shared"):
        perms = random_permutations(spec, rng, qk=qk)
        assert is_function_preserving(spec, perms)
        permuted = apply_permutations(model, perms)
        out = outputs(permuted, batch)
        if model_cls is DistilBertModel:  # the hidden states live in the residual basis
            out = out[..., np.argsort(perms["res"])]
        assert (out - ref).abs().max().item() <= 1e-4
    if model_cls is not DistilBertModel:  # leaving out one parameter of the stream changes the logits
        broken = apply_permutations(model, {})
        partial = PermutationSpec({"res": spec.axes["res"][1:]}, spec.sizes, {}, spec.aliases)
        with torch.no_grad():
            for name, value in permute_params(dict(model.named_parameters()), partial, {"res": perms["res"]}).items():
                dict(broken.named_parameters())[name].copy_(value)
        assert (outputs(broken, batch) - ref).abs().max().item() > 1e-3


@pytest.mark.parametrize("model_cls", [DistilBertForMaskedLM, DistilBertForSequenceClassification])
@pytest.mark.parametrize("qk, residual", [("separate", "all"), ("shared", "first")])
def test_planted_recovery_activation_and_weight(model_cls, qk, residual):
    config = make_config(SHAPES[0], num_labels=3)
    model_a = make_model(model_cls, config)
    spec = spec_for_model(model_a)
    planted = random_permutations(spec, np.random.default_rng(7), qk=qk)
    model_b = apply_permutations(model_a, planted)  # B unit i = A unit planted[i]
    batches = random_batches(config)
    stats = collect_statistics([model_a, model_b], batches, names=["A", "B"])
    variant = Variant(components=ALL, residual=residual, attention="head_perm", qk=qk)
    by_weights = Variant(components=ALL, attention="head_perm", qk=qk, method="weight")
    found = {
        "activation": compute_permutations(stats, "A", "B", variant, config),
        "weight": align_pair(by_weights, Pair(params_a=model_a, params_b=model_b, seed=[0, 5])).perms,
    }
    params_a = dict(model_a.named_parameters())
    ref = outputs(model_a, batches[0])
    for method, perms in found.items():
        assert set(perms) == set(planted), method
        for name, q in planted.items():
            assert np.array_equal(perms[name], np.argsort(q)), (method, name)  # exactly the inverse
        aligned = apply_permutations(model_b, perms)
        for name, p in aligned.named_parameters():
            torch.testing.assert_close(p, params_a[name], rtol=0, atol=0)
        assert (outputs(interpolate(model_a, aligned, 0.5), batches[0]) - ref).abs().max().item() <= 1e-5
    assert (outputs(interpolate(model_a, model_b, 0.5), batches[0]) - ref).abs().max().item() > 1e-3


def test_statistics_hooks_read_distilbert_modules():
    """ff is the FFN activation's output, ctx the input of out_lin, res.1 / res.2 the two LayerNorms, and the
    pooler feature pre_classifier(first token), one row per sequence; token_type_ids are dropped."""
    config = make_config(SHAPES[0], num_labels=3)
    model = make_model(DistilBertForSequenceClassification, config)
    layer = model.distilbert.transformer.layer[0]
    assert _hook_points(model, "ff.0") == (layer.ffn.activation, "out")
    assert _hook_points(model, "ctx.0") == (layer.attention.out_lin, "pre")
    assert _hook_points(model, "res.1")[0] is layer.sa_layer_norm
    assert _hook_points(model, "res.2")[0] is layer.output_layer_norm
    assert _hook_points(model, "res.0")[0] is model.distilbert.embeddings.LayerNorm
    assert feature_names(model)[-1] == "pooler"
    assert "pooler" not in feature_names(make_model(DistilBertForMaskedLM, config))
    batch = random_batches(config, num=1)[0]
    other = make_model(DistilBertForSequenceClassification, config, seed=1)
    stats = collect_statistics([model, other], [batch], names=["A", "B"], features=["pooler", "ff.1", "res.4"])
    mask = batch["attention_mask"].bool()
    with torch.no_grad():
        hidden = model.distilbert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
        pooled = model.pre_classifier(hidden[:, 0])  # before the ReLU: dead units stay tellable apart
        seen = []  # the FF activation as lin2 reads it
        lin2 = model.distilbert.transformer.layer[1].ffn.lin2
        handle = lin2.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        handle.remove()
    assert stats.count["pooler"] == 8 and stats.count["res.4"] == int(mask.sum())
    torch.testing.assert_close(stats.mean("pooler", "A"), pooled.double().mean(0), rtol=0, atol=1e-5)
    torch.testing.assert_close(stats.mean("res.4", "A"), hidden[mask].double().mean(0), rtol=0, atol=1e-5)
    torch.testing.assert_close(stats.mean("ff.1", "A"), seen[0][mask].double().mean(0), rtol=0, atol=1e-5)


def test_mlm_loss_head_only_path_matches_full_forward():
    config = make_config(SHAPES[0])
    model = make_model(DistilBertForMaskedLM, config)
    ids = torch.randint(1, config.vocab_size, (3, 12), generator=torch.Generator().manual_seed(0))
    sel = torch.zeros_like(ids, dtype=torch.bool)
    sel[:, [1, 4, 9]] = True
    seen = []
    handle = model.vocab_transform.register_forward_pre_hook(lambda mod, args: seen.append(tuple(args[0].shape)))
    with torch.no_grad():
        head_only = _masked_logits(model, ids, sel)
        handle.remove()
        full = model(input_ids=ids).logits[sel]
    assert seen == [(9, config.dim)]  # the head ran on the 9 selected positions only
    torch.testing.assert_close(head_only, full, rtol=0, atol=1e-5)
    labels = torch.where(sel, ids, torch.full_like(ids, -100))
    loss = mlm_loss(model, {"input_ids": ids, "labels": labels})
    assert abs(loss["loss"] - torch.nn.functional.cross_entropy(full, ids[sel]).item()) < 1e-5


def _align(tmp_path, a, b, out, options, *text):
    from permerge.cli import main

    (tmp_path / "v.yaml").write_text(options)
    args = ["align", "--model-a", str(a), "--model-b", str(b), "--options", str(tmp_path / "v.yaml")]
    return main(args + ["--out", str(out), "--batch-size", "8", "--device", "cpu", *text])


@pytest.mark.parametrize("model_cls", [DistilBertForMaskedLM, DistilBertForSequenceClassification])
def test_align_merge_and_sweep_through_the_cli(tmp_path, model_cls):
    """Seeds saved as DistilBERT checkpoints (a WordPiece tokenizer that emits token types): activation and
    weight alignment keep B's logits, merge averages, and a λ sweep over the aligned pair runs."""
    from permerge.cli import main
    from permerge.models import load_model, load_tokenizer
    from tests.test_cli import WORDS, save_tokenizer

    vocab = save_tokenizer(tmp_path / "tok")
    config = DistilBertConfig(
        vocab_size=vocab, dim=16, n_heads=2, hidden_dim=24, n_layers=2, max_position_embeddings=40, num_labels=3
    )
    for seed in (1, 2):
        make_model(model_cls, config, seed=seed).save_pretrained(tmp_path / f"m{seed}")
        save_tokenizer(tmp_path / f"m{seed}")
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(WORDS, size=rng.integers(2, 12))) for _ in range(30)]
    (tmp_path / "text.txt").write_text("\n".join(lines) + "\n")
    text = ("--text", str(tmp_path / "text.txt"))
    a, b = tmp_path / "m1", tmp_path / "m2"
    options = "components: [ff, attn, res, pooler]\nresidual: all\nqk: separate\n"
    assert _align(tmp_path, a, b, tmp_path / "act", options, *text) == 0
    assert _align(tmp_path, a, b, tmp_path / "wm", options + "method: weight\n") == 0
    expected = {"res", "ff.0", "ff.1", "attn.0", "attn.1", "qk.0", "qk.1"}
    if model_cls is DistilBertForSequenceClassification:
        expected.add("pooler")
    model_b = load_model(b)
    ids = torch.randint(1, vocab, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model_b(input_ids=ids).logits
    for name in ("act", "wm"):
        perms = load_permutations(tmp_path / name / "permutations.safetensors")
        assert set(perms) == expected, name
        assert not np.array_equal(perms["res"], np.arange(16)), name
        aligned = load_model(tmp_path / name)
        assert type(aligned) is model_cls
        with torch.no_grad():
            assert (aligned(input_ids=ids).logits - ref).abs().max().item() <= 1e-4, name
    assert (
        main(["merge", "--model-a", str(a), "--aligned-b", str(tmp_path / "act"), "--out", str(tmp_path / "mid")]) == 0
    )
    merged, model_a, aligned = load_model(tmp_path / "mid"), load_model(a), load_model(tmp_path / "act")
    for (name, p), pa, pb in zip(merged.named_parameters(), model_a.parameters(), aligned.parameters()):
        torch.testing.assert_close(p, (pa + pb) / 2, msg=name)

    # the sweep_lambdas job's evaluation: θ(λ) over the aligned pair, λ=0 is A and λ=1 is π(B) = B
    tokenizer = load_tokenizer(a)
    if model_cls is DistilBertForMaskedLM:
        from permerge.evaluation.evaluate import build_mlm_evalset

        evalset = build_mlm_evalset(tokenizer, lines, block_size=12, seed=0)

        def evaluate(model):
            return mlm_loss(model, evalset, batch_size=4)
    else:
        from permerge.evaluation.evaluate import build_glue_evalset

        examples = [{"sentence": s, "label": i % 3} for i, s in enumerate(lines)]
        evalset = build_glue_evalset(tokenizer, examples, ["sentence"])

        def evaluate(model):
            return glue_loss(model, evalset, num_labels=3, metric="accuracy", batch_size=8)

    rows = lambda_sweep(model_a, aligned, [0.0, 0.5, 1.0], evaluate, model_b=model_b)
    assert [r["lambda"] for r in rows] == [0.0, 0.5, 1.0]
    assert rows[0]["loss"] == pytest.approx(evaluate(model_a)["loss"], abs=1e-6)
    assert rows[-1]["loss"] == pytest.approx(rows[-1]["loss_b_unpermuted"], abs=1e-5)
    assert abs(rows[1]["loss"] - rows[0]["loss"]) > 1e-6  # the midpoint is another model


def test_load_for_classification_draws_the_head_from_head_seed(tmp_path):
    """Fine-tuning starts from an MLM seed: DistilBertForSequenceClassification with the encoder of the
    checkpoint and pre_classifier + classifier drawn from head_seed alone, the same for every seed."""
    from permerge.training.finetune import load_for_classification

    config = make_config(SHAPES[0])
    for seed in (1, 2):
        make_model(DistilBertForMaskedLM, config, seed=seed).save_pretrained(tmp_path / f"m{seed}")
    m1, m2 = (load_for_classification(tmp_path / f"m{s}", num_labels=3, head_seed=4, dropout=0.05) for s in (1, 2))
    assert type(m1) is DistilBertForSequenceClassification
    assert (m1.config.dropout, m1.config.attention_dropout, m1.config.seq_classif_dropout) == (0.05, 0.05, 0.05)
    for name in ("pre_classifier.weight", "classifier.weight"):
        torch.testing.assert_close(m1.get_parameter(name), m2.get_parameter(name), rtol=0, atol=0)
        assert m1.get_parameter(name).std().item() == pytest.approx(0.2, rel=0.3)  # initializer_range
    assert not torch.equal(
        m1.distilbert.embeddings.word_embeddings.weight, m2.distilbert.embeddings.word_embeddings.weight
    )
    mlm = DistilBertForMaskedLM.from_pretrained(tmp_path / "m1")
    torch.testing.assert_close(
        m1.distilbert.transformer.layer[1].ffn.lin2.weight, mlm.distilbert.transformer.layer[1].ffn.lin2.weight
    )
