"""The numbers reported for every head and baseline: accuracy, macro-F1, expected calibration error."""

from __future__ import annotations

import numpy as np


def macro_f1(y: list[str], pred: list[str], labels: list[str]) -> float:
    scores = []
    for label in labels:
        tp = sum(a == label and b == label for a, b in zip(y, pred, strict=True))
        fp = sum(a != label and b == label for a, b in zip(y, pred, strict=True))
        fn = sum(a == label and b != label for a, b in zip(y, pred, strict=True))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(scores))


def ece(probs: np.ndarray, y_idx: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of the top-label confidence, equal-width bins."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_idx
    total = 0.0
    for lo in np.linspace(0, 1, bins, endpoint=False):
        inside = (conf > lo) & (conf <= lo + 1 / bins)
        if inside.any():
            total += inside.mean() * abs(conf[inside].mean() - correct[inside].mean())
    return float(total)


def report(y: list[str], probs: np.ndarray, labels: list[str]) -> dict[str, float]:
    pred = [labels[i] for i in probs.argmax(axis=1)]
    y_idx = np.array([labels.index(label) for label in y])
    return {
        "n": len(y),
        "accuracy": round(float(np.mean([a == b for a, b in zip(y, pred, strict=True)])), 4),
        "macro_f1": round(macro_f1(y, pred, labels), 4),
        "ece": round(ece(probs, y_idx), 4),
    }


def binary_sentiment(y: list[str], probs: np.ndarray, labels: list[str]) -> dict[str, float]:
    """Positive vs negative on the rows whose truth is not neutral: the usual binary benchmark."""
    pos, neg = labels.index("positive"), labels.index("negative")
    rows = [i for i, label in enumerate(y) if label != "neutral"]
    pred = ["positive" if probs[i, pos] >= probs[i, neg] else "negative" for i in rows]
    return {"n": len(rows), "accuracy": round(float(np.mean([pred[k] == y[i] for k, i in enumerate(rows)])), 4)}
