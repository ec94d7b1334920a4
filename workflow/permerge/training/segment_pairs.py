"""Segment pairs for BERT's next-sentence prediction (NSP), cut from the pre-training text.

The corpus cache holds every line as [CLS] tokens [SEP] (pretrain.corpus_ids). `corpus_lines` strips those
markers into one stream of content tokens with the offset where each line starts. `nsp_batch` draws a batch
of [CLS] A [SEP] B [SEP] sequences of exactly `seq_len` tokens (no padding, so a step costs the same tokens as
an MLM block batch): A starts at a line start and is cut at a random length; B starts at a line start too and
fills the rest. Half the pairs (label 0, as BertForPreTraining's `next_sentence_label`) take B from the line
after A's end; the others (label 1) from a line at least `min_distance` tokens away from A. The text has no
document boundaries, so distance stands in for "another document". Both kinds of B begin at a line start and
A ends mid-line in both, so only the content tells them apart: mostly the topic words adjacent lines share.
"""

from __future__ import annotations

import torch


def corpus_lines(ids: torch.Tensor, *, cls_id: int, sep_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(content, starts): the ids without the per-line [CLS]/[SEP] markers, and the offset in `content` of
    each line's first token (lines left empty by the stripping are dropped)."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    keep = (ids != cls_id) & (ids != sep_id)
    before = torch.cumsum(keep, 0) - keep.long()  # content tokens before each position
    starts = torch.unique_consecutive(before[ids == cls_id])
    content = ids[keep]
    starts = starts[starts < len(content)]
    if len(starts) < 2:
        raise ValueError(f"the text has {len(starts)} non-empty line(s): NSP needs at least 2")
    return content, starts


def nsp_batch(
    content: torch.Tensor,
    starts: torch.Tensor,
    *,
    batch_size: int,
    seq_len: int,
    cls_id: int,
    sep_id: int,
    min_distance: int,
    generator: torch.Generator,
    min_segment: int | None = None,
) -> dict[str, torch.Tensor]:
    """A batch of NSP pairs: {"input_ids", "token_type_ids" [batch, seq_len], "next_sentence_label" [batch]}.

    Segment A gets a length drawn uniformly from [min_segment, seq_len - 3 - min_segment] (default min_segment:
    a quarter of the seq_len - 3 content tokens), B the rest. Reads past the end of `content` wrap around.
    """
    n, budget = len(content), seq_len - 3
    lo = budget // 4 if min_segment is None else int(min_segment)
    if lo < 1 or budget - lo < lo:
        raise ValueError(f"seq_len {seq_len} leaves no room for two segments of at least {lo} tokens")
    if not 0 < min_distance < n // 2:
        raise ValueError(f"min_distance {min_distance} must lie in (0, {n // 2}) for a text of {n} tokens")
    a_start = starts[torch.randint(len(starts), (batch_size,), generator=generator)]
    a_len = torch.randint(lo, budget - lo + 1, (batch_size,), generator=generator)
    random_b = torch.rand(batch_size, generator=generator) < 0.5
    # B of a random pair: the first line start at or after a point at least min_distance away either way.
    offset = torch.randint(min_distance, n - min_distance + 1, (batch_size,), generator=generator)
    nxt = torch.where(random_b, (a_start + offset) % n, (a_start + a_len) % n)
    b_idx = torch.searchsorted(starts, nxt)
    b_start = torch.where(b_idx < len(starts), starts[b_idx.clamp(max=len(starts) - 1)], starts[0])

    pos = torch.arange(budget)
    in_a = pos[None, :] < a_len[:, None]
    src = torch.where(in_a, a_start[:, None] + pos, b_start[:, None] + pos - a_len[:, None]) % n
    body = content[src]
    # Layout: [CLS] A (a_len tokens) [SEP] B [SEP]; token type 1 from B's first token through the last [SEP].
    full = torch.arange(seq_len)[None, :]
    mid = 1 + a_len[:, None]  # the middle [SEP]
    ids = body.gather(1, torch.where(full < mid, full - 1, full - 2).clamp(0, budget - 1).expand(batch_size, -1))
    ids = torch.where(full == 0, cls_id, ids)
    ids = torch.where((full == mid) | (full == seq_len - 1), sep_id, ids)
    types = (full > mid).long()
    return {"input_ids": ids, "token_type_ids": types, "next_sentence_label": random_b.long()}
