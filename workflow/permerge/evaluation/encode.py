"""A BERT-style encoder's final hidden states at chosen positions only.

The MLM loss reads the last layer at the masked positions (15 % of a block) and a GLUE classifier at [CLS]
alone, yet a full forward runs the last layer's queries, attention output and feed-forward at every
position. `encode_at` runs the layers below in full and the last one with keys and values at every
position but everything else at the chosen positions: the same values (up to float rounding, tested
against the full forward), with gradients, for a quarter less encoder work in a 4-layer model (a twelfth
in BERT-base). Encoders that do not have BERT's layer structure get the full forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_SELF_ATTENTION = ("query", "key", "value", "num_attention_heads", "attention_head_size")


def prunable(base: torch.nn.Module) -> bool:
    """Whether `base` (BertModel, RobertaModel, ElectraModel, ...) has BERT's post-LN layers with plain
    self-attention in its last layer: a ModuleList `encoder.layer` whose last layer has attention.self
    (query/key/value), attention.output, intermediate and output, absolute positions, no decoder."""
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if not isinstance(layers, torch.nn.ModuleList) or len(layers) == 0:
        return False
    cfg = getattr(base, "config", None)
    if cfg is None or getattr(cfg, "is_decoder", False) or getattr(cfg, "add_cross_attention", False):
        return False
    if getattr(cfg, "position_embedding_type", "absolute") != "absolute":
        return False
    last = layers[-1]
    attention = getattr(last, "attention", None)
    self_att = getattr(attention, "self", None)
    return (
        all(hasattr(self_att, a) for a in _SELF_ATTENTION)
        and hasattr(attention, "output")
        and hasattr(last, "intermediate")
        and hasattr(last, "output")
    )


def encode_at(
    base: torch.nn.Module,
    sel: torch.Tensor,
    *,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    token_type_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """`base(...).last_hidden_state[sel]` ([n, hidden], rows in row-major order of the bool mask `sel`
    [batch, length]), with the last layer computed at the chosen positions only when `prunable(base)`."""
    inputs = {"input_ids": input_ids}
    if attention_mask is not None:
        inputs["attention_mask"] = attention_mask
    if token_type_ids is not None:
        inputs["token_type_ids"] = token_type_ids
    if not prunable(base):
        return base(**inputs).last_hidden_state[sel]
    layers = base.encoder.layer
    base.encoder.layer = layers[:-1]  # the model's own forward (embeddings, masks) up to the last layer
    try:
        hidden = base(**inputs).last_hidden_state
    finally:
        base.encoder.layer = layers
    return last_layer_at(layers[-1], hidden, sel, attention_mask)


def last_layer_at(
    layer: torch.nn.Module, hidden: torch.Tensor, sel: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """One post-LN BERT layer's output at the positions `sel` of its input `hidden` [B, T, H]."""
    att = layer.attention.self
    batch, length, _ = hidden.shape
    heads, head_dim = att.num_attention_heads, att.attention_head_size
    rows, cols = sel.nonzero(as_tuple=True)  # row-major, like hidden[sel]
    if rows.numel() == 0:
        return hidden[sel]
    # Each row's chosen positions as queries, padded to the largest count (slot = rank within the row).
    counts = sel.sum(1)
    slot = torch.arange(rows.numel(), device=rows.device) - (torch.cumsum(counts, 0) - counts)[rows]
    width = int(counts.max())
    pos = torch.zeros(batch, width, dtype=torch.long, device=hidden.device)
    pos[rows, slot] = cols
    chosen = hidden.gather(1, pos.unsqueeze(-1).expand(batch, width, hidden.shape[-1]))

    def split(t: torch.Tensor, n: int) -> torch.Tensor:
        return t.view(batch, n, heads, head_dim).transpose(1, 2)

    q = split(att.query(chosen), width)
    k, v = split(att.key(hidden), length), split(att.value(hidden), length)
    mask = None
    if attention_mask is not None and not bool(attention_mask.all()):
        mask = attention_mask[:, None, None, :].bool()
    dropout = att.dropout.p if att.training and hasattr(att, "dropout") else 0.0
    ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=head_dim**-0.5)
    ctx = ctx.transpose(1, 2).reshape(batch, width, heads * head_dim)[rows, slot]
    attended = layer.attention.output(ctx, hidden[rows, cols])
    return layer.output(layer.intermediate(attended), attended)
