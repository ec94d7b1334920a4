"""Configuration: every shipped config validates; each kind of bad input fails naming the key."""

import copy
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
    c = cfg.validate_config(load("configs/paper.yaml"))
    assert c["offline"] is False
    assert len(cfg.pairs(c)) == 10
    assert len(cfg.lambdas(c)) == 21
    assert cfg.stats_fractions(c, "mlm") == [0.001, 0.01, 0.1, 0.5, 1.0]


def test_defaults_pairs_and_lambdas():
    c = cfg.validate_config(load())
    assert cfg.pairs(c) == [(1, 2), (1, 3), (1, 4), (1, 5), (2, 3), (2, 4), (2, 5), (3, 4), (3, 5), (4, 5)]
    grid = cfg.lambdas(c)
    assert len(grid) == 21 and grid[0] == 0.0 and grid[-1] == 1.0 and grid[10] == 0.5
    assert cfg.variants_for(c, "mlm")[0] == "vanilla"
    assert cfg.variants_for(c, "rte") == ["vanilla", "all"]


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
        [sys.executable, "-m", "snakemake", "-n", "--configfile", str(overlay), "-d", str(tmp_path / "wd"),
         "-s", str(ROOT / "Snakefile")],
        capture_output=True, text=True, env=env, cwd=ROOT,
    )
    assert out.returncode != 0
    assert "seed 9" in out.stdout + out.stderr
    assert not (tmp_path / "wd" / "results").exists()
