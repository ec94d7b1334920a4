"""BERT's permutation symmetries as data (git-re-basin style).

A ``PermutationSpec`` maps each permutation name to the (parameter name, axis) pairs it acts on. Pure
functions in ``apply`` use it to permute parameters; tests use it to check that a spec matches a model and
that random permutations leave the function unchanged.

Permutation names (L layers, index l):
  res      the single residual-stream permutation (post-LN BERT: every LayerNorm output feeds a skip
           connection, so one permutation must serve the whole stream, embeddings and heads included)
  ff.{l}   FF intermediate units of layer l
  attn.{l} value / context units of layer l (head assignment + within-head order)
  qk.{l}   query and key units of layer l (must use attn.{l}'s head assignment to preserve the function)
  pooler   pooler output units (consumed by the classifier, or by the NSP head of BertForPreTraining)

Convention: a permutation is an index array p; permuting a parameter along an axis takes p as the gather
index (aligned[i] = original[p[i]]).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import torch


@dataclass(frozen=True)
class PermutationSpec:
    axes: dict[str, tuple[tuple[str, int], ...]]
    sizes: dict[str, int]
    # perm name -> number of equal blocks (attention heads) whose structure the perm must respect.
    blocks: dict[str, int] = field(default_factory=dict)
    # parameter name -> canonical name it is tied to (e.g. the MLM decoder weight -> word embeddings).
    aliases: dict[str, str] = field(default_factory=dict)

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


def bert_spec(config, *, prefix: str = "bert.", mlm_head: bool, pooler: bool,
              classifier: bool, nsp_head: bool = False) -> PermutationSpec:
    """The spec of a BERT (post-LN, absolute positions, no cross-attention) described by a BertConfig.

    ``nsp_head``: BertForPreTraining's next-sentence head ``cls.seq_relationship``, which reads the pooler.
    """
    _check_supported(config)
    if classifier and not pooler:
        raise ValueError("a sequence-classification head needs the pooler")
    if nsp_head and not pooler:
        raise ValueError("the next-sentence-prediction head needs the pooler")
    L = config.num_hidden_layers
    d = config.hidden_size
    heads = config.num_attention_heads
    p = prefix
    res: list[tuple[str, int]] = []
    axes: dict[str, tuple[tuple[str, int], ...]] = {}
    sizes: dict[str, int] = {"res": d}
    blocks: dict[str, int] = {}

    emb = f"{p}embeddings."
    res += [(f"{emb}word_embeddings.weight", 1), (f"{emb}position_embeddings.weight", 1),
            (f"{emb}token_type_embeddings.weight", 1)]
    res += _layernorm(f"{emb}LayerNorm")
    for l in range(L):
        lay = f"{p}encoder.layer.{l}."
        att = f"{lay}attention."
        res += [(f"{att}self.{m}.weight", 1) for m in ("query", "key", "value")]
        res += [(f"{att}output.dense.weight", 0), (f"{att}output.dense.bias", 0)]
        res += _layernorm(f"{att}output.LayerNorm")
        res += [(f"{lay}intermediate.dense.weight", 1)]
        res += [(f"{lay}output.dense.weight", 0), (f"{lay}output.dense.bias", 0)]
        res += _layernorm(f"{lay}output.LayerNorm")

        axes[f"ff.{l}"] = ((f"{lay}intermediate.dense.weight", 0), (f"{lay}intermediate.dense.bias", 0),
                           (f"{lay}output.dense.weight", 1))
        sizes[f"ff.{l}"] = config.intermediate_size
        axes[f"attn.{l}"] = ((f"{att}self.value.weight", 0), (f"{att}self.value.bias", 0),
                             (f"{att}output.dense.weight", 1))
        axes[f"qk.{l}"] = ((f"{att}self.query.weight", 0), (f"{att}self.query.bias", 0),
                           (f"{att}self.key.weight", 0), (f"{att}self.key.bias", 0))
        sizes[f"attn.{l}"] = sizes[f"qk.{l}"] = d
        blocks[f"attn.{l}"] = blocks[f"qk.{l}"] = heads

    aliases: dict[str, str] = {}
    if mlm_head:
        tr = "cls.predictions.transform."
        # The decoder reads the transform output through the (tied) word-embedding matrix, whose columns
        # res permutes; so the transform output must be permuted by res as well, not only its input.
        res += [(f"{tr}dense.weight", 1), (f"{tr}dense.weight", 0), (f"{tr}dense.bias", 0)]
        res += _layernorm(f"{tr}LayerNorm")
        if getattr(config, "tie_word_embeddings", True):
            aliases["cls.predictions.decoder.weight"] = f"{emb}word_embeddings.weight"
        else:
            res += [("cls.predictions.decoder.weight", 1)]
        aliases["cls.predictions.decoder.bias"] = "cls.predictions.bias"
    if pooler:
        res += [(f"{p}pooler.dense.weight", 1)]
        pool = [(f"{p}pooler.dense.weight", 0), (f"{p}pooler.dense.bias", 0)]
        if classifier:
            pool += [("classifier.weight", 1)]
        if nsp_head:
            pool += [("cls.seq_relationship.weight", 1)]
        axes["pooler"] = tuple(pool)
        sizes["pooler"] = d
    axes["res"] = tuple(res)
    return PermutationSpec(axes=axes, sizes=sizes, blocks=blocks, aliases=aliases)


def spec_for_model(model: torch.nn.Module) -> PermutationSpec:
    """Spec of a BertForPreTraining, BertForMaskedLM, BertForSequenceClassification or bare BertModel."""
    from transformers import BertForMaskedLM, BertForPreTraining, BertForSequenceClassification, BertModel

    if isinstance(model, BertForPreTraining):  # MLM head (tied decoder) + pooler + NSP head
        spec = bert_spec(model.config, mlm_head=True, pooler=True, classifier=False, nsp_head=True)
    elif isinstance(model, BertForMaskedLM):
        spec = bert_spec(model.config, mlm_head=True, pooler=model.bert.pooler is not None, classifier=False)
    elif isinstance(model, BertForSequenceClassification):
        spec = bert_spec(model.config, mlm_head=False, pooler=True, classifier=True)
    elif isinstance(model, BertModel):
        spec = bert_spec(model.config, prefix="", mlm_head=False, pooler=model.pooler is not None,
                         classifier=False)
    else:
        raise TypeError(f"unsupported model class {type(model).__name__} "
                        "(expected BertForPreTraining, BertForMaskedLM, BertForSequenceClassification or BertModel)")
    # Pick up any tie the model itself declares (robust to renamings across transformers versions).
    tied = getattr(model, "all_tied_weights_keys", None) or getattr(model, "_tied_weights_keys", None)
    if isinstance(tied, Mapping):
        extra = {k: v for k, v in tied.items() if k not in spec.aliases and k not in spec.param_axes()}
        if extra:
            spec = PermutationSpec(spec.axes, spec.sizes, spec.blocks, {**spec.aliases, **extra})
    return spec


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
                problems.append(f"perm {perm!r}: {name!r} axis {axis} has size "
                                f"{params[name].shape[axis]}, expected {size}")
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


def random_permutations(spec: PermutationSpec, rng: np.random.Generator, *,
                        qk: str = "separate", names=None) -> dict[str, np.ndarray]:
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
                out[f"qk.{layer}"] = (out[perm].copy() if qk == "shared" else
                                      np.concatenate([h * dh + rng.permutation(dh) for h in heads]))
        else:
            out[perm] = rng.permutation(size)
    return out


def _layernorm(name: str) -> list[tuple[str, int]]:
    return [(f"{name}.weight", 0), (f"{name}.bias", 0)]


def _check_supported(config) -> None:
    # Relative position embeddings, cross-attention or a pre-LN layout would need a different spec.
    pos = getattr(config, "position_embedding_type", "absolute")
    if pos not in (None, "absolute"):
        raise ValueError(f"unsupported position_embedding_type {pos!r} (only 'absolute')")
    if getattr(config, "add_cross_attention", False):
        raise ValueError("cross-attention BERTs are not supported")
    if config.hidden_size % config.num_attention_heads:
        raise ValueError(f"hidden_size {config.hidden_size} is not divisible by "
                         f"num_attention_heads {config.num_attention_heads}")
