"""The matcher registry (permerge.alignment.matchers) is the one list of matching options: variants, the schema's
defaults and both matchers follow it, so a new attention matcher is one registry entry."""

import dataclasses

import numpy as np
import pytest
import yaml

from permerge import config as cfg
from permerge.alignment import matchers, variants
from permerge.alignment.matching import match_attention
from permerge.alignment.spec import head_assignment


def schema_variant():
    return yaml.safe_load(cfg.SCHEMA.read_text())["definitions"]["variant"]["properties"]


def test_variant_defaults_are_the_schemas():
    props = schema_variant()
    v = variants.Variant()
    for f in dataclasses.fields(variants.Variant):
        if f.name == "within_head":
            # no schema default on purpose: a filled-in default would enter every variant's params and
            # metadata and rerun finished grids; absent means permutation (the schema's description says so)
            assert "default" not in props[f.name] and "the value when absent" in props[f.name]["description"]
            assert v.within_head == "permutation" and "within_head" not in v.to_dict()
            continue
        want = props[f.name]["default"]
        got = sorted(v.components) if f.name == "components" else getattr(v, f.name)
        assert got == want, f.name
    assert set(props) == set(variants.VARIANT_KEYS)


def test_option_values_come_from_the_registry():
    assert variants.ATTENTION_MODES == tuple(matchers.ATTENTION)
    assert variants.RESIDUAL_MODES == tuple(matchers.RESIDUAL)
    assert (variants.QK_MODES, variants.METHODS) == (matchers.QK, matchers.METHODS)
    for key in ("attention", "qk", "residual", "method"):  # no second list in the schema
        assert "enum" not in schema_variant()[key], key
    assert [m.name for m in matchers.ATTENTION.values() if not m.function_preserving] == ["ignore_heads"]
    assert matchers.residual_nodes("all", 3) == list(range(7)) and matchers.residual_nodes("last", 3) == [6]


def test_a_new_attention_matcher_is_one_registry_entry(monkeypatch):
    """Register a matcher (heads in reverse order): config validation, function preservation and the
    activation matcher take it without another edit."""
    reverse = matchers.AttentionMatcher(
        "reverse",
        True,
        "head j <-> head H-1-j",
        lambda h: [(j, h - 1 - j) for j in range(h)],
        lambda scores: np.arange(len(scores))[::-1].copy(),
    )
    monkeypatch.setitem(matchers.ATTENTION, "reverse", reverse)
    monkeypatch.setattr(variants, "ATTENTION_MODES", tuple(matchers.ATTENTION))
    monkeypatch.setitem(variants._CHOICES, "attention", variants.ATTENTION_MODES)
    c = cfg.load_merged()
    c["variants"]["ff_attn_reverse"] = {"components": ["ff", "attn"], "attention": "reverse"}
    cfg.validate_config(c)
    assert cfg.variant_options(c, "ff_attn_reverse").function_preserving
    rng = np.random.default_rng(0)
    corr = rng.normal(size=(12, 12))
    p_ctx, p_qk = match_attention(corr, 3, "reverse")
    assert list(head_assignment(p_ctx, 3)) == [2, 1, 0] and np.array_equal(p_ctx, p_qk)
    with pytest.raises(cfg.ConfigError, match="option 'attention' has unknown value 'sideways'"):
        c["variants"]["bad"] = {"components": ["attn"], "attention": "sideways"}
        cfg.validate_config(c)
