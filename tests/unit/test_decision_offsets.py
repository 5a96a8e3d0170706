"""train.fit.tune_offsets: the decision offsets chosen on validation rows, folded into the served head."""

from __future__ import annotations

import numpy as np

from train.evaluate import macro_f1
from train.fit import Fitted, tune_offsets

LABELS = ["negative", "neutral", "positive"]


def _score(y: list[str], probs: np.ndarray, labels: list[str]) -> float:
    return macro_f1(y, [labels[i] for i in np.argmax(probs, axis=1)], labels)


def _rows(n: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """Logits whose true class is neutral whenever its logit is within 0.6 of the best: the argmax
    under-predicts neutral, and raising its logit by about 0.6 is the right decision rule."""
    x = np.random.default_rng(seed).normal(size=(n, 3)).astype(np.float32)
    best = np.argmax(x, axis=1)
    neutral = x[:, 1] > x.max(axis=1) - 0.6
    return x, [LABELS[1] if neutral[i] else LABELS[best[i]] for i in range(n)]


def _identity_head() -> Fitted:
    return Fitted(LABELS, np.eye(3, dtype=np.float32), np.zeros(3, dtype=np.float32), 2.0, 1.0)


def test_offsets_move_the_decision_to_where_the_validation_rows_put_it() -> None:
    x_val, y_val = _rows(3000, seed=1)
    head = _identity_head()
    before = _score(y_val, head.probs(x_val), LABELS)
    tune_offsets(head, x_val, y_val, _score)
    assert head.offsets is not None and head.offsets[0] == 0.0
    # In log-probability units at temperature 2 the 0.6 logit margin is 0.3; positive needs no shift.
    assert 0.2 <= head.offsets[1] <= 0.4 and abs(head.offsets[2]) <= 0.1
    x_test, y_test = _rows(3000, seed=2)
    fresh = _identity_head()
    assert _score(y_test, head.probs(x_test), LABELS) > _score(y_test, fresh.probs(x_test), LABELS) + 0.05
    assert _score(y_val, head.probs(x_val), LABELS) > before


def test_the_served_label_is_the_argmax_of_the_served_probabilities() -> None:
    x_val, y_val = _rows(500, seed=3)
    head = _identity_head()
    log_p = np.log(head.probs(x_val))
    tune_offsets(head, x_val, y_val, _score)
    assert head.offsets is not None
    # Folded into the bias: what the service computes is the shifted decision, and its probabilities sum to 1.
    assert np.array_equal(np.argmax(head.probs(x_val), axis=1), np.argmax(log_p + head.offsets, axis=1))
    assert np.allclose(head.probs(x_val).sum(axis=1), 1.0, atol=1e-5)
