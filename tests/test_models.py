"""Bad task data and mismatched checkpoints fail with errors naming the task / file."""

import json

import pytest
from transformers import BertConfig, BertForSequenceClassification

from permerge.data.jsonl import validate_task_files
from permerge.models import load_model


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_missing_label_column_names_task_and_file(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{"sentence": "a b", "label": 1, "idx": 0}])
    val = write_jsonl(tmp_path / "validation.jsonl", [{"sentence": "a b", "idx": 0}])
    with pytest.raises(ValueError, match=r"task sst2: column 'label' missing in .*validation.jsonl"):
        validate_task_files("sst2", {"train": train, "validation": val}, require_all=False)


def test_missing_split_names_task(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{"sentence": "a b", "label": 1, "idx": 0}])
    with pytest.raises(ValueError, match=r"task sst2: split\(s\) \['validation'\] missing"):
        validate_task_files("sst2", {"train": train})


def test_checkpoint_head_must_match_label_count(tmp_path):
    cfg = BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=20, num_labels=3
    )
    BertForSequenceClassification(cfg).save_pretrained(tmp_path / "m")
    assert load_model(tmp_path / "m", num_labels=3).config.num_labels == 3
    with pytest.raises(ValueError, match=r"m: the checkpoint's head has 3 labels, the task needs 1"):
        load_model(tmp_path / "m", num_labels=1)


def test_refuses_pickled_checkpoints(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(FileNotFoundError, match="no safetensors weights"):
        load_model(tmp_path)


# ------------------------------------------------------------------ hub-like seed checkpoints (the MultiBERTs)

HUB_VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "the",
    "cat",
    "sat",
    "on",
    "mat",
    "##s",
    "dog",
    ".",
    "un",
    "##happy",
    ",",
] + [f"w{i}" for i in range(24)]
TINY_BERT = dict(
    vocab_size=len(HUB_VOCAB),
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=32,
)


def hub_like_dir(path, model, state_dict=None):
    """A directory laid out as the MultiBERTs' hub repositories: config.json, a pickled pytorch_model.bin,
    vocab.txt, tokenizer_config.json, special_tokens_map.json; no safetensors, no tokenizer.json."""
    import torch

    path.mkdir(parents=True)
    model.config.architectures = [type(model).__name__]
    model.config.save_pretrained(path)
    torch.save(model.state_dict() if state_dict is None else state_dict, path / "pytorch_model.bin")
    (path / "vocab.txt").write_text("\n".join(HUB_VOCAB) + "\n")
    (path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": 512}))
    (path / "special_tokens_map.json").write_text(
        json.dumps(
            {
                "unk_token": "[UNK]",
                "sep_token": "[SEP]",
                "pad_token": "[PAD]",
                "cls_token": "[CLS]",
                "mask_token": "[MASK]",
            }
        )
    )
    assert sorted(p.name for p in path.iterdir()) == [
        "config.json",
        "pytorch_model.bin",
        "special_tokens_map.json",
        "tokenizer_config.json",
        "vocab.txt",
    ]
    return path


def test_fetch_checkpoint_keeps_pretraining_weights_as_safetensors(tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, BertConfig, BertForPreTraining

    from permerge.models import fetch_checkpoint

    torch.manual_seed(0)
    source = BertForPreTraining(BertConfig(**TINY_BERT)).eval()
    src = hub_like_dir(tmp_path / "hub", source)
    kept = fetch_checkpoint(src, tmp_path / "out")
    assert kept["architecture"] == "BertForPreTraining" and kept["pooler"] and kept["nsp_head"] and kept["mlm_head"]
    out = tmp_path / "out"
    names = sorted(p.name for p in out.iterdir())
    assert "model.safetensors" in names and "tokenizer.json" in names
    assert not any(n.endswith((".bin", ".pt", ".pth", ".pkl")) for n in names)
    saved = load_file(str(out / "model.safetensors"))
    ref = source.state_dict()
    for name in (
        "bert.pooler.dense.weight",
        "bert.pooler.dense.bias",
        "cls.seq_relationship.weight",
        "cls.seq_relationship.bias",
        "cls.predictions.transform.dense.weight",
        "cls.predictions.bias",
        "bert.encoder.layer.1.output.dense.weight",
    ):
        assert torch.equal(saved[name], ref[name]), name
    # the safetensors copy loads (safetensors only) as the same BertForPreTraining, same outputs
    model = load_model(out)
    assert type(model) is BertForPreTraining
    ids = torch.tensor([[2, 5, 6, 7, 3, 8, 5, 9, 3]])
    with torch.no_grad():
        a, b = model(input_ids=ids), source(input_ids=ids)
    torch.testing.assert_close(a.seq_relationship_logits, b.seq_relationship_logits, rtol=0, atol=1e-6)
    torch.testing.assert_close(a.prediction_logits, b.prediction_logits, rtol=0, atol=1e-6)
    # the fast tokenizer built from vocab.txt: lower-cased WordPiece over that vocabulary
    tok = AutoTokenizer.from_pretrained(str(out))
    assert tok.is_fast
    enc = tok("The cats sat on the MAT.", "Unhappy dog, w7")
    want = [
        "[CLS]",
        "the",
        "cat",
        "##s",
        "sat",
        "on",
        "the",
        "mat",
        ".",
        "[SEP]",
        "un",
        "##happy",
        "dog",
        ",",
        "w7",
        "[SEP]",
    ]
    assert enc["input_ids"] == [HUB_VOCAB.index(t) for t in want]
    assert enc["token_type_ids"] == [0] * 10 + [1] * 6
    assert tok.mask_token_id == 4 and tok.pad_token_id == 0 and tok.unk_token_id == 1
    assert tok("zebra")["input_ids"] == [2, 1, 3]


def test_fetch_checkpoint_masked_lm_has_no_pooler(tmp_path):
    import torch
    from transformers import BertConfig, BertForMaskedLM

    from permerge.models import fetch_checkpoint

    torch.manual_seed(0)
    kept = fetch_checkpoint(hub_like_dir(tmp_path / "hub", BertForMaskedLM(BertConfig(**TINY_BERT))), tmp_path / "o")
    assert kept["architecture"] == "BertForMaskedLM" and not kept["pooler"] and not kept["nsp_head"]
    assert type(load_model(tmp_path / "o")) is BertForMaskedLM


def test_fetch_checkpoint_refuses_other_architectures_and_missing_weights(tmp_path):
    from transformers import BertConfig, BertForPreTraining

    from permerge.models import fetch_checkpoint

    cfg = BertConfig(**TINY_BERT, num_labels=2)
    src = hub_like_dir(tmp_path / "cls", BertForSequenceClassification(cfg))
    with pytest.raises(
        ValueError,
        match=r"model '.*cls': .*architectures \['BertForSequenceClassification'\]; "
        r"supported: .*BertForPreTraining, BertForMaskedLM",
    ):
        fetch_checkpoint(src, tmp_path / "o1")
    model = BertForPreTraining(cfg)
    partial = {k: v for k, v in model.state_dict().items() if not k.startswith("bert.pooler.")}
    src = hub_like_dir(tmp_path / "nopool", model, partial)
    with pytest.raises(ValueError, match=r"nopool': weights missing from the checkpoint .*bert\.pooler\.dense"):
        fetch_checkpoint(src, tmp_path / "o2")
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_mlm_loss_of_pretraining_model_equals_masked_lm_with_same_weights():
    import torch
    import torch.nn.functional as F
    from transformers import BertConfig, BertForMaskedLM, BertForPreTraining

    from permerge.evaluation.evaluate import IGNORE_INDEX, mlm_loss

    torch.manual_seed(0)
    cfg = BertConfig(**TINY_BERT, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    pre = BertForPreTraining(cfg).eval()
    mlm = BertForMaskedLM(cfg).eval()
    missing, unexpected = mlm.load_state_dict(pre.state_dict(), strict=False)
    assert not missing and all(k.startswith(("bert.pooler.", "cls.seq_relationship.")) for k in unexpected)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, cfg.vocab_size, (10, 12), generator=g)
    labels = torch.where(torch.rand(ids.shape, generator=g) < 0.3, ids, torch.full_like(ids, IGNORE_INDEX))
    ev = {"input_ids": ids, "labels": labels}
    a, b = mlm_loss(pre, ev, batch_size=4), mlm_loss(mlm, ev, batch_size=4)
    assert a["n_tokens"] == b["n_tokens"] == int((labels != IGNORE_INDEX).sum()) > 0
    assert a["loss"] == pytest.approx(b["loss"], abs=1e-6) and a["accuracy"] == b["accuracy"]
    with torch.no_grad():  # and both equal the full pre-training forward's MLM cross-entropy
        full = F.cross_entropy(
            pre(input_ids=ids).prediction_logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX
        ).item()
    assert a["loss"] == pytest.approx(full, abs=1e-5)


def test_fetch_checkpoint_takes_a_roberta_mlm(tmp_path):
    """A user's own RoBERTa seeds (models.source: local) go through the same fetch: weights as safetensors,
    the tokenizer it ships; a RoBERTa without an MLM head is refused by name."""
    import torch
    from transformers import BertTokenizerFast, RobertaConfig, RobertaForMaskedLM, RobertaModel

    from permerge.models import fetch_checkpoint

    (tmp_path / "vocab.txt").write_text("\n".join(HUB_VOCAB) + "\n")
    tok = BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"))
    cfg = RobertaConfig(
        vocab_size=len(HUB_VOCAB),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=40,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    src = tmp_path / "roberta"
    model = RobertaForMaskedLM(cfg)
    model.save_pretrained(src)
    tok.save_pretrained(src)
    kept = fetch_checkpoint(src, tmp_path / "out")
    assert kept["architecture"] == "RobertaForMaskedLM" and not kept["pooler"]
    loaded = load_model(tmp_path / "out")
    assert type(loaded) is RobertaForMaskedLM
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    bare = tmp_path / "bare"
    RobertaModel(cfg).save_pretrained(bare)
    tok.save_pretrained(bare)
    with pytest.raises(
        ValueError,
        match=r"model_type 'roberta', architectures \['RobertaModel'\]; supported: .*roberta: RobertaForMaskedLM",
    ):
        fetch_checkpoint(bare, tmp_path / "out2")
