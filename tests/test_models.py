"""Bad task data and mismatched checkpoints fail with errors naming the task / file."""

import json

import pytest
from transformers import BertConfig, BertForSequenceClassification

from permerge.models import load_model
from permerge.standins import validate_task_files


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
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=20, num_labels=3)
    BertForSequenceClassification(cfg).save_pretrained(tmp_path / "m")
    assert load_model(tmp_path / "m", num_labels=3).config.num_labels == 3
    with pytest.raises(ValueError, match=r"m: the checkpoint's head has 3 labels, the task needs 1"):
        load_model(tmp_path / "m", num_labels=1)


def test_refuses_pickled_checkpoints(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(FileNotFoundError, match="no safetensors weights"):
        load_model(tmp_path)
