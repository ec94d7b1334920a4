"""The bag-of-words baseline and the "learnt" rule the fine-tuned seeds are held to (permerge.training.baseline)."""

import math
import random

import numpy as np
import pytest

from permerge.training.baseline import bow_baseline, chance_score, feature_names, featurize, summarize_finetuning

WORDS = [f"w{i}" for i in range(60)]


def _pairs(n, rng):
    """Paraphrase-like pairs: label 1 when the second text repeats the first's words, 0 when it is other words."""
    rows = []
    for i in range(n):
        a = rng.sample(WORDS, 6)
        label = i % 2
        b = rng.sample(a, 5) + rng.sample(WORDS, 1) if label else rng.sample([w for w in WORDS if w not in a], 6)
        rows.append({"sentence1": " ".join(a), "sentence2": " ".join(b), "label": label})
    return rows


def test_pair_features_mark_shared_and_unshared_words():
    f = feature_names({"sentence1": "The cat sat", "sentence2": "the dog sat"}, ("sentence1", "sentence2"))
    assert {"t0:cat", "t1:dog", "only:cat", "only:dog", "both:the", "both:sat"} <= f
    assert "overlap:5" in f  # 2 shared of 4 distinct words
    single = feature_names({"sentence": "A b a"}, ("sentence",))
    assert single == {"t0:a", "t0:b"}


def test_featurize_is_deterministic_binary_with_a_bias_column():
    rows = [{"sentence": "one two two"}, {"sentence": "three"}]
    x, y = featurize(rows, ("sentence",)), featurize(rows, ("sentence",))
    assert (x != y).nnz == 0
    dense = x.toarray()
    assert dense[:, 0].tolist() == [1.0, 1.0] and dense.sum(1).tolist() == [3.0, 2.0]


def test_bag_of_words_learns_a_word_overlap_task():
    rng = random.Random(0)
    r = bow_baseline(_pairs(400, rng), _pairs(200, rng), "mrpc")
    assert r["metric"] == "f1" and r["bow"] > 0.95
    assert r["chance"] == pytest.approx(2 / 3)  # all "equivalent" on a balanced set
    assert r["target"] == pytest.approx(r["chance"] + (r["bow"] - r["chance"]) / 2)


def test_regression_baseline_scores_pearson():
    rng = random.Random(1)
    rows = []
    for _ in range(300):
        k = rng.randint(0, 5)
        a = rng.sample(WORDS, 6)
        b = a[:k] + rng.sample([w for w in WORDS if w not in a], 6 - k)
        rows.append({"sentence1": " ".join(a), "sentence2": " ".join(b), "label": float(k)})
    r = bow_baseline(rows[:200], rows[200:], "stsb")
    assert r["metric"] == "pearson" and r["chance"] == 0.0 and r["bow"] > 0.8


def test_chance_is_the_best_constant_prediction():
    labels = np.array([0, 0, 0, 1])
    assert chance_score(labels, "accuracy", 2) == 0.75
    assert chance_score(labels, "f1", 2) == pytest.approx(2 * 1 / (2 * 1 + 3))  # all positive: tp 1, fp 3
    assert chance_score(labels, "matthews", 2) == 0.0
    assert chance_score(np.array([0, 1, 2, 2]), "accuracy", 3) == 0.5


def test_no_bar_when_the_bag_of_words_is_at_chance():
    # the word that marks a class in training marks the other one in evaluation: worse than chance
    train = [{"sentence": f"{'yes' if i % 2 else 'no'} w{i}", "label": i % 2} for i in range(100)]
    evaluation = [{"sentence": f"{'no' if i % 2 else 'yes'} w{i}", "label": i % 2} for i in range(100)]
    r = bow_baseline(train, evaluation, "cola")
    assert r["chance"] == 0.0 and r["bow"] < -0.9 and math.isnan(r["target"])


def test_summary_marks_learnt_tasks():
    models = [{"task": "sst2", "value": v} for v in (0.8, 0.9)] + [{"task": "rte", "value": v} for v in (0.5, 0.6)]
    base = [
        {"task": "sst2", "metric": "accuracy", "chance": "0.5", "bow": "0.9", "target": "0.7"},
        {"task": "rte", "metric": "accuracy", "chance": "0.5", "bow": "0.9", "target": "0.7"},
        {"task": "cola", "metric": "matthews", "chance": "0", "bow": "-0.1", "target": "nan"},
    ]
    s = {r["task"]: r for r in summarize_finetuning(models, base)}
    assert set(s) == {"sst2", "rte"}  # cola: no fine-tuned model
    assert s["sst2"]["mean"] == pytest.approx(0.85) and s["sst2"]["se"] == pytest.approx(0.05)
    assert (s["sst2"]["learnt"], s["rte"]["learnt"]) == ("yes", "no")
    s = summarize_finetuning([{"task": "cola", "value": 0.1}], base)
    assert s[0]["learnt"] == "n/a" and math.isnan(s[0]["se"])
