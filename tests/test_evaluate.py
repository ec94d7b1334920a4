"""Evaluation: the fixed masked MLM set, exact loss aggregation, the λ sweep, GLUE losses and metrics."""

import math
import os
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.functional as F

from permerge.evaluation.barriers import read_tsv
from permerge.evaluation.evaluate import (
    IGNORE_INDEX,
    bert_mask,
    build_glue_evalset,
    build_mlm_evalset,
    classification_metrics,
    glue_loss,
    lambda_sweep,
    load_evalset,
    mlm_loss,
    paper_compat_line,
    regression_metrics,
    save_evalset,
    tokenize_lines,
    write_loss_table,
)

NOUNS = "cat dog bird horse king queen river garden house letter ship sailor mother father child".split()
ADJS = "old young quiet bright dark happy sad small large gentle".split()
VERBS = "sees loves finds follows answers watches remembers carries".split()
PLACES = "london paris the sea the village the castle the forest".split(" ")


def make_sentences(n: int, seed: int = 0) -> list[str]:
    """Grammatical toy English: enough structure for an MLM to learn something quickly."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.sample(NOUNS, 2)
        s = f"The {rng.choice(ADJS)} {a} {rng.choice(VERBS)} the {rng.choice(ADJS)} {b}"
        if rng.random() < 0.5:
            s += f" near {rng.choice(PLACES)}"
        if rng.random() < 0.3:
            s += f", and the {b} {rng.choice(VERBS)} the {a}"
        out.append(s + ".")
    return out


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    (d / "train.txt").write_text("\n".join(make_sentences(600, seed=0)) + "\n")
    (d / "heldout.txt").write_text("\n".join(make_sentences(200, seed=1)) + "\n")
    return d


@pytest.fixture(scope="session")
def tokenizer_dir(corpus_dir, tmp_path_factory):
    from permerge.training.pretrain import train_wordpiece

    d = tmp_path_factory.mktemp("tok")
    train_wordpiece([corpus_dir / "train.txt"], d, vocab_size=200, min_frequency=1)
    return d


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir))


def tiny_mlm(vocab_size: int, seed: int, **kw):
    from transformers import BertForMaskedLM

    from permerge.training.pretrain import make_config

    torch.manual_seed(seed)
    cfg = make_config(
        vocab_size=vocab_size,
        num_hidden_layers=2,
        hidden_size=32,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        **kw,
    )
    return BertForMaskedLM(cfg).eval()


def tiny_classifier(vocab_size: int, seed: int, num_labels: int):
    from transformers import BertForSequenceClassification

    from permerge.training.pretrain import make_config

    torch.manual_seed(seed)
    cfg = make_config(
        vocab_size=vocab_size,
        num_hidden_layers=2,
        hidden_size=32,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    cfg.num_labels = num_labels
    return BertForSequenceClassification(cfg).eval()


# ------------------------------------------------------------------------------------------- masking
def test_bert_mask_fractions_on_a_large_sample():
    vocab, special = 1000, [0, 1, 2, 3, 4]
    ids = torch.randint(5, vocab, (400, 500), generator=torch.Generator().manual_seed(1))
    ids[:, 0], ids[:, -1] = 2, 3  # [CLS] ... [SEP]
    masked, labels = bert_mask(
        ids, special=special, mask_token_id=4, vocab_size=vocab, generator=torch.Generator().manual_seed(0)
    )
    chosen = labels != IGNORE_INDEX
    candidates = ~torch.isin(ids, torch.tensor(special))
    assert not chosen[~candidates].any()  # specials are never chosen
    frac = chosen.sum().item() / candidates.sum().item()
    assert abs(frac - 0.15) < 0.003
    assert torch.equal(labels[chosen], ids[chosen])  # labels are the original tokens
    assert torch.equal(masked[~chosen], ids[~chosen])  # nothing else is touched
    n = chosen.sum().item()
    to_mask = (masked[chosen] == 4).sum().item() / n
    unchanged = (masked[chosen] == ids[chosen]).sum().item() / n
    randomised = 1 - to_mask - unchanged
    assert abs(to_mask - 0.8) < 0.01
    assert abs(unchanged - 0.1) < 0.008  # includes the 1/vocab chance a random draw hits the original
    assert abs(randomised - 0.1) < 0.008


def test_evalset_blocks_labels_and_determinism(tokenizer, corpus_dir):
    lines = (corpus_dir / "heldout.txt").read_text().splitlines() + ["", "   "]
    ids = tokenize_lines(tokenizer, lines)
    # every non-empty line contributes [CLS] ... [SEP]
    assert ids.count(tokenizer.cls_token_id) == 200 and ids.count(tokenizer.sep_token_id) == 200
    assert ids == [i for line in lines if line.strip() for i in tokenizer(line.strip())["input_ids"]]
    ev = build_mlm_evalset(tokenizer, lines, block_size=32, seed=3)
    n_blocks = len(ids) // 32
    assert ev["input_ids"].shape == (n_blocks, 32) and ev["labels"].shape == (n_blocks, 32)
    orig = torch.tensor(ids[: n_blocks * 32]).view(n_blocks, 32)
    chosen = ev["labels"] != IGNORE_INDEX
    assert torch.equal(ev["labels"][chosen], orig[chosen])
    assert torch.equal(ev["input_ids"][~chosen], orig[~chosen])
    assert 0.10 < chosen.sum().item() / (orig > 4).sum().item() < 0.20
    again = build_mlm_evalset(tokenizer, lines, block_size=32, seed=3)
    other = build_mlm_evalset(tokenizer, lines, block_size=32, seed=4)
    assert all(torch.equal(ev[k], again[k]) for k in ev)
    assert not torch.equal(ev["labels"], other["labels"])
    capped = build_mlm_evalset(tokenizer, lines, block_size=32, seed=3, max_blocks=5)
    assert capped["input_ids"].shape == (5, 32)


def test_paper_compat_spells_out_characters(tokenizer, corpus_dir):
    lines = (corpus_dir / "heldout.txt").read_text().splitlines()[:50]
    normal = tokenize_lines(tokenizer, lines)
    spelled = tokenize_lines(tokenizer, lines, paper_compat=True)
    assert len(spelled) > 2 * len(normal)
    special = set(tokenizer.all_special_ids)
    tokens = tokenizer.convert_ids_to_tokens([i for i in spelled if i not in special])
    assert all(len(t) == 1 for t in tokens)  # every scored token is a single character
    a = build_mlm_evalset(tokenizer, lines, block_size=32)
    b = build_mlm_evalset(tokenizer, lines, block_size=32, paper_compat=True)
    assert a["input_ids"].shape[0] < b["input_ids"].shape[0]


def test_paper_compat_line_hand_worked():
    """The reference's transformation (docs/method.md "MLM loss"): ``" ".join(line)`` on each (stripped)
    Wikitext line, worked by hand on a heading and on a line with Wikitext's ``@-@`` escapes."""
    assert paper_compat_line("= Valkyria Chronicles III =") == ("=   V a l k y r i a   C h r o n i c l e s   I I I   =")
    assert paper_compat_line("the 2011 @-@ 12 season") == "t h e   2 0 1 1   @ - @   1 2   s e a s o n"
    assert paper_compat_line("") == ""


def test_paper_compat_tokenizes_each_character_of_the_stripped_line(tokenizer):
    # a raw Wikitext line (leading space, newline): tokenized as [CLS], one token per character, [SEP]
    raw = " the cat sees the dog . \n"
    ids = tokenize_lines(tokenizer, [raw, "   \n"], paper_compat=True)  # the blank line is skipped
    chars = [c for c in raw if not c.isspace()]
    assert ids == tokenizer(" ".join(raw.strip()))["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert tokenizer.convert_ids_to_tokens(ids[1:-1]) == chars


def test_save_load_evalset_roundtrip(tokenizer, corpus_dir, tmp_path):
    lines = (corpus_dir / "heldout.txt").read_text().splitlines()
    ev = build_mlm_evalset(tokenizer, lines, block_size=32)
    path = tmp_path / "ev" / "mlm.safetensors"
    save_evalset(ev, path, metadata={"block_size": 32, "paper_compat": False, "text": "x.txt"})
    back, meta = load_evalset(path, with_metadata=True)
    assert all(torch.equal(ev[k], back[k]) for k in ev)
    assert meta["block_size"] == "32" and meta["paper_compat"] == "false" and meta["text"] == "x.txt"
    assert [p.name for p in path.parent.iterdir()] == ["mlm.safetensors"]  # no temporary left behind


# ------------------------------------------------------------------------------------------- MLM loss
def test_mlm_loss_is_the_exact_mean_over_masked_tokens(tokenizer, corpus_dir):
    lines = (corpus_dir / "heldout.txt").read_text().splitlines()
    ev = build_mlm_evalset(tokenizer, lines, block_size=32, max_blocks=11)
    model = tiny_mlm(len(tokenizer), seed=0)
    with torch.no_grad():
        logits = model(input_ids=ev["input_ids"]).logits  # full forward, head at every position
    sel = ev["labels"] != IGNORE_INDEX
    ref = F.cross_entropy(logits[sel].double(), ev["labels"][sel], reduction="mean").item()
    # batch means of unequal batches differ from the exact mean: make sure we do not compute that
    batch_means = [
        F.cross_entropy(logits[i : i + 4][sel[i : i + 4]], ev["labels"][i : i + 4][sel[i : i + 4]]).item()
        for i in range(0, 11, 4)
    ]
    res = mlm_loss(model, ev, batch_size=4)
    assert res["n_tokens"] == int(sel.sum())
    assert res["loss"] == pytest.approx(ref, abs=1e-5)
    assert abs(np.mean(batch_means) - ref) > 1e-5
    assert res["pseudo_perplexity"] == pytest.approx(math.exp(ref), rel=1e-5)
    assert res["loss"] == pytest.approx(mlm_loss(model, ev, batch_size=32)["loss"], abs=1e-5)


# ------------------------------------------------------------------------------------------- λ sweep
def test_lambda_sweep_endpoints_in_place_and_tied(tokenizer, corpus_dir):
    lines = (corpus_dir / "heldout.txt").read_text().splitlines()
    ev = build_mlm_evalset(tokenizer, lines, block_size=32, max_blocks=6)
    a, b = tiny_mlm(len(tokenizer), seed=1), tiny_mlm(len(tokenizer), seed=2)
    loss_a, loss_b = mlm_loss(a, ev, batch_size=4)["loss"], mlm_loss(b, ev, batch_size=4)["loss"]
    seen = []

    def evaluate(model):
        seen.append(
            (
                model,
                {n: p.data_ptr() for n, p in model.named_parameters()},
                model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight,
                {n: p.detach().clone() for n, p in model.named_parameters()},
            )
        )
        return mlm_loss(model, ev, batch_size=4)

    rows = lambda_sweep(a, b, [0.0, 0.25, 0.5, 1.0], evaluate)
    assert [r["lambda"] for r in rows] == [0.0, 0.25, 0.5, 1.0]
    assert rows[0]["loss"] == loss_a  # exactly
    assert rows[-1]["loss"] == loss_b
    assert rows[1]["loss"] not in (loss_a, loss_b)
    assert all(s[0] is seen[0][0] for s in seen)  # one working copy
    assert all(s[1] == seen[0][1] for s in seen)  # no reallocation: storage unchanged across λ
    assert all(s[2] for s in seen)  # tied decoder stays tied
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    for n, v in seen[2][3].items():
        torch.testing.assert_close(v, (pa[n] + pb[n]) / 2)
    for n, v in seen[0][3].items():
        assert torch.equal(v, pa[n])
    for n, v in seen[3][3].items():
        assert torch.equal(v, pb[n])
    # A and B are untouched
    assert mlm_loss(a, ev, batch_size=4)["loss"] == loss_a and mlm_loss(b, ev, batch_size=4)["loss"] == loss_b


def test_lambda_sweep_rejects_mismatched_models(tokenizer):
    a = tiny_mlm(len(tokenizer), seed=1)
    b = tiny_mlm(len(tokenizer) + 1, seed=2)
    with pytest.raises(ValueError, match="shape"):
        lambda_sweep(a, b, [0.0], lambda m: {"loss": 0.0})


def test_write_loss_table(tmp_path):
    rows = [
        {"lambda": 0.0, "n_tokens": 10, "loss": 1.5, "accuracy": 0.25},
        {"lambda": 0.5, "loss": 2.25, "n_tokens": 10, "accuracy": 0.125, "f1": 0.5},
    ]
    path = tmp_path / "t" / "loss.tsv"
    write_loss_table(rows, path)
    lines = path.read_text().splitlines()
    assert lines[0].split("\t") == ["lambda", "loss", "n_tokens", "accuracy", "f1"]
    assert lines[1].split("\t") == ["0.0", "1.5", "10", "0.25", ""]
    back = read_tsv(path)
    assert back[1] == {"lambda": "0.5", "loss": "2.25", "n_tokens": "10", "accuracy": "0.125", "f1": "0.5"}
    assert path.read_bytes().count(b"\r") == 0  # Unix line ends


# ------------------------------------------------------------------------------------------- GLUE
def test_classification_metrics_by_hand():
    preds = np.array([1, 0, 1, 1, 0, 0])
    labels = np.array([1, 0, 0, 1, 1, 0])
    m = classification_metrics(preds, labels)
    # tp=2 fp=1 fn=1 tn=2
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert m["matthews"] == pytest.approx((2 * 2 - 1 * 1) / math.sqrt(3 * 3 * 3 * 3))
    # constant predictions: MCC defined as 0
    assert classification_metrics(np.zeros(4), np.array([0, 1, 0, 1]))["matthews"] == 0.0
    # three classes: perfect -> 1
    assert classification_metrics(np.array([0, 1, 2, 2]), np.array([0, 1, 2, 2]))["matthews"] == pytest.approx(1.0)


def test_regression_metrics_by_hand():
    m = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 9.0, 4.0]))
    # dx = [-1, 0, 1], dy = [-11/3, 13/3, -2/3]: cov = 3, Σdx² = 2, Σdy² = 294/9
    assert m["pearson"] == pytest.approx(3 / math.sqrt(2 * 294 / 9))
    assert m["spearman"] == pytest.approx(0.5)  # ranks [1,2,3] vs [1,3,2]


def test_regression_metrics_equal_scipy_with_ties():
    rng = np.random.default_rng(0)
    preds = rng.integers(0, 5, 40).astype(float)  # many ties: Spearman needs average ranks
    labels = preds + rng.normal(0, 2, 40)
    labels[:6] = 1.5
    m = regression_metrics(preds, labels)
    assert m["pearson"] == pytest.approx(scipy.stats.pearsonr(preds, labels).statistic, abs=1e-12)
    assert m["spearman"] == pytest.approx(scipy.stats.spearmanr(preds, labels).statistic, abs=1e-12)
    assert regression_metrics(np.ones(5), np.arange(5.0)) == {"pearson": 0.0, "spearman": 0.0}  # constant side


@pytest.mark.parametrize("num_labels,metric", [(2, "f1"), (3, "accuracy"), (1, "pearson")])
def test_glue_loss_matches_reference(tokenizer, num_labels, metric):
    rng = random.Random(num_labels)
    sents = make_sentences(37, seed=5)
    examples = [
        {
            "s1": s,
            "s2": sents[(i + 3) % len(sents)],
            "label": rng.uniform(0, 5) if num_labels == 1 else rng.randrange(num_labels),
        }
        for i, s in enumerate(sents)
    ]
    ev = build_glue_evalset(tokenizer, examples, ["s1", "s2"], max_length=24)
    assert ev["input_ids"].shape[1] <= 24
    assert (ev["token_type_ids"] == 1).any()  # pairs get segment ids
    assert ev["labels"].dtype == (torch.float32 if num_labels == 1 else torch.long)
    model = tiny_classifier(len(tokenizer), seed=0, num_labels=num_labels)
    inputs = dict(input_ids=ev["input_ids"], token_type_ids=ev["token_type_ids"], attention_mask=ev["attention_mask"])
    if num_labels == 2:  # a random tiny head predicts one class: spread it and centre its decision threshold
        with torch.no_grad():
            model.classifier.weight.mul_(1000)
            margin = model(**inputs).logits.diff(dim=-1).squeeze(-1).sort().values
            # halfway between two neighbouring margins: no example sits on the boundary, where float
            # rounding (glue_loss runs the last layer at [CLS] only) would decide its class
            model.classifier.bias[1] -= margin[len(margin) // 2 - 1 : len(margin) // 2 + 1].mean()
    with torch.no_grad():
        logits = model(
            input_ids=ev["input_ids"], token_type_ids=ev["token_type_ids"], attention_mask=ev["attention_mask"]
        ).logits
    res = glue_loss(model, ev, num_labels=num_labels, metric=metric, batch_size=8)
    if num_labels == 1:
        ref = F.mse_loss(logits.squeeze(-1), ev["labels"]).item()
        pred, gold = logits.squeeze(-1).double().numpy(), ev["labels"].double().numpy()
        assert res["pearson"] == pytest.approx(scipy.stats.pearsonr(pred, gold).statistic, abs=1e-4)
        assert res["spearman"] == pytest.approx(scipy.stats.spearmanr(pred, gold).statistic, abs=1e-4)
    else:
        ref = F.cross_entropy(logits, ev["labels"]).item()
        pred, gold = logits.argmax(-1), ev["labels"]
        assert res["accuracy"] == pytest.approx((pred == gold).float().mean().item())
        if metric == "f1":  # F1 of class 1, counted by hand
            tp = int(((pred == 1) & (gold == 1)).sum())
            fp = int(((pred == 1) & (gold != 1)).sum())
            fn = int(((pred != 1) & (gold == 1)).sum())
            assert tp > 0  # a non-degenerate case: F1 is not 0 by default
            assert res["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert res["loss"] == pytest.approx(ref, abs=1e-5)


def test_single_sentence_glue_set(tokenizer):
    examples = [{"sentence": s, "label": i % 2} for i, s in enumerate(make_sentences(5))]
    ev = build_glue_evalset(tokenizer, examples, ["sentence"])
    assert (ev["token_type_ids"] == 0).all()
    assert (ev["input_ids"][:, 0] == tokenizer.cls_token_id).all()
    assert ev["lengths"].tolist() == ev["attention_mask"].sum(1).tolist()
