"""Merging all seeds at once: to a reference and iteratively (MergeMany), on planted permutations."""

import numpy as np
import pytest
import torch

from permerge.alignment.spec import random_permutations, spec_for_model
from permerge.alignment.weight_matching import weight_matching
from permerge.merging.interpolate import model_tensors
from permerge.merging.many import average, into_model, iterative, to_reference
from permerge.merging.permute import apply_permutations
from tests import tiny

CFG = dict(
    vocab_size=60,
    hidden_size=24,
    num_hidden_layers=2,
    num_attention_heads=3,
    intermediate_size=40,
    max_position_embeddings=32,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)


@pytest.fixture(scope="module")
def planted():
    a = tiny.model(tiny.bert_config(CFG), "mlm", seed=0)
    spec = spec_for_model(a)
    rng = np.random.default_rng(1)
    models = [a] + [apply_permutations(a, random_permutations(spec, rng, qk="shared")) for _ in range(3)]
    return spec, models


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def match(target, params_b, spec):
    return weight_matching(spec, target, params_b, seed=0).perms


def test_average_is_the_mean():
    p = [
        {"w": torch.tensor([1.0, 2.0]), "i": torch.tensor([1])},
        {"w": torch.tensor([3.0, 6.0]), "i": torch.tensor([2])},
    ]
    out = average(p)
    assert torch.equal(out["w"], torch.tensor([2.0, 4.0])) and torch.equal(out["i"], torch.tensor([1]))


def test_to_reference_recovers_the_planted_model(planted):
    spec, models = planted
    params = [model_tensors(m) for m in models]
    res = to_reference(spec, params, lambda t, b: match(t, b, spec))
    for name, t in params[0].items():
        assert torch.allclose(res.params[name], t, atol=1e-6), name
    ids = torch.randint(5, 60, (2, 12))
    torch.testing.assert_close(
        logits(into_model(models[0], res.params), ids), logits(models[0], ids), atol=1e-5, rtol=0
    )
    # plain averaging of the permuted copies is not the model
    vanilla = average(params)
    assert not torch.allclose(logits(into_model(models[0], vanilla), ids), logits(models[0], ids), atol=1e-2)


def test_to_reference_with_given_perms_matches_the_matcher(planted):
    spec, models = planted
    params = [model_tensors(m) for m in models]
    perms = [{}] + [match(params[0], p, spec) for p in params[1:]]
    a = to_reference(spec, params, perms=perms)
    b = to_reference(spec, params, lambda t, x: match(t, x, spec))
    assert all(torch.equal(a.params[k], b.params[k]) for k in a.params)


def test_iterative_merges_into_one_basis(planted):
    spec, models = planted
    params = [model_tensors(m) for m in models]
    res = iterative(spec, params, lambda t, b: match(t, b, spec), seed=0)
    assert res.converged and 1 <= res.rounds <= 20
    ids = torch.randint(5, 60, (2, 12))
    # all four are the same function in different bases: the merge of the aligned copies is that function
    torch.testing.assert_close(
        logits(into_model(models[0], res.params), ids), logits(models[0], ids), atol=1e-5, rtol=0
    )
    again = iterative(spec, params, lambda t, b: match(t, b, spec), seed=0)
    assert all(torch.equal(res.params[k], again.params[k]) for k in res.params)  # deterministic


def test_errors(planted):
    spec, models = planted
    params = [model_tensors(m) for m in models]
    with pytest.raises(ValueError, match="at least two"):
        to_reference(spec, params[:1], lambda t, b: {})
    with pytest.raises(ValueError, match="reference 7"):
        to_reference(spec, params, lambda t, b: {}, reference=7)
    with pytest.raises(ValueError, match="3 permutation sets for 4 models"):
        to_reference(spec, params, perms=[{}, {}, {}])
