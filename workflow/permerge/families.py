"""Encoder families as data: one ``Family`` entry says everything the library needs to know about a family.

Per family: the transformers classes it covers (per ``model_type``) and the head each class carries, the
attribute holding the encoder and the path of its layer list, the modules inside a layer that carry each
hooked feature (``Layer``), whether the model takes token types, the names of its heads (MLM head, pooler,
sequence classifier) and the two small hooks that run its MLM head and name its fine-tuning dropouts, and the
config fields of its dimensions (for ``footprint``). ``spec``, ``stats``, ``evaluate``, ``finetune``,
``footprint``, ``models`` and the CLI ask this module; the lists of supported classes derive from it.

Adding a post-LN encoder family with absolute positions is adding one entry here (docs/extending.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is not imported here: the Snakefile reads footprint, which reads this registry
    import torch


@dataclass(frozen=True)
class Layer:
    """Module names inside one encoder layer (relative to the layer)."""

    query: str
    key: str
    value: str
    attn_out: str  # reads the concatenated head contexts (the ctx feature is its input)
    attn_norm: str  # LayerNorm after attention (a residual node)
    ff_in: str
    ff_act: str  # module whose output is the FF activation (the ff feature)
    ff_out: str
    out_norm: str  # LayerNorm after the FF block (a residual node)


BERT_LAYER = Layer(
    query="attention.self.query",
    key="attention.self.key",
    value="attention.self.value",
    attn_out="attention.output.dense",
    attn_norm="attention.output.LayerNorm",
    ff_in="intermediate.dense",
    ff_act="intermediate",
    ff_out="output.dense",
    out_norm="output.LayerNorm",
)

# transformers' config attribute of each footprint.Shape field
BERT_FIELDS = {
    "layers": "num_hidden_layers",
    "hidden": "hidden_size",
    "heads": "num_attention_heads",
    "ff": "intermediate_size",
    "vocab": "vocab_size",
    "positions": "max_position_embeddings",
    "type_vocab": "type_vocab_size",
}
BERT_DROPOUTS = ("hidden_dropout_prob", "attention_probs_dropout_prob")


@dataclass(frozen=True)
class Family:
    """Where a family's parameters and modules live (see the module docstring)."""

    name: str
    model_types: dict[str, str]  # config.model_type -> class-name prefix ("xlm-roberta" -> "XLMRoberta")
    heads: dict[str, str]  # class-name suffix -> head kind (pretraining, mlm, classification, base, discriminator)
    prefix: str  # attribute of the task models holding the encoder, plus "."
    layers: str  # the layer ModuleList inside the encoder
    layer: Layer
    token_types: bool  # whether forward() takes token_type_ids (and the embeddings have a type table)
    mlm_dense: str  # MLM head: hidden layer reading the last residual node ...
    mlm_norm: str  # ... its LayerNorm ...
    mlm_decoder: str  # ... and the vocabulary projection (tied to the word embeddings by default)
    mlm_bias_alias: tuple[str, str] | None  # (decoder bias, canonical bias) tied by transformers
    mlm_head: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]  # (MLM model, hidden rows) -> logits
    # Sequence classifier: None = the encoder's pooler feeds ``classifier`` (BERT); else the head's own
    # (hidden layer, reader) modules, the hidden layer on the first token playing the pooler's role.
    classifier_hidden: tuple[str, str] | None
    # (module, "pre" | "out") whose input / output is that hidden layer's activation, the statistics'
    # pooler feature (before a ReLU, whose dead units no correlation tells apart)
    classifier_feature: tuple[str, str] | None
    classifier_prefixes: tuple[str, ...]  # parameters fine-tuning draws from head_seed
    dropouts: tuple[str, ...]  # config fields fine-tuning's `dropout` sets
    fields: dict[str, str]  # footprint.Shape field -> config attribute (type_vocab absent: no token types)
    embedding_size: str | None = None  # config field of an embedding width that may differ (ELECTRA)
    pooler: bool = False  # whether its bare encoder builds a pooler (its MLM models never do)

    def classes(self) -> dict[str, str]:
        """transformers class name -> head kind."""
        return {f"{p}{s}": kind for p in self.model_types.values() for s, kind in self.heads.items()}

    def class_for(self, model_type: str, kind: str) -> str:
        """The class of this family's ``model_type`` carrying the head ``kind``."""
        suffix = next((s for s, k in self.heads.items() if k == kind), None)
        if suffix is None:
            raise ValueError(f"family {self.name!r} has no {kind} head")
        return f"{self.model_types[model_type]}{suffix}"

    @property
    def pooler_prefix(self) -> str:
        return f"{self.prefix}pooler."

    def has_pooler_layer(self, kind: str) -> bool:
        """Whether a model with head ``kind`` holds the encoder's own pooler (as transformers builds it)."""
        return self.pooler and (
            kind in ("base", "pretraining") or (kind == "classification" and self.classifier_hidden is None)
        )

    def pooler_weight(self) -> str:
        """The weight of the layer playing the pooler's role in a sequence classifier."""
        if self.classifier_hidden is None:
            return f"{self.pooler_prefix}dense.weight"
        return f"{self.classifier_hidden[0]}.weight"

    def base(self, model: torch.nn.Module) -> torch.nn.Module:
        """The encoder inside a task model (the model itself when bare)."""
        return getattr(model, self.prefix[:-1], model)

    def layer_list(self, model: torch.nn.Module) -> torch.nn.ModuleList:
        return self.base(model).get_submodule(self.layers)

    def model_inputs(self, inputs: dict) -> dict:
        """``inputs`` without token_type_ids when the family takes none."""
        return inputs if self.token_types else {k: v for k, v in inputs.items() if k != "token_type_ids"}


FAMILIES: dict[str, Family] = {
    "bert": Family(
        "bert",
        {"bert": "Bert"},
        {
            "ForPreTraining": "pretraining",
            "ForMaskedLM": "mlm",
            "ForSequenceClassification": "classification",
            "Model": "base",
        },
        "bert.",
        "encoder.layer",
        BERT_LAYER,
        token_types=True,
        mlm_dense="cls.predictions.transform.dense",
        mlm_norm="cls.predictions.transform.LayerNorm",
        mlm_decoder="cls.predictions.decoder.weight",
        mlm_bias_alias=("cls.predictions.decoder.bias", "cls.predictions.bias"),
        mlm_head=lambda m, h: m.cls.predictions(h),
        classifier_hidden=None,
        classifier_feature=None,  # the encoder's pooler output
        classifier_prefixes=("classifier.",),
        dropouts=BERT_DROPOUTS,
        fields=BERT_FIELDS,
        pooler=True,
    ),
    # XLM-R and CamemBERT are the RoBERTa architecture under other class names
    "roberta": Family(
        "roberta",
        {"roberta": "Roberta", "xlm-roberta": "XLMRoberta", "camembert": "Camembert"},
        {"ForMaskedLM": "mlm", "ForSequenceClassification": "classification", "Model": "base"},
        "roberta.",
        "encoder.layer",
        BERT_LAYER,
        token_types=True,
        mlm_dense="lm_head.dense",
        mlm_norm="lm_head.layer_norm",
        mlm_decoder="lm_head.decoder.weight",
        mlm_bias_alias=("lm_head.decoder.bias", "lm_head.bias"),
        mlm_head=lambda m, h: m.lm_head(h),
        classifier_hidden=("classifier.dense", "classifier.out_proj"),
        classifier_feature=("classifier.out_proj", "pre"),  # activation(dense(first token))
        classifier_prefixes=("classifier.",),
        dropouts=BERT_DROPOUTS,
        fields=BERT_FIELDS,
        pooler=True,  # RobertaModel; its classifier has its own hidden layer instead
    ),
    # the MLM head is ElectraForMaskedLM's generator head; its output lives in the embedding space
    "electra": Family(
        "electra",
        {"electra": "Electra"},
        {
            "ForPreTraining": "discriminator",
            "ForMaskedLM": "mlm",
            "ForSequenceClassification": "classification",
            "Model": "base",
        },
        "electra.",
        "encoder.layer",
        BERT_LAYER,
        token_types=True,
        mlm_dense="generator_predictions.dense",
        mlm_norm="generator_predictions.LayerNorm",
        mlm_decoder="generator_lm_head.weight",
        mlm_bias_alias=None,
        mlm_head=lambda m, h: m.generator_lm_head(m.generator_predictions(h)),
        classifier_hidden=("classifier.dense", "classifier.out_proj"),
        classifier_feature=("classifier.out_proj", "pre"),  # activation(dense(first token))
        classifier_prefixes=("classifier.",),
        dropouts=BERT_DROPOUTS,
        fields=BERT_FIELDS,
        embedding_size="embedding_size",
    ),
    # The DistilBERT entry is this family's whole support: its own layer module names, no token types, a
    # vocab_transform -> GELU -> vocab_layer_norm -> vocab_projector (tied) MLM head, and a classifier whose
    # pre_classifier (on the first token, then ReLU) plays the pooler's role.
    "distilbert": Family(
        "distilbert",
        {"distilbert": "DistilBert"},
        {"ForMaskedLM": "mlm", "ForSequenceClassification": "classification", "Model": "base"},
        "distilbert.",
        "transformer.layer",
        Layer(
            query="attention.q_lin",
            key="attention.k_lin",
            value="attention.v_lin",
            attn_out="attention.out_lin",
            attn_norm="sa_layer_norm",
            ff_in="ffn.lin1",
            ff_act="ffn.activation",
            ff_out="ffn.lin2",
            out_norm="output_layer_norm",
        ),
        token_types=False,
        mlm_dense="vocab_transform",
        mlm_norm="vocab_layer_norm",
        mlm_decoder="vocab_projector.weight",
        mlm_bias_alias=None,
        mlm_head=lambda m, h: m.vocab_projector(m.vocab_layer_norm(m.activation(m.vocab_transform(h)))),
        classifier_hidden=("pre_classifier", "classifier"),
        classifier_feature=("pre_classifier", "out"),
        classifier_prefixes=("pre_classifier.", "classifier."),
        dropouts=("dropout", "attention_dropout", "seq_classif_dropout"),
        fields={
            "layers": "n_layers",
            "hidden": "dim",
            "heads": "n_heads",
            "ff": "hidden_dim",
            "vocab": "vocab_size",
            "positions": "max_position_embeddings",
        },
    ),
}


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r} (known: {', '.join(FAMILIES)})")
    return FAMILIES[name]


def supported_classes() -> dict[str, tuple[str, str]]:
    """transformers class name -> (family, head kind), every family's classes."""
    return {cls: (f.name, kind) for f in FAMILIES.values() for cls, kind in f.classes().items()}


def model_types() -> dict[str, Family]:
    """config.model_type -> family."""
    return {t: f for f in FAMILIES.values() for t in f.model_types}


def family_of_type(model_type: str | None) -> Family:
    """The family of a config's model_type, else ValueError naming the supported ones."""
    types = model_types()
    if model_type not in types:
        raise ValueError(f"unsupported model_type {model_type!r} (supported: {', '.join(types)})")
    return types[model_type]


def family_of(model: torch.nn.Module) -> tuple[Family, str]:
    """(family, head kind) of a supported transformers model, looked up along its MRO (subclasses are
    accepted), else TypeError naming the supported classes."""
    classes = supported_classes()
    for cls in type(model).__mro__:
        if cls.__name__ in classes and cls.__module__.startswith("transformers."):
            name, kind = classes[cls.__name__]
            return FAMILIES[name], kind
    raise TypeError(
        f"unsupported model class {type(model).__name__} (supported: post-LN encoders with absolute "
        f"positions: {', '.join(classes)})"
    )
