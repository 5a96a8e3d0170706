"""Fitting and calibrating one linear head (scikit-learn, training time only), exported as plain arrays."""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

from models.heads import head_probs
from models.tfidf import TfidfScorer

# The C grids searched (inverse regularisation; standardised columns need far smaller values). Both were
# widened one step on 2026-12-07 because sentiment chose the bottom of one and prompt injection the top of
# the other; injection (852 rows, nearly separable) now chooses the new top, 100, and was left there.
C_STANDARDISED = (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)
C_RAW = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


@dataclass
class Fitted:
    labels: list[str]
    weights: np.ndarray
    bias: np.ndarray
    temperature: float
    C: float
    hidden_weights: np.ndarray | None = None  # a one-hidden-layer MLP (ReLU) when set
    hidden_bias: np.ndarray | None = None
    kind: str = "logistic regression"
    hidden: int = 0  # the MLP's hidden width (0: logistic regression)
    offsets: np.ndarray | None = None  # per-class decision offsets folded into `bias` (tune_offsets)

    def probs(self, x: np.ndarray) -> np.ndarray:
        return head_probs(x, self.weights, self.bias, self.temperature, self.hidden_weights, self.hidden_bias)

    def shift_decision(self, offsets: np.ndarray) -> None:
        """Add `offsets` to each class's log-probability, folded into the output bias (logits are / T)."""
        self.offsets = offsets
        self.bias = (self.bias + self.temperature * offsets).astype(np.float32)


def _export(clf: LogisticRegression) -> tuple[list[str], np.ndarray, np.ndarray]:
    labels = [str(c) for c in clf.classes_]
    if len(labels) == 2:  # sigmoid(z) == softmax([0, z])
        w = np.vstack([np.zeros_like(clf.coef_[0]), clf.coef_[0]])
        b = np.array([0.0, clf.intercept_[0]])
    else:
        w, b = clf.coef_, clf.intercept_
    return labels, w.astype(np.float32), b.astype(np.float32)


def _nll(fitted: Fitted, x: np.ndarray, y: list[str]) -> float:
    p = fitted.probs(x)
    idx = [fitted.labels.index(label) for label in y]
    return float(-np.mean(np.log(p[np.arange(len(y)), idx] + 1e-12)))


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and scale; constant columns keep scale 1."""
    mean, scale = x.mean(axis=0), x.std(axis=0)
    return mean, np.where(scale > 1e-12, scale, 1.0)


def _fold(w: np.ndarray, b: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A linear layer fitted on (x - mean) / scale, rewritten to take x itself: nothing to ship but weights."""
    folded = w / scale
    return folded.astype(np.float32), (b - folded @ mean).astype(np.float32)


def _logistic(xs: np.ndarray, y: list[str], c: float, mean: np.ndarray, scale: np.ndarray) -> Fitted:
    clf = LogisticRegression(C=c, max_iter=3000, class_weight="balanced").fit(xs, y)
    labels, w, b = _export(clf)
    w, b = _fold(w, b, mean, scale)
    return Fitted(labels, w, b, 1.0, c)


def _mlp(xs: np.ndarray, y: list[str], hidden: int, alpha: float, mean: np.ndarray, scale: np.ndarray) -> Fitted | None:
    """A one-hidden-layer ReLU net; None for two classes (one logistic output, not exported)."""
    net = MLPClassifier((hidden,), alpha=alpha, early_stopping=True, random_state=0, max_iter=200).fit(xs, y)
    labels = [str(c) for c in net.classes_]
    if len(labels) != 3:
        return None
    hidden_w, hidden_b = _fold(net.coefs_[0].T, net.intercepts_[0], mean, scale)
    return Fitted(
        labels,
        net.coefs_[1].T.astype(np.float32),
        net.intercepts_[1].astype(np.float32),
        1.0,
        alpha,
        hidden_w,
        hidden_b,
        f"MLP, one hidden layer of {hidden} ReLU units (alpha {alpha})",
        hidden,
    )


def _columns(x: np.ndarray, standardise: bool) -> tuple[np.ndarray, np.ndarray]:
    return _standardise(x) if standardise else (np.zeros(x.shape[1]), np.ones(x.shape[1]))


def fit(
    x_train: np.ndarray,
    y_train: list[str],
    x_val: np.ndarray,
    y_val: list[str],
    score,
    *,
    mlp: bool = False,
    standardise: bool = False,
    offsets: bool = False,
) -> Fitted:
    """Pick C (and, with `mlp`, LR or a tiny MLP) by `score` on the validation rows, then temperature-scale.

    With `standardise` the models are fitted on standardised columns (needed when features of very
    different scales sit side by side), and the scaling is folded into the exported first layer.
    With `offsets`, per-class decision offsets are chosen on the same rows afterwards (`tune_offsets`).
    The test split is never seen here.
    """
    mean, scale = _columns(x_train, standardise)
    xs_train = (x_train - mean) / scale
    candidates: list[Fitted] = [
        _logistic(xs_train, y_train, c, mean, scale) for c in (C_STANDARDISED if standardise else C_RAW)
    ]
    if mlp:
        for hidden, alpha in ((128, 1e-3), (256, 1e-2)):
            net = _mlp(xs_train, y_train, hidden, alpha, mean, scale)
            if net is None:
                break
            candidates.append(net)
    scores = [score(y_val, candidate.probs(x_val), candidate.labels) for candidate in candidates]
    for candidate, value in zip(candidates, scores, strict=True):
        print(f"  validation: {candidate.kind}, C/alpha {candidate.C}: {value:.4f}", file=sys.stderr, flush=True)
    best = candidates[int(np.argmax(scores))]  # the first of equals, as before: the simpler, stronger-regularised
    temps = np.exp(np.linspace(np.log(0.05), np.log(4.0), 61))
    losses = []
    for t in temps:
        best.temperature = float(t)
        losses.append(_nll(best, x_val, y_val))
    best.temperature = round(float(temps[int(np.argmin(losses))]), 4)
    if offsets:
        tune_offsets(best, x_val, y_val, score)
    return best


#: Additive log-probability offsets searched per class (the first class stays at 0): -1 .. +1 in 0.05 steps.
OFFSET_GRID = np.round(np.arange(-1.0, 1.0001, 0.05), 2)


def tune_offsets(fitted: Fitted, x_val: np.ndarray, y_val: list[str], score) -> None:
    """Shift each class's log-probability by the offset that maximises `score` on the validation rows,
    folded into the output bias (so the label stays the argmax of the probabilities served).

    For classes cut from a continuous scale (sentiment's neutral band): the balanced class weights
    assume a prior the band's edges do not follow, and macro-F1 rewards a different decision rule than
    the likeliest class. Only the decision moves; the temperature is kept.
    """
    log_p = np.log(fitted.probs(x_val) + 1e-12)
    k = log_p.shape[1]
    eye = np.eye(k, dtype=np.float32)

    def value(offset: np.ndarray) -> float:
        return score(y_val, eye[np.argmax(log_p + offset, axis=1)], fitted.labels)

    best, best_value = np.zeros(k), value(np.zeros(k))
    for rest in itertools.product(OFFSET_GRID, repeat=k - 1):
        offset = np.array([0.0, *rest])
        found = value(offset)
        if found > best_value + 1e-9:  # ties keep the smaller change found first
            best, best_value = offset, found
    print(f"  validation: decision offsets {best.tolist()}: {best_value:.4f}", file=sys.stderr, flush=True)
    fitted.shift_decision(best)


def refit(x: np.ndarray, y: list[str], chosen: Fitted, *, standardise: bool = False) -> Fitted:
    """The model `fit` chose, refitted with the same kind, C or alpha and temperature on more rows.

    `fit` chooses on validation rows it cannot train on; once chosen, those rows are training data
    like any other (the usual train+validation refit). The temperature and decision offsets are kept:
    they were fitted on rows the chosen model had not seen, which a refit on them could no longer provide.
    """
    mean, scale = _columns(x, standardise)
    xs = (x - mean) / scale
    again = (
        _logistic(xs, y, chosen.C, mean, scale)
        if chosen.hidden_weights is None
        else _mlp(xs, y, chosen.hidden, chosen.C, mean, scale)
    )
    assert again is not None
    again.temperature = chosen.temperature
    if chosen.offsets is not None:
        again.shift_decision(chosen.offsets)
    return again


def fit_cv(x: np.ndarray, y: list[str], score, folds: int = 5, seed: int = 0) -> Fitted:
    """For small data: choose C and temperature on out-of-fold predictions, then refit on every row."""
    from sklearn.model_selection import StratifiedKFold

    y_arr = np.array(y)
    best_c, best_score, best_oof = 1.0, -1.0, None
    for c in C_RAW:
        oof: np.ndarray | None = None
        labels: list[str] = []
        for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y_arr):
            clf = LogisticRegression(C=c, max_iter=3000, class_weight="balanced").fit(x[tr], y_arr[tr])
            labels, w, b = _export(clf)
            part = Fitted(labels, w, b, 1.0, c)
            logits = x[te] @ w.T + b
            if oof is None:
                oof = np.zeros((len(y), len(labels)), dtype=np.float32)
            oof[te] = logits
            del part
        assert oof is not None
        e = np.exp(oof - oof.max(axis=1, keepdims=True))
        s = score(y, e / e.sum(axis=1, keepdims=True), labels)
        if s > best_score:
            best_c, best_score, best_oof = c, s, oof
    clf = LogisticRegression(C=best_c, max_iter=3000, class_weight="balanced").fit(x, y_arr)
    labels, w, b = _export(clf)
    assert best_oof is not None
    idx = np.array([labels.index(label) for label in y])
    temps = np.exp(np.linspace(np.log(0.05), np.log(4.0), 61))

    def nll(t: float) -> float:
        z = best_oof / t
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-logp[np.arange(len(y)), idx].mean())

    return Fitted(labels, w, b, round(float(min(temps, key=nll)), 4), best_c)


def fit_tfidf(
    texts: list[str], labels: list[str], ratings: list[float] | None, *, folds: int = 5, seed: int = 0
) -> tuple[TfidfScorer, np.ndarray]:
    """The lexical model of a stacked head: TF-IDF word 1-2-grams → a ridge regression on the rating
    (when there is one) and a logistic regression on the labels.

    Returns the model fitted on all rows and its out-of-fold outputs for those same rows: the head
    above it must be trained on outputs for texts the lexical model did not see, or it learns to
    trust a model that has memorised its training sentences.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import StratifiedKFold

    y = np.array(labels)

    def fitted(rows: np.ndarray) -> TfidfScorer:
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, dtype=np.float64)
        matrix = vectorizer.fit_transform([texts[i] for i in rows])
        weights, biases = [], []
        if ratings is not None:
            ridge = Ridge(alpha=3.0).fit(matrix, np.asarray(ratings)[rows])
            weights.append(ridge.coef_[None, :])
            biases.append(np.atleast_1d(ridge.intercept_))
        clf = LogisticRegression(C=3.0, max_iter=3000, class_weight="balanced").fit(matrix, y[rows])
        classes, w, b = _export(clf)
        assert classes == sorted(set(labels)), "every fold must hold every class"
        weights.append(w)
        biases.append(b)
        return TfidfScorer(
            vocabulary={term: int(i) for term, i in vectorizer.vocabulary_.items()},
            idf=vectorizer.idf_,
            max_n=2,
            weights=np.concatenate(weights).astype(np.float64),
            bias=np.concatenate(biases).astype(np.float64),
            regression=1 if ratings is not None else 0,
        )

    everything = np.arange(len(texts))
    oof: np.ndarray | None = None
    for part, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(everything, y):
        outputs = fitted(part).transform([texts[i] for i in held])
        if oof is None:
            oof = np.zeros((len(texts), outputs.shape[1]), dtype=np.float32)
        oof[held] = outputs
    assert oof is not None
    return fitted(everything), oof
