"""GLUE on RoBERTa, ELECTRA and DistilBERT: fine-tuning builds the family's classifier as the hub ships it
(RoBERTa's and ELECTRA's classifier.dense -> out_proj, DistilBERT's pre_classifier -> classifier, drawn from
head_seed), and the fine-tuned seeds align (`permerge align`) and sweep (the sweep_lambdas job's evaluator)
like BERTs. Offline: tiny random-init MLM seeds."""

import json

import numpy as np
import pytest
import torch
from transformers import (
    DistilBertConfig,
    DistilBertForMaskedLM,
    ElectraConfig,
    ElectraForMaskedLM,
    RobertaConfig,
    RobertaForMaskedLM,
)

from permerge.checkpoints import load_permutations
from permerge.evaluation.evaluate import lambda_sweep, task_evaluator
from permerge.models import load_model
from permerge.training.finetune import finetune, shared_pooler_init
from tests.test_cli import WORDS, save_tokenizer

BERT_DIMS = dict(hidden_size=16, num_attention_heads=2, intermediate_size=24, num_hidden_layers=2, pad_token_id=0)
HIDDEN_HEAD = {"classifier.dense", "classifier.out_proj"}
# (MLM class, config class, config, the classifier's modules)
FAMILIES = {
    # the hub's RoBERTa has one token type; the WordPiece test tokenizer gives single sentences type 0
    "roberta": (RobertaForMaskedLM, RobertaConfig, dict(BERT_DIMS, type_vocab_size=1), HIDDEN_HEAD),
    # ELECTRA-small-like: embeddings projected into the residual stream
    "electra": (ElectraForMaskedLM, ElectraConfig, dict(BERT_DIMS, embedding_size=12), HIDDEN_HEAD),
    "distilbert": (
        DistilBertForMaskedLM,
        DistilBertConfig,
        dict(dim=16, n_heads=2, hidden_dim=24, n_layers=2, pad_token_id=0),
        {"pre_classifier", "classifier"},
    ),
}


def sentiment(n, seed):
    """An SST-2-shaped task the tiny models can learn: positive iff the sentence names a bird."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        words = list(rng.choice(WORDS[:-2], size=rng.integers(3, 9)))
        if i % 2:
            words.insert(int(rng.integers(len(words))), "bird")
        rows.append({"sentence": " ".join(words), "label": i % 2})
    return rows


@pytest.mark.parametrize("family", list(FAMILIES))
def test_glue_finetune_align_and_sweep(tmp_path, family):
    from permerge.cli import main

    torch.set_num_threads(1)
    model_cls, config_cls, dims, head = FAMILIES[family]
    vocab = save_tokenizer(tmp_path / "tok")
    config = config_cls(vocab_size=vocab, max_position_embeddings=40, **dims)
    train, val = sentiment(128, 0), sentiment(48, 1)
    (tmp_path / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in val))
    (tmp_path / "text.txt").write_text("".join(r["sentence"] + "\n" for r in train))
    seeds = {}
    for seed in (1, 2):
        torch.manual_seed(seed)
        model_cls(config).save_pretrained(tmp_path / f"mlm{seed}")
        save_tokenizer(tmp_path / f"mlm{seed}")
        seeds[seed] = tmp_path / f"sst2-seed{seed}"
        metrics = finetune(
            model_dir=tmp_path / f"mlm{seed}",
            train_examples=train,
            eval_examples=val,
            text_keys=["sentence"],
            num_labels=2,
            metric="accuracy",
            out_dir=seeds[seed],
            seed=seed,
            head_seed=42,
            lr=3e-3,
            epochs=20,
            batch_size=16,
            max_length=16,
            dropout=0.0,
        )
        assert metrics["train_loss_final"] < 0.7 * metrics["train_loss_first"], metrics
        assert metrics["value"] > 0.7, metrics  # learnt, not chance (0.5)
        assert metrics["pooler_init"] == "head_seed"  # classifier.dense is drawn from head_seed
    a, b = load_model(seeds[1]), load_model(seeds[2])
    assert type(a).__name__ == f"{model_cls.__name__[: -len('ForMaskedLM')]}ForSequenceClassification"
    assert {n for n, _ in a.named_parameters() if "classifier" in n} == {
        f"{m}.{p}" for m in head for p in ("weight", "bias")
    }
    # both seeds started from the same head draw: their hidden layer is aligned by index, not permuted
    assert shared_pooler_init(seeds.values()) is not None

    (tmp_path / "v.yaml").write_text("components: [ff, attn, res, pooler]\nresidual: all\nqk: separate\n")
    args = ["align", "--model-a", str(seeds[1]), "--model-b", str(seeds[2]), "--text", str(tmp_path / "text.txt")]
    args += ["--options", str(tmp_path / "v.yaml"), "--out", str(tmp_path / "aligned"), "--device", "cpu"]
    assert main(args) == 0
    perms = load_permutations(tmp_path / "aligned" / "permutations.safetensors")
    expected = {"res"} | {f"{k}.{l}" for k in ("ff", "attn", "qk") for l in (0, 1)}
    if family == "electra":
        expected.add("emb")  # the embedding space before the projection, matched from its activations
    assert set(perms) == expected
    aligned = load_model(tmp_path / "aligned")

    evaluate, num_labels = task_evaluator("sst2", tmp_path / "val.jsonl", seeds[1], batch_size=16)
    rows = lambda_sweep(a, aligned, [0.0, 0.5, 1.0], evaluate, model_b=b)
    assert num_labels == 2 and [r["lambda"] for r in rows] == [0.0, 0.5, 1.0]
    assert rows[0]["accuracy"] == evaluate(a)["accuracy"] > 0.7
    # π(B) is B: the permutation keeps the classifier's function
    assert rows[-1]["loss"] == pytest.approx(rows[-1]["loss_b_unpermuted"], abs=1e-5)
    assert rows[-1]["accuracy"] == rows[-1]["accuracy_b_unpermuted"]
