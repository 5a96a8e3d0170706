"""Quality of every trained head against the old prototype baseline, on held-out rows never trained on.

`make train` first (it fetches the data and caches the embeddings under var/train/). Scores the shipped
heads in models/heads/ through the run-time code (models.heads, numpy only) on their held-out test rows,
or, for prompt injection (181 rows, too few to split), refits the whole head in every fold of a
repeated 5-fold cross-validation (train/head.py), as is toxicity on its hand-written rows; the catalog's
prototypes are scored on exactly the same rows. Records the table in docs/BENCHMARKS.md.

    .venv/bin/python -m bench.quality [analysis ...]
"""

from __future__ import annotations

import argparse

import numpy as np

from bench.harness import record
from config.catalog import load_catalog
from config.settings import ROOT
from models.heads import TrainedHead
from train.embed import embed
from train.evaluate import binary_sentiment, report
from train.head import DIM, held_out_probs, metrics
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


def subsets(task: Task, rows: list[int]) -> dict[str, list[int]]:
    """Positions in `rows` (the held-out rows) of the slices the issue asks to see separately."""
    if task.slices:
        position = {row: k for k, row in enumerate(rows)}
        return {name: [position[i] for i in pick] for name, pick in task.slices.items()}
    out = {"held-out": list(range(len(rows)))}
    if task.analysis == "prompt_injection":
        out["held-out, English only"] = [k for k, i in enumerate(rows) if task.rows[i].group == "en"]
    return out


def rows_for(task: Task) -> list[str]:
    head = TrainedHead.load(ROOT / "models" / "heads" / f"{task.analysis}.npz", model_name=task.analysis)
    rows, repeats = held_out_probs(task, head)
    base = prototype_probs(task.analysis, task.x[rows][:, -DIM:], head.labels)
    lines = []
    for name, pick in subsets(task, rows).items():
        picked = [rows[k] for k in pick]
        h = metrics(task, picked, [probs[pick] for probs in repeats], head.labels)
        p = report([task.rows[i].label for i in picked], base[pick], head.labels)
        one_label = len({task.rows[i].label for i in picked}) == 1  # macro-F1 has no meaning there
        hf, pf = ("–", "–") if one_label else (f"{h['macro_f1']:.3f}", f"{p['macro_f1']:.3f}")
        lines.append(
            f"| {task.analysis} | {task.data}; {name} | {h['n']} | {h['accuracy']:.1%} | {hf} | "
            f"{h['ece']:.3f} | {p['accuracy']:.1%} | {pf} | {p['ece']:.3f} |"
        )
        if task.analysis == "toxicity" and name == "held-out":
            from models.profanity import packaged_scorer

            alone = packaged_scorer().probability([task.rows[i].text for i in picked])
            by_label = {"toxic": alone, "non_toxic": 1 - alone}
            probs = np.stack([by_label[label] for label in head.labels], axis=1)
            a = report([task.rows[i].label for i in picked], probs, head.labels)
            lines.append(
                f"| toxicity (alt-profanity-check alone, p ≥ 0.5) | same rows | {a['n']} | {a['accuracy']:.1%} "
                f"| {a['macro_f1']:.3f} | {a['ece']:.3f} | – | – | – |"
            )
        if task.analysis == "sentiment" and name == "held-out":
            y = [task.rows[i].label for i in picked]
            hb, pb = h["binary"], binary_sentiment(y, base[pick], head.labels)
            lines.append(
                f"| sentiment (binary pos/neg) | same rows, true label not neutral | {hb['n']} | {hb['accuracy']:.2%} "
                f"| – | – | {pb['accuracy']:.2%} | – | – |"
            )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "analyses", nargs="*", metavar="analysis", help="any of " + ", ".join(TRAINED) + " (default: all)"
    )
    names = parser.parse_args(argv).analyses or list(TRAINED)
    if unknown := [name for name in names if name not in TRAINED]:
        parser.error(f"no trained head for {', '.join(unknown)}: choose from {', '.join(TRAINED)}")
    header = (
        "| analysis | evaluation data | n | head accuracy | head macro-F1 | head ECE "
        "| prototype accuracy | prototype macro-F1 | prototype ECE |\n|---|---|---|---|---|---|---|---|---|"
    )
    lines = [line for name in names for line in rows_for(prepare(name))]
    record(
        "Quality of the trained heads (bench/quality.py)",
        " ".join([".venv/bin/python -m bench.quality", *names]),
        "\n".join([header, *lines]),
        "Held-out rows were never used for fitting, choosing C or calibrating; prompt injection's figures are "
        "the mean of 3 repeats of 5-fold cross-validation, each fold refitting the whole head without its rows; "
        "so are toxicity's, on hand-written rows (no labelled toxicity corpus ships in a reachable package).",
    )


if __name__ == "__main__":
    main()
