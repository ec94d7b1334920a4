"""A bag-of-words baseline per GLUE(-shaped) task, and the "learnt" rule the fine-tuned seeds are held to.

Features (hashed into 2**18 binary columns): the lower-cased words of each text (tagged by text), and for
pair tasks the words found in only one of the two texts, the words shared, and a bucket of their overlap
(Jaccard, in tenths). Classification: multinomial logistic regression; regression (stsb): ridge. Both
L2-regularised with a fixed strength, fitted with scipy (L-BFGS / LSQR) on the whole training split, and
scored on the task's evaluation split with the task's metric.

Chance is the best constant prediction's score on the evaluation split (a class for every example; 0 for
Matthews and Pearson, where a constant is uncorrelated). A fine-tuned seed has *learnt* a task when its
metric is at least halfway from chance to the bag-of-words score: ``target = chance + (bow - chance) / 2``.
Where the bag of words does no better than chance (the stand-in CoLA: its corruptions keep the words) there is
no bar (target NaN, learnt "n/a").
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence

import numpy as np

DIM = 2**18
L2 = 1.0  # penalty 0.5 * L2 * ||W||^2 against the summed (not averaged) loss
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def feature_names(row: Mapping, text_keys: Sequence[str]) -> set[str]:
    """The (unhashed) features of one example."""
    bags = [set(words(str(row[k]))) for k in text_keys]
    feats = {f"t{i}:{w}" for i, bag in enumerate(bags) for w in bag}
    if len(bags) == 2:
        a, b = bags
        feats |= {f"only:{w}" for w in a ^ b} | {f"both:{w}" for w in a & b}
        union = len(a | b)
        feats.add(f"overlap:{round(10 * len(a & b) / union) if union else 0}")
    return feats


def featurize(rows: Sequence[Mapping], text_keys: Sequence[str], dim: int = DIM):
    """A CSR matrix (n × dim) of binary hashed features, plus a constant column 0 (the bias)."""
    from scipy.sparse import csr_matrix

    indptr, indices = [0], []
    for row in rows:
        cols = {1 + zlib.crc32(f.encode()) % (dim - 1) for f in feature_names(row, text_keys)}
        indices.extend(sorted(cols | {0}))
        indptr.append(len(indices))
    data = np.ones(len(indices), dtype=np.float64)
    return csr_matrix((data, np.asarray(indices, dtype=np.int64), np.asarray(indptr)), shape=(len(rows), dim))


def fit_logistic(x, y: np.ndarray, num_labels: int, l2: float = L2, max_iter: int = 500) -> np.ndarray:
    """Multinomial logistic regression weights (dim × num_labels), L-BFGS on the penalised log-likelihood."""
    from scipy.optimize import minimize
    from scipy.special import log_softmax

    n, dim = x.shape
    onehot = np.eye(num_labels)[y]

    def objective(w_flat):
        w = w_flat.reshape(dim, num_labels)
        logp = log_softmax(x @ w, axis=1)
        loss = -(onehot * logp).sum() + 0.5 * l2 * (w * w).sum()
        grad = x.T @ (np.exp(logp) - onehot) + l2 * w
        return loss, grad.ravel()

    res = minimize(objective, np.zeros(dim * num_labels), jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return res.x.reshape(dim, num_labels)


def fit_ridge(x, y: np.ndarray, l2: float = L2) -> np.ndarray:
    from scipy.sparse.linalg import lsqr

    return lsqr(x, y, damp=float(np.sqrt(l2)))[0]


def chance_score(labels: np.ndarray, metric: str, num_labels: int) -> float:
    """The best score a constant prediction gets on `labels`."""
    from permerge.evaluation.evaluate import classification_metrics

    if metric in ("pearson", "spearman", "matthews"):
        return 0.0
    return max(classification_metrics(np.full(len(labels), c), labels)[metric] for c in range(num_labels))


def bow_baseline(train: Sequence[Mapping], evaluation: Sequence[Mapping], task: str) -> dict:
    """The bag-of-words score of `task` on its evaluation rows, with chance and the halfway target."""
    from permerge.evaluation.evaluate import classification_metrics, regression_metrics
    from permerge.tasks import glue_task

    info = glue_task(task)
    if not train or not evaluation:
        raise ValueError(f"{task}: the bag-of-words baseline needs training and evaluation rows")
    x_train, x_eval = featurize(train, info.text_keys), featurize(evaluation, info.text_keys)
    used = np.unique(x_train.indices)  # columns no training example has get weight 0: fit only the others
    x_train, x_eval = x_train[:, used], x_eval[:, used]
    if info.num_labels == 1:
        y_train = np.array([float(r["label"]) for r in train])
        y_eval = np.array([float(r["label"]) for r in evaluation])
        scores = regression_metrics(x_eval @ fit_ridge(x_train, y_train), y_eval)
    else:
        y_train = np.array([int(r["label"]) for r in train])
        y_eval = np.array([int(r["label"]) for r in evaluation])
        w = fit_logistic(x_train, y_train, info.num_labels)
        scores = classification_metrics((x_eval @ w).argmax(1), y_eval)
    chance = chance_score(y_eval, info.metric, info.num_labels)
    bow = float(scores[info.metric])
    return {
        "task": task,
        "metric": info.metric,
        "chance": chance,
        "bow": bow,
        "target": chance + (bow - chance) / 2 if bow > chance else float("nan"),
        "n_train": len(train),
        "n_eval": len(evaluation),
    }


def summarize_finetuning(models: Sequence[Mapping], baseline: Sequence[Mapping]) -> list[dict]:
    """Per task (in `baseline`'s order): the seeds' metric (mean, s.e., min, max, n) beside chance, the
    bag-of-words score and the target; `learnt`: "yes" when the mean reaches the target, "n/a" without one."""
    from permerge.evaluation.barriers import _mean_se

    out = []
    for b in baseline:
        values = np.array([float(m["value"]) for m in models if m["task"] == b["task"]])
        if not len(values):
            continue
        target = float(b["target"])
        mean, se = _mean_se(values.tolist())
        out.append(
            {
                "task": b["task"],
                "metric": b["metric"],
                "n": len(values),
                "mean": float(mean),
                "se": se,
                "min": float(values.min()),
                "max": float(values.max()),
                "chance": float(b["chance"]),
                "bow": float(b["bow"]),
                "target": target,
                "learnt": "n/a" if np.isnan(target) else ("yes" if mean >= target else "no"),
            }
        )
    return out
