"""Trained heads: a softmax layer (optionally after one ReLU layer) over the shared MiniLM embedding.

`make train` fits them with scikit-learn and writes plain arrays (models/heads/<analysis>.npz); the
service needs numpy only. A head is a few KiB, so every text analysis still costs one encoder pass
per batch: the bank encodes, each head is a matrix product.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models import injection_rules
from models.head_features import NANOGUARD, extra_features, feature_width
from models.tfidf import TfidfScorer

#: signals name of the embedding part of the injection head, beside the rule names.
CLASSIFIER_SIGNAL = "classifier"


def head_probs(
    x: np.ndarray,
    weights: np.ndarray,
    bias: np.ndarray,
    temperature: float,
    hidden_weights: np.ndarray | None = None,
    hidden_bias: np.ndarray | None = None,
) -> np.ndarray:
    """Calibrated class probabilities of a logistic-regression head, or of a one-hidden-layer MLP (ReLU)
    when hidden weights are given: the same arithmetic at training time (train/fit.py) and at run time."""
    if hidden_weights is not None:
        x = np.maximum(x @ hidden_weights.T + hidden_bias, 0.0)
    logits = (x @ weights.T + bias) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class TrainedHead:
    labels: list[str]
    weights: np.ndarray  # [labels, dim + extra]
    bias: np.ndarray  # [labels]
    temperature: float  # calibration: logits are divided by it
    features: list[str]  # extra feature blocks after the embedding, see models.head_features
    model_name: str
    card: dict[str, Any]
    hidden_weights: np.ndarray | None = None  # [hidden, dim + extra]: a one-hidden-layer ReLU MLP when set
    hidden_bias: np.ndarray | None = None
    layers: tuple[int, ...] = ()  # intermediate encoder layers whose mean pools come before the last layer's
    tfidf: TfidfScorer | None = None  # the fitted lexical model of the `tfidf` feature

    @classmethod
    def load(cls, path: Path, *, model_name: str) -> TrainedHead:
        card_path = path.with_suffix(".card.json")
        with np.load(path, allow_pickle=False) as data:
            head = cls(
                labels=[str(label) for label in data["labels"]],
                weights=data["weights"].astype(np.float32),
                bias=data["bias"].astype(np.float32),
                temperature=float(data["temperature"]),
                features=[str(f) for f in data["features"]],
                model_name=model_name,
                card=json.loads(card_path.read_text()) if card_path.exists() else {},
                hidden_weights=data["hidden_weights"].astype(np.float32) if "hidden_weights" in data else None,
                hidden_bias=data["hidden_bias"].astype(np.float32) if "hidden_bias" in data else None,
                layers=tuple(int(layer) for layer in data["layers"]) if "layers" in data else (),
                tfidf=TfidfScorer.from_arrays(dict(data)) if f"{TfidfScorer.PREFIX}terms" in data else None,
            )
        inner = head.weights.shape[1] if head.hidden_weights is None else head.hidden_weights.shape[0]
        if head.weights.shape != (len(head.labels), inner) or head.input_width <= head.extra_width:
            raise ValueError(f"{path}: weights do not match labels/features")
        return head

    @property
    def input_width(self) -> int:
        return int((self.weights if self.hidden_weights is None else self.hidden_weights).shape[1])

    @property
    def extra_width(self) -> int:
        return feature_width(self.features, self.tfidf)

    @property
    def dim(self) -> int:
        """The embedding width the head expects (every pooled layer's vector, side by side)."""
        return self.input_width - self.extra_width

    def _probs(self, x: np.ndarray) -> np.ndarray:
        return head_probs(x, self.weights, self.bias, self.temperature, self.hidden_weights, self.hidden_bias)

    def predict(
        self, vectors: np.ndarray, texts: list[str], layer_vectors: np.ndarray | None = None, device: str = "cpu"
    ) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Probabilities [n, labels] and per-text extra result fields (`signals` for injection).

        `layer_vectors` are the encoder's pools of `self.layers` ([n, len(layers) * dim]), computed in the
        same forward pass as `vectors`; `device` is where a feature that runs a model runs it (nanoguard)."""
        if self.layers:
            if layer_vectors is None:
                raise ValueError(f"this head reads encoder layers {self.layers}: pass their pooled vectors")
            vectors = np.concatenate([layer_vectors, vectors], axis=1)
        extra = extra_features(self.features, texts, self.tfidf, device)
        x = np.concatenate([vectors.astype(np.float32), extra], axis=1)
        probs = self._probs(x)
        if "injection_rules" not in self.features:
            return probs, [{} for _ in texts]
        # The learned part alone (embedding, lexical model and nanoguard; rule columns zeroed) says
        # whether the classifier fired by itself; nanoguard's own score is reported beside it.
        start = feature_width(self.features[: self.features.index("injection_rules")], self.tfidf)
        without_rules = extra.copy()
        without_rules[:, start : start + len(injection_rules.NAMES)] = 0.0
        alone = self._probs(np.concatenate([vectors.astype(np.float32), without_rules], axis=1))
        flag = self.labels.index("injection")
        nanoguard = (
            extra[:, feature_width(self.features[: self.features.index(NANOGUARD)], self.tfidf)]
            if NANOGUARD in self.features
            else np.full(len(texts), -np.inf)
        )
        out = []
        for row, text in enumerate(texts):
            fired = [CLASSIFIER_SIGNAL] if alone[row, flag] >= 0.5 else []
            fired += [NANOGUARD] if nanoguard[row] >= 0.0 else []  # its own P(injection) >= 0.5
            out.append({"signals": fired + injection_rules.signals(text)})
        return probs, out
