"""Permutation symmetries of post-LN encoders (BERT, RoBERTa / XLM-R / CamemBERT, ELECTRA) as data
(git-re-basin style).

A ``PermutationSpec`` maps each permutation name to the (parameter name, axis) pairs it acts on. Pure
functions in ``permute`` use it to permute parameters; tests use it to check that a spec matches a model and
that random permutations leave the function unchanged.

Permutation names (L layers, index l):
  res      the single residual-stream permutation (post-LN BERT: every LayerNorm output feeds a skip
           connection, so one permutation must serve the whole stream, embeddings and heads included)
  ff.{l}   FF intermediate units of layer l
  attn.{l} value / context units of layer l (head assignment + within-head order)
  qk.{l}   query and key units of layer l (must use attn.{l}'s head assignment to preserve the function)
  pooler   the hidden units of the head that reads the encoder: BERT's pooler (consumed by the classifier or
           the NSP head of BertForPreTraining); RoBERTa's / ELECTRA's classification head has no pooler but a
           hidden layer ``classifier.dense`` (on the first token) that plays its role, and ELECTRA's
           discriminator head ``discriminator_predictions.dense`` (on every token) is one too
  emb      ELECTRA with embedding_size != hidden_size only: the embedding space (word / position / type
           embeddings, their LayerNorm, the input of ``embeddings_project``, and the generator head's output,
           which the tied decoder reads); the residual stream then starts at the projection's output

Maps inside the heads (``head_maps``, used when a variant's ``within_head`` is not ``permutation``): after
the permutations, head j of qk.{l} / attn.{l} may also take an invertible d_k x d_k matrix M_j (stored in
A's basis, one per head). Every parameter axis it acts on is listed with how its per-head features change:
f -> f M (queries, values: weight rows and bias) or f -> f M^-T (keys; the output projection's input
columns), so q k^T and ctx W_O^T are unchanged: an exact symmetry of post-LN BERT as well (unlike rotations
of the residual stream, which LayerNorm's centring and gain do not commute with).

Families (``families.FAMILIES``) differ in the encoder's attribute name, the layers' module names and the
heads' parameter names, all read from their entry: every one is post-LN with absolute positions (RoBERTa's
position ids are offset by padding_idx, which changes which rows are read but not the hidden axis the spec
permutes).

Convention: a permutation is an index array p; permuting a parameter along an axis takes p as the gather
index (aligned[i] = original[p[i]]).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from permerge.families import FAMILIES, Family, family_of, supported_classes


@dataclass(frozen=True)
class PermutationSpec:
    axes: dict[str, tuple[tuple[str, int], ...]]
    sizes: dict[str, int]
    # perm name -> number of equal blocks (attention heads) whose structure the perm must respect.
    blocks: dict[str, int] = field(default_factory=dict)
    # parameter name -> canonical name it is tied to (e.g. the MLM decoder weight -> word embeddings).
    aliases: dict[str, str] = field(default_factory=dict)
    # perm name (qk.{l}, attn.{l}) -> (parameter, axis, inverse_transpose) its per-head maps act on
    # (module docstring); inverse_transpose: the features change by M^-T instead of M
    head_maps: dict[str, tuple[tuple[str, int, bool], ...]] = field(default_factory=dict)

    def param_axes(self) -> dict[str, dict[int, str]]:
        """parameter name -> {axis: perm name}, canonical names only."""
        out: dict[str, dict[int, str]] = {}
        for perm, pairs in self.axes.items():
            for param, axis in pairs:
                taken = out.setdefault(param, {})
                if axis in taken:
                    raise ValueError(f"axis {axis} of {param!r} claimed by both {taken[axis]!r} and {perm!r}")
                taken[axis] = perm
        return out

    def perms_for(self, name: str) -> dict[int, str]:
        """{axis: perm name} for a parameter name, following tied-weight aliases."""
        return self.param_axes().get(self.aliases.get(name, name), {})


# transformers class name -> (family, head). Looked up along the model's MRO (subclasses are accepted).
SUPPORTED_CLASSES: dict[str, tuple[str, str]] = supported_classes()


def bert_spec(
    config, *, prefix: str = "bert.", mlm_head: bool, pooler: bool, classifier: bool, nsp_head: bool = False
) -> PermutationSpec:
    """The spec of a BERT (post-LN, absolute positions, no cross-attention) described by a BertConfig.

    ``nsp_head``: BertForPreTraining's next-sentence head ``cls.seq_relationship``, which reads the pooler.
    """
    return encoder_spec(
        config, "bert", prefix=prefix, mlm_head=mlm_head, pooler=pooler, classifier=classifier, nsp_head=nsp_head
    )


def encoder_spec(
    config,
    family: str | Family,
    *,
    prefix: str | None = None,
    mlm_head: bool = False,
    pooler: bool = False,
    classifier: bool = False,
    nsp_head: bool = False,
    discriminator_head: bool = False,
) -> PermutationSpec:
    """The spec of a post-LN encoder of ``family`` (a ``families.FAMILIES`` name or entry) with the given
    heads.

    prefix: the encoder's parameter prefix (default the family's; "" for a bare encoder model).
    pooler: the encoder's own pooler (BERT, or a RobertaModel built with one). classifier: the sequence
    classification head (BERT: ``classifier`` on the pooler; others: the family's ``classifier_hidden``
    layer on the first token, e.g. RoBERTa's ``classifier.dense``, then its reader ``classifier.out_proj``).
    discriminator_head: ElectraForPreTraining's ``discriminator_predictions``.
    """
    fam = FAMILIES[family] if isinstance(family, str) else family
    _check_supported(config)
    if nsp_head and "pretraining" not in fam.heads.values():
        raise ValueError(f"family {fam.name!r} has no next-sentence-prediction head")
    if discriminator_head and "discriminator" not in fam.heads.values():
        raise ValueError(f"family {fam.name!r} has no discriminator head")
    if classifier and fam.classifier_hidden is None and not pooler:
        raise ValueError("a sequence-classification head needs the pooler")
    if nsp_head and not pooler:
        raise ValueError("the next-sentence-prediction head needs the pooler")
    if classifier and fam.classifier_hidden is not None and pooler:
        raise ValueError(
            f"family {fam.name!r}: a classification head with its own hidden layer and a pooler "
            "would both claim the 'pooler' permutation"
        )
    if discriminator_head and (pooler or classifier):
        raise ValueError("the discriminator head cannot be combined with a pooler or classifier")
    L = getattr(config, fam.fields["layers"])
    d = getattr(config, fam.fields["hidden"])
    heads = getattr(config, fam.fields["heads"])
    p = fam.prefix if prefix is None else prefix
    res: list[tuple[str, int]] = []
    axes: dict[str, tuple[tuple[str, int], ...]] = {}
    sizes: dict[str, int] = {"res": d}
    blocks: dict[str, int] = {}
    head_maps: dict[str, tuple[tuple[str, int, bool], ...]] = {}

    emb = f"{p}embeddings."
    e = getattr(config, fam.embedding_size, d) if fam.embedding_size else d
    # ELECTRA-small-like: embeddings live in their own space, projected into the residual stream
    space = "emb" if e != d else "res"
    emb_axes = [
        (f"{emb}word_embeddings.weight", 1),
        (f"{emb}position_embeddings.weight", 1),
    ]
    if fam.token_types:
        emb_axes += [(f"{emb}token_type_embeddings.weight", 1)]
    emb_axes += _layernorm(f"{emb}LayerNorm")
    if space == "emb":
        sizes["emb"] = e
        emb_axes += [(f"{p}embeddings_project.weight", 1)]
        res += [(f"{p}embeddings_project.weight", 0), (f"{p}embeddings_project.bias", 0)]
        emb_pairs: list[tuple[str, int]] = emb_axes
    else:
        res += emb_axes
        emb_pairs = res
    n = fam.layer
    for l in range(L):
        lay = f"{p}{fam.layers}.{l}."
        q, k, v, o = (f"{lay}{m}" for m in (n.query, n.key, n.value, n.attn_out))
        ff_in, ff_out = f"{lay}{n.ff_in}", f"{lay}{n.ff_out}"
        res += [(f"{m}.weight", 1) for m in (q, k, v)]
        res += [(f"{o}.weight", 0), (f"{o}.bias", 0)]
        res += _layernorm(f"{lay}{n.attn_norm}")
        res += [(f"{ff_in}.weight", 1)]
        res += [(f"{ff_out}.weight", 0), (f"{ff_out}.bias", 0)]
        res += _layernorm(f"{lay}{n.out_norm}")

        axes[f"ff.{l}"] = ((f"{ff_in}.weight", 0), (f"{ff_in}.bias", 0), (f"{ff_out}.weight", 1))
        sizes[f"ff.{l}"] = getattr(config, fam.fields["ff"])
        axes[f"attn.{l}"] = ((f"{v}.weight", 0), (f"{v}.bias", 0), (f"{o}.weight", 1))
        axes[f"qk.{l}"] = ((f"{q}.weight", 0), (f"{q}.bias", 0), (f"{k}.weight", 0), (f"{k}.bias", 0))
        sizes[f"attn.{l}"] = sizes[f"qk.{l}"] = d
        blocks[f"attn.{l}"] = blocks[f"qk.{l}"] = heads
        # q -> q M and k -> k M^-T keep q k^T; v -> v M (so the context, softmax V, too) and W_O's input
        # columns by M^-T keep ctx W_O^T
        head_maps[f"qk.{l}"] = (
            (f"{q}.weight", 0, False),
            (f"{q}.bias", 0, False),
            (f"{k}.weight", 0, True),
            (f"{k}.bias", 0, True),
        )
        head_maps[f"attn.{l}"] = ((f"{v}.weight", 0, False), (f"{v}.bias", 0, False), (f"{o}.weight", 1, True))

    aliases: dict[str, str] = {}
    if mlm_head:
        # The decoder reads the head's output through the (tied) word-embedding matrix, whose columns the
        # embedding-space perm (res, or emb for a projected ELECTRA) permutes; so the head's output must be
        # permuted by it as well, not only its input.
        res += [(f"{fam.mlm_dense}.weight", 1)]
        emb_pairs += [(f"{fam.mlm_dense}.weight", 0), (f"{fam.mlm_dense}.bias", 0)]
        emb_pairs += _layernorm(fam.mlm_norm)
        if getattr(config, "tie_word_embeddings", True):
            aliases[fam.mlm_decoder] = f"{emb}word_embeddings.weight"
        else:
            emb_pairs += [(fam.mlm_decoder, 1)]
        if fam.mlm_bias_alias is not None:
            aliases[fam.mlm_bias_alias[0]] = fam.mlm_bias_alias[1]
    # The head's hidden layer (see the module docstring): input from res, output units permuted by "pooler".
    hidden: tuple[str, str] | None = None
    if pooler:
        hidden = (f"{p}pooler.dense", "classifier.weight" if classifier else None)
    elif classifier:  # the head's own hidden layer (e.g. RoBERTa: first token -> dense -> out_proj)
        layer, reader = fam.classifier_hidden
        hidden = (layer, f"{reader}.weight")
    elif discriminator_head:
        hidden = ("discriminator_predictions.dense", "discriminator_predictions.dense_prediction.weight")
    if hidden is not None:
        layer, reader = hidden
        res += [(f"{layer}.weight", 1)]
        pool = [(f"{layer}.weight", 0), (f"{layer}.bias", 0)]
        if reader is not None:
            pool += [(reader, 1)]
        if nsp_head:
            pool += [("cls.seq_relationship.weight", 1)]
        axes["pooler"] = tuple(pool)
        sizes["pooler"] = d
    axes["res"] = tuple(res)
    if space == "emb":
        axes["emb"] = tuple(emb_pairs)
    return PermutationSpec(axes=axes, sizes=sizes, blocks=blocks, aliases=aliases, head_maps=head_maps)


def model_family(model: torch.nn.Module) -> tuple[str, str]:
    """(family, head) of a supported transformers model, else TypeError naming the supported classes."""
    fam, head = family_of(model)
    return fam.name, head


def spec_for_model(model: torch.nn.Module) -> PermutationSpec:
    """Spec of a supported encoder (``SUPPORTED_CLASSES``, from ``families.FAMILIES``): e.g. BERT
    (ForPreTraining, ForMaskedLM, ForSequenceClassification, Model), RoBERTa / XLM-R / CamemBERT (ForMaskedLM,
    ForSequenceClassification, Model), ELECTRA (ForPreTraining = discriminator, ForMaskedLM = generator,
    ForSequenceClassification, Model)."""
    family, head = model_family(model)
    base_attr = FAMILIES[family].prefix[:-1]
    base = getattr(model, base_attr, model)
    has_pooler = getattr(base, "pooler", None) is not None
    if head == "pretraining":  # MLM head (tied decoder) + pooler + NSP head
        spec = encoder_spec(model.config, family, mlm_head=True, pooler=True, nsp_head=True)
    elif head == "mlm":
        spec = encoder_spec(model.config, family, mlm_head=True, pooler=has_pooler)
    elif head == "classification":
        spec = encoder_spec(model.config, family, pooler=FAMILIES[family].classifier_hidden is None, classifier=True)
    elif head == "discriminator":
        spec = encoder_spec(model.config, family, discriminator_head=True)
    else:  # bare encoder
        spec = encoder_spec(model.config, family, prefix="", pooler=has_pooler)
    # Pick up any tie the model itself declares (robust to renamings across transformers versions).
    tied = getattr(model, "all_tied_weights_keys", None) or getattr(model, "_tied_weights_keys", None)
    if isinstance(tied, Mapping):
        extra = {k: v for k, v in tied.items() if k not in spec.aliases and k not in spec.param_axes()}
        if extra:
            spec = replace(spec, aliases={**spec.aliases, **extra})
    return _listed_names(spec, {name for name, _ in model.named_parameters()})


def _listed_names(spec: PermutationSpec, listed: set[str]) -> PermutationSpec:
    """Name each tied tensor as named_parameters() lists it (its first registration): XLM-R registers lm_head
    before the encoder, so its word embeddings are listed as lm_head.decoder.weight."""
    renames = {target: alias for alias, target in spec.aliases.items() if target not in listed and alias in listed}
    if not renames:
        return spec
    axes = {perm: tuple((renames.get(n, n), axis) for n, axis in pairs) for perm, pairs in spec.axes.items()}
    aliases = {k: v for k, v in spec.aliases.items() if k not in renames.values()}
    aliases.update({target: alias for target, alias in renames.items()})
    return replace(spec, axes=axes, aliases=aliases)


def check_spec(spec: PermutationSpec, params: Mapping[str, torch.Tensor] | torch.nn.Module) -> None:
    """Raise ValueError unless every (parameter, axis) of the spec exists with the perm's size and no
    axis is claimed by two perms."""
    if isinstance(params, torch.nn.Module):
        params = dict(params.named_parameters())
    problems = []
    for perm, pairs in spec.axes.items():
        size = spec.sizes.get(perm)
        if size is None:
            problems.append(f"perm {perm!r} has no size")
            continue
        if perm in spec.blocks and size % spec.blocks[perm]:
            problems.append(f"perm {perm!r}: size {size} not divisible into {spec.blocks[perm]} blocks")
        for name, axis in pairs:
            if name not in params:
                problems.append(f"perm {perm!r}: parameter {name!r} does not exist")
            elif axis >= params[name].dim():
                problems.append(f"perm {perm!r}: {name!r} has no axis {axis}")
            elif params[name].shape[axis] != size:
                problems.append(
                    f"perm {perm!r}: {name!r} axis {axis} has size {params[name].shape[axis]}, expected {size}"
                )
    try:
        spec.param_axes()
    except ValueError as err:
        problems.append(str(err))
    if problems:
        raise ValueError("permutation spec does not match the model:\n  " + "\n  ".join(problems))


def head_assignment(p: np.ndarray, num_blocks: int) -> np.ndarray | None:
    """The block (head) map of p if p moves whole blocks, else None."""
    p = np.asarray(p)
    dh = len(p) // num_blocks
    blocks = p.reshape(num_blocks, dh) // dh
    if not (blocks == blocks[:, :1]).all():
        return None
    return blocks[:, 0].copy()


def is_function_preserving(spec: PermutationSpec, perms: Mapping[str, np.ndarray]) -> bool:
    """True if the perms are an exact symmetry of the network the spec describes.

    Every perm is a symmetry except attention perms that mix heads, or Q/K and V/O perms that disagree on
    the head assignment (a missing perm is the identity).
    """
    for perm, nb in spec.blocks.items():
        if not perm.startswith("attn."):
            continue
        layer = perm.split(".", 1)[1]
        size = spec.sizes[perm]
        identity = np.arange(size)
        p_attn = np.asarray(perms.get(perm, identity))
        p_qk = np.asarray(perms.get(f"qk.{layer}", identity))
        h_attn, h_qk = head_assignment(p_attn, nb), head_assignment(p_qk, nb)
        if h_attn is None or h_qk is None or not np.array_equal(h_attn, h_qk):
            return False
    return True


def random_permutations(
    spec: PermutationSpec, rng: np.random.Generator, *, qk: str = "separate", names=None
) -> dict[str, np.ndarray]:
    """Random function-preserving perms for the spec (random head assignment and within-head orders).

    qk="shared" gives Q/K the V/O perm; "separate" gives them their own within-head orders under the same
    head assignment. ``names`` restricts which perms are drawn (default: all).
    """
    out: dict[str, np.ndarray] = {}
    wanted = set(spec.axes) if names is None else set(names)
    for perm in sorted(spec.axes):
        if perm not in wanted or perm.startswith("qk."):
            continue
        size = spec.sizes[perm]
        if perm in spec.blocks:
            layer = perm.split(".", 1)[1]
            nb = spec.blocks[perm]
            dh = size // nb
            heads = rng.permutation(nb)
            out[perm] = np.concatenate([h * dh + rng.permutation(dh) for h in heads])
            if f"qk.{layer}" in spec.axes:
                out[f"qk.{layer}"] = (
                    out[perm].copy()
                    if qk == "shared"
                    else np.concatenate([h * dh + rng.permutation(dh) for h in heads])
                )
        else:
            out[perm] = rng.permutation(size)
    return out


def _layernorm(name: str) -> list[tuple[str, int]]:
    return [(f"{name}.weight", 0), (f"{name}.bias", 0)]


def _check_supported(config) -> None:
    # Relative position embeddings, cross-attention or a pre-LN layout would need a different spec (pre-LN
    # variants are other classes, e.g. RobertaPreLayerNorm*, and are refused by model_family).
    pos = getattr(config, "position_embedding_type", "absolute")
    if pos not in (None, "absolute"):
        raise ValueError(
            f"unsupported position_embedding_type {pos!r} (only 'absolute'; supported: post-LN "
            "BERT, RoBERTa / XLM-R / CamemBERT and ELECTRA encoders with absolute positions)"
        )
    if getattr(config, "add_cross_attention", False):
        raise ValueError("cross-attention BERTs are not supported")
    if config.hidden_size % config.num_attention_heads:
        raise ValueError(
            f"hidden_size {config.hidden_size} is not divisible by num_attention_heads {config.num_attention_heads}"
        )
