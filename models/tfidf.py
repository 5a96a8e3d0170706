"""A word n-gram TF-IDF model served with numpy: the lexical half of a stacked head.

The sentence encoder smooths words away; for sentiment the exact words ("not", "meh", "!!!") still
carry signal the embedding misses. `make train` fits scikit-learn's TfidfVectorizer plus linear models
on it and exports plain arrays; this module reproduces the vectorizer's arithmetic (lower-casing,
`\\b\\w\\w+\\b` tokens, 1..n-grams, sublinear tf, idf, L2 norm) so no scikit-learn is needed at run time.
tests/unit/test_trained_heads.py checks it against scikit-learn.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

TOKEN = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token_pattern


def ngrams(text: str, max_n: int) -> list[str]:
    tokens = TOKEN.findall(text.lower())
    grams = list(tokens)
    for n in range(2, max_n + 1):
        grams += [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return grams


@dataclass(frozen=True)
class TfidfScorer:
    """Outputs per text: `regression` columns as they are, then softmax over the `classes` columns."""

    vocabulary: dict[str, int]
    idf: np.ndarray  # [V]
    max_n: int
    weights: np.ndarray  # [outputs, V]
    bias: np.ndarray  # [outputs]
    regression: int  # how many leading outputs are plain linear scores (the rest is one softmax)
    sublinear: bool = True  # tf = 1 + log(count), as TfidfVectorizer(sublinear_tf=True)

    PREFIX = "tfidf_"

    def vectors(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(indices, L2-normalised tf-idf values) per text: the sparse rows scikit-learn would build."""
        rows = []
        for text in texts:
            counts = Counter(g for g in ngrams(text, self.max_n) if g in self.vocabulary)
            idx = np.fromiter((self.vocabulary[g] for g in counts), dtype=np.int64, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            values = (1.0 + np.log(tf) if self.sublinear else tf) * self.idf[idx]
            norm = np.sqrt((values**2).sum())
            rows.append((idx, values / norm if norm > 0 else values))
        return rows

    def linear(self, texts: list[str]) -> np.ndarray:
        """[n, outputs]: weights · tf-idf + bias, before any softmax."""
        out = np.empty((len(texts), len(self.bias)), dtype=np.float64)
        for row, (idx, values) in enumerate(self.vectors(texts)):
            out[row] = self.weights[:, idx] @ values + self.bias
        return out

    def transform(self, texts: list[str]) -> np.ndarray:
        out = self.linear(texts)
        logits = out[:, self.regression :]
        if logits.shape[1]:
            logits -= logits.max(axis=1, keepdims=True)
            e = np.exp(logits)
            out[:, self.regression :] = e / e.sum(axis=1, keepdims=True)
        return out.astype(np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        """What goes into a head's .npz (prefixed), read back by `from_arrays`."""
        terms = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        return {
            f"{self.PREFIX}terms": np.array(terms, dtype=str),
            f"{self.PREFIX}idf": self.idf.astype(np.float32),
            f"{self.PREFIX}max_n": np.int64(self.max_n),
            f"{self.PREFIX}weights": self.weights.astype(np.float32),
            f"{self.PREFIX}bias": self.bias.astype(np.float32),
            f"{self.PREFIX}regression": np.int64(self.regression),
            f"{self.PREFIX}sublinear": np.bool_(self.sublinear),
        }

    @classmethod
    def from_arrays(cls, data: dict[str, np.ndarray]) -> TfidfScorer:
        p = cls.PREFIX
        terms = [str(t) for t in data[f"{p}terms"]]
        return cls(
            vocabulary={t: i for i, t in enumerate(terms)},
            idf=data[f"{p}idf"].astype(np.float64),
            max_n=int(data[f"{p}max_n"]),
            weights=data[f"{p}weights"].astype(np.float64),
            bias=data[f"{p}bias"].astype(np.float64),
            regression=int(data[f"{p}regression"]),
            sublinear=bool(data[f"{p}sublinear"]) if f"{p}sublinear" in data else True,
        )
