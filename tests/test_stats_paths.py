"""The statistics numerics through both CPU elementwise paths (numpy and torch), and cuda against CPU.

With few threads `_numpy_path` picks numpy, so without forcing the torch path it would never run in the
tests. The cuda tests skip where no GPU is present; they compare the GPU paths (statistics, MLM loss, one
fine-tuning step) with CPU.
"""

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForMaskedLM

import permerge.alignment.stats as stats_mod
from permerge.alignment.stats import collect_statistics, force_path
from permerge.evaluation.evaluate import bert_mask, mlm_loss
from tests import test_stats, tiny

torch.set_num_threads(1)

PATHS = ("numpy", "torch")


@pytest.fixture
def path_calls(monkeypatch):
    """Records every decision of `_numpy_path` (True = numpy) so a test can prove which path ran."""
    calls = []
    real = stats_mod._numpy_path

    def spy(t):
        calls.append(real(t))
        return calls[-1]

    monkeypatch.setattr(stats_mod, "_numpy_path", spy)
    return calls


@pytest.mark.parametrize("path", PATHS)
def test_streamed_correlation_equals_numpy_corrcoef_on_both_paths(path, path_calls):
    with force_path(path):
        test_stats.test_streamed_correlation_equals_numpy_corrcoef()
    assert path_calls and set(path_calls) == {path == "numpy"}


@pytest.mark.parametrize("path", PATHS)
def test_chan_merge_with_large_offsets_on_both_paths(path, path_calls):
    with force_path(path):
        test_stats.test_chan_merge_is_stable_for_large_offsets()
    assert path_calls and set(path_calls) == {path == "numpy"}


def test_both_paths_give_the_same_statistics():
    """The two paths differ only in float32 rounding of the centring (measured: at most ~5e-8)."""
    ms = test_stats.make_models(n=2)
    batches = test_stats.make_batches()
    out = {}
    for path in PATHS:
        with force_path(path):
            out[path] = collect_statistics(ms, batches, names=["a", "b"])
    for f in out["numpy"].features:
        np.testing.assert_allclose(
            out["torch"].correlation(f, "a", "b").numpy(),
            out["numpy"].correlation(f, "a", "b").numpy(),
            rtol=0,
            atol=1e-6,
            err_msg=f,
        )
        np.testing.assert_allclose(
            out["torch"].var(f, "b").numpy(), out["numpy"].var(f, "b").numpy(), rtol=1e-6, atol=1e-9, err_msg=f
        )


def test_force_path_restores_and_rejects_unknown_paths():
    x = torch.zeros(3, 2)
    automatic = stats_mod._numpy_path(x)
    with force_path("torch"):
        assert not stats_mod._numpy_path(x)
        with force_path("numpy"):
            assert stats_mod._numpy_path(x)
        assert not stats_mod._numpy_path(x)
    assert stats_mod._numpy_path(x) == automatic
    with pytest.raises(ValueError, match="'numpy', 'torch' or None"):
        with force_path("cupy"):
            pass


# ------------------------------------------------------------------------------------------- cuda vs CPU

needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA (torch.cuda.is_available() is False): compares cuda with CPU"
)


def compare_statistics(device: str):
    """Statistics with models and accumulators on `device` equal those computed on CPU."""
    ms = test_stats.make_models(n=2)
    batches = test_stats.make_batches()
    ref = collect_statistics(ms, batches, names=["a", "b"])
    moved = [m.to(device) for m in test_stats.make_models(n=2)]
    got = collect_statistics(moved, batches, names=["a", "b"], device=device)
    assert got.count == ref.count
    for f in ref.features:
        np.testing.assert_allclose(
            got.correlation(f, "a", "b").cpu().numpy(), ref.correlation(f, "a", "b").numpy(), atol=1e-5, err_msg=f
        )
        np.testing.assert_allclose(got.mean(f, "b").cpu().numpy(), ref.mean(f, "b").numpy(), atol=1e-5, err_msg=f)
        np.testing.assert_allclose(
            got.var(f, "a").cpu().numpy(), ref.var(f, "a").numpy(), rtol=1e-4, atol=1e-7, err_msg=f
        )


def compare_mlm_loss(device: str):
    model = tiny.model(config := tiny.bert_config(test_stats.CONFIG), "mlm", seed=0)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, config.vocab_size, (12, 20), generator=g)
    masked, labels = bert_mask(ids, special=[0, 1, 2, 3, 4], mask_token_id=4, vocab_size=config.vocab_size, generator=g)
    evalset = {"input_ids": masked, "labels": labels}
    ref = mlm_loss(model, evalset, batch_size=5)
    got = mlm_loss(model.to(device), evalset, batch_size=5)
    assert got["n_tokens"] == ref["n_tokens"] > 0
    assert got["loss"] == pytest.approx(ref["loss"], rel=1e-5)
    assert got["accuracy"] == pytest.approx(ref["accuracy"], abs=1.5 / ref["n_tokens"])  # at most one tie flips


def compare_finetune_step(device: str, tmp_path):
    """One fine-tuning step (one batch holds the whole train set) on `device` and on CPU."""
    from permerge.training.finetune import finetune

    tok = test_stats.tiny_tokenizer()
    config = BertConfig(**{**test_stats.CONFIG, "vocab_size": len(tok)})
    torch.manual_seed(0)
    base = tmp_path / "base"
    BertForMaskedLM(config).save_pretrained(base)
    tok.save_pretrained(base)
    words = "the a cat dog sat on mat ran fast slow red blue big small house tree bird sings".split()
    rng = np.random.default_rng(0)
    examples = [{"sentence": " ".join(rng.choice(words, rng.integers(2, 8))), "label": int(i % 2)} for i in range(16)]
    lr = 1e-3
    kw = dict(
        model_dir=base,
        train_examples=examples,
        eval_examples=examples,
        text_keys=["sentence"],
        num_labels=2,
        metric="accuracy",
        seed=1,
        lr=lr,
        epochs=1,
        batch_size=16,
        warmup=0.0,
    )
    ref = finetune(**kw, out_dir=tmp_path / "cpu", device="cpu")
    got = finetune(**kw, out_dir=tmp_path / "dev", device=device)
    assert ref["steps"] == got["steps"] == 1
    # the first step's loss (before any update) and the evaluation after it
    assert got["train_loss_first"] == pytest.approx(ref["train_loss_first"], rel=1e-5)
    assert got["eval_loss"] == pytest.approx(ref["eval_loss"], rel=1e-3)
    from safetensors.torch import load_file

    w_ref, w_got = load_file(tmp_path / "cpu" / "model.safetensors"), load_file(tmp_path / "dev" / "model.safetensors")
    assert set(w_ref) == set(w_got)
    init = load_file(base / "model.safetensors")
    moved = 0
    for k, t in w_ref.items():
        diff = (w_got[k] - t).abs()
        # Adam's first step moves each weight by ~lr·sign(grad): devices may disagree only where the gradient
        # is at rounding level, so almost every weight must agree far below lr
        assert diff.max().item() <= 2 * lr + 1e-5, k
        assert (diff > 1e-5).float().mean().item() <= 0.01, k
        if k in init:
            moved += int(((t - init[k]).abs() > lr / 2).sum())
    assert moved > 1000  # the step really changed the encoder


@needs_cuda
def test_statistics_cuda_equals_cpu():
    compare_statistics("cuda")


@needs_cuda
def test_mlm_loss_cuda_equals_cpu():
    compare_mlm_loss("cuda")


@needs_cuda
def test_finetune_step_cuda_equals_cpu(tmp_path):
    compare_finetune_step("cuda", tmp_path)
