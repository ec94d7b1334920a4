"""Configuration: every shipped config validates; each kind of bad input fails naming the key."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from permerge import config as cfg

ROOT = Path(__file__).resolve().parents[1]


def load(name="config.yaml"):
    return yaml.safe_load((ROOT / name).read_text())


@pytest.mark.parametrize("name", ["config.yaml", "configs/smoke.yaml"])
def test_shipped_configs_validate(name):
    c = cfg.validate_config(load(name))
    assert c["lambdas"] and c["statistics"]["max_length"] > 0  # defaults filled


def test_paper_config_validates_when_online():
    c = cfg.load_merged(ROOT / "configs/paper.yaml")
    assert c["offline"] is False
    assert len(cfg.pairs(c)) == 10
    assert len(cfg.lambdas(c)) == 21
    assert cfg.stats_fractions(c, "mlm") == [0.001, 0.01, 0.1, 0.5, 1.0]


def leaves(d, prefix=()):
    """Key paths of a nested mapping down to its non-mapping values (a list is one value)."""
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from leaves(v, (*prefix, k))
        else:
            yield (*prefix, k)


def lookup(d, path):
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return KeyError
        d = d[k]
    return d


# Subtrees of config.yaml that only the embedded pre-training reads (rules pretrain_seed/train_tokenizer
# and the "pretrain" text role exist only with models.source: pretrain; test_workflow_plan checks the
# paper plan has none of those jobs).
ONLY_WITH_PRETRAIN = (("models", "pretrain"), ("data", "pretrain_text"))


def test_paper_config_decides_every_key_of_config_yaml():
    """Snakemake merges --configfile over config.yaml: a key the paper config leaves out keeps the demo's
    value (how the embedded caps once leaked into the paper run). Any new key of config.yaml must be
    decided in configs/paper.yaml too, or this fails."""
    embedded, paper = load(), load("configs/paper.yaml")
    assert paper["models"]["source"] != "pretrain"
    undecided = [
        ".".join(p)
        for p in leaves(embedded)
        if lookup(paper, p) is KeyError and not any(p[: len(u)] == u for u in ONLY_WITH_PRETRAIN)
    ]
    assert not undecided, f"configs/paper.yaml leaves these config.yaml keys to the embedded demo: {undecided}"


def test_paper_protocol_is_in_effect_after_merging():
    """The values docs/configuration.md fixes for the paper's grid, read from the configuration Snakemake builds."""
    c = cfg.load_merged(ROOT / "configs/paper.yaml")
    assert c["results"] == "results/paper"
    assert (c["models"]["source"], c["models"]["hub_id"]) == ("hub", "google/multiberts-seed_{seed}")
    assert c["seeds"] == [1, 2, 3, 4, 5] and c["tasks"][:2] == ["mlm", "mlm_compat"] and len(c["tasks"]) == 10
    books = c["data"]["stats_text"]
    assert books["source"] == "hub" and books["sample"] == 1_000_000 and books["max_lines"] is None
    assert c["statistics"]["max_lines"] is None and c["statistics"]["mlm_fraction"] == 0.1
    wiki = c["data"]["mlm_eval"]
    assert (wiki["id"], wiki["config"], wiki["split"]) == ("Salesforce/wikitext", "wikitext-103-raw-v1", "validation")
    assert wiki["max_blocks"] is None and wiki["paper_compat"] is False and wiki["block_size"] == 128
    assert c["data"]["glue"] == {"source": "hub", "id": "nyu-mll/glue", "revision": None}
    assert c["evaluation"]["max_examples"] is None
    ft = c["finetune"]
    assert (ft["lr"], ft["epochs"], ft["batch_size"], ft["max_length"], ft["warmup"]) == (2e-5, 3, 8, 128, 0.0)
    assert (ft["head_seed"], ft["data_seed"], ft["fp16"], ft["max_train_examples"]) == (42, 42, True, None)
    assert ft["group_by_length"] is False and ft["tasks"] == {"mrpc": {"epochs": 5}}
    assert ft["dropout"] is None  # the checkpoint's own (the MultiBERTs: 0.1), as run_glue
    assert c["many"]["tasks"] is None  # every task
    assert cfg.variants_for(c, "rte") == ["vanilla", "all", "paper_glue"]
    glue_method = cfg.variant_options(c, "paper_glue")
    assert (glue_method.components, glue_method.residual) == ({"ff", "attn", "res"}, "first")
    main = cfg.variant_options(c, "ff_attn")
    assert main.components == {"ff", "attn"} and main.attention == "head_perm"
    # the main runs use 10% of the sample; the ablation its fractions, all of the same sample
    assert cfg.stats_fraction(c, "mlm", "ff_attn") == 0.1 and cfg.stats_fraction(c, "rte", "all") == 1.0
    assert cfg.stats_fractions(c, "mlm") == [0.001, 0.01, 0.1, 0.5, 1.0]
    assert cfg.stats_fractions(c, "rte") == [1.0]


def test_embedded_default_keeps_its_own_values():
    c = cfg.load_merged()
    assert c["results"] == "results" and c["finetune"]["batch_size"] == 16 and c["finetune"]["warmup"] == 0.1
    assert c["evaluation"]["max_examples"] == 100 and c["finetune"]["data_seed"] is None


def test_device_check():
    c = cfg.load_merged()
    cfg.check_device(c)  # cpu: nothing to check
    c["device"] = "cuda"
    import torch

    if torch.cuda.is_available():
        cfg.check_device(c)
    else:
        with pytest.raises(cfg.ConfigError, match="no CUDA device"):
            cfg.check_device(c)


def test_gpu_config_without_gpu_fails_before_the_first_job(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the failure path cannot be exercised here")
    overlay = tmp_path / "cuda.yaml"
    overlay.write_text(yaml.safe_dump({"device": "cuda"}))
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-j1",
            "--configfile",
            str(overlay),
            "-d",
            str(tmp_path / "wd"),
            "-s",
            str(ROOT / "Snakefile"),
            "results/models/tokenizer",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "no CUDA device" in text and "device: 'cuda'" in text, text[-3000:]
    assert not (tmp_path / "wd" / "results" / "logs").exists()  # no job ran


def test_defaults_pairs_and_lambdas():
    c = cfg.validate_config(load())
    assert cfg.pairs(c) == [(1, 2), (1, 3), (1, 4), (1, 5), (2, 3), (2, 4), (2, 5), (3, 4), (3, 5), (4, 5)]
    grid = cfg.lambdas(c)
    assert len(grid) == 21 and grid[0] == 0.0 and grid[-1] == 1.0 and grid[10] == 0.5
    assert cfg.variants_for(c, "mlm")[0] == "vanilla"
    assert cfg.variants_for(c, "rte") == ["vanilla", "all", "paper_glue"]  # the paper's GLUE method beside ours
    glue_method = cfg.variant_options(c, "paper_glue")
    assert (glue_method.components, glue_method.residual) == ({"ff", "attn", "res"}, "first")
    assert c["models"]["pretrain"]["objective"] == "mlm_nsp"  # seeds with their own pooler and NSP head


def bad(mutate, *words):
    c = load()
    mutate(c)
    with pytest.raises(cfg.ConfigError) as err:
        cfg.validate_config(c)
    for w in words:
        assert w in str(err.value), str(err.value)
    return str(err.value)


def test_wrong_type():
    bad(lambda c: c["models"]["pretrain"].update(steps="800"), "steps", "'800' is not of type 'integer'")


def test_unknown_task():
    bad(lambda c: c.update(tasks=["mlm", "wnli"]), "tasks", "wnli")


def test_empty_seed_list():
    bad(lambda c: c.update(seeds=[]), "seeds")


def test_pair_with_unknown_seed():
    bad(lambda c: c.update(pairs=[[1, 2], [1, 7]]), "pairs[1]", "seed 7")


def test_lambda_out_of_range():
    bad(lambda c: c.update(lambdas=[0.0, 0.5, 1.5]), "lambdas")


def test_lambda_grid_needs_endpoints():
    bad(lambda c: c.update(lambdas=[0.0, 0.5]), "lambdas", "endpoints")


def test_unknown_variant_option():
    bad(lambda c: c["variants"]["all"].update(residul="first"), "all", "residul")


def test_unknown_variant_option_value():
    bad(lambda c: c["variants"]["all"].update(attention="sideways"), "attention", "sideways")


def test_unknown_variant_in_task_variants():
    bad(lambda c: c["task_variants"].update(mlm=["vanilla", "nope"]), "task_variants.mlm", "nope")


def test_hub_while_offline_names_the_id():
    def mutate(c):
        c["models"] = {"source": "hub", "hub_id": "google/multiberts-seed_{seed}"}

    msg = bad(mutate, "google/multiberts-seed_{seed}", "offline")
    assert "config.yaml" in msg


def test_snakemake_refuses_bad_config_before_any_job(tmp_path):
    overlay = tmp_path / "bad.yaml"
    overlay.write_text(yaml.safe_dump({"pairs": [[1, 9]]}))
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "--configfile",
            str(overlay),
            "-d",
            str(tmp_path / "wd"),
            "-s",
            str(ROOT / "Snakefile"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert out.returncode != 0
    assert "seed 9" in out.stdout + out.stderr
    assert not (tmp_path / "wd" / "results").exists()
