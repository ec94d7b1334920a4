"""Offline stand-ins for the HuggingFace hub repositories the paper configuration reads.

Each ``make_*`` function writes, under a directory a test gives it, a repository with the *files and layout*
of the hub one, so that the workflow's hub code path (``datasets.load_dataset(path, config, split=...,
revision=...)`` and ``from_pretrained(dir)``) runs unchanged with ``path`` set to the fixture directory.
Everything is tiny and deterministic; the whole set builds in a few seconds on a CPU.

* :func:`make_multiberts` mirrors ``google/multiberts-seed_{seed}``: ``config.json`` with architectures
  ``["BertForPreTraining"]``, weights only as a pickled ``pytorch_model.bin`` (pooler and NSP head
  included), the tokenizer as ``vocab.txt`` + ``tokenizer_config.json`` + ``special_tokens_map.json``, and
  neither ``model.safetensors`` nor ``tokenizer.json`` (the fast tokenizer is built from vocab.txt). The
  model is a random tiny BERT (``torch.manual_seed(seed)``) with a word-level vocabulary covering every
  fixture text.
* :func:`make_glue` mirrors ``nyu-mll/glue`` (the parquet layout): a README whose YAML front matter declares
  one ``configs:`` entry per task (``config_name`` + ``data_files`` split -> path) and ``dataset_info``
  features, and ``{task}/{split}-00000-of-00001.parquet`` files with GLUE's column names and dtypes
  (ClassLabel ``label``, float32 for stsb, int32 ``idx``; test splits labelled -1).
* :func:`make_wikitext` mirrors ``Salesforce/wikitext`` config ``wikitext-103-raw-v1``: a README with
  ``configs:`` and ``wikitext-103-raw-v1/{train-0000x-of-00002,validation-00000-of-00001,
  test-00000-of-00001}.parquet`` holding a ``text`` column of raw Wikitext lines (``" = Heading = \\n"``,
  blank rows, text with ``" @-@ "``, ``" @,@ "``).
* :func:`make_bookcorpus` mirrors ``SamuelYang/bookcorpus`` at revision ``refs/convert/parquet`` (the hub's
  parquet export of the 74,004,228-sentence BookCorpus): no README, ``default/train/0000.parquet``,
  ``0001.parquet``, ... with one lower-cased, space-tokenised sentence per row in a ``text`` column. Each
  sentence carries its row number (``"row 123 : ..."``) so a test can tell where a sample came from.
  ``layout="arrow"`` writes the repository's ``main`` branch instead (``bookcorpus-train.arrow`` in the
  datasets cache format + ``dataset_info.json``); ``layout="partial_export"`` the truncated parquet export
  (``default/partial-train/``), and ``declared_rows`` a README declaring the split's size.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PUNCT = list(".,:;!?'\"()-=@")
DIGITS = [str(d) for d in range(10)]

POSITIVE = ["good", "great", "happy", "lovely", "bright", "kind"]
NEGATIVE = ["bad", "awful", "sad", "dull", "cruel", "dark"]
NOUNS = ["dog", "cat", "house", "river", "king", "garden", "road", "letter", "ship", "friend", "song", "city"]
VERBS = ["saw", "found", "left", "loved", "kept", "followed", "built", "heard", "opened", "carried"]
OTHER = [
    "the",
    "a",
    "and",
    "he",
    "she",
    "it",
    "was",
    "is",
    "to",
    "of",
    "in",
    "on",
    "very",
    "not",
    "what",
    "does",
    "mean",
    "row",
    "that",
    "with",
    "his",
    "her",
    "old",
    "new",
    "after",
    "before",
    "game",
    "war",
    "valkyria",
    "chronicles",
    "career",
    "history",
    "season",
    "first",
    "second",
    "team",
    "year",
    "high",
    "school",
    "well",
    "known",
    "thing",
    "there",
    "no",
    "iii",
    "an",
]
WORDS = sorted(set(POSITIVE + NEGATIVE + NOUNS + VERBS + OTHER))
VOCAB = SPECIALS + PUNCT + DIGITS + ["##" + d for d in DIGITS] + WORDS

# GLUE (nyu-mll/glue): task -> (text columns, label names (empty: regression), splits)
_STD = ("train", "validation", "test")
GLUE = {
    "cola": (("sentence",), ("unacceptable", "acceptable"), _STD),
    "sst2": (("sentence",), ("negative", "positive"), _STD),
    "mrpc": (("sentence1", "sentence2"), ("not_equivalent", "equivalent"), _STD),
    "qqp": (("question1", "question2"), ("not_duplicate", "duplicate"), _STD),
    "stsb": (("sentence1", "sentence2"), (), _STD),
    "mnli": (
        ("premise", "hypothesis"),
        ("entailment", "neutral", "contradiction"),
        ("train", "validation_matched", "validation_mismatched", "test_matched", "test_mismatched"),
    ),
    "qnli": (("question", "sentence"), ("entailment", "not_entailment"), _STD),
    "rte": (("sentence1", "sentence2"), ("entailment", "not_entailment"), _STD),
}
GLUE_SIZES = {"train": 64, "validation": 32, "test": 16}
WIKITEXT_CONFIG = "wikitext-103-raw-v1"


def _sentence(rng: random.Random, mood: Sequence[str] | None = None) -> str:
    mood = mood or rng.choice([POSITIVE, NEGATIVE])
    return (
        f"the {rng.choice(mood)} {rng.choice(NOUNS)} {rng.choice(VERBS)} "
        f"the {rng.choice(NOUNS)} {rng.choice(['.', '!', '?'])}"
    )


# --------------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------------


def _write_readme(root: Path, configs: list[dict], infos: list[dict] | None = None, title: str = "") -> None:
    import yaml

    front = {"configs": configs}
    if infos:
        front["dataset_info"] = infos
    (root / "README.md").write_text(
        "---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n\n# " + title + "\n", encoding="utf-8"
    )


def _features_yaml(features) -> list[dict]:
    """The ``dataset_info.features`` entry of a README, as the hub writes it."""
    out = []
    for name, feat in features.items():
        if getattr(feat, "names", None) is not None:
            out.append(
                {"name": name, "dtype": {"class_label": {"names": {str(i): n for i, n in enumerate(feat.names)}}}}
            )
        else:
            out.append({"name": name, "dtype": feat.dtype})
    return out


def _glue_rows(task: str, split: str, n: int, rng: random.Random) -> dict[str, list]:
    text_keys, names, _ = GLUE[task]
    test = split.startswith("test")
    cols: dict[str, list] = {k: [] for k in (*text_keys, "label", "idx")}
    for i in range(n):
        if task in ("sst2", "cola"):
            y = rng.randrange(2)
            s = _sentence(rng, POSITIVE if y == 1 else NEGATIVE)
            texts = (s,)
        elif task == "qnli":
            noun = rng.choice(NOUNS)
            y = rng.randrange(2)
            texts = (
                f"what does {noun} mean ?",
                f"a {noun} is a {rng.choice(WORDS)} thing ."
                if y == 0
                else f"a {rng.choice([w for w in NOUNS if w != noun])} is an old thing .",
            )
        else:
            a = _sentence(rng)
            y = rng.randrange(len(names)) if names else round(rng.uniform(0, 5), 2)
            same = (y == 0) if task in ("mnli", "rte") else (y == 1 if names else y >= 2.5)
            b = a.replace("the ", "a ", 1) if same else _sentence(rng)
            texts = (a, b)
        for k, t in zip(text_keys, texts):
            cols[k].append(t)
        cols["label"].append((-1.0 if not names else -1) if test else (float(y) if not names else int(y)))
        cols["idx"].append(i)
    return cols


def make_glue(
    root: str | Path, tasks: Iterable[str] = tuple(GLUE), sizes: Mapping[str, int] | None = None, seed: int = 0
) -> Path:
    """``nyu-mll/glue`` in its hub parquet layout under ``root`` (returned). ``sizes``: rows per split kind
    (``train``, ``validation``, ``test``; mnli's validation_*/test_* use the validation/test sizes)."""
    import datasets

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    sizes = {**GLUE_SIZES, **(sizes or {})}
    configs, infos = [], []
    for t_i, task in enumerate(sorted(tasks)):
        if task not in GLUE:
            raise ValueError(f"unknown GLUE task {task!r}; fixtures exist for {sorted(GLUE)}")
        text_keys, names, splits = GLUE[task]
        features = datasets.Features(
            {
                **{k: datasets.Value("string") for k in text_keys},
                "label": datasets.ClassLabel(names=list(names)) if names else datasets.Value("float32"),
                "idx": datasets.Value("int32"),
            }
        )
        (root / task).mkdir(exist_ok=True)
        data_files, split_infos = [], []
        for s_i, split in enumerate(splits):
            n = sizes[split.split("_")[0]]
            rows = _glue_rows(task, split, n, random.Random(seed * 1000 + t_i * 10 + s_i))
            # The hub's parquet files carry the datasets features (ClassLabel names) in their schema metadata.
            ds = datasets.Dataset.from_dict(rows, features=features)
            ds.to_parquet(str(root / task / f"{split}-00000-of-00001.parquet"))
            data_files.append({"split": split, "path": f"{task}/{split}-*"})
            split_infos.append({"name": split, "num_bytes": ds.data.nbytes, "num_examples": n})
        configs.append({"config_name": task, "data_files": data_files})
        infos.append({"config_name": task, "features": _features_yaml(features), "splits": split_infos})
    _write_readme(root, configs, infos, "GLUE (offline fixture of nyu-mll/glue)")
    return root


WIKI_PAGE = [
    "",
    " = Valkyria Chronicles III = \n",
    "",
    " Valkyria Chronicles III is a game of the war , the first in the high @-@ school season . \n",
    " It was well known in 2 @,@ 011 after the team of the old city . \n",
    "",
    " = = Career = = \n",
    "",
    " = = = First season = = = \n",
    " The new team kept the letter and the song of the king . \n",
]


def make_wikitext(root: str | Path, pages: Mapping[str, int] | None = None) -> Path:
    """``Salesforce/wikitext`` with config ``wikitext-103-raw-v1`` under ``root`` (returned): ``pages`` copies
    of a Wikitext-style page per split (default train 4 in two shards, validation 3, test 1)."""
    import datasets

    root = Path(root)
    cfg = root / WIKITEXT_CONFIG
    cfg.mkdir(parents=True, exist_ok=True)
    pages = {"train": 4, "validation": 3, "test": 1, **(pages or {})}
    features = datasets.Features({"text": datasets.Value("string")})
    shards = {"train": 2, "validation": 1, "test": 1}
    data_files, split_infos = [], []
    for split in ("test", "train", "validation"):  # the hub lists them in this order
        lines = [line for _ in range(pages[split]) for line in WIKI_PAGE]
        k = shards[split]
        step = -(-len(lines) // k)
        nbytes = 0
        for j in range(k):
            ds = datasets.Dataset.from_dict({"text": lines[j * step : (j + 1) * step]}, features=features)
            ds.to_parquet(str(cfg / f"{split}-{j:05d}-of-{k:05d}.parquet"))
            nbytes += ds.data.nbytes
        data_files.append({"split": split, "path": f"{WIKITEXT_CONFIG}/{split}-*"})
        split_infos.append({"name": split, "num_bytes": nbytes, "num_examples": len(lines)})
    _write_readme(
        root,
        [{"config_name": WIKITEXT_CONFIG, "data_files": data_files}],
        [{"config_name": WIKITEXT_CONFIG, "features": _features_yaml(features), "splits": split_infos}],
        "Wikitext (offline fixture of Salesforce/wikitext)",
    )
    return root


def book_sentence(i: int) -> str:
    """The fixture BookCorpus sentence of row ``i`` (lower-cased and space-tokenised like BookCorpus)."""
    rng = random.Random(i)
    return f"row {i} : {_sentence(rng).replace(' the ', ' his ', rng.randrange(2))}"


ROW_RE = re.compile(r"^row (\d+) :")


def book_row(line: str) -> int:
    """The row number embedded in a fixture BookCorpus sentence."""
    m = ROW_RE.match(line)
    if not m:
        raise ValueError(f"not a fixture BookCorpus sentence: {line!r}")
    return int(m.group(1))


def make_bookcorpus(
    root: str | Path,
    n_rows: int = 10_000,
    shards: int = 3,
    layout: str = "parquet_export",
    declared_rows: int | None = None,
) -> Path:
    """BookCorpus as ``SamuelYang/bookcorpus`` holds it, under ``root`` (returned).

    ``layout="parquet_export"``: the ``refs/convert/parquet`` revision (``default/train/{0000..}.parquet``,
    no README; datasets names the config ``default`` and the split ``train`` from the path).
    ``layout="partial_export"``: the same revision when the hub converted only the first part of a large
    dataset (its first 5 GB): ``default/partial-train/{0000..}.parquet``, which datasets loads as ``train``;
    ``n_rows`` is then the part that was converted.
    ``layout="arrow"``: the ``main`` branch (``bookcorpus-train.arrow`` + ``dataset_info.json``).
    ``declared_rows`` (parquet layouts): also write a README whose ``dataset_info`` declares that many train
    rows (the dataset's own split metadata), whatever the parquet files hold.
    """
    import datasets

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    features = datasets.Features({"text": datasets.Value("string")})
    texts = [book_sentence(i) for i in range(n_rows)]
    if layout in ("parquet_export", "partial_export"):
        folder = "train" if layout == "parquet_export" else "partial-train"
        out = root / "default" / folder
        out.mkdir(parents=True, exist_ok=True)
        step = -(-n_rows // shards)
        nbytes = 0
        for j in range(shards):
            ds = datasets.Dataset.from_dict({"text": texts[j * step : (j + 1) * step]}, features=features)
            ds.to_parquet(str(out / f"{j:04d}.parquet"))
            nbytes += ds.data.nbytes
        if declared_rows is not None:
            _write_readme(
                root,
                [{"config_name": "default", "data_files": [{"split": "train", "path": f"default/{folder}/*"}]}],
                [
                    {
                        "config_name": "default",
                        "features": _features_yaml(features),
                        "splits": [{"name": "train", "num_bytes": nbytes, "num_examples": declared_rows}],
                    }
                ],
                "BookCorpus (offline fixture of SamuelYang/bookcorpus)",
            )
    elif layout == "arrow":
        from datasets.arrow_writer import ArrowWriter

        with ArrowWriter(features=features, path=str(root / "bookcorpus-train.arrow")) as writer:
            writer.write_batch({"text": texts})
            writer.finalize()
        datasets.DatasetInfo(features=features, dataset_name="bookcorpus", config_name="plain_text").write_to_directory(
            str(root)
        )
        (root / "LICENSE").write_text("")
    else:
        raise ValueError(f"unknown bookcorpus layout {layout!r} (parquet_export, partial_export or arrow)")
    return root


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------

TINY_BERT = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=128
)


def make_multiberts(root: str | Path, seeds: Iterable[int] = (1, 2), config: Mapping | None = None) -> dict[int, Path]:
    """``google/multiberts-seed_{seed}`` for each seed, under ``root``; returns seed -> directory.

    ``config``: BertConfig overrides of the tiny default (hidden 32, 2 layers, 2 heads, intermediate 64).
    """
    import torch
    from transformers import BertConfig, BertForPreTraining

    root = Path(root)
    out = {}
    for seed in seeds:
        d = root / f"multiberts-seed_{seed}"
        d.mkdir(parents=True, exist_ok=True)
        cfg = BertConfig(vocab_size=len(VOCAB), **{**TINY_BERT, **(config or {})})
        torch.manual_seed(seed)
        model = BertForPreTraining(cfg).eval()
        model.config.architectures = ["BertForPreTraining"]
        model.config.to_json_file(str(d / "config.json"))
        # transformers 5 writes only safetensors; the MultiBERTs ship a pickled state dict.
        torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, d / "pytorch_model.bin")
        (d / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
        (d / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": 512}))
        (d / "special_tokens_map.json").write_text(
            json.dumps(
                {
                    "unk_token": "[UNK]",
                    "sep_token": "[SEP]",
                    "pad_token": "[PAD]",
                    "cls_token": "[CLS]",
                    "mask_token": "[MASK]",
                }
            )
        )
        for stray in ("model.safetensors", "tokenizer.json"):
            (d / stray).unlink(missing_ok=True)
        out[seed] = d
    return out


def make_all(
    root: str | Path, seeds: Iterable[int] = (1, 2), glue_tasks: Iterable[str] = tuple(GLUE), book_rows: int = 2000
) -> dict[str, Path]:
    """Every fixture under ``root``: keys ``models`` (the folder holding ``multiberts-seed_{seed}``),
    ``glue``, ``wikitext``, ``bookcorpus``."""
    root = Path(root)
    make_multiberts(root / "models", seeds)
    return {
        "models": root / "models",
        "glue": make_glue(root / "glue", glue_tasks),
        "wikitext": make_wikitext(root / "wikitext"),
        "bookcorpus": make_bookcorpus(root / "bookcorpus", book_rows),
    }
