"""Quality of every trained head against the old prototype baseline, on held-out rows never trained on.

`make train` first (it fetches the data and caches the embeddings under var/train/). Scores the shipped
heads in models/heads/ through the run-time code (models.heads, numpy only) and the catalog's prototypes
on exactly the same rows, then records the table in docs/BENCHMARKS.md.

    .venv/bin/python -m bench.quality
"""

from __future__ import annotations

import numpy as np

from bench.harness import record
from config.catalog import load_catalog
from config.settings import ROOT
from models.heads import TrainedHead
from train.embed import embed
from train.evaluate import binary_sentiment, report
from train.tasks import TRAINED, Task, prepare


def prototype_probs(analysis: str, x: np.ndarray, labels: list[str]) -> np.ndarray:
    """The catalog's prototype classifier, the same math as models.prototype, in label order `labels`."""
    config = load_catalog()[analysis]
    protos = np.stack([embed(config.labels[label], f"{analysis}-prototype-{label}").mean(axis=0) for label in labels])
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    logits = x @ protos.T / config.temperature
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def subsets(task: Task) -> dict[str, list[int]]:
    """The held-out rows, and the slices the issue asks to see separately."""
    out = {"held-out": task.test}
    if task.analysis == "prompt_injection":
        out["held-out, English only"] = [i for i in task.test if task.rows[i].group == "en"]
    if task.analysis == "phishing":
        out["held-out, hard ham only"] = [i for i in task.test if task.rows[i].group == "hard-ham-1"]
    return out


def rows_for(task: Task) -> list[str]:
    head = TrainedHead.load(ROOT / "models" / "heads" / f"{task.analysis}.npz", model_name=task.analysis)
    lines = []
    for name, idx in subsets(task).items():
        y = [task.rows[i].label for i in idx]
        probs, _ = head.predict(task.x[idx], [task.rows[i].text for i in idx])
        base = prototype_probs(task.analysis, task.x[idx], head.labels)
        h, p = report(y, probs, head.labels), report(y, base, head.labels)
        lines.append(
            f"| {task.analysis} | {task.data}; {name} | {h['n']} | {h['accuracy']:.1%} | {h['macro_f1']:.3f} | "
            f"{h['ece']:.3f} | {p['accuracy']:.1%} | {p['macro_f1']:.3f} | {p['ece']:.3f} |"
        )
        if task.analysis == "sentiment" and name == "held-out":
            hb, pb = binary_sentiment(y, probs, head.labels), binary_sentiment(y, base, head.labels)
            lines.append(
                f"| sentiment (binary pos/neg) | same rows, true label not neutral | {hb['n']} | {hb['accuracy']:.1%} "
                f"| – | – | {pb['accuracy']:.1%} | – | – |"
            )
    return lines


def main() -> None:
    header = (
        "| analysis | evaluation data | n | head accuracy | head macro-F1 | head ECE "
        "| prototype accuracy | prototype macro-F1 | prototype ECE |\n|---|---|---|---|---|---|---|---|---|"
    )
    lines = [line for name in TRAINED for line in rows_for(prepare(name))]
    record(
        "Quality of the trained heads (bench/quality.py)",
        ".venv/bin/python -m bench.quality",
        "\n".join([header, *lines]),
        "Held-out rows were never used for fitting, choosing C or calibrating. toxicity has no trained head "
        "(no labelled toxicity data in a reachable package) and is not measured.",
    )


if __name__ == "__main__":
    main()
