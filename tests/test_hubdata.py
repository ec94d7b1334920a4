"""The hub code path of the paper configuration, rehearsed offline on hub-shaped fixtures (tests/hub_fixtures.py).

Every load goes through exactly the calls the workflow makes for hub ids (``datasets.load_dataset(path,
config, split=..., revision=...)``, ``from_pretrained(dir)``), with ``path`` a fixture directory.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from permerge.data import hub as H
from permerge.data import standins as S
from tests import hub_fixtures as F

BOOK_ROWS = 10_000


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    import datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    # datasets reads its cache location at import: point it at the test's folder, not ~/.cache.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets-cache")


@pytest.fixture(scope="module")
def books(tmp_path_factory):
    return F.make_bookcorpus(tmp_path_factory.mktemp("bookcorpus"), BOOK_ROWS)


def books_spec(path, **kw):
    return {
        "source": "hub",
        "id": str(path),
        "revision": "refs/convert/parquet",
        "split": "train",
        "column": "text",
        **kw,
    }


def read_rows(path) -> list[int]:
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = [F.book_row(line) for line in lines]
    # every line is the fixture sentence of its row: select() read the rows it was asked for
    assert lines == [F.book_sentence(r) for r in rows]
    return rows


# --------------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------------


def test_sample_indices():
    a = H.sample_indices(1000, 100, seed=3)
    assert a.tolist() == np.random.default_rng(3).choice(1000, size=100, replace=False).tolist()
    assert len(a) == 100 and len(set(a.tolist())) == 100 and a.min() >= 0 and a.max() < 1000
    assert np.array_equal(a, H.sample_indices(1000, 100, seed=3))
    assert not np.array_equal(a, H.sample_indices(1000, 100, seed=4))
    assert not np.array_equal(a, np.sort(a))  # random order, not sorted
    assert sorted(H.sample_indices(5, 5, seed=0).tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="cannot sample 6 rows from a split of 5 rows"):
        H.sample_indices(5, 6)
    with pytest.raises(ValueError, match="positive integer"):
        H.sample_indices(5, 0)


def test_books_sample_spread_deterministic_and_prefix_uniform(books, tmp_path, caplog):
    out = tmp_path / "books.txt"
    with caplog.at_level(logging.INFO, logger="permerge.data.hub"):
        assert H.write_text_role(books_spec(books, sample=1000, sample_seed=7), out) == 1000
    log = caplog.text
    assert f"{BOOK_ROWS} rows in the split" in log and "sampled 1000 rows" in log and "sample_seed 7" in log
    rows = read_rows(out)
    # exactly the indices numpy's default_rng(7) draws, in the order drawn
    assert rows == np.random.default_rng(7).choice(BOOK_ROWS, size=1000, replace=False).tolist()
    assert len(set(rows)) == 1000
    deciles = np.bincount(np.array(rows) * 10 // BOOK_ROWS, minlength=10)
    assert deciles.min() >= 60, deciles  # ~100 each; the first-N-lines behaviour would put all in decile 0
    quintiles = np.bincount(np.array(rows[:200]) * 5 // BOOK_ROWS, minlength=5)
    assert quintiles.min() >= 20, quintiles  # ~40 each: a prefix is itself spread across the corpus

    again = tmp_path / "again.txt"
    H.write_text_role(books_spec(books, sample=1000, sample_seed=7), again)
    assert again.read_bytes() == out.read_bytes()
    other = tmp_path / "other.txt"
    H.write_text_role(books_spec(books, sample=1000, sample_seed=8), other)
    assert read_rows(other) != rows


def test_books_max_lines_after_sample_and_plain_max_lines(books, tmp_path):
    full, cut, first = tmp_path / "full.txt", tmp_path / "cut.txt", tmp_path / "first.txt"
    assert H.write_text_role(books_spec(books, sample=500, sample_seed=1), full) == 500
    assert H.write_text_role(books_spec(books, sample=500, sample_seed=1, max_lines=120), cut) == 120
    assert read_rows(cut) == read_rows(full)[:120]
    # without sample, max_lines keeps its meaning: the first lines of the split
    assert H.write_text_role(books_spec(books, max_lines=50), first) == 50
    assert read_rows(first) == list(range(50))


def test_books_main_branch_arrow_layout(tmp_path):
    repo = F.make_bookcorpus(tmp_path / "repo", 300, layout="arrow")
    out = tmp_path / "b.txt"
    spec = {"source": "hub", "id": str(repo), "split": "train", "column": "text", "sample": 40, "sample_seed": 0}
    assert H.write_text_role(spec, out) == 40
    assert read_rows(out) == H.sample_indices(300, 40, 0).tolist()


def test_sample_errors_and_offline_message(books, tmp_path):
    with pytest.raises(ValueError, match=rf"{books.name}.*cannot sample {BOOK_ROWS + 1} rows"):
        H.write_text_role(books_spec(books, sample=BOOK_ROWS + 1), tmp_path / "x.txt")
    with pytest.raises(ValueError, match="no column 'sentence'"):
        H.write_text_role(books_spec(books, column="sentence", sample=5), tmp_path / "x.txt")
    spec = {
        "source": "hub",
        "id": "SamuelYang/bookcorpus",
        "revision": "refs/convert/parquet",
        "split": "train",
        "sample": 10,
    }
    with pytest.raises(
        H.HubUnavailable,
        match=r"SamuelYang/bookcorpus at revision refs/convert/parquet: offline "
        r"mode is on.*Error.*source: local, path: .*folder of \.txt books",
    ):
        H.write_text_role(spec, tmp_path / "x.txt")
    with pytest.raises(H.HubUnavailable, match=r"nyu-mll/glue \(config rte\) at revision v1"):
        H.export_glue_task("rte", {"train": tmp_path / "t.jsonl"}, revision="v1")
    # a local repository copy that fails is reported as such, with datasets' reason
    with pytest.raises(H.HubUnavailable, match=r"\(config nope\) \(a local directory\): ValueError"):
        H.load_hub_text(str(books), "nope")


def test_local_text_sample(tmp_path):
    books = tmp_path / "books"
    books.mkdir()
    (books / "a.txt").write_text(" ".join(f"Sentence number {i}." for i in range(50)) + "\n")
    out = tmp_path / "s.txt"
    assert (
        H.write_text_role({"source": "local", "path": str(books), "sample": 10, "sample_seed": 2, "max_lines": 8}, out)
        == 8
    )
    got = out.read_text().splitlines()
    assert got == [f"Sentence number {i}." for i in H.sample_indices(50, 10, 2)[:8]]


# --------------------------------------------------------------------------------------------------
# Wikitext, GLUE, MultiBERTs
# --------------------------------------------------------------------------------------------------


def test_wikitext_role(tmp_path):
    repo = F.make_wikitext(tmp_path / "wikitext")
    out = tmp_path / "heldout.txt"
    spec = {"source": "hub", "id": str(repo), "config": F.WIKITEXT_CONFIG, "split": "validation", "column": "text"}
    assert H.write_text_role(spec, out) == 9
    page = [
        "Valkyria Chronicles III is a game of the war , the first in the high @-@ school season .",
        "It was well known in 2 @,@ 011 after the team of the old city .",
        "The new team kept the letter and the song of the king .",
    ]
    assert out.read_text(encoding="utf-8").splitlines() == page * 3  # headings and blank rows gone, text as is


def _parquet_rows(path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def test_glue_export_matches_parquet(tmp_path):
    import yaml

    repo = F.make_glue(tmp_path / "glue", ["sst2", "mnli", "stsb"])
    # Hidden-label rows (GLUE's test splits) inside an exported split must be dropped: append the test rows.
    val = repo / "sst2" / "validation-00000-of-00001.parquet"
    test = repo / "sst2" / "test-00000-of-00001.parquet"
    merged = [*_parquet_rows(val), *_parquet_rows(test)]
    pq.write_table(pa.Table.from_pylist(merged, schema=pq.read_schema(val)), val)
    readme = repo / "README.md"  # keep the card's split sizes true, or datasets refuses the split
    front, body = readme.read_text().split("---")[1:3]
    card = yaml.safe_load(front)
    for info in card["dataset_info"]:
        for split in info["splits"]:
            if info["config_name"] == "sst2" and split["name"] == "validation":
                split["num_examples"] = len(merged)
    readme.write_text("---\n" + yaml.safe_dump(card, sort_keys=False) + "---" + body)
    assert sum(r["label"] == -1 for r in _parquet_rows(val)) == F.GLUE_SIZES["test"]

    counts = {}
    for task in ("sst2", "mnli", "stsb"):
        info = S.TASKS[task]
        outs = {s: tmp_path / task / f"{s}.jsonl" for s in info.splits}
        (tmp_path / task).mkdir()
        counts[task] = H.export_glue_task(task, outs, hub_id=str(repo), revision="main")
        for split, path in outs.items():
            got = [json.loads(line) for line in path.read_text().splitlines()]
            want = [
                r
                for r in _parquet_rows(repo / task / f"{split}-00000-of-00001.parquet")
                if info.num_labels == 1 or r["label"] >= 0
            ]
            assert counts[task][split] == len(got) == len(want) > 0
            assert [{k: r[k] for k in (*info.text_keys, "label", "idx")} for r in want] == got
            for r in got:
                assert type(r["label"]) is (float if info.num_labels == 1 else int)
    assert counts["mnli"]["validation_mismatched"] == F.GLUE_SIZES["validation"]
    assert counts["sst2"] == {"train": F.GLUE_SIZES["train"], "validation": F.GLUE_SIZES["validation"]}


def test_glue_fixture_layout(tmp_path):
    import yaml

    repo = F.make_glue(tmp_path / "glue")
    front = yaml.safe_load((repo / "README.md").read_text().split("---")[1])
    configs = {c["config_name"]: c["data_files"] for c in front["configs"]}
    assert set(configs) == set(S.TASKS)
    for task, info in S.TASKS.items():
        splits = {d["split"] for d in configs[task]}
        assert set(info.splits) <= splits and any(s.startswith("test") for s in splits)
        cols = pq.read_schema(repo / task / "train-00000-of-00001.parquet")
        assert cols.names == [*info.text_keys, "label", "idx"]
        assert str(cols.field("label").type) == ("float" if info.num_labels == 1 else "int64")
        assert str(cols.field("idx").type) == "int32"
        assert {
            r["label"]
            for r in _parquet_rows(
                repo / task / f"{'test_matched' if task == 'mnli' else 'test'}-00000-of-00001.parquet"
            )
        } == {-1}


def test_multiberts_fixture_loads_like_the_hub(tmp_path):
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForPreTraining

    from permerge import models as M

    dirs = F.make_multiberts(tmp_path, [1, 2])
    for seed, d in dirs.items():
        assert d.name == f"multiberts-seed_{seed}"
        assert sorted(p.name for p in d.iterdir()) == [
            "config.json",
            "pytorch_model.bin",
            "special_tokens_map.json",
            "tokenizer_config.json",
            "vocab.txt",
        ]
        assert json.loads((d / "config.json").read_text())["architectures"] == ["BertForPreTraining"]
    tok = AutoTokenizer.from_pretrained(str(dirs[1]))
    assert tok.is_fast
    texts = [F.book_sentence(i) for i in range(200)] + [line for line in F.WIKI_PAGE if line.strip()]
    glue = F.make_glue(tmp_path / "glue")
    for path in glue.rglob("*.parquet"):
        texts += [v for r in _parquet_rows(path) for v in r.values() if isinstance(v, str)]
    for t in texts:
        assert tok.unk_token_id not in tok(t)["input_ids"], t
    assert tok.convert_ids_to_tokens(tok("The dog, 12")["input_ids"]) == [
        "[CLS]",
        "the",
        "dog",
        ",",
        "1",
        "##2",
        "[SEP]",
    ]

    m1, info = BertForPreTraining.from_pretrained(str(dirs[1]), weights_only=True, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    torch.manual_seed(1)
    ref = BertForPreTraining(BertConfig.from_pretrained(str(dirs[1])))
    ref_sd = ref.state_dict()
    for k, v in m1.state_dict().items():
        assert torch.equal(v, ref_sd[k]), k
    m2 = BertForPreTraining.from_pretrained(str(dirs[2]), weights_only=True)
    assert not torch.equal(m1.bert.pooler.dense.weight, m2.bert.pooler.dense.weight)

    # the workflow's fetch step keeps the pooler and the NSP head
    kept = M.fetch_checkpoint(dirs[2], tmp_path / "fetched")
    assert kept["pooler"] and kept["nsp_head"] and kept["architecture"] == "BertForPreTraining"
    assert (tmp_path / "fetched" / "model.safetensors").is_file()


def test_make_all(tmp_path):
    paths = F.make_all(tmp_path, seeds=[1], glue_tasks=["rte"], book_rows=100)
    assert sorted(paths) == ["bookcorpus", "glue", "models", "wikitext"]
    assert (paths["models"] / "multiberts-seed_1" / "pytorch_model.bin").is_file()
    assert (paths["bookcorpus"] / "default" / "train" / "0000.parquet").is_file()


def test_revision_passed_only_when_set(books, tmp_path, monkeypatch):
    import datasets

    calls = []
    real = datasets.load_dataset_builder

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset_builder", spy)
    H.write_text_role(books_spec(books, max_lines=3), tmp_path / "a.txt")
    H.write_text_role({**books_spec(books, max_lines=3), "revision": None}, tmp_path / "b.txt")
    assert calls == [
        ((str(books), None), {"revision": "refs/convert/parquet"}),
        ((str(books), None), {}),
    ]


# --------------------------------------------------------------------------------------------------
# Integrity of the Books corpus: the split's size against the published one, and where it came from
# --------------------------------------------------------------------------------------------------

FULL_ROWS = 74_004_228  # SamuelYang/bookcorpus


def test_partial_parquet_export_is_refused(tmp_path):
    repo = F.make_bookcorpus(tmp_path / "partial", 600, layout="partial_export")
    assert (repo / "default" / "partial-train" / "0000.parquet").is_file()
    spec = books_spec(repo, sample=50, expected_rows=FULL_ROWS)
    with pytest.raises(H.IncompleteDataset) as err:
        H.write_text_role(spec, tmp_path / "b.txt", tmp_path / "b.meta.json")
    msg = str(err.value)
    for part in (str(repo), "revision refs/convert/parquet", "600 rows loaded", f"{FULL_ROWS} rows published"):
        assert part in msg, msg
    assert "partial-train" in msg and "expected_rows" in msg
    assert not (tmp_path / "b.txt").exists() and not (tmp_path / "b.meta.json").exists()
    # without a published size the partial layout alone is refused, and says the size is unknown
    with pytest.raises(H.IncompleteDataset, match=r"600 rows loaded; the published size is unknown.*partial-train"):
        H.load_hub_text(str(repo), revision="refs/convert/parquet", sample=5)


def test_card_split_size_is_checked(tmp_path):
    # a README whose dataset_info says 900 rows, parquet files holding 600: refused, both counts named
    repo = F.make_bookcorpus(tmp_path / "short", 600, declared_rows=900)
    with pytest.raises(H.IncompleteDataset) as err:
        H.load_hub_text(str(repo), revision="v1", sample=5)
    msg = str(err.value)
    assert f"dataset {repo} at revision v1, split train: 600 rows loaded, but 900 rows published" in msg, msg
    assert "split metadata" in msg
    # the card and expected_rows agreeing with the data: accepted
    repo = F.make_bookcorpus(tmp_path / "ok", 600, declared_rows=600)
    assert len(H.load_hub_text(str(repo), sample=5, expected_rows=600)) == 5


def test_expected_rows_mismatch_is_refused(books, tmp_path):
    with pytest.raises(H.IncompleteDataset, match=rf"{BOOK_ROWS} rows loaded, but {FULL_ROWS} rows published"):
        H.write_text_role(books_spec(books, sample=10, expected_rows=FULL_ROWS), tmp_path / "x.txt")


def test_complete_export_passes_and_records_its_revision(books, tmp_path):
    out, meta_out = tmp_path / "books.txt", tmp_path / "books.meta.json"
    assert H.write_text_role(books_spec(books, sample=100, expected_rows=BOOK_ROWS), out, meta_out) == 100
    meta = json.loads(meta_out.read_text())
    assert meta == {
        "source": "hub",
        "id": str(books),
        "config": None,
        "split": "train",
        "revision": "refs/convert/parquet",
        "resolved_revision": "local directory",  # a fixture folder has no commit
        "split_rows": BOOK_ROWS,
        "published_rows": BOOK_ROWS,
        "lines": 100,
    }


def test_resolved_revision_of_a_hub_dataset_is_the_builders_commit():
    class Builder:  # what datasets' builder of a hub dataset carries: the commit the revision resolved to
        hash = "0123456789abcdef0123456789abcdef01234567"

    meta = H.provenance("SamuelYang/bookcorpus", None, "train", "refs/convert/parquet", Builder(), 7)
    assert meta["resolved_revision"] == Builder.hash and meta["revision"] == "refs/convert/parquet"


def test_provenance_in_config_effective_yaml(books, tmp_path):
    import yaml

    from permerge import config as cfg

    root = tmp_path / "results"
    (root / "data" / "text").mkdir(parents=True)
    config = cfg.load_merged(cfg.ROOT / "configs" / "paper.yaml")
    eff = root / "config.effective.yaml"
    eff.write_text(cfg.effective_yaml(config, ["configs/paper.yaml"], cfg.provenance_comment(root)))
    assert cfg.PROVENANCE_MARK not in eff.read_text()  # nothing prepared yet
    text = root / "data" / "text"
    H.write_text_role(
        books_spec(books, sample=10, expected_rows=BOOK_ROWS), text / "books.txt", text / "books.meta.json"
    )
    H.write_text_role(
        {"source": "local", "path": str(text / "books.txt")}, text / "heldout.txt", text / "heldout.meta.json"
    )
    for _ in range(2):  # rewriting replaces the block
        cfg.record_provenance(root)
    written = eff.read_text()
    assert written.count(cfg.PROVENANCE_MARK) == 1
    assert (
        f"#   books: {books} config None split train revision refs/convert/parquet -> resolved local directory; "
        f"{BOOK_ROWS} rows (published: {BOOK_ROWS})" in written
    )
    assert f"#   heldout: local {text / 'books.txt'} (local directory)" in written
    assert yaml.safe_load(written) == yaml.safe_load(cfg.effective_yaml(config))  # still the same configuration
    # the next run's onstart keeps the block
    assert cfg.provenance_comment(root) in cfg.effective_yaml(config, (), cfg.provenance_comment(root))
