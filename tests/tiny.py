"""Tiny encoders for the tests, built one way: a config of a test's shape and a seeded model with any head.

    config = tiny.bert_config(SHAPE, num_labels=3)   # BertConfig(**SHAPE, num_labels=3)
    model = tiny.model(config, "mlm", seed=0)        # BertForMaskedLM(config).eval(), weights after manual_seed(0)
    a, b = tiny.models(config, "cls", seeds=(0, 1))

A test module keeps its own shape (the numbers its assertions are about); shared here are how a config and a
seeded model are made, the settings under which permuting a model preserves its function exactly
(``PRESERVING``), and a default shape (``TINY``) for tests that need any small BERT. The head picks the class
the way ``transformers``' Auto classes do, so a config of another family gives that family's model.
"""

from __future__ import annotations

import torch
from transformers import (
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForPreTraining,
    AutoModelForSequenceClassification,
    BertConfig,
    PretrainedConfig,
)

TINY = dict(
    vocab_size=97,
    hidden_size=16,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=24,
    max_position_embeddings=32,
)
# No dropout (eval mode is not enough for a model put back in training), and weights large enough that
# permuted units are far apart.
PRESERVING = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, initializer_range=0.2)

HEADS = {
    "mlm": AutoModelForMaskedLM,
    "cls": AutoModelForSequenceClassification,
    "pretraining": AutoModelForPreTraining,
    "base": AutoModel,
}


def bert_config(shape: dict = TINY, **kw) -> BertConfig:
    """A BertConfig of ``shape`` with ``kw`` on top."""
    return BertConfig(**{**shape, **kw})


def model_class(config: PretrainedConfig, head: str = "mlm") -> type:
    """The class of ``config``'s family with this head (``mlm``, ``cls``, ``pretraining``, ``base``)."""
    return HEADS[head]._model_mapping[type(config)]


def model(config: PretrainedConfig, head: str = "mlm", seed: int | None = None) -> torch.nn.Module:
    """A model in eval mode; with ``seed``, its weights are drawn after ``torch.manual_seed(seed)``."""
    if seed is not None:
        torch.manual_seed(seed)
    return model_class(config, head)(config).eval()


def models(config: PretrainedConfig, head: str = "mlm", seeds=(0, 1)) -> list[torch.nn.Module]:
    """One model per seed, each drawn as ``model(config, head, seed)``."""
    return [model(config, head, seed) for seed in seeds]
