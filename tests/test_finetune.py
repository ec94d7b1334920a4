"""Fine-tuning: a seed-independent head, seeded data order, the regression path, saved outputs."""

import json
import os
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest
import torch

from permerge.finetune import finetune, length_grouped_batches, load_for_classification, task_info
from permerge.pretrain import pretrain_bert

from .test_evaluate import ADJS, corpus_dir, make_sentences, tokenizer, tokenizer_dir  # noqa: F401  (fixtures)

TINY = dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=32, seq_len=32)


@pytest.fixture(scope="module")
def mlm_dirs(tokenizer_dir, corpus_dir, tmp_path_factory):
    """Two briefly pre-trained seeds (no pooler in the MLM checkpoints)."""
    root = tmp_path_factory.mktemp("mlm")
    for seed in (1, 2):
        pretrain_bert(tokenizer_dir=tokenizer_dir, text_file=corpus_dir / "train.txt", seed=seed,
                      out_dir=root / f"seed{seed}", steps=5, batch_size=8, **TINY)
    return root / "seed1", root / "seed2"


def _head(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()
            if n.startswith(("classifier.", "bert.pooler."))}


def test_head_identical_across_seeds(mlm_dirs):
    m1 = load_for_classification(mlm_dirs[0], num_labels=3, head_seed=0)
    m2 = load_for_classification(mlm_dirs[1], num_labels=3, head_seed=0)
    m3 = load_for_classification(mlm_dirs[1], num_labels=3, head_seed=1)
    h1, h2, h3 = _head(m1), _head(m2), _head(m3)
    assert set(h1) == {"bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias"}
    assert all(torch.equal(h1[k], h2[k]) for k in h1)
    assert not torch.equal(h1["classifier.weight"], h3["classifier.weight"])
    assert h1["classifier.weight"].std().item() == pytest.approx(m1.config.initializer_range, rel=0.3)
    assert (h1["classifier.bias"] == 0).all()
    # the encoder is each seed's own
    assert not torch.equal(m1.bert.embeddings.word_embeddings.weight, m2.bert.embeddings.word_embeddings.weight)


def test_pretrained_pooler_is_kept(mlm_dirs, tmp_path):
    m = load_for_classification(mlm_dirs[0], num_labels=2, head_seed=0)
    with torch.no_grad():
        m.bert.pooler.dense.weight.fill_(0.5)
    m.save_pretrained(str(tmp_path))
    again = load_for_classification(tmp_path, num_labels=2, head_seed=0)
    assert (again.bert.pooler.dense.weight == 0.5).all()  # a checkpoint's pooler is pre-trained: kept
    assert torch.equal(again.classifier.weight, m.classifier.weight)  # classifier re-drawn from head_seed 0


def _regression_task(n, seed):
    """Score = how many times 'happy' appears (0-3): learnable from the tokens alone."""
    rng = random.Random(seed)
    out = []
    for s in make_sentences(n, seed=seed):
        k = rng.randrange(4)
        words = s.rstrip(".").split()
        for _ in range(k):
            words.insert(rng.randrange(1, len(words)), "happy")
        out.append({"sentence1": " ".join(words), "sentence2": "the happy cat.", "label": float(k)})
    return out


def test_regression_finetuning_learns_and_saves(mlm_dirs, tmp_path):
    from transformers import AutoTokenizer, BertForSequenceClassification

    torch.set_num_threads(1)
    out = tmp_path / "stsb"
    m = finetune(model_dir=mlm_dirs[0], train_examples=_regression_task(256, 0), eval_examples=_regression_task(64, 1),
                 text_keys=["sentence1", "sentence2"], num_labels=1, metric="pearson", out_dir=out, seed=1,
                 lr=2e-3, epochs=6, batch_size=16, max_length=32)
    assert m["train_loss_final"] < 0.5 * m["train_loss_first"], m
    assert m["eval_loss"] < 1.0 and m["value"] == m["eval_pearson"] > 0.5, m
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["value"] == pytest.approx(m["value"]) and saved["metric"] == "pearson"
    model = BertForSequenceClassification.from_pretrained(str(out))
    assert model.config.num_labels == 1 and model.config.problem_type == "regression"
    assert AutoTokenizer.from_pretrained(str(out)).mask_token == "[MASK]"


def test_seed_controls_data_order_only(mlm_dirs, tmp_path):
    rng = random.Random(0)
    data = [{"sentence": s, "label": int(any(a in s for a in ADJS[:3]))} for s in make_sentences(48, seed=7)]
    rng.shuffle(data)
    kw = dict(model_dir=mlm_dirs[0], train_examples=data, eval_examples=data[:16], text_keys=["sentence"],
              num_labels=2, metric="matthews", epochs=1, batch_size=8, lr=1e-3, max_length=32)
    a = finetune(out_dir=tmp_path / "a", seed=1, **kw)
    b = finetune(out_dir=tmp_path / "b", seed=1, **kw)
    c = finetune(out_dir=tmp_path / "c", seed=2, **kw)
    assert a["eval_loss"] == b["eval_loss"] != c["eval_loss"]
    assert {"eval_accuracy", "eval_matthews", "value"} <= set(a)


def test_length_grouped_batches_cover_every_example_with_less_padding():
    lengths = torch.randint(5, 128, (2000,), generator=torch.Generator().manual_seed(0))
    batches = length_grouped_batches(lengths, 32, torch.Generator().manual_seed(1), group=10)
    assert len(batches) == 63  # ceil(2000 / 32), as unsorted batches
    assert sorted(torch.cat(batches).tolist()) == list(range(2000))
    padded = sum(int(lengths[b].max()) * len(b) for b in batches)
    random_batches = torch.randperm(2000, generator=torch.Generator().manual_seed(1)).split(32)
    padded_random = sum(int(lengths[b].max()) * len(b) for b in random_batches)
    assert padded < 0.7 * padded_random  # within-batch spread is one tenth of the range or less
    # The batch order is random (not longest first) and set by the generator.
    widths = [int(lengths[b].max()) for b in batches]
    assert widths != sorted(widths, reverse=True)
    again = length_grouped_batches(lengths, 32, torch.Generator().manual_seed(1), group=10)
    other = length_grouped_batches(lengths, 32, torch.Generator().manual_seed(2), group=10)
    assert all(torch.equal(x, y) for x, y in zip(batches, again))
    assert not all(torch.equal(x, y) for x, y in zip(batches, other))


def test_task_info_covers_glue():
    for task in ("mnli", "qqp", "qnli", "sst2", "cola", "stsb", "mrpc", "rte"):
        info = task_info(task)
        assert 1 <= len(info.text_keys) <= 2
        assert (info.num_labels == 1) == (task == "stsb")
    assert task_info("mnli").eval_split == "validation_mismatched"
