"""Bad input fails with an error naming its cause; the untied MLM decoder works end to end."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoModelForMaskedLM

from permerge.alignment.matching import match_attention, match_ff, residual_correlation
from permerge.alignment.spec import random_permutations, spec_for_model
from permerge.alignment.stats import Statistics, collect_statistics
from permerge.checkpoints import load_permutations
from permerge.cli import main
from permerge.evaluation.evaluate import IGNORE_INDEX, mlm_loss
from permerge.merging.permute import apply_permutations
from tests import tiny
from tests.test_cli import save_tokenizer

torch.set_num_threads(1)

SHAPE = dict(
    vocab_size=30,
    hidden_size=16,
    num_attention_heads=2,
    intermediate_size=24,
    num_hidden_layers=2,
    max_position_embeddings=32,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)


def mlm(seed=0, **kw):
    return tiny.model(tiny.bert_config(SHAPE, **kw), "mlm", seed=seed)


def batch(n=3, length=7):
    ids = torch.randint(5, SHAPE["vocab_size"], (n, length), generator=torch.Generator().manual_seed(0))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}


# ------------------------------------------------------------------------------------------- matcher input


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_matcher_rejects_non_finite_correlations(bad):
    corr = np.eye(4)
    corr[1, 2] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        match_ff(corr)
    with pytest.raises(ValueError, match="NaN or inf"):
        match_attention(np.kron(np.eye(2), corr), 2)
    with pytest.raises(ValueError, match="NaN or inf"):
        match_ff(torch.tensor(corr))


@pytest.mark.parametrize("shape", [(3, 4), (4,), (2, 2, 2)])
def test_matcher_rejects_non_square_correlations(shape):
    with pytest.raises(ValueError, match=r"expected a square correlation matrix, got shape \(" + str(shape[0])):
        match_ff(np.zeros(shape))
    with pytest.raises(ValueError, match="square"):
        match_attention(np.zeros(shape), 1)


def test_unknown_residual_mode_names_the_mode_and_the_choices():
    stats = Statistics(
        ["a", "b"],
        [("a", "b")],
        {"res.0": 3},
        {
            "mean/res.0": torch.zeros(2, 2, dtype=torch.float64),
            "m2/res.0": torch.ones(2, 2, dtype=torch.float64),
            "cross/res.0/a/b": torch.eye(2, dtype=torch.float64),
        },
    )
    with pytest.raises(ValueError, match=r"unknown residual mode 'middle' \(allowed: first, last, all\)"):
        residual_correlation(stats, "a", "b", "middle", 1)
    residual_correlation(stats, "a", "b", "first", 1)  # the same statistics are fine for a known mode


# ------------------------------------------------------------------------------------------- statistics files


def test_loading_a_model_file_as_statistics_names_the_file(tmp_path):
    mlm().save_pretrained(tmp_path / "model")
    path = tmp_path / "model" / "model.safetensors"
    with pytest.raises(ValueError, match=f"{path} is not a statistics file .*missing metadata 'names'"):
        Statistics.load(path)


@pytest.mark.parametrize("content", [b"names\tpairs\n1\t2\n", b"", b"\x00" * 64])
def test_loading_a_non_safetensors_file_raises_value_error_naming_it(tmp_path, content):
    path = tmp_path / "stats.safetensors"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"{path} is not a statistics file"):
        Statistics.load(path)


def test_loading_statistics_with_bad_metadata(tmp_path):
    path = tmp_path / "stats.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"names": "[a", "pairs": "[]", "counts": "{}"})
    with pytest.raises(ValueError, match=f"{path} is not a statistics file \\(bad metadata"):
        Statistics.load(path)


def test_loading_a_missing_statistics_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.safetensors"):
        Statistics.load(tmp_path / "nowhere.safetensors")


@pytest.mark.parametrize("field, value", [("hidden_size", 24), ("intermediate_size", 32), ("num_hidden_layers", 3)])
def test_collect_statistics_rejects_models_of_different_shapes(field, value):
    other = mlm(1, **{field: value})
    with pytest.raises(
        ValueError, match=f"model 'b' differs in shape from model 'a': {field}={value} vs {SHAPE[field]}"
    ):
        collect_statistics([mlm(0), other], [batch()], names=["a", "b"])


def test_collect_statistics_rejects_a_pooler_mismatch():

    cls = tiny.model(tiny.bert_config(SHAPE), "cls", seed=0)
    with pytest.raises(ValueError, match="model 'b' and model 'a' differ in pooler presence"):
        collect_statistics([mlm(0), cls], [batch()], names=["a", "b"])


@pytest.mark.parametrize("pair", [("a", "c"), ("a", "a"), ("x", "b")])
def test_collect_statistics_rejects_bad_pairs(pair):
    with pytest.raises(ValueError, match=f"bad pair \\({pair[0]!r}, {pair[1]!r}\\)"):
        collect_statistics([mlm(0), mlm(1)], [batch()], names=["a", "b"], pairs=[pair])


def test_collect_statistics_rejects_no_batches_and_bad_names():
    with pytest.raises(ValueError, match="no batches"):
        collect_statistics([mlm(0), mlm(1)], [], names=["a", "b"])
    with pytest.raises(ValueError, match="unique"):
        collect_statistics([mlm(0), mlm(1)], [batch()], names=["a", "a"])


# ------------------------------------------------------------------------------------------- evaluation


def test_mlm_loss_without_masked_tokens():
    ids = batch()["input_ids"]
    with pytest.raises(ValueError, match="no masked tokens"):
        mlm_loss(mlm(), {"input_ids": ids, "labels": torch.full_like(ids, IGNORE_INDEX)})


# ------------------------------------------------------------------------------------------- untied decoder


def untied(seed, **kw):
    model = mlm(seed, tie_word_embeddings=False, **kw)
    dec, emb = model.cls.predictions.decoder.weight, model.bert.embeddings.word_embeddings.weight
    assert dec.data_ptr() != emb.data_ptr()
    with torch.no_grad():  # make the decoder clearly its own matrix
        dec.copy_(torch.randn(dec.shape, generator=torch.Generator().manual_seed(seed + 10)))
    return model


def test_untied_decoder_permuted_model_gives_the_same_logits():
    model = untied(0)
    perms = random_permutations(spec_for_model(model), np.random.default_rng(0))
    assert "res" in perms
    permuted = apply_permutations(model, perms)
    dec = permuted.cls.predictions.decoder.weight
    assert dec.data_ptr() != permuted.bert.embeddings.word_embeddings.weight.data_ptr()  # still untied
    assert not torch.equal(dec, model.cls.predictions.decoder.weight)  # its input columns moved with res
    with torch.no_grad():
        ref, got = model(**batch()).logits, permuted(**batch()).logits
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)


def test_align_cli_on_untied_models(tmp_path):
    vocab = save_tokenizer(tmp_path / "tok")
    for seed in (1, 2):
        untied(seed, vocab_size=vocab).save_pretrained(tmp_path / f"m{seed}")
        save_tokenizer(tmp_path / f"m{seed}")
    rng = np.random.default_rng(0)
    words = "the a cat dog sat on mat ran fast slow red blue big small house tree bird sings".split()
    (tmp_path / "text.txt").write_text(
        "\n".join(" ".join(rng.choice(words, rng.integers(2, 10))) for _ in range(30)) + "\n"
    )
    (tmp_path / "all.yaml").write_text("components: [ff, attn, res]\nresidual: all\n")
    rc = main(
        [
            "align",
            "--model-a",
            str(tmp_path / "m1"),
            "--model-b",
            str(tmp_path / "m2"),
            "--text",
            str(tmp_path / "text.txt"),
            "--options",
            str(tmp_path / "all.yaml"),
            "--out",
            str(tmp_path / "aligned"),
            "--batch-size",
            "8",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    perms = load_permutations(tmp_path / "aligned" / "permutations.safetensors")
    assert "res" in perms and not np.array_equal(perms["res"], np.arange(SHAPE["hidden_size"]))
    b = AutoModelForMaskedLM.from_pretrained(tmp_path / "m2").eval()
    aligned = AutoModelForMaskedLM.from_pretrained(tmp_path / "aligned").eval()
    assert not aligned.config.tie_word_embeddings
    assert (
        aligned.cls.predictions.decoder.weight.data_ptr() != aligned.bert.embeddings.word_embeddings.weight.data_ptr()
    )
    ids = torch.randint(0, vocab, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(aligned(input_ids=ids).logits, b(input_ids=ids).logits, atol=1e-4, rtol=0)
