"""Fit one head on chosen rows and score rows with it through the run-time code (models.heads).

`make train` fits the shipped head with `fit_head`; `held_out_probs` and `metrics` (used by `make train`
and bench/quality.py) measure it on rows the head never saw: the held-out test split, or, for data too
small to split (prompt injection, toxicity), repeated 5-fold cross-validation in which every fold refits
the whole head — lexical model, C and temperature included — without the fold's rows.
"""

from __future__ import annotations

import numpy as np

from models import head_features
from models.head_features import NANOGUARD, TFIDF, Feature, extra_features, feature_width
from models.heads import TrainedHead
from models.tfidf import TfidfScorer
from train.evaluate import binary_sentiment, report
from train.fit import Fitted, fit, fit_cv, fit_tfidf, refit
from train.sample import SEED
from train.tasks import Task


def _memoised(feature: Feature) -> Feature:
    """Each text's feature row computed once: cross-validation scores the same texts in every fold, and
    nanoguard is a transformer pass per text. The rows are the feature's own (batched = alone, tested)."""
    seen: dict[str, np.ndarray] = {}

    def rows(texts: list[str], device: str) -> np.ndarray:
        missing = [text for text in dict.fromkeys(texts) if text not in seen]
        if missing:
            seen.update(zip(missing, feature(missing, device), strict=True))
        return np.stack([seen[text] for text in texts]) if texts else feature(texts, device)

    return rows


head_features.FEATURES[NANOGUARD] = _memoised(head_features.FEATURES[NANOGUARD])  # training only

CV_REPEATS = 3
CV_FOLDS = 5
DIM = 384  # MiniLM's width: the last `DIM` columns of Task.x are the last layer's pool


def _macro_f1(y: list[str], probs: np.ndarray, labels: list[str]) -> float:
    return report(y, probs, labels)["macro_f1"]


def _training_matrix(task: Task, rows: list[int]) -> tuple[np.ndarray, list[str], TfidfScorer | None]:
    """Features and labels of `rows` plus the task's curated rows, and the lexical model fitted on them.

    The lexical columns are out-of-fold: the head learns from outputs for texts the lexical model did
    not see, or it learns to trust a model that has memorised its training sentences.
    """
    texts = [task.rows[i].text for i in rows] + [r.text for r in task.extra_train]
    y = [task.rows[i].label for i in rows] + [r.label for r in task.extra_train]
    x = task.x[rows] if task.x_extra is None else np.concatenate([task.x[rows], task.x_extra])
    tfidf, oof = None, None
    if TFIDF in task.features:
        ratings = [task.rows[i].value for i in rows] if task.rating else None
        tfidf, oof = fit_tfidf(texts, y, ratings, seed=SEED)
    extra = extra_features(task.features, texts, tfidf)
    if oof is not None:
        start = feature_width(task.features[: task.features.index(TFIDF)])
        extra[:, start : start + oof.shape[1]] = oof
    return np.concatenate([x, extra], axis=1), y, tfidf


def fit_head(task: Task, train: list[int], val: list[int]) -> tuple[TrainedHead, Fitted]:
    """The head on `train` (plus the task's curated rows).

    With `val`: model kind, C, temperature (and decision offsets, where the task asks) are chosen on
    `val`, then the chosen model is refitted on `train` + `val` (the test rows are in neither).
    Without: C and temperature by CV over `train`.
    """
    x, y, tfidf = _training_matrix(task, train)
    fitted: Fitted
    if val:
        x_val = np.concatenate(
            [task.x[val], extra_features(task.features, [task.rows[i].text for i in val], tfidf)], axis=1
        )
        y_val = [task.rows[i].label for i in val]
        chosen = fit(
            x, y, x_val, y_val, _macro_f1, mlp=task.mlp, standardise=task.standardise, offsets=task.decision_offsets
        )
        x, y, tfidf = _training_matrix(task, train + val)
        fitted = refit(x, y, chosen, standardise=task.standardise)
    else:
        fitted = fit_cv(x, y, _macro_f1)
    head = TrainedHead(
        labels=fitted.labels,
        weights=fitted.weights,
        bias=fitted.bias,
        temperature=fitted.temperature,
        features=list(task.features),
        model_name=task.analysis,
        card={},
        hidden_weights=fitted.hidden_weights,
        hidden_bias=fitted.hidden_bias,
        layers=task.layers,
        tfidf=tfidf,
    )
    return head, fitted


def predict(task: Task, head: TrainedHead, rows: list[int]) -> np.ndarray:
    """Probabilities through TrainedHead.predict: the arithmetic the service runs."""
    x = task.x[rows]
    probs, _ = head.predict(x[:, -DIM:], [task.rows[i].text for i in rows], x[:, :-DIM] if head.layers else None)
    return probs


def held_out_probs(task: Task, head: TrainedHead | None = None) -> tuple[list[int], list[np.ndarray]]:
    """(rows, probability matrices for them): one matrix from the test split, or one per CV repeat."""
    if not task.cross_validate:
        head = head or fit_head(task, task.train, task.val)[0]
        return task.test, [predict(task, head, task.test)]
    from sklearn.model_selection import StratifiedKFold

    rows = task.train
    y = [task.rows[i].label for i in rows]
    repeats = []
    for repeat in range(CV_REPEATS):
        probs: np.ndarray | None = None
        for part, held in StratifiedKFold(CV_FOLDS, shuffle=True, random_state=SEED + repeat).split(rows, y):
            fold_head, _ = fit_head(task, [rows[i] for i in part], [])
            fold = predict(task, fold_head, [rows[i] for i in held])
            if probs is None:
                probs = np.zeros((len(rows), fold.shape[1]), dtype=np.float32)
            probs[held] = fold
        assert probs is not None
        repeats.append(probs)
    return rows, repeats


def metrics(task: Task, rows: list[int], repeats: list[np.ndarray], labels: list[str]) -> dict:
    """The report of each repeat, averaged (a single repeat for a test split)."""
    y = [task.rows[i].label for i in rows]
    each = [report(y, probs, labels) for probs in repeats]
    out = {key: round(float(np.mean([m[key] for m in each])), 4) for key in ("accuracy", "macro_f1", "ece")}
    out["n"] = len(rows)
    if len(each) > 1:
        out["accuracy per repeat"] = [m["accuracy"] for m in each]
    if task.analysis == "sentiment":
        out["binary"] = binary_sentiment(y, repeats[0], labels)
    return out


def slice_metrics(task: Task, rows: list[int], repeats: list[np.ndarray], labels: list[str]) -> dict:
    """`metrics` of the held-out rows, or of each of the task's named slices of them (first: the headline)."""
    if not task.slices:
        return metrics(task, rows, repeats, labels)
    position = {row: k for k, row in enumerate(rows)}
    return {
        name: metrics(task, pick, [probs[[position[i] for i in pick]] for probs in repeats], labels)
        for name, pick in task.slices.items()
    }
