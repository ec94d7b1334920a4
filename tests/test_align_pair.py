"""One way to align a pair, whatever the method: the method registry, ``matching.align_pair``, the options a
method fixes, and ``permerge align`` giving exactly the permutations the workflow writes for every method."""

import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np
import pytest
import torch
import yaml

from permerge import config as cfg
from permerge.alignment import matchers, variants
from permerge.alignment.headmaps import MAP_PREFIX
from permerge.alignment.matching import Pair, align_pair, compute_permutations, pair_seed
from permerge.alignment.spec import spec_for_model
from permerge.alignment.stats import collect_statistics
from permerge.alignment.variants import Variant, VariantError
from permerge.alignment.weight_matching import match_weights
from permerge.checkpoints import load_permutations, read_permutation_metadata
from permerge.cli import PERMUTATIONS_FILE, main

from .test_matching import random_batches
from .test_spec import make_model
from .test_weight_matching import SHAPES, make_config
from .workflow_utils import ROOT, copy_workflow, snakemake

torch.set_num_threads(1)

ALL = ["ff", "attn", "res", "pooler"]


def test_methods_are_one_registry():
    assert matchers.METHODS == tuple(matchers.METHOD) == variants.METHODS == ("activation", "weight", "hybrid")
    reads = {m.name: (m.statistics, m.weights) for m in matchers.METHOD.values()}
    assert reads == {"activation": (True, False), "weight": (False, True), "hybrid": (True, True)}
    with pytest.raises(ValueError, match="unknown method 'nope' \\(allowed: activation, weight, hybrid\\)"):
        matchers.method("nope")


@pytest.fixture(scope="module")
def pair():
    config = make_config(SHAPES[1])
    config.architectures = ["BertForPreTraining"]
    model_a, model_b = make_model(config, "pretraining", seed=0), make_model(config, "pretraining", seed=1)
    stats = collect_statistics([model_a, model_b], random_batches(config), names=["A", "B"])
    return Pair(config=config, stats=stats, a="A", b="B", params_a=model_a, params_b=model_b, seed=pair_seed("x", "y"))


@pytest.mark.parametrize("options", [{}, {"residual": "first", "qk": "separate"}, {"attention": "monotonic"}])
def test_align_pair_runs_the_variants_method(pair, options):
    """align_pair is the method's own matcher: the activation matcher, weight matching with the pair's seed, and
    weight matching started from the activation permutations."""
    act = Variant(components=ALL, **options)
    want = compute_permutations(pair.stats, "A", "B", act, pair.config)
    got = align_pair(act, pair)
    assert got.info == {} and sorted(got.perms) == sorted(want)
    assert all(np.array_equal(got.perms[k], want[k]) for k in want)

    spec = spec_for_model(pair.params_a)
    for method, init in (("weight", None), ("hybrid", want)):
        residual = "all" if method == "weight" else act.residual  # weight matching: the whole stream
        variant = Variant(**{**act.__dict__, "method": method, "residual": residual})
        ref = match_weights(spec, pair.params_a, pair.params_b, variant, seed=pair.seed, init=init)
        got = align_pair(variant, pair)
        assert sorted(got.perms) == sorted(ref.perms) and all(
            np.array_equal(got.perms[k], ref.perms[k]) for k in got.perms
        )
        assert got.info["seed"] == repr(pair.seed) and got.info["iterations"] == str(ref.sweeps)
        assert got.info["objective"] == repr(ref.objective[-1])
    assert align_pair(Variant(), Pair()).perms == {}  # vanilla averaging reads nothing


def test_align_pair_names_what_a_method_lacks(pair):
    weights_only = Pair(params_a=pair.params_a, params_b=pair.params_b)
    with pytest.raises(ValueError, match="method 'activation' needs the pair's activation statistics"):
        align_pair(Variant(components={"ff"}), weights_only)
    with pytest.raises(ValueError, match="method 'hybrid' needs the pair's activation statistics"):
        align_pair(Variant(components={"ff"}, method="hybrid"), weights_only)
    with pytest.raises(ValueError, match="method 'weight' needs the weights of both models"):
        align_pair(Variant(components={"ff"}, method="weight"), Pair(config=pair.config, stats=pair.stats))
    with pytest.raises(ValueError, match="activation matching has no starting permutations"):
        align_pair(Variant(components={"ff"}), pair, init={})


@pytest.mark.parametrize(
    "options, needle",
    [
        ({"residual": "first"}, "option 'residual' is 'first', but method 'weight' takes only 'all'"),
        ({"residual": "last"}, "option 'residual' is 'last', but method 'weight' takes only 'all'"),
        ({"stats_fraction": 0.5}, "option 'stats_fraction' is 0.5, but method 'weight' takes only None"),
    ],
)
def test_weight_matching_rejects_the_options_it_cannot_honour(options, needle):
    """Weight matching solves the residual permutation from every weight of the stream (residual: all) and
    reads no statistics: another value is an error naming the variant and the key, never ignored."""
    mapping = {"components": ["ff", "res"], "method": "weight", **options}
    with pytest.raises(VariantError, match=f"variant 'wm_x': {needle}"):
        Variant.from_mapping(mapping, name="wm_x")
    with pytest.raises(VariantError, match=needle):
        Variant(components={"res"}, method="weight", **options)
    Variant.from_mapping({**mapping, "method": "hybrid"})  # hybrid reads both
    c = cfg.load_merged()
    c["variants"]["wm_x"] = mapping
    with pytest.raises(cfg.ConfigError, match=f"variants.wm_x: variant 'wm_x': {needle}"):
        cfg.validate_config(c)
    assert Variant.from_mapping({"components": ["res"], "method": "weight", "residual": "all"}).residual == "all"


# ----------------------------------------------------------------------------- the CLI and the workflow agree

AGREE = {
    "seeds": [1, 2],
    "tasks": ["mlm"],
    "trajectory": {"steps": []},
    "variants": {
        "act": {"components": ALL, "residual": "all"},
        "wm": {"components": ALL, "method": "weight"},
        "hy": {"components": ["ff", "attn", "res"], "residual": "first", "qk": "separate", "method": "hybrid"},
        # within-head rotations (permerge.alignment.headmaps): from the q/k/context statistics, and from the weights
        "act_rot": {"components": ALL, "within_head": "orthogonal"},
        "wm_rot": {"components": ALL, "method": "weight", "within_head": "orthogonal"},
    },
    "task_variants": {"mlm": ["act", "wm", "hy", "act_rot", "wm_rot"]},
    "many": {"variants": []},
}


@pytest.fixture(scope="module")
def agreement_run(tmp_path_factory):
    """The smoke models (seeds 1 and 2, mlm) and the workflow's permutations of one variant per method."""
    wd = copy_workflow(tmp_path_factory.mktemp("agree"))
    cache = ROOT / ".cache" / "downloads"
    if cache.is_dir():
        shutil.copytree(cache, wd / "results" / "data" / "downloads", copy_function=shutil.copy2)
    (wd / "configs" / "agree.yaml").write_text(yaml.safe_dump(AGREE))
    targets = [f"results/permutations/mlm/{v}/seeds1-2" for v in AGREE["variants"]]  # seeds 1, 2: one cohort
    snakemake(wd, "-j", "2", *targets, "--configfile", "configs/smoke.yaml", "configs/agree.yaml")
    return wd


@pytest.mark.parametrize("variant", list(AGREE["variants"]))
def test_cli_gives_the_workflows_permutations(agreement_run, tmp_path, variant):
    """`permerge align` on the workflow's pair, its statistics text and settings gives, key by key, exactly the
    permutations the workflow wrote for the same variant (activation, weight and hybrid)."""
    wd = agreement_run
    config = cfg.load_merged(wd / "configs" / "smoke.yaml", wd / "configs" / "agree.yaml")
    st = config["statistics"]
    assert st["mlm_fraction"] == 1.0  # the CLI's sample is the whole (capped) text file
    models = wd / "results" / "models" / "mlm"
    argv = ["align", "--model-a", models / "seed1", "--model-b", models / "seed2"]
    argv += ["--text", wd / "results" / "data" / "text" / "books.txt", "--options", wd / "configs" / "agree.yaml"]
    argv += ["--variant", variant, "--out", tmp_path / "aligned", "--device", "cpu"]
    argv += ["--batch-size", st["batch_size"], "--max-length", st["max_length"], "--max-lines", st["max_lines"]]
    assert main([str(x) for x in argv]) == 0
    got = load_permutations(tmp_path / "aligned" / PERMUTATIONS_FILE)
    path = wd / "results" / "permutations" / "mlm" / variant / "seeds1-2" / "seed1-seed2.safetensors"
    want = load_permutations(path)
    assert sorted(got) == sorted(want) and len(want) >= 5
    for k in want:
        if k.startswith(MAP_PREFIX):  # the rotations: floats from statistics the workflow stored as float32
            np.testing.assert_allclose(got[k], want[k], atol=1e-5, err_msg=k)
        else:
            assert np.array_equal(got[k], want[k]), k
    assert any(k.startswith(MAP_PREFIX) for k in want) == ("within_head" in AGREE["variants"][variant])
    assert any(not np.array_equal(p, np.arange(len(p))) for p in want.values())  # not all identities
    meta, cli_meta = (
        read_permutation_metadata(path),
        read_permutation_metadata(tmp_path / "aligned" / PERMUTATIONS_FILE),
    )
    assert meta["method"] == AGREE["variants"][variant].get("method", "activation")
    for key in ("iterations", "converged", "objective", "seed"):  # weight matching: the same descent
        assert cli_meta.get(key) == meta.get(key), key
