"""encode_at: the last layer at chosen positions only gives the full forward's values and gradients."""

import pytest
import torch
from transformers import (
    BertForMaskedLM,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertModel,
    RobertaConfig,
    RobertaForMaskedLM,
)

from permerge.evaluation.encode import encode_at, prunable
from permerge.evaluation.evaluate import _masked_logits, glue_logits
from tests import tiny

# Large initial weights: peaked attention, so a wrong score scale or mask shows (at BERT's 0.02 every
# head attends almost uniformly).
SHAPE = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64, initializer_range=0.3)


def bert_config(**kw):
    return tiny.bert_config(SHAPE, vocab_size=60, max_position_embeddings=40, **kw)


def batch(seed=0, rows=5, length=24):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 60, (rows, length), generator=g)
    sel = torch.rand(rows, length, generator=g) < 0.25
    sel[1] = False  # a row with nothing chosen
    sel[3, -1] = True  # the last position
    return ids, sel


def test_masked_positions_match_the_full_forward_values_and_gradients():
    torch.manual_seed(0)
    model = BertForMaskedLM(bert_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    assert prunable(model.bert)
    ids, sel = batch()
    weights = torch.randn(int(sel.sum()), 32)

    full = model.bert(input_ids=ids).last_hidden_state[sel]
    (full * weights).sum().backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)

    got = encode_at(model.bert, sel, input_ids=ids)
    assert got.shape == full.shape
    torch.testing.assert_close(got, full, atol=1e-5, rtol=1e-5)
    (got * weights).sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert set(grads) == set(want)
    for name, g in want.items():
        torch.testing.assert_close(grads[name], g, atol=1e-5, rtol=1e-4, msg=name)
    assert len(model.bert.encoder.layer) == 3  # the layer list is restored


def test_classification_logits_with_padding_match_the_model_in_eval_and_training():
    torch.manual_seed(1)
    model = BertForSequenceClassification(
        bert_config(num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    )
    ids, _ = batch(seed=1)
    mask = torch.ones_like(ids)
    mask[0, 10:] = 0
    mask[4, 3:] = 0
    data = {"input_ids": ids, "token_type_ids": (torch.arange(24) >= 12).long().expand(5, 24), "attention_mask": mask}
    data["lengths"] = mask.sum(1)
    idx = torch.tensor([4, 0, 2])
    width = int(data["lengths"][idx].max())
    inputs = {k: data[k][idx, :width] for k in ("input_ids", "token_type_ids", "attention_mask")}
    for training in (False, True):
        model.train(training)
        want = model(**inputs).logits
        got = glue_logits(model, data, idx, torch.device("cpu"))
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_attention_dropout_is_applied_in_training():
    torch.manual_seed(2)
    model = BertForMaskedLM(bert_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.5)).train()
    ids, sel = batch(seed=2)
    a = encode_at(model.bert, sel, input_ids=ids)
    b = encode_at(model.bert, sel, input_ids=ids)
    assert not torch.allclose(a, b)  # dropout masks differ between calls
    model.eval()
    torch.testing.assert_close(
        encode_at(model.bert, sel, input_ids=ids),
        model.bert(input_ids=ids).last_hidden_state[sel],
        atol=1e-5,
        rtol=1e-5,
    )


def test_roberta_mlm_and_unsupported_encoders():
    torch.manual_seed(3)
    cfg = RobertaConfig(vocab_size=60, max_position_embeddings=40, pad_token_id=1, **SHAPE)
    model = RobertaForMaskedLM(cfg).eval()
    ids, sel = batch(seed=3)
    torch.testing.assert_close(_masked_logits(model, ids, sel), model(input_ids=ids).logits[sel], atol=1e-5, rtol=1e-5)
    distil = DistilBertModel(DistilBertConfig(vocab_size=60, dim=32, n_layers=2, n_heads=4, hidden_dim=64))
    assert not prunable(distil)
    assert not prunable(BertForMaskedLM(bert_config(is_decoder=True)).bert)


def test_the_layer_list_is_restored_when_the_forward_fails():
    model = BertForMaskedLM(bert_config()).eval()
    ids, sel = batch()
    with pytest.raises(IndexError):
        encode_at(model.bert, sel, input_ids=ids + 100)  # ids beyond the vocabulary
    assert len(model.bert.encoder.layer) == 3
