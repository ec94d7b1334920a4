"""Per-head maps (within_head: orthogonal): Procrustes, function preservation, planted recovery for both
methods, the permutation file round trip and the variant / config checks."""

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification

from permerge.alignment.headmaps import MAP_PREFIX, head_blocks, procrustes, split_maps
from permerge.alignment.matching import Pair, align_pair, required_features
from permerge.alignment.spec import random_permutations, spec_for_model
from permerge.alignment.stats import collect_statistics
from permerge.alignment.variants import Variant, VariantError
from permerge.checkpoints import load_permutations, read_permutation_metadata, save_permutations
from permerge.cli import main
from permerge.merging.permute import apply_permutations, permute_params

torch.set_num_threads(1)

SHAPES = [
    dict(hidden_size=24, num_attention_heads=3, intermediate_size=40, num_hidden_layers=2),
    dict(hidden_size=32, num_attention_heads=8, intermediate_size=20, num_hidden_layers=1),
    dict(hidden_size=16, num_attention_heads=1, intermediate_size=48, num_hidden_layers=3),
]


def make(shape, head, seed=0):
    config = BertConfig(
        vocab_size=61,
        max_position_embeddings=20,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=2,
        **shape,
    )
    torch.manual_seed(seed)
    model = (BertForMaskedLM if head == "mlm" else BertForSequenceClassification)(config).eval()
    # non-zero biases everywhere, so the bias rows of the maps are exercised too
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.2)
    return model


def batches(config, num=6, batch=8, length=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(num):
        ids = torch.randint(0, config.vocab_size, (batch, length), generator=g)
        lengths = torch.randint(4, length + 1, (batch,), generator=g)
        mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
        out.append(dict(input_ids=ids, attention_mask=mask))
    return out


def random_orthogonal(rng, heads, dh):
    return np.stack([np.linalg.qr(rng.normal(size=(dh, dh)))[0] for _ in range(heads)])


def random_maps(spec, rng, *, linear=False):
    out = {}
    for perm in spec.head_maps:
        heads = spec.blocks[perm]
        dh = spec.sizes[perm] // heads
        m = random_orthogonal(rng, heads, dh)
        if linear:  # any invertible map is a symmetry too: check the M^-T side with a non-orthogonal one
            m = m * rng.uniform(0.5, 2.0, size=(heads, 1, dh))
        out[MAP_PREFIX + perm] = m
    return out


def rel_diff(x, y):
    return ((x - y).abs().max() / y.abs().max()).item()


def test_procrustes_hand_worked():
    # F_A rows (1, 0), (0, 2), (1, 1); F_B = F_A R0^T with R0 the 90-degree rotation [[0, -1], [1, 0]]:
    # rows (0, 1), (-2, 0), (-1, 1). cross = F_B^T F_A = [[-1, -5], [2, 1]] (by hand). Over rotations
    # [[c, -s], [s, c]], trace(R^T cross) = c (-1 + 1) + s (2 + 5) = 7 s: best at s = 1, i.e. R0; over
    # reflections [[c, s], [s, -c]] it is -2 c - 3 s, at most sqrt(13) < 7. So Procrustes returns R0.
    r0 = np.array([[0.0, -1.0], [1.0, 0.0]])
    f_a = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    f_b = np.array([[0.0, 1.0], [-2.0, 0.0], [-1.0, 1.0]])
    np.testing.assert_array_equal(f_b.T @ f_a, [[-1.0, -5.0], [2.0, 1.0]])
    r = procrustes(np.array([[-1.0, -5.0], [2.0, 1.0]]))
    np.testing.assert_allclose(r, r0, atol=1e-12)
    np.testing.assert_allclose(f_b @ r, f_a, atol=1e-12)
    # a diagonal cross with a negative entry: the best orthogonal map is the reflection diag(1, -1)
    np.testing.assert_allclose(procrustes(np.diag([3.0, -2.0])), np.diag([1.0, -1.0]), atol=1e-12)


def test_head_blocks_follow_the_permutation():
    # 2 heads of 2: head 0 of A takes B units (3, 2), head 1 takes (0, 1)
    cross = np.arange(16.0).reshape(4, 4)  # A rows, B columns
    p = np.array([3, 2, 0, 1])
    blocks = head_blocks(cross, p, 2)
    np.testing.assert_array_equal(blocks[0], [[3.0, 7.0], [2.0, 6.0]])  # (B unit, A unit) entries
    np.testing.assert_array_equal(blocks[1], [[8.0, 12.0], [9.0, 13.0]])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("head", ["mlm", "cls"])
@pytest.mark.parametrize("linear", [False, True])
def test_maps_preserve_the_function(shape, head, linear):
    model = make(shape, head)
    spec = spec_for_model(model)
    rng = np.random.default_rng(3)
    perms = {**random_permutations(spec, rng, qk="separate"), **random_maps(spec, rng, linear=linear)}
    mapped = apply_permutations(model, perms)
    inputs = batches(model.config)[0]
    with torch.no_grad():
        ref, out = model(**inputs).logits, mapped(**inputs).logits
    assert rel_diff(out, ref) <= 1e-4
    # the maps changed the attention weights (they are not silently dropped)
    q = "bert.encoder.layer.0.attention.self.query.weight"
    plain = apply_permutations(model, split_maps(perms)[0])
    assert rel_diff(dict(mapped.named_parameters())[q], dict(plain.named_parameters())[q]) > 1e-2


def planted(shape, head, seed=5):
    """A and B = A with random head, FF and residual permutations and random per-head rotations."""
    model_a = make(shape, head)
    spec = spec_for_model(model_a)
    rng = np.random.default_rng(seed)
    truth = {**random_permutations(spec, rng, qk="separate"), **random_maps(spec, rng)}
    return model_a, apply_permutations(model_a, truth), spec


ALL = frozenset({"ff", "attn", "res", "pooler"})


@pytest.mark.parametrize("shape", SHAPES[:2])
@pytest.mark.parametrize("head", ["mlm", "cls"])
@pytest.mark.parametrize("method", ["activation", "weight"])
def test_planted_rotations_are_recovered(shape, head, method):
    model_a, model_b, spec = planted(shape, head)
    variant = Variant(components=ALL, method=method, within_head="orthogonal")
    stats = None
    if method == "activation":
        stats = collect_statistics([model_a, model_b], batches(model_a.config), names=["a", "b"])
        assert {f"q.{l}" for l in range(model_a.config.num_hidden_layers)} <= set(stats.features)
    pair = Pair(config=model_a.config, stats=stats, params_a=model_a, params_b=model_b, seed=[0, 1])
    perms = align_pair(variant, pair).perms
    assert {k for k in perms if k.startswith(MAP_PREFIX)} == {MAP_PREFIX + p for p in spec.head_maps}
    aligned = dict(apply_permutations(model_b, perms).named_parameters())
    worst = max(rel_diff(aligned[n], p) for n, p in model_a.named_parameters())
    assert worst <= 1e-4
    # the permutations alone leave the heads rotated: the maps did the work
    plain = dict(apply_permutations(model_b, split_maps(perms)[0]).named_parameters())
    assert max(rel_diff(plain[n], p) for n, p in model_a.named_parameters()) > 1e-2


def test_orthogonal_maps_of_identical_models_are_the_identity():
    model = make(SHAPES[0], "mlm")
    stats = collect_statistics([model, model], batches(model.config), names=["a", "b"])
    for method in ("activation", "weight"):
        variant = Variant(components=ALL, method=method, within_head="orthogonal")
        pair = Pair(config=model.config, stats=stats, params_a=model, params_b=model, seed=[0, 1])
        _, maps = split_maps(align_pair(variant, pair).perms)
        for m in maps.values():
            np.testing.assert_allclose(m, np.broadcast_to(np.eye(m.shape[-1]), m.shape), atol=1e-6)


def test_permutation_file_round_trip(tmp_path):
    model = make(SHAPES[0], "mlm")
    spec = spec_for_model(model)
    rng = np.random.default_rng(0)
    perms = {**random_permutations(spec, rng), **random_maps(spec, rng)}
    path = tmp_path / "p.safetensors"
    save_permutations(perms, path, metadata={"variant": "rot"})
    loaded = load_permutations(path)
    assert set(loaded) == set(perms) and read_permutation_metadata(path) == {"variant": "rot"}
    for k, v in perms.items():
        assert loaded[k].dtype == (np.float64 if k.startswith(MAP_PREFIX) else np.int64)
        np.testing.assert_array_equal(loaded[k], v)  # float64 both ways: bit for bit
    # a file without maps (every file written before them) is the identity inside the heads
    plain, _ = split_maps(perms)
    save_permutations(plain, path)
    params = dict(model.named_parameters())
    got = permute_params(params, spec, load_permutations(path))
    want = permute_params(params, spec, plain)
    assert all(torch.equal(got[n], want[n]) for n in params)


def test_bad_maps_are_refused():
    model = make(SHAPES[0], "mlm")
    spec = spec_for_model(model)
    params = dict(model.named_parameters())
    with pytest.raises(ValueError, match="unknown head map 'map.ff.0'"):
        permute_params(params, spec, {"map.ff.0": np.zeros((3, 8, 8))})
    with pytest.raises(ValueError, match=r"shape \(3, 4, 4\), expected \(3, 8, 8\)"):
        permute_params(params, spec, {"map.qk.0": np.zeros((3, 4, 4))})
    with pytest.raises(ValueError, match="not \\(numerically\\) invertible"):
        permute_params(params, spec, {"map.attn.1": np.zeros((3, 8, 8))})


def test_variant_option():
    v = Variant.from_mapping({"components": ["attn"], "within_head": "orthogonal"})
    assert v.within_head == "orthogonal" and v.function_preserving
    assert v.to_dict()["within_head"] == "orthogonal"
    # the default leaves the recorded options as they were (permutation files' metadata byte for byte)
    assert "within_head" not in Variant.from_mapping({"components": ["attn"]}).to_dict()
    with pytest.raises(VariantError, match="'within_head' has unknown value 'rotation'"):
        Variant.from_mapping({"components": ["attn"], "within_head": "rotation"}, name="x")
    with pytest.raises(VariantError, match="needs the 'attn' component"):
        Variant.from_mapping({"components": ["ff"], "within_head": "orthogonal"}, name="x")
    with pytest.raises(VariantError, match="mixes them"):
        Variant.from_mapping({"components": ["attn"], "attention": "ignore_heads", "within_head": "orthogonal"})
    # activation rotations read q and k; weight rotations read no statistics
    act = required_features(Variant(components=frozenset({"attn"}), within_head="orthogonal"), 2)
    assert act == ["ctx.0", "ctx.1", "q.0", "q.1", "k.0", "k.1"]
    plain = required_features(Variant(components=frozenset({"attn"})), 2)
    assert plain == ["ctx.0", "ctx.1"]


# ----------------------------------------------------------------------------- the CLI

from .test_cli import mlm_logits, workspace  # noqa: E402,F401  (the CLI's tiny saved models and text)


@pytest.mark.parametrize("method", ["activation", "weight"])
def test_cli_align_and_merge_with_rotations(workspace, tmp_path, method):  # noqa: F811
    w = workspace
    options = tmp_path / "rot.yaml"
    options.write_text(f"components: [ff, attn, res]\nmethod: {method}\nwithin_head: orthogonal\n")
    argv = ["align", "--model-a", w / "mlm1", "--model-b", w / "mlm2", "--options", options]
    argv += ["--out", tmp_path / "aligned", "--device", "cpu", "--text", w / "text.txt", "--batch-size", "8"]
    assert main([str(x) for x in argv]) == 0
    perms = load_permutations(tmp_path / "aligned" / "permutations.safetensors")
    maps = sorted(k for k in perms if k.startswith(MAP_PREFIX))
    assert maps == ["map.attn.0", "map.attn.1", "map.qk.0", "map.qk.1"]
    assert all(perms[k].shape == (2, 8, 8) for k in maps)
    assert (
        '"within_head": "orthogonal"'
        in read_permutation_metadata(tmp_path / "aligned" / "permutations.safetensors")["variant"]
    )
    ids = torch.tensor([[2, 5, 9, 7, 12, 3], [2, 6, 6, 8, 3, 0]])
    b, aligned = mlm_logits(w / "mlm2", ids), mlm_logits(tmp_path / "aligned", ids)
    assert rel_diff(aligned, b) <= 1e-4  # an exact symmetry: rotated B is B
    # the aligned B on disk is B with the file's permutations and maps
    model_b = BertForMaskedLM.from_pretrained(w / "mlm2")
    want = dict(apply_permutations(model_b, perms).named_parameters())
    got = dict(BertForMaskedLM.from_pretrained(tmp_path / "aligned").named_parameters())
    assert all(torch.equal(got[n], want[n]) for n in want)
    argv = ["merge", "--model-a", w / "mlm1", "--aligned-b", tmp_path / "aligned", "--lam", "0.5"]
    assert main([str(x) for x in argv + ["--out", tmp_path / "merged"]]) == 0
    merged = dict(BertForMaskedLM.from_pretrained(tmp_path / "merged").named_parameters())
    a = dict(BertForMaskedLM.from_pretrained(w / "mlm1").named_parameters())
    name = "bert.encoder.layer.1.attention.self.key.weight"
    torch.testing.assert_close(merged[name], torch.lerp(a[name], got[name], 0.5))


# ----------------------------------------------------------------------------- configuration


def test_rotations_config_and_the_all_seed_merge():
    from permerge import config as cfg

    root = Path(__file__).resolve().parents[1]
    base = cfg.load_merged()
    c = cfg.load_merged(root / "configs" / "rotations.yaml")
    rot = {v: cfg.variant_options(c, v) for v in ("all_rot", "wm_all_rot")}
    assert {v.within_head for v in rot.values()} == {"orthogonal"}
    assert {v.method for v in rot.values()} == {"activation", "weight"}
    # the overlay only adds the two variants, paired with all and wm_all (same other options)
    assert c["task_variants"]["mlm"] == base["task_variants"]["mlm"] + ["all_rot", "wm_all_rot"]
    for plain, v in (("all", "all_rot"), ("wm_all", "wm_all_rot")):
        assert cfg.variant_options(c, plain) == Variant(**{**rot[v].__dict__, "within_head": "permutation"})
    assert {"all", "all_rot", "wm_all", "wm_all_rot"} <= set(c["trajectory"]["variants"])
    c["many"]["variants"] = ["all_rot"]  # activation: the pair files, maps included
    cfg.validate_config(c)
    c["many"]["variants"] = ["wm_all_rot"]
    with pytest.raises(cfg.ConfigError, match="many.variants: variant 'wm_all_rot' sets within_head: orthogonal"):
        cfg.validate_config(c)


def test_all_seed_merge_takes_the_maps():
    """The activation all-seed merge (many.to_reference with the pair files' contents) applies the maps."""
    from permerge.merging.many import to_reference

    model_a, model_b = make(SHAPES[0], "mlm", seed=0), make(SHAPES[0], "mlm", seed=1)
    spec = spec_for_model(model_a)
    rng = np.random.default_rng(2)
    perms = {**random_permutations(spec, rng), **random_maps(spec, rng)}
    pa, pb = dict(model_a.named_parameters()), dict(model_b.named_parameters())
    merged = to_reference(spec, [pa, pb], perms=[{}, perms]).params
    aligned = dict(apply_permutations(model_b, perms).named_parameters())
    name = "bert.encoder.layer.0.attention.output.dense.weight"
    torch.testing.assert_close(merged[name], (pa[name] + aligned[name]) / 2)
    assert not torch.allclose(merged[name], (pa[name] + permute_params(pb, spec, split_maps(perms)[0])[name]) / 2)


def test_maps_preserve_the_function_of_every_family():
    """RoBERTa / XLM-R / ELECTRA (projected embeddings included): the same head maps are symmetries."""
    from .test_families import PARAMS, make_config, make_inputs, outputs
    from .test_families import make_model as make_family_model

    rng = np.random.default_rng(11)
    checked = 0
    for param in PARAMS:
        config_cls, model_cls, shape, num_labels = param.values
        if model_cls.__name__.endswith("Model"):
            continue  # bare encoders: their outputs live in the residual basis (test_families)
        model = make_family_model(model_cls, make_config(config_cls, shape, num_labels))
        spec = spec_for_model(model)
        inputs = make_inputs(model.config)
        perms = {**random_permutations(spec, rng), **random_maps(spec, rng, linear=True)}
        ref, out = outputs(model, inputs), outputs(apply_permutations(model, perms), inputs)
        assert rel_diff(out, ref) <= 1e-4, model_cls.__name__
        checked += 1
    assert checked >= 4
