"""Statistics storage at paper scale: float32 cross blocks give the same permutations as float64, matching
many pairs from a file keeps no cross block, and the scripts write one file per data fraction (only the
features its variants need) from one pass, or empty files for vanilla without running the models."""

import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np
import pytest
import torch
from safetensors import safe_open

from permerge.alignment.matching import compute_permutations, required_features, union_features
from permerge.alignment.stats import Statistics, collect_statistics, text_batches
from permerge.alignment.variants import Variant
from permerge.checkpoints import load_permutations, read_permutation_metadata

from .test_evaluate import corpus_dir, tokenizer, tokenizer_dir  # noqa: F401  (fixtures)

SCRIPTS = Path(__file__).resolve().parents[1] / "workflow" / "scripts"
SHAPE = dict(
    num_hidden_layers=2,
    hidden_size=48,
    num_attention_heads=4,
    intermediate_size=96,
    max_position_embeddings=32,
    seq_len=32,
)
L = SHAPE["num_hidden_layers"]

# every variant kind compute_permutations has
VARIANTS = {
    "ff": dict(components=["ff"]),
    "head_perm": dict(components=["attn"], attention="head_perm"),
    "monotonic": dict(components=["attn"], attention="monotonic"),
    "ignore_heads": dict(components=["attn"], attention="ignore_heads"),
    "qk_separate": dict(components=["attn"], qk="separate"),
    "res_first": dict(components=["res"], residual="first"),
    "res_last": dict(components=["res"], residual="last"),
    "res_all": dict(components=["res"], residual="all"),
    "pooler": dict(components=["pooler"]),
    "all": dict(components=["ff", "attn", "res", "pooler"], residual="all"),
}


@pytest.fixture(scope="module")
def trained(corpus_dir, tokenizer_dir, tmp_path_factory):  # noqa: F811
    """Three tiny BERTs pre-trained for 40 steps from different seeds (saved like the workflow's models)."""
    from permerge.training.pretrain import pretrain_bert

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("trained")
    dirs = []
    for seed in (1, 2, 3):
        out = root / f"seed{seed}"
        pretrain_bert(
            tokenizer_dir=tokenizer_dir,
            text_file=corpus_dir / "train.txt",
            seed=seed,
            out_dir=out,
            steps=40,
            batch_size=16,
            lr=3e-3,
            warmup=0.1,
            log_every=100,
            **SHAPE,
        )
        dirs.append(out)
    return dirs


def classifiers(dirs):
    """The trained encoders with a (seeded) pooler, so the pooler statistics are collected too."""
    from transformers import BertForSequenceClassification

    out = []
    for i, d in enumerate(dirs):
        torch.manual_seed(100 + i)
        out.append(BertForSequenceClassification.from_pretrained(str(d), num_labels=2).eval())
    return out


def stats_texts(corpus_dir):  # noqa: F811
    return (corpus_dir / "heldout.txt").read_text().splitlines() + (corpus_dir / "train.txt").read_text().splitlines()[
        :300
    ]


def test_float32_storage_gives_identical_permutations(trained, corpus_dir, tokenizer, tmp_path):  # noqa: F811
    models = classifiers(trained)
    names = ["s1", "s2", "s3"]
    batches = text_batches(tokenizer, stats_texts(corpus_dir), batch_size=32, max_length=32)
    stats = collect_statistics(models, batches, names=names)  # every feature, q/k and pooler included
    assert "pooler" in stats.features and stats.num_tokens > 5000
    stats.save(tmp_path / "f64.safetensors", cross_dtype=torch.float64)
    stats.save(tmp_path / "f32.safetensors")  # the default
    f64, f32 = Statistics.load(tmp_path / "f64.safetensors"), Statistics.load(tmp_path / "f32.safetensors")
    with safe_open(str(tmp_path / "f32.safetensors"), framework="pt") as fh:
        assert fh.get_slice("cross/ff.0/s1/s2").get_dtype() == "F32" and fh.get_slice("m2/ff.0").get_dtype() == "F64"
    config = models[0].config
    worst = 0.0
    moved = 0
    for a, b in (("s1", "s2"), ("s3", "s1")):
        for f in stats.features:
            diff = (f32.correlation(f, a, b) - f64.correlation(f, a, b)).abs().max().item()
            worst = max(worst, diff)
        for name, opts in VARIANTS.items():
            variant = Variant.from_mapping(opts, name=name)
            want = compute_permutations(f64, a, b, variant, config)
            got = compute_permutations(f32, a, b, variant, config)
            assert sorted(got) == sorted(want), name
            for key in want:
                assert np.array_equal(got[key], want[key]), (name, a, b, key)
                moved += int((want[key] != np.arange(len(want[key]))).any())
    assert 0 < worst < 1e-6  # the storage rounds (the comparison is not vacuous) and only that much
    assert moved > 20  # trained models from different seeds: the permutations are far from the identity


def test_matching_many_pairs_keeps_no_cross_block(trained, corpus_dir, tokenizer, tmp_path):  # noqa: F811
    from transformers import BertForMaskedLM

    models = [BertForMaskedLM.from_pretrained(str(d)).eval() for d in trained]
    variant = Variant.from_mapping(VARIANTS["all"])
    features = required_features(variant, L)
    stats = collect_statistics(
        models,
        text_batches(tokenizer, stats_texts(corpus_dir)[:100], max_length=32),
        names=["s1", "s2", "s3"],
        features=features,
    )
    path = tmp_path / "stats.safetensors"
    stats.save(path)
    loaded = Statistics.load(path)
    # M2 of every feature, float64 (models x dim): all the matching reads besides the cross blocks
    m2 = sum(3 * 8 * stats.mean(f, "s1").numel() for f in features)
    held = []
    for a, b in (("s1", "s2"), ("s1", "s3"), ("s3", "s2")):
        perms = compute_permutations(loaded, a, b, variant, models[0].config)
        assert np.array_equal(perms["ff.1"], compute_permutations(stats, a, b, variant, models[0].config)["ff.1"])
        held.append(loaded.nbytes())
        assert not any(k.startswith("cross/") for k in loaded._tensors)
    assert held == [m2, m2, m2]  # no growth from pair to pair


def test_union_features_orders_and_dedups():
    v = lambda **kw: Variant.from_mapping(kw)  # noqa: E731
    got = union_features(
        [
            v(components=["attn"], qk="separate"),
            v(components=["res"], residual="last"),
            v(components=["ff", "res"], residual="first"),
            v(),
            v(components=["pooler"]),
        ],
        2,
    )
    assert got == ["res.0", "res.4", "ff.0", "ff.1", "ctx.0", "ctx.1", "q.0", "q.1", "k.0", "k.1"]
    assert union_features([v(components=["pooler"])], 2, pooler=True) == ["pooler"]
    assert union_features([v(), v()], 12) == []


# ------------------------------------------------------------------------------------------- scripts


def run_script(name, **sm):
    sm.setdefault("log", [])
    sm.setdefault("threads", 1)
    runpy.run_path(str(SCRIPTS / name), init_globals={"snakemake": SimpleNamespace(**sm)}, run_name="__main__")


def collect_job(models, text, fractions, folder):
    """The job of the rule: one output, the task's statistics folder (a file per fraction inside)."""
    return dict(
        input=SimpleNamespace(models=[str(m) for m in models], text=str(text)),
        output=[str(folder)],
        params=SimpleNamespace(
            fractions=fractions,
            seeds=[1, 2, 3],
            pairs=[(1, 2), (1, 3), (2, 3)],
            device="cpu",
            statistics={"batch_size": 16, "max_length": 32, "max_lines": 120},
        ),
        wildcards=SimpleNamespace(task="mlm"),
    )


def test_collect_script_writes_every_fraction_from_one_pass(trained, corpus_dir, tokenizer, tmp_path):  # noqa: F811
    from transformers import BertForMaskedLM

    text = tmp_path / "books.txt"
    lines = stats_texts(corpus_dir)
    text.write_text("\n".join(lines) + "\n")
    fractions = [
        [0.1, [VARIANTS["ff"], VARIANTS["pooler"]]],
        [0.5, [{"components": []}]],
        [1.0, [{**VARIANTS["qk_separate"], "stats_fraction": None}, VARIANTS["res_first"]]],
    ]
    folder = tmp_path / "stats"
    outs = [folder / f"fraction{f:g}.safetensors" for f, _ in fractions]
    run_script("collect_statistics.py", **collect_job(trained, text, fractions, folder))
    assert sorted(folder.iterdir()) == sorted(outs)  # nothing else: the temporary files are gone
    files = [Statistics.load(o) for o in outs]
    # only the features each fraction's variants need (no pooler: these models are BertForMaskedLM)
    assert files[0].features == ["ff.0", "ff.1"]
    assert files[1].features == [] and files[1].names == ["seed1", "seed2", "seed3"]
    assert files[2].features == ["res.0", "ctx.0", "ctx.1", "q.0", "q.1", "k.0", "k.1"]
    assert [int(s.metadata["examples"]) for s in files] == [12, 60, 120]  # max_lines caps the 500 lines
    # fraction 0.1 equals a separate pass over the first 12 lines (batched by length, as the script does)
    models = [BertForMaskedLM.from_pretrained(str(d)).eval() for d in trained]
    ref = collect_statistics(
        models,
        text_batches(tokenizer, lines[:12], batch_size=16, max_length=32, by_length=True),
        names=["seed1", "seed2", "seed3"],
        features=["ff.1"],
    )
    assert files[0].count["ff.1"] == ref.count["ff.1"] == int(files[0].metadata["tokens"])
    np.testing.assert_allclose(files[0].mean("ff.1", "seed2").numpy(), ref.mean("ff.1", "seed2").numpy(), rtol=1e-9)
    np.testing.assert_allclose(
        files[0].cross("ff.1", "seed3", "seed1").numpy(),
        ref.cross("ff.1", "seed3", "seed1").numpy(),
        rtol=1e-6,
        atol=1e-7,
    )  # float32 file
    assert int(files[1].metadata["tokens"]) < files[2].num_tokens
    with pytest.raises(ValueError, match="ascending"):
        run_script("collect_statistics.py", **collect_job(trained, text, fractions[::-1], tmp_path / "bad"))
    assert not (tmp_path / "bad").exists()
    # the permutations script reads the fraction file of its variant; it writes a cohort folder of pair files
    perm_dir = tmp_path / "perms" / "seeds1-2-3"
    perm_outs = [perm_dir / f"{p}.safetensors" for p in ("seed1-seed2", "seed1-seed3")]
    run_script(
        "compute_permutations.py",
        input=SimpleNamespace(stats=str(folder), model_config=str(trained[0])),
        output=[str(perm_dir)],
        params=SimpleNamespace(options=VARIANTS["qk_separate"], pairs=[(1, 2), (1, 3)], stats_name=outs[2].name),
        wildcards=SimpleNamespace(task="mlm", variant="qk_separate"),
    )
    want = compute_permutations(
        files[2], "seed1", "seed3", Variant.from_mapping(VARIANTS["qk_separate"]), models[0].config
    )
    got = load_permutations(perm_outs[1])
    assert sorted(got) == sorted(want) and all(np.array_equal(got[k], want[k]) for k in want)
    with pytest.raises(ValueError, match="lacks the features variant 'ff'"):
        run_script(
            "compute_permutations.py",
            input=SimpleNamespace(stats=str(folder), model_config=str(trained[0])),
            output=[str(tmp_path / "perms" / "failed")],
            params=SimpleNamespace(options=VARIANTS["ff"], pairs=[(1, 2), (1, 3)], stats_name=outs[2].name),
            wildcards=SimpleNamespace(task="mlm", variant="ff"),
        )
    # no half-written folder that looks complete (only the failed try's hidden work folder, for a retry)
    assert sorted(p.name for p in (tmp_path / "perms").iterdir() if not p.name.startswith(".")) == ["seeds1-2-3"]

    # A retry of an interrupted job keeps the pairs it had finished: seed1-seed2 is left in the job's work
    # folder (stamped with this job's fingerprint) as a marker file; the retry matches seed1-seed3 only.
    from permerge.io import job_fingerprint, resumable_folder

    retry = dict(
        input=SimpleNamespace(stats=str(folder), model_config=str(trained[0])),
        output=[str(tmp_path / "retry" / "seeds1-2-3")],
        params=SimpleNamespace(options=VARIANTS["qk_separate"], pairs=[(1, 2), (1, 3)], stats_name=outs[2].name),
        wildcards=SimpleNamespace(task="mlm", variant="qk_separate"),
    )
    with pytest.raises(RuntimeError, match="preempted"):
        with resumable_folder(retry["output"][0], job_fingerprint(SimpleNamespace(**retry))) as work:
            shutil.copy(perm_outs[0], work / "seed1-seed2.safetensors")
            (work / "seed1-seed2.safetensors").touch()  # newer than the first run's: not rewritten
            raise RuntimeError("preempted")
    kept = (tmp_path / "retry" / ".seeds1-2-3.partial" / "seed1-seed2.safetensors").stat().st_mtime_ns
    run_script("compute_permutations.py", **retry)
    done = tmp_path / "retry" / "seeds1-2-3"
    assert sorted(p.name for p in done.iterdir()) == ["seed1-seed2.safetensors", "seed1-seed3.safetensors"]
    assert (done / "seed1-seed2.safetensors").stat().st_mtime_ns == kept  # kept, not matched again
    got = load_permutations(done / "seed1-seed3.safetensors")
    assert all(np.array_equal(got[k], want[k]) for k in want)
    assert not (tmp_path / "retry" / ".seeds1-2-3.partial").exists()


def test_vanilla_only_writes_an_empty_file_without_the_models(trained, tmp_path):
    # model directories with a config but no weights: loading them would fail, so they are never loaded
    bare = []
    for i, d in enumerate(trained):
        b = tmp_path / f"bare{i}"
        b.mkdir()
        (b / "config.json").write_text((d / "config.json").read_text())
        bare.append(b)
    out = tmp_path / "stats" / "fraction1.safetensors"
    run_script("collect_statistics.py", **collect_job(bare, tmp_path / "missing.txt", [[1.0, [{}]]], out.parent))
    stats = Statistics.load(out)
    assert stats.features == [] and stats.pairs == [("seed1", "seed2"), ("seed1", "seed3"), ("seed2", "seed3")]
    perm = tmp_path / "perms" / "seed1-seed2.safetensors"
    # vanilla's job gets no statistics at all (the rule gives it none)
    run_script(
        "compute_permutations.py",
        input=SimpleNamespace(model_config=str(bare[0])),
        output=[str(perm.parent)],
        params=SimpleNamespace(options={}, pairs=[(1, 2)]),
        wildcards=SimpleNamespace(task="mlm", variant="vanilla"),
    )
    assert load_permutations(perm) == {}  # identity everywhere


def test_vanilla_permutation_job_imports_neither_torch_nor_transformers(tmp_path):
    """Vanilla's job writes identities: it must not pay the seconds of importing torch and transformers."""
    out = tmp_path / "perms" / "seed1-seed2.safetensors"
    code = f"""
import runpy, sys
from types import SimpleNamespace as NS
sm = NS(input=NS(), output=[{str(out.parent)!r}], params=NS(options={{}}, pairs=[(1, 2)]), threads=1, log=[],
        wildcards=NS(task="mlm", variant="vanilla"))
runpy.run_path({str(SCRIPTS / "compute_permutations.py")!r}, init_globals={{"snakemake": sm}}, run_name="__main__")
print(sorted(m for m in ("torch", "transformers") if m in sys.modules))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip().splitlines()[-1] == "[]"
    assert load_permutations(out) == {} and read_permutation_metadata(out)["pair"] == "seed1-seed2"
