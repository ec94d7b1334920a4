"""An offline rehearsal of the paper grid: configs/paper.yaml overlaid exactly as a user would, plus one
overlay that only points the hub ids at hub-shaped fixture repositories (tests/hub_fixtures.py) and
shrinks the grid (3 seeds, 2 GLUE tasks, 3 λ, fewer variants). The data and models go through the same
`from_pretrained` / `load_dataset` calls as the hub ids; every value the paper fixes stays as paper.yaml
sets it, and the assertions read each job's outputs, metadata or logs to check it was in effect."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
import yaml
from safetensors import safe_open

from permerge.checkpoints import load_permutations
from permerge.evaluation.barriers import read_tsv
from tests import hub_fixtures
from tests.rehearsal import BOOK_ROWS, COMPAT_VARIANTS, GLUE_TASKS, SAMPLE, SEEDS, R
from tests.workflow_utils import planned_jobs


def pooler_sha256(state: dict) -> str:
    w = state["bert.pooler.dense.weight"].float().contiguous()
    return hashlib.sha256(w.numpy().tobytes()).hexdigest()


@pytest.fixture(scope="module")
def rehearsal(paper_rehearsal):
    """The session's local rehearsal run (tests/conftest.py; tests/test_slurm.py compares with it)."""
    return paper_rehearsal


def test_effective_configuration_is_the_papers(rehearsal):
    eff = yaml.safe_load((rehearsal["wd"] / R / "config.effective.yaml").read_text())
    ft, paper_ft = eff["finetune"], rehearsal["paper"]["finetune"]
    for key in (
        "lr",
        "epochs",
        "batch_size",
        "max_length",
        "warmup",
        "head_seed",
        "data_seed",
        "fp16",
        "max_train_examples",
        "dropout",
        "tasks",
    ):
        assert ft[key] == paper_ft[key], key
    assert eff["evaluation"]["max_examples"] is None and eff["data"]["mlm_eval"]["max_blocks"] is None
    assert eff["statistics"] == {**rehearsal["paper"]["statistics"], "max_lines": None}
    assert not (rehearsal["wd"] / "results" / "models").exists(), "the paper grid wrote outside results/paper"


def test_seed_checkpoints_keep_pooler_and_nsp_head(rehearsal):
    for seed in SEEDS:
        d = rehearsal["wd"] / R / "models/mlm" / f"seed{seed}"
        assert json.loads((d / "config.json").read_text())["architectures"] == ["BertForPreTraining"]
        assert (d / "model.safetensors").is_file() and not list(d.glob("*.bin"))
        src = torch.load(
            rehearsal["hub"]["models"] / f"multiberts-seed_{seed}" / "pytorch_model.bin", weights_only=True
        )
        with safe_open(str(d / "model.safetensors"), framework="pt") as f:
            for key in ("bert.pooler.dense.weight", "cls.seq_relationship.weight"):
                assert torch.equal(f.get_tensor(key), src[key]), (seed, key)


def test_finetuning_starts_from_each_seeds_own_pooler_with_the_papers_recipe(rehearsal):
    wd = rehearsal["wd"]
    for task in GLUE_TASKS:
        shas = set()
        for seed in SEEDS:
            src = torch.load(
                rehearsal["hub"]["models"] / f"multiberts-seed_{seed}" / "pytorch_model.bin", weights_only=True
            )
            m = json.loads((wd / R / "models" / task / f"seed{seed}" / "metrics.json").read_text())
            assert m["pooler_init"] == "pretrained" and m["pooler_init_sha256"] == pooler_sha256(src), (task, seed)
            shas.add(m["pooler_init_sha256"])
            assert (m["lr"], m["batch_size"], m["warmup"], m["head_seed"], m["data_seed"]) == (2e-5, 8, 0.0, 42, 42)
            assert m["epochs"] == 3 and m["max_length"] == 128
            # whole training split; evaluated on the whole (mismatched, for mnli) validation split
            assert m["n_train"] == hub_fixtures.GLUE_SIZES["train"]
            assert m["n_eval"] == hub_fixtures.GLUE_SIZES["validation"]
        assert len(shas) == len(SEEDS), "the seeds' poolers should differ"


def test_books_sample_is_spread_over_the_corpus(rehearsal):
    lines = (rehearsal["wd"] / R / "data/text/books.txt").read_text().splitlines()
    rows = [hub_fixtures.book_row(line) for line in lines]
    assert len(rows) == SAMPLE == len(set(rows))
    deciles = {r * 10 // BOOK_ROWS for r in rows}
    assert deciles == set(range(10))
    # the main runs' 10% is the first tenth of the sample: itself spread across the corpus
    assert {r * 5 // BOOK_ROWS for r in rows[: SAMPLE // 10]} == set(range(5))
    assert rows != sorted(rows)
    # checked against the published size, and where it came from recorded beside it and in config.effective.yaml
    meta = json.loads((rehearsal["wd"] / R / "data/text/books.meta.json").read_text())
    assert meta["split_rows"] == meta["published_rows"] == BOOK_ROWS and meta["lines"] == SAMPLE
    assert meta["revision"] == "refs/convert/parquet" and meta["resolved_revision"] == "local directory"
    assert "#   books: " in (rehearsal["wd"] / R / "config.effective.yaml").read_text()


def test_all_fractions_from_one_pass(rehearsal):
    wd = rehearsal["wd"]
    cohort = wd / R / "stats/mlm/seeds1-2-3"  # a fresh grid: one cohort of every seed
    assert [p.name for p in (wd / R / "stats/mlm").iterdir()] == [cohort.name]
    files = sorted(p.name for p in cohort.glob("*.safetensors"))
    assert files == ["fraction0.01.safetensors", "fraction0.1.safetensors", "fraction0.5.safetensors"]
    for name, n in (("fraction0.01", 10), ("fraction0.1", 100), ("fraction0.5", 500)):
        with safe_open(str(cohort / f"{name}.safetensors"), framework="pt") as f:
            meta = f.metadata()
        assert int(meta["examples"]) == n, (name, meta)
    # one statistics job per task (one pass over its data)
    assert len(list((wd / R / "benchmarks/collect_statistics").rglob("*.tsv"))) == 1 + len(GLUE_TASKS)


def test_whole_evaluation_splits(rehearsal):
    wd = rehearsal["wd"]
    with safe_open(str(wd / R / "data/evalsets/mlm.safetensors"), framework="pt") as f:
        meta, n_blocks = f.metadata(), f.get_tensor("input_ids").shape[0]
    assert json.loads(meta["max_blocks"]) is None and n_blocks == int(meta["n_blocks"]) > 0
    # every validation token line was used: the blocks hold all of the tokenized text but the remainder
    from permerge.evaluation.evaluate import tokenize_lines
    from permerge.models import load_tokenizer

    text = (wd / R / "data/text/heldout.txt").read_text().splitlines()
    ids = tokenize_lines(load_tokenizer(wd / R / "models/mlm/seed1"), text)
    assert n_blocks == len(ids) // 128
    log = (wd / R / "logs/sweep_lambdas/mnli/vanilla/seeds1-2-3.log").read_text()
    assert f"{hub_fixtures.GLUE_SIZES['validation']} validation examples" in log
    assert "validation_mismatched" in log


def test_mlm_compat_scores_mlms_permutations_on_character_spaced_text(rehearsal):
    """paper.yaml's mlm_compat: the paper's MLM barriers come from character-spaced Wikitext; the same models
    and permutations as mlm are scored on it, beside mlm's normal text, with rows of their own."""
    wd = rehearsal["wd"]
    assert set(rehearsal["paper"]["task_variants"]["mlm_compat"]) >= set(COMPAT_VARIANTS)
    path = wd / R / "data/evalsets/mlm_compat.safetensors"
    with safe_open(str(path), framework="pt") as f:
        meta, ids, labels = f.metadata(), f.get_tensor("input_ids"), f.get_tensor("labels")
    with safe_open(str(wd / R / "data/evalsets/mlm.safetensors"), framework="pt") as f:
        normal_meta, n_normal = f.metadata(), f.get_tensor("input_ids").shape[0]
    assert meta["paper_compat"] == "true" and normal_meta["paper_compat"] == "false"
    assert meta["text"] == normal_meta["text"] and meta["mask_seed"] == normal_meta["mask_seed"]
    assert ids.shape[0] > 2 * n_normal  # about one token per character
    # the text before masking (labels hold the chosen positions' originals): every token one character
    from permerge.models import load_tokenizer

    tok = load_tokenizer(wd / R / "models/mlm/seed1")
    original = torch.where(labels != -100, labels, ids)
    special = set(tok.all_special_ids)
    tokens = tok.convert_ids_to_tokens([i for i in original.flatten().tolist() if i not in special])
    assert tokens and all(len(t) == 1 for t in tokens), sorted({t for t in tokens if len(t) != 1})[:10]
    assert tok.unk_token_id not in original  # every character is in the vocabulary (as in BERT's)
    # its sweeps read mlm's models and permutations: nothing of its own but the losses
    for d in ("models", "stats", "permutations", "many"):
        assert not (wd / R / d / "mlm_compat").exists(), d
    for v in COMPAT_VARIANTS:
        for a, b in ((1, 2), (1, 3), (2, 3)):
            assert (wd / R / "losses/mlm_compat" / v / "seeds1-2-3" / f"seed{a}-seed{b}.tsv").is_file(), (v, a, b)
    rows = {(r["task"], r["variant"], r["pair"]): r for r in read_tsv(wd / R / "tables/barriers.tsv")}
    compat = {k: r for k, r in rows.items() if k[0] == "mlm_compat"}
    assert sorted({k[1] for k in compat}) == sorted(COMPAT_VARIANTS) and len(compat) == 3 * len(COMPAT_VARIANTS)
    for (_, v, pair), r in compat.items():
        normal = rows["mlm", v, pair]
        assert r["barrier"] != normal["barrier"] and r["loss_a"] != normal["loss_a"], (v, pair)
    summary = {(r["task"], r["variant"]) for r in read_tsv(wd / R / "tables/summary.tsv")}
    assert {("mlm_compat", v) for v in COMPAT_VARIANTS} <= summary
    assert (wd / R / "figures/mlm_compat.png").is_file()


def test_paper_glue_and_all_align_what_they_say(rehearsal):
    wd = rehearsal["wd"]
    for task in GLUE_TASKS:
        paper_glue = load_permutations(
            wd / R / "permutations" / task / "paper_glue" / "seeds1-2-3" / "seed1-seed2.safetensors"
        )
        full = load_permutations(wd / R / "permutations" / task / "all" / "seeds1-2-3" / "seed1-seed2.safetensors")
        assert "res" in paper_glue and "ff.0" in paper_glue and "attn.0" in paper_glue
        assert "pooler" not in paper_glue and "pooler" in full


def test_ignore_heads_barrier_against_true_endpoints(rehearsal):
    """Both barriers for every pair; they differ exactly by how far π(B) is from B. (The fixture models are
    random, so mixing heads moves B's loss only slightly; tests/test_sweep_endpoints.py has a large case.)"""
    rows = [r for r in read_tsv(rehearsal["wd"] / R / "tables/barriers.tsv") if r["task"] == "mlm"]
    moved = []
    for r in rows:
        b, bt = float(r["barrier"]), float(r["barrier_true"])
        lb, lbu = float(r["loss_b"]), float(r["loss_b_unpermuted"])
        assert bt == pytest.approx(b + 0.5 * (lb - lbu), rel=1e-5, abs=1e-6), r
        if r["variant"] == "ff_attn_ignore_heads":
            assert r["function_preserving"] == "False"
            moved.append(float(r["rel_diff_b"]))
        else:  # function-preserving: π(B) is B
            assert r["function_preserving"] == "True" and float(r["rel_diff_b"]) <= 1e-6, r
    assert len(moved) == 3 and max(moved) > 0, moved


def test_nothing_left_to_do_and_embedded_root_untouched(rehearsal):
    wd = rehearsal["wd"]
    assert planned_jobs(wd, f"{R}/figures/all.pdf", *rehearsal["args"]) == {}
    # the demo's plan is independent of the paper outputs sitting beside it
    demo = planned_jobs(wd, "results/figures/all.pdf")
    assert demo["pretrain_seed"] == 5 and demo["collect_statistics"] == 9 + 2  # + the trajectory's 2 steps
