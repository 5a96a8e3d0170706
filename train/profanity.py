"""Export alt-profanity-check's scikit-learn model to plain arrays (models/heads/profanity.npz)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.profanity import PROFANITY_FILE, ProfanityScorer
from models.tfidf import TfidfScorer

PACKAGE = "alt-profanity-check==1.9.1"


def export(path: Path = PROFANITY_FILE) -> ProfanityScorer:
    import joblib
    import profanity_check

    data = Path(profanity_check.__file__).resolve().parent / "data"
    vectorizer = joblib.load(data / "vectorizer.joblib")
    model = joblib.load(data / "model.joblib")
    params = vectorizer.get_params()
    assert params["analyzer"] == "word" and params["ngram_range"] == (1, 1) and params["norm"] == "l2", params
    assert params["lowercase"] and params["token_pattern"] == r"(?u)\b\w\w+\b", params
    # Stop words never reach the vocabulary, and with unigrams dropping them before or after counting
    # gives the same vector: TfidfScorer only counts vocabulary terms.
    folds = model.calibrated_classifiers_
    assert all(fold.method == "sigmoid" and len(fold.calibrators) == 1 for fold in folds)
    svms = TfidfScorer(
        vocabulary={term: int(i) for term, i in vectorizer.vocabulary_.items()},
        idf=vectorizer.idf_,
        max_n=1,
        weights=np.stack([fold.estimator.coef_[0] for fold in folds]),
        bias=np.array([fold.estimator.intercept_[0] for fold in folds]),
        regression=len(folds),
        sublinear=bool(params["sublinear_tf"]),
    )
    scorer = ProfanityScorer(
        svms,
        np.array([fold.calibrators[0].a_ for fold in folds]),
        np.array([fold.calibrators[0].b_ for fold in folds]),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **scorer.arrays())
    return scorer
