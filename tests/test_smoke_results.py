"""What the smoke run produced: layout, permutations that really align, function preservation at λ=1,
merged checkpoints equal to the interpolation, tables equal to a recomputation by hand."""

import csv
import json
import math

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModelForMaskedLM

from permerge.checkpoints import load_permutations, read_permutation_metadata
from permerge.evaluation.barriers import read_losses, read_tsv
from permerge.evaluation.evaluate import load_evalset, mlm_loss
from permerge.merging.permute import apply_permutations
from permerge.models import load_model
from tests.workflow_utils import snakemake

TASKS = ["mlm", "sst2", "stsb"]
VARIANTS = {"mlm": ["vanilla", "ff_attn", "all", "wm_all"], "sst2": ["vanilla", "all"], "stsb": ["vanilla", "all"]}
PAIRS = ["seed1-seed2", "seed1-seed3", "seed2-seed3"]
COHORT = "seeds1-2-3"  # a fresh grid's one cohort: permutations and losses of every pair in one folder
LAMBDAS = [0.0, 0.25, 0.5, 0.75, 1.0]


def read_curve_by_hand(path) -> tuple[list[float], list[float], float]:
    """(λ, loss, loss of the unpermuted B) read from the TSV directly (not through the library's reader)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    rows.sort(key=lambda r: float(r["lambda"]))
    unpermuted = {float(r["loss_b_unpermuted"]) for r in rows}
    assert len(unpermuted) == 1, path  # one value repeated on every row
    return [float(r["lambda"]) for r in rows], [float(r["loss"]) for r in rows], unpermuted.pop()


def pair_seeds(pair: str) -> tuple[str, str]:
    a, b = pair.split("-")
    return a, b


@pytest.fixture(scope="module")
def smoke_config(smoke_run) -> dict:
    return yaml.safe_load((smoke_run / "configs" / "smoke.yaml").read_text())


def model_dir(run, task, seed):
    return run / "results" / "models" / task / seed


def expected_permutations(options: dict, config: dict, has_pooler: bool) -> set[str]:
    """The permutation names a variant's components ask for (docs/method.md: ff per layer, attention ctx and
    Q/K per layer, one residual permutation, the pooler output only where the seeds have poolers of their own:
    not for poolers all drawn from finetune.head_seed, which are aligned by index)."""
    comps = set(options.get("components") or [])
    L = config["num_hidden_layers"]
    names = set()
    if "ff" in comps:
        names |= {f"ff.{l}" for l in range(L)}
    if "attn" in comps:
        names |= {f"{k}.{l}" for k in ("attn", "qk") for l in range(L)}
    if "res" in comps:
        names.add("res")
    if "pooler" in comps and has_pooler:
        names.add("pooler")
    return names


def test_layout(smoke_run):
    r = smoke_run / "results"
    assert (r / "figures" / "all.pdf").stat().st_size > 10_000
    for task in TASKS:
        assert (r / "figures" / f"{task}.png").is_file()
        for v in VARIANTS[task]:
            for pair in PAIRS:
                assert (r / "permutations" / task / v / COHORT / f"{pair}.safetensors").is_file()
                assert (r / "merged" / task / v / pair / "lambda0.5" / "model.safetensors").is_file()
                lams, losses = read_losses(r / "losses" / task / v / COHORT / f"{pair}.tsv")
                assert lams == LAMBDAS and all(math.isfinite(x) for x in losses)
    rows = read_tsv(r / "tables" / "finetune.tsv")
    assert sorted((x["task"], x["seed"]) for x in rows) == [(t, s) for t in ("sst2", "stsb") for s in "123"]


@pytest.mark.parametrize("task", TASKS)
def test_permutation_files_hold_what_the_variant_asks_for(smoke_run, smoke_config, task):
    """Each aligning variant's files hold exactly its components' permutations, none the identity; vanilla's
    none. (A workflow that wrote identity or missing permutations would otherwise stay green: every later
    check holds trivially for the identity.)"""
    config = json.loads((model_dir(smoke_run, task, "seed1") / "config.json").read_text())
    weights = load_file(model_dir(smoke_run, task, "seed1") / "model.safetensors")
    # The seeds pre-train with MLM + NSP (BertForPreTraining): each has a pooler and NSP head of its own, which
    # fine-tuning keeps, so every task's seeds have their own poolers and `all` aligns them.
    assert any(k.endswith("pooler.dense.weight") for k in weights)
    assert ("cls.seq_relationship.weight" in weights) == (task == "mlm")
    if task != "mlm":
        runs = [
            json.loads((model_dir(smoke_run, task, s) / "metrics.json").read_text())
            for s in ("seed1", "seed2", "seed3")
        ]
        assert {m["pooler_init"] for m in runs} == {"pretrained"}
        assert len({m["pooler_init_sha256"] for m in runs}) == 3 and len({m["pretrained_sha256"] for m in runs}) == 3
    own_pooler = True
    sizes = {
        "ff": config["intermediate_size"],
        "attn": config["hidden_size"],
        "qk": config["hidden_size"],
        "res": config["hidden_size"],
        "pooler": config["hidden_size"],
    }
    for v in VARIANTS[task]:
        want = expected_permutations(smoke_config["variants"][v], config, own_pooler)
        comps = smoke_config["variants"][v]["components"]
        if v != "vanilla":
            assert {"ff.0", "attn.0", "qk.0"} <= want  # the expectation itself is not empty
            assert ("res" in want) == ("res" in comps) and ("pooler" in want) == ("pooler" in comps)
        for pair in PAIRS:
            path = smoke_run / "results" / "permutations" / task / v / COHORT / f"{pair}.safetensors"
            perms = load_permutations(path)
            assert set(perms) == want, (task, v, pair)
            note = read_permutation_metadata(path).get("pooler", "")
            assert not note.startswith("not permuted"), (task, v, pair, note)
            for name, p in perms.items():
                n = sizes[name.split(".")[0]]
                assert sorted(p.tolist()) == list(range(n)), (task, v, pair, name)  # a permutation of n
                assert not np.array_equal(p, np.arange(n)), f"{task} {v} {pair} {name} is the identity"


@pytest.mark.parametrize("task", TASKS)
def test_merged_midpoint_is_the_aligned_interpolation_and_differs_from_vanilla(smoke_run, task):
    """θ(0.5) on disk equals ½(θ_A + π(θ_B)) with π read from the permutation file, and for every aligning
    variant and pair differs from vanilla's θ(0.5) in weights and in the swept λ=0.5 loss."""
    r = smoke_run / "results"
    for pair in PAIRS:
        a, b = pair_seeds(pair)
        model_a, model_b = (load_model(model_dir(smoke_run, task, s)) for s in (a, b))
        merged = {}
        for v in VARIANTS[task]:
            perms = load_permutations(r / "permutations" / task / v / COHORT / f"{pair}.safetensors")
            ta, tb = model_a.state_dict(), apply_permutations(model_b, perms).state_dict()
            on_disk = load_file(r / "merged" / task / v / pair / "lambda0.5" / "model.safetensors")
            assert on_disk, (task, v, pair)
            for name, t in on_disk.items():
                if t.is_floating_point():
                    torch.testing.assert_close(
                        t, torch.lerp(ta[name], tb[name], 0.5), rtol=0, atol=1e-6, msg=f"{task} {v} {pair} {name}"
                    )
            merged[v] = on_disk
        mid = {
            v: read_losses(r / "losses" / task / v / COHORT / f"{pair}.tsv")[1][LAMBDAS.index(0.5)]
            for v in VARIANTS[task]
        }
        for v in VARIANTS[task]:
            if v == "vanilla":
                continue
            # FF weights of layer 0 are permuted by every aligning variant: their midpoint must move
            key = next(k for k in merged[v] if k.endswith("layer.0.intermediate.dense.weight"))
            assert (merged[v][key] - merged["vanilla"][key]).abs().max().item() > 1e-3, (task, v, pair)
            # rel 1e-5, 100 x float32 noise: the 40-step MLM + NSP smoke seeds are near the unigram plateau, where
            # midpoints differ little (mlm ff_attn seed1-seed2: 7.36657 vs vanilla's 7.36706, 6.7e-5)
            assert mid[v] != pytest.approx(mid["vanilla"], rel=1e-5, abs=1e-6), (task, v, pair)


@pytest.mark.parametrize("task", TASKS)
def test_aligned_b_is_b(smoke_run, task):
    """Every function-preserving variant ends (λ=1) at vanilla's λ=1 loss: the aligned B is B.

    Measured on the smoke run: the largest relative difference is 4.5e-8 (float32 summation order)."""
    for pair in PAIRS:
        _, ref, ref_b = read_curve_by_hand(smoke_run / "results" / "losses" / task / "vanilla" / COHORT / f"{pair}.tsv")
        for v in VARIANTS[task]:
            _, losses, loss_b = read_curve_by_hand(smoke_run / "results" / "losses" / task / v / COHORT / f"{pair}.tsv")
            assert losses[0] == pytest.approx(ref[0], rel=1e-6)  # λ=0 is model A for every variant
            assert losses[-1] == pytest.approx(ref[-1], rel=1e-6), (task, v, pair)
            # the sweep's own score of the unpermuted B: the same model for every variant, and π(B) scores it
            assert loss_b == pytest.approx(ref_b, rel=1e-6) and losses[-1] == pytest.approx(loss_b, rel=1e-6)


def by_hand(lams, losses, loss_b_unpermuted):
    """Barriers written out (docs/method.md): max_λ L − ½(L_A + L_B) and max_λ [L − ((1−λ)L_A + λL_B)], with
    L_B = L(π(B)) (the paper's) and with the unpermuted B's loss (`*_true`)."""
    la, lb, lt = losses[0], losses[-1], loss_b_unpermuted
    return {
        "barrier": max(losses) - (la + lb) / 2,
        "barrier_linear": max(l - ((1 - t) * la + t * lb) for t, l in zip(lams, losses)),
        "barrier_true": max(losses) - (la + lt) / 2,
        "barrier_linear_true": max(l - ((1 - t) * la + t * lt) for t, l in zip(lams, losses)),
        "loss_a": la,
        "loss_b": lb,
        "loss_mid": losses[lams.index(0.5)],
        "loss_b_unpermuted": lt,
        "rel_diff_b": abs(lb - lt) / lt,
    }


def mean_se(xs):
    xs = np.asarray(xs, dtype=np.float64)
    return xs.mean(), xs.std(ddof=1) / math.sqrt(len(xs))


def test_barrier_tables_equal_recomputation(smoke_run):
    r = smoke_run / "results"
    rows = read_tsv(r / "tables" / "barriers.tsv")
    assert sorted((x["task"], x["variant"], x["pair"]) for x in rows) == sorted(
        (t, v, p) for t in TASKS for v in VARIANTS[t] for p in PAIRS
    )
    exact = {}
    for row in rows:
        curve = read_curve_by_hand(r / "losses" / row["task"] / row["variant"] / COHORT / f"{row['pair']}.tsv")
        b = exact[row["task"], row["variant"], row["pair"]] = by_hand(*curve)
        for key in (
            "barrier",
            "barrier_linear",
            "loss_a",
            "loss_b",
            "loss_mid",
            "barrier_true",
            "barrier_linear_true",
            "loss_b_unpermuted",
        ):
            assert float(row[key]) == pytest.approx(b[key], rel=1e-5, abs=1e-6), (row, key)
        assert float(row["rel_diff_b"]) == pytest.approx(b["rel_diff_b"], rel=1e-3, abs=1e-9), row
        assert row["function_preserving"] == "True"
    summary = read_tsv(r / "tables" / "summary.tsv")
    assert sorted((s["task"], s["variant"]) for s in summary) == sorted((t, v) for t in TASKS for v in VARIANTS[t])
    for s in summary:
        assert int(s["n"]) == len(PAIRS)
        group = [exact[s["task"], s["variant"], p] for p in PAIRS]
        for key, col in (
            ("barrier", ""),
            ("barrier_linear", "barrier_linear_"),
            ("barrier_true", "barrier_true_"),
            ("barrier_linear_true", "barrier_linear_true_"),
        ):
            m, se = mean_se([g[key] for g in group])
            assert float(s[col + "mean"]) == pytest.approx(m, rel=1e-5, abs=1e-6), (s, key)
            assert float(s[col + "se"]) == pytest.approx(se, rel=1e-5, abs=1e-6), (s, key)
            assert se > 0  # three different pairs: a real spread, not a placeholder
        assert float(s["max_rel_diff_b"]) == pytest.approx(max(g["rel_diff_b"] for g in group), rel=1e-3, abs=1e-9)
        if s["variant"] == "vanilla":
            assert s["vs_vanilla_mean"] == s["below_vanilla"] == ""
        else:  # paired with vanilla's barrier on the same pair
            d = [
                exact[s["task"], s["variant"], p]["barrier"] - exact[s["task"], "vanilla", p]["barrier"] for p in PAIRS
            ]
            m, se = mean_se(d)
            assert float(s["vs_vanilla_mean"]) == pytest.approx(m, rel=1e-4, abs=1e-6), s
            assert float(s["vs_vanilla_se"]) == pytest.approx(se, rel=1e-4, abs=1e-6), s
            assert s["below_vanilla"] == f"{sum(x < 0 for x in d)}/{len(PAIRS)}"


def test_merged_checkpoint_is_the_interpolation(smoke_run):
    """θ(0.5) on disk loads with from_pretrained and scores the λ=0.5 row of the sweep."""
    r = smoke_run / "results"
    model = AutoModelForMaskedLM.from_pretrained(r / "merged" / "mlm" / "all" / "seed1-seed2" / "lambda0.5").eval()
    evalset = load_evalset(r / "data" / "evalsets" / "mlm.safetensors")
    with torch.no_grad():
        loss = mlm_loss(model, evalset, batch_size=32)["loss"]
    lams, losses = read_losses(r / "losses" / "mlm" / "all" / COHORT / "seed1-seed2.tsv")
    assert loss == pytest.approx(losses[lams.index(0.5)], rel=1e-5)


def test_second_invocation_has_nothing_to_do(smoke_run):
    out = snakemake(smoke_run, "-n", "results/figures/all.pdf", "--configfile", "configs/smoke.yaml")
    assert "Nothing to be done" in out.stdout + out.stderr


def test_all_seed_merges(smoke_run):
    """tables/many.tsv: each seed, the plain average and each variant's merges; the `all` merge to seed 1
    recomputed from the seeds and the pair permutation files scores the table's loss."""
    from permerge.alignment.spec import spec_for_model
    from permerge.checkpoints import load_permutations
    from permerge.merging.interpolate import model_tensors
    from permerge.merging.many import average, into_model, to_reference

    r = smoke_run / "results"
    rows = read_tsv(r / "tables" / "many.tsv")
    got = {(x["task"], x["variant"], x["merge"]) for x in rows}
    for task in TASKS:
        for v in ("vanilla", "all") + (("wm_all",) if task == "mlm" else ()):
            assert {(task, v, f"seed{s}") for s in (1, 2, 3)} | {(task, v, "average")} <= got, (task, v)
            if v != "vanilla":
                assert (task, v, "to_reference") in got and (r / "many" / task / v / "to_reference").is_dir()
    assert ("mlm", "wm_all", "iterative") in got and ("mlm", "all", "iterative") not in got
    models = [load_model(r / "models" / "mlm" / f"seed{s}") for s in (1, 2, 3)]  # BertForPreTraining: pooler too
    params = [model_tensors(m) for m in models]
    spec = spec_for_model(models[0])
    perms = [{}] + [
        load_permutations(r / "permutations" / "mlm" / "all" / COHORT / f"seed1-seed{b}.safetensors") for b in (2, 3)
    ]
    evalset = load_evalset(r / "data" / "evalsets" / "mlm.safetensors")
    table = {(x["variant"], x["merge"]): float(x["loss"]) for x in rows if x["task"] == "mlm"}
    merged = into_model(models[0], to_reference(spec, params, perms=perms).params)
    assert mlm_loss(merged, evalset, batch_size=32)["loss"] == pytest.approx(table[("all", "to_reference")], rel=1e-5)
    plain = into_model(models[0], average(params))
    assert mlm_loss(plain, evalset, batch_size=32)["loss"] == pytest.approx(table[("vanilla", "average")], rel=1e-5)
    on_disk = load_model(r / "many" / "mlm" / "all" / "to_reference")
    assert mlm_loss(on_disk, evalset, batch_size=32)["loss"] == pytest.approx(table[("all", "to_reference")], rel=1e-5)
