"""Cheap per-text features a trained head may use beside the embedding; one function per name.

Shared by training (train/) and serving (models/heads.py) so both compute exactly the same numbers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from models import injection_rules
from models.tfidf import TfidfScorer

NANOGUARD = "nanoguard"  # a second, small injection model: also reported as a signal of its own
TFIDF = "tfidf"  # a feature whose model is fitted per head and stored in the head's file (models/tfidf.py)


@functools.cache
def _vader() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader(texts: list[str], _device: str) -> np.ndarray:
    """VADER's lexicon scores (compound, pos, neg): a strong cue for intensity and negation."""
    analyzer = _vader()
    rows = []
    for text in texts:
        s = analyzer.polarity_scores(text)
        rows.append([s["compound"], s["pos"], s["neg"]])
    return np.asarray(rows, dtype=np.float32).reshape(len(texts), 3)


def injection_signals(texts: list[str], _device: str) -> np.ndarray:
    rows = [[name in fired for name in injection_rules.NAMES] for fired in map(injection_rules.signals, texts)]
    return np.asarray(rows, dtype=np.float32).reshape(len(texts), len(injection_rules.NAMES))


def profanity(texts: list[str], _device: str) -> np.ndarray:
    """alt-profanity-check's probability (models/profanity.py): strong on insults and swearing."""
    from models.profanity import packaged_scorer

    return packaged_scorer().probability(texts).astype(np.float32).reshape(len(texts), 1)


def nanoguard(texts: list[str], device: str) -> np.ndarray:
    """metatronnanoguard's injection log-odds at each text's real length (models/nanoguard.py), on the
    encoder's device."""
    from models.nanoguard import injection_log_odds

    return injection_log_odds(texts, device)


#: (texts, device) -> [n, width]: the device is the encoder's, for the features that run a model on it.
Feature = Callable[[list[str], str], np.ndarray]
FEATURES: dict[str, Feature] = {
    "vader": vader,
    "injection_rules": injection_signals,
    "profanity": profanity,
    NANOGUARD: nanoguard,
}
WIDTH: dict[str, int] = {"vader": 3, "injection_rules": len(injection_rules.NAMES), "profanity": 1, NANOGUARD: 1}


def feature_width(names: list[str], tfidf: TfidfScorer | None = None) -> int:
    return sum(len(tfidf.bias) if name == TFIDF and tfidf is not None else WIDTH[name] for name in names)


def extra_features(
    names: list[str], texts: list[str], tfidf: TfidfScorer | None = None, device: str = "cpu"
) -> np.ndarray:
    """[n, Σ widths] for the named features, in order (zero columns when there are none)."""
    blocks = []
    for name in names:
        if name == TFIDF:
            if tfidf is None:
                raise ValueError("the tfidf feature needs the head's fitted TfidfScorer")
            blocks.append(tfidf.transform(texts))
        else:
            blocks.append(FEATURES[name](texts, device))
    return np.concatenate(blocks, axis=1) if blocks else np.zeros((len(texts), 0), dtype=np.float32)
