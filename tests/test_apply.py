"""Applying permutations, interpolation, compatibility checks and safe writing."""

import numpy as np
import pytest
import torch
from transformers import (
    AutoModelForMaskedLM,
    BertConfig,
    BertForPreTraining,
)

from permerge.alignment.spec import bert_spec, random_permutations, spec_for_model
from permerge.checkpoints import (
    check_compatible,
    load_permutations,
    read_permutation_metadata,
    save_permutations,
    save_pretrained_atomic,
)
from permerge.merging.interpolate import interpolate, interpolate_, model_tensors
from permerge.merging.permute import apply_permutations, permute_params
from tests import tiny

torch.set_num_threads(1)

CONFIG = dict(
    vocab_size=41,
    hidden_size=12,
    num_attention_heads=3,
    intermediate_size=20,
    num_hidden_layers=1,
    max_position_embeddings=16,
)


def mlm(seed=0, **overrides):
    return tiny.model(tiny.bert_config(CONFIG, **overrides), "mlm", seed=seed)


def test_permute_params_is_pure_and_gathers_along_axes():
    spec = bert_spec(BertConfig(**CONFIG), mlm_head=True, pooler=False, classifier=False)
    model = mlm()
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    before = {k: v.clone() for k, v in params.items()}
    p_res, p_ff = np.roll(np.arange(12), 1), np.arange(20)[::-1].copy()
    out = permute_params(params, spec, {"res": p_res, "ff.0": p_ff})
    assert all(torch.equal(params[k], before[k]) for k in params)  # inputs untouched
    w1 = "bert.encoder.layer.0.intermediate.dense.weight"
    torch.testing.assert_close(out[w1], params[w1][p_ff][:, p_res], rtol=0, atol=0)
    w2 = "bert.encoder.layer.0.output.dense.weight"
    torch.testing.assert_close(out[w2], params[w2][p_res][:, p_ff], rtol=0, atol=0)
    tr = "cls.predictions.transform.dense.weight"
    torch.testing.assert_close(out[tr], params[tr][p_res][:, p_res], rtol=0, atol=0)
    q = "bert.encoder.layer.0.attention.self.query.weight"  # qk perm absent -> rows untouched
    torch.testing.assert_close(out[q], params[q][:, p_res], rtol=0, atol=0)
    assert out["cls.predictions.bias"] is params["cls.predictions.bias"]


def test_state_dict_aliases_follow_the_tied_weight():
    model = mlm()
    spec = spec_for_model(model)
    sd = model.state_dict()
    assert "cls.predictions.decoder.weight" in sd
    p = np.random.default_rng(0).permutation(12)
    out = permute_params(sd, spec, {"res": p})
    torch.testing.assert_close(out["cls.predictions.decoder.weight"], out["bert.embeddings.word_embeddings.weight"])
    torch.testing.assert_close(out["cls.predictions.decoder.weight"], sd["cls.predictions.decoder.weight"][:, p])


def test_apply_permutations_copies_and_keeps_ties():
    model = mlm()
    spec = spec_for_model(model)
    perms = random_permutations(spec, np.random.default_rng(1))
    out = apply_permutations(model, perms)
    assert out is not model
    assert out.cls.predictions.decoder.weight is out.bert.embeddings.word_embeddings.weight
    emb = model.bert.embeddings.word_embeddings.weight
    torch.testing.assert_close(out.bert.embeddings.word_embeddings.weight, emb[:, perms["res"]], rtol=0, atol=0)
    assert not torch.equal(model.bert.embeddings.word_embeddings.weight, out.bert.embeddings.word_embeddings.weight)


@pytest.mark.parametrize(
    "perms, message",
    [
        ({"ff.3": np.arange(20)}, "unknown permutation 'ff.3'"),
        ({"ff.0": np.arange(19)}, "not a permutation of 20"),
        ({"res": np.zeros(12, dtype=int)}, "not a permutation of 12"),
    ],
)
def test_bad_permutations_are_rejected(perms, message):
    with pytest.raises(ValueError, match=message):
        apply_permutations(mlm(), perms)


def test_interpolate_in_place_exact_endpoints_and_buffers():
    a, b = mlm(0), mlm(1)
    with torch.no_grad():
        b.bert.embeddings.token_type_ids.fill_(1)  # a non-float buffer that differs
    pa, pb = model_tensors(a), model_tensors(b)
    target = mlm(2)
    ptrs = {n: t.data_ptr() for n, t in model_tensors(target).items()}
    for lam in (0.0, 1.0, 0.25):
        interpolate_(target, pa, pb, lam)
        for name, t in model_tensors(target).items():
            assert t.data_ptr() == ptrs[name]  # no reallocation
            if t.is_floating_point():
                want = pa[name] if lam == 0 else pb[name] if lam == 1 else 0.75 * pa[name] + 0.25 * pb[name]
                torch.testing.assert_close(t, want, rtol=0, atol=0 if lam in (0, 1) else 1e-7)
            else:
                assert torch.equal(t, pa[name])  # non-float buffers come from A
    assert target.cls.predictions.decoder.weight is target.bert.embeddings.word_embeddings.weight
    mid = interpolate(a, b, 0.5)
    assert mid is not a and mid is not b
    torch.testing.assert_close(mid.cls.predictions.bias, (a.cls.predictions.bias + b.cls.predictions.bias) / 2)
    torch.testing.assert_close(a.cls.predictions.bias, mlm(0).cls.predictions.bias, rtol=0, atol=0)  # A intact


def test_check_compatible_names_each_mismatch():
    base = BertConfig(**CONFIG, architectures=["BertForMaskedLM"])
    check_compatible(base, BertConfig(**CONFIG, architectures=["BertForMaskedLM"]))
    cases = [
        (dict(num_hidden_layers=2), "num_hidden_layers: 1 vs 2"),
        (dict(hidden_size=15), "hidden_size: 12 vs 15"),
        (dict(num_attention_heads=4), "num_attention_heads: 3 vs 4"),
        (dict(intermediate_size=21), "intermediate_size: 20 vs 21"),
        (dict(vocab_size=42), "vocab_size: 41 vs 42"),
        (dict(num_labels=3), "num_labels: 2 vs 3"),
        (dict(architectures=["BertForSequenceClassification"]), "architectures"),
    ]
    for change, message in cases:
        other = BertConfig(**{**CONFIG, "architectures": ["BertForMaskedLM"], **change})
        with pytest.raises(ValueError, match=message.replace("[", r"\[")):
            check_compatible(base, other)


def test_permutation_files_roundtrip(tmp_path):
    perms = {"res": np.array([2, 0, 1]), "ff.0": np.arange(5, dtype=np.int32)[::-1]}
    path = tmp_path / "perms.safetensors"
    save_permutations(perms, path, {"variant": "all"})
    loaded = load_permutations(path)
    assert set(loaded) == {"res", "ff.0"}
    assert all(v.dtype == np.int64 for v in loaded.values())
    assert loaded["res"].tolist() == [2, 0, 1] and loaded["ff.0"].tolist() == [4, 3, 2, 1, 0]
    assert read_permutation_metadata(path) == {"variant": "all"}
    assert [p.name for p in tmp_path.iterdir()] == ["perms.safetensors"]


def test_save_pretrained_atomic(tmp_path):
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    model = mlm()
    out = tmp_path / "out"
    save_pretrained_atomic(model, out, tok, write_extra=lambda d: (d / "extra.txt").write_text("x"))
    assert (out / "model.safetensors").is_file() and (out / "vocab.txt").is_file()
    assert (out / "extra.txt").read_text() == "x"
    loaded = AutoModelForMaskedLM.from_pretrained(out)
    torch.testing.assert_close(
        loaded.bert.embeddings.word_embeddings.weight, model.bert.embeddings.word_embeddings.weight
    )

    # a failure while writing leaves the previous result and no temporary directories
    def boom(_):
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_pretrained_atomic(mlm(1), out, tok, write_extra=boom)
    assert (out / "extra.txt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "tok"]
    with pytest.raises(RuntimeError):
        save_pretrained_atomic(model, tmp_path / "fresh", tok, write_extra=boom)
    assert not (tmp_path / "fresh").exists()

    # overwriting replaces the whole directory
    save_pretrained_atomic(mlm(1), out)
    assert not (out / "extra.txt").exists() and not (out / "vocab.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "tok"]
    with pytest.raises(FileNotFoundError, match="no tokenizer files"):
        save_pretrained_atomic(model, tmp_path / "x", tmp_path)


def test_sequence_classification_pooler_perm_moves_classifier_columns():
    model = tiny.model(tiny.bert_config(CONFIG, num_labels=1), "cls", seed=0)
    p = np.random.default_rng(0).permutation(12)
    out = apply_permutations(model, {"pooler": p})
    torch.testing.assert_close(out.classifier.weight, model.classifier.weight[:, p], rtol=0, atol=0)
    torch.testing.assert_close(out.bert.pooler.dense.bias, model.bert.pooler.dense.bias[p], rtol=0, atol=0)


def test_pretraining_checkpoint_permute_interpolate_save(tmp_path):
    """BertForPreTraining (the MultiBERTs' class): permuted, interpolated and saved with its pooler and NSP head."""
    from permerge.models import load_model

    def pretraining(seed):
        return tiny.model(tiny.bert_config(CONFIG, architectures=["BertForPreTraining"]), "pretraining", seed=seed)

    a, b = pretraining(0), pretraining(1)
    perms = random_permutations(spec_for_model(b), np.random.default_rng(2))
    assert {"res", "pooler", "ff.0", "attn.0", "qk.0"} <= set(perms)
    bp = apply_permutations(b, perms)
    assert bp.cls.predictions.decoder.weight is bp.bert.embeddings.word_embeddings.weight  # tie kept
    torch.testing.assert_close(
        bp.cls.seq_relationship.weight, b.cls.seq_relationship.weight[:, perms["pooler"]], rtol=0, atol=0
    )
    torch.testing.assert_close(
        bp.bert.pooler.dense.weight, b.bert.pooler.dense.weight[perms["pooler"]][:, perms["res"]], rtol=0, atol=0
    )
    ids = torch.randint(0, CONFIG["vocab_size"], (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref, out = b(input_ids=ids), bp(input_ids=ids)
    torch.testing.assert_close(out.seq_relationship_logits, ref.seq_relationship_logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.prediction_logits, ref.prediction_logits, rtol=0, atol=1e-5)

    mid = interpolate(a, bp, 0.5)
    assert mid.cls.predictions.decoder.weight is mid.bert.embeddings.word_embeddings.weight
    for name in (
        "cls.seq_relationship.weight",
        "cls.seq_relationship.bias",
        "bert.pooler.dense.weight",
        "cls.predictions.transform.dense.weight",
    ):
        want = (model_tensors(a)[name] + model_tensors(bp)[name]) / 2
        torch.testing.assert_close(model_tensors(mid)[name], want, rtol=0, atol=1e-7)

    save_pretrained_atomic(mid, tmp_path / "mid")
    assert (tmp_path / "mid" / "model.safetensors").is_file()
    loaded = load_model(tmp_path / "mid")
    assert type(loaded) is BertForPreTraining
    saved = model_tensors(loaded)
    assert all(torch.equal(saved[k], v) for k, v in model_tensors(mid).items())
    assert loaded.cls.predictions.decoder.weight is loaded.bert.embeddings.word_embeddings.weight
