"""alt-profanity-check's model served with numpy: a feature of the toxicity head.

alt-profanity-check (MIT) is a TF-IDF + linear SVM trained on ~200k Davidson and Jigsaw comments, with
5 sigmoid-calibrated folds averaged (scikit-learn's CalibratedClassifierCV). Its files are
scikit-learn pickles that pin scikit-learn exactly, so `make train` exports the same numbers to
models/heads/profanity.npz and the service computes them with models/tfidf.py: the probability is the
mean over the folds of sigmoid(-(a_k * svm_k(x) + b_k)), as scikit-learn computes it.
tests/unit/test_trained_heads.py checks the export against the package itself.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.tfidf import TfidfScorer

PROFANITY_FILE = Path(__file__).resolve().parent / "heads" / "profanity.npz"


@dataclass(frozen=True)
class ProfanityScorer:
    svms: TfidfScorer  # one linear output per calibrated fold
    a: np.ndarray  # [folds] sigmoid calibration slope
    b: np.ndarray  # [folds] sigmoid calibration offset

    def probability(self, texts: list[str]) -> np.ndarray:
        """[n] probability that a text is offensive."""
        decision = self.svms.linear(texts)
        return (1.0 / (1.0 + np.exp(self.a * decision + self.b))).mean(axis=1)

    def arrays(self) -> dict[str, np.ndarray]:
        return {**self.svms.arrays(), "calibration_a": self.a, "calibration_b": self.b}

    @classmethod
    def load(cls, path: Path = PROFANITY_FILE) -> ProfanityScorer:
        with np.load(path, allow_pickle=False) as data:
            arrays = dict(data)
        return cls(TfidfScorer.from_arrays(arrays), arrays["calibration_a"], arrays["calibration_b"])


@functools.cache
def packaged_scorer() -> ProfanityScorer:
    return ProfanityScorer.load()
