"""The NSP segment pairs cut from the pre-training text: layout, token types, token budget, negatives."""

import pytest
import torch

from permerge.training.segment_pairs import corpus_lines, nsp_batch

CLS, SEP = 2, 3


def _corpus(n_lines: int, length: int = 5) -> torch.Tensor:
    """Line i is [CLS] 1000*(i+1)+0 ... 1000*(i+1)+length-1 [SEP]: every token names its line and place."""
    return torch.cat(
        [torch.tensor([CLS, *range(1000 * (i + 1), 1000 * (i + 1) + length), SEP]) for i in range(n_lines)]
    )


def _line(token: int) -> int:
    return token // 1000 - 1


def test_corpus_lines_strips_markers_and_finds_line_starts():
    ids = torch.tensor([CLS, 10, 11, SEP, CLS, SEP, CLS, 12, SEP])  # the middle line is empty
    content, starts = corpus_lines(ids, cls_id=CLS, sep_id=SEP)
    assert content.tolist() == [10, 11, 12]
    assert starts.tolist() == [0, 2]
    with pytest.raises(ValueError, match="at least 2"):
        corpus_lines(torch.tensor([CLS, 10, SEP]), cls_id=CLS, sep_id=SEP)


def test_nsp_batch_layout_budget_and_labels():
    content, starts = corpus_lines(_corpus(400), cls_id=CLS, sep_id=SEP)
    seq_len, n = 23, len(content)  # 20 content tokens, segments of 5..15
    batch = nsp_batch(
        content,
        starts,
        batch_size=512,
        seq_len=seq_len,
        cls_id=CLS,
        sep_id=SEP,
        min_distance=n // 10,
        generator=torch.Generator().manual_seed(0),
    )
    ids, types, labels = batch["input_ids"], batch["token_type_ids"], batch["next_sentence_label"]
    assert ids.shape == types.shape == (512, seq_len)  # no padding: the MLM blocks' token budget
    assert 0.4 < labels.float().mean() < 0.6
    a_lens = []
    for row, typ, label in zip(ids.tolist(), types.tolist(), labels.tolist()):
        assert row[0] == CLS and row[-1] == SEP and row.count(SEP) == 2 and row.count(CLS) == 1
        mid = row.index(SEP)
        a, b = row[1:mid], row[mid + 1 : -1]
        a_lens.append(len(a))
        assert 5 <= len(a) <= 15 and len(a) + len(b) == seq_len - 3
        assert typ == [0] * (mid + 1) + [1] * (seq_len - mid - 1)
        assert a[0] % 1000 == 0 and b[0] % 1000 == 0  # both segments start at a line start
        # Each segment is contiguous text (tokens in corpus order, wrapping at its end).
        for seg in (a, b):
            flat = [(_line(t), t % 1000) for t in seg]
            assert all((l2, p2) == ((l1 + (p1 == 4)) % 400, (p1 + 1) % 5) for (l1, p1), (l2, p2) in zip(flat, flat[1:]))
        end_line, b_line = _line(a[-1]), _line(b[0])
        if label == 0:  # the next line after A's last token
            assert b_line == (end_line + 1) % 400
        else:  # at least min_distance tokens (here 200, i.e. 40 lines) away from A's start either way
            gap = (b_line - _line(a[0])) % 400
            assert 40 <= gap <= 400 - 40
    assert min(a_lens) == 5 and max(a_lens) == 15  # the whole range of split points is drawn


def test_nsp_batch_depends_only_on_the_generator():
    content, starts = corpus_lines(_corpus(100), cls_id=CLS, sep_id=SEP)
    kw = dict(batch_size=8, seq_len=19, cls_id=CLS, sep_id=SEP, min_distance=50)
    a = nsp_batch(content, starts, generator=torch.Generator().manual_seed(3), **kw)
    b = nsp_batch(content, starts, generator=torch.Generator().manual_seed(3), **kw)
    c = nsp_batch(content, starts, generator=torch.Generator().manual_seed(4), **kw)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["input_ids"], c["input_ids"])
    with pytest.raises(ValueError, match="min_distance"):
        nsp_batch(content, starts, generator=torch.Generator(), **{**kw, "min_distance": len(content)})
    with pytest.raises(ValueError, match="seq_len 4"):
        nsp_batch(content, starts, generator=torch.Generator(), **{**kw, "seq_len": 4})
