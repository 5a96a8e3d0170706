"""The offline sentiment engine on the real packaged MiniLM (loads from site-packages, no hub)."""

from __future__ import annotations

import pytest

from config.catalog import load_catalog
from models.base import InputError
from models.encoder import SentenceEncoder, packaged_minilm_path
from models.prototype import PrototypeClassifier


@pytest.fixture(scope="module")
def sentiment() -> PrototypeClassifier:
    encoder = SentenceEncoder(packaged_minilm_path(), device="cpu", max_length=128, max_batch_size=4)
    return PrototypeClassifier(encoder, load_catalog()["sentiment"].labels)


def test_labels_from_the_real_model(sentiment: PrototypeClassifier) -> None:
    love, worst, neutral = sentiment.predict(
        ["I love this product", "This is the worst service I have ever had", "The train leaves at 5 pm"]
    )
    assert love.label == "positive" and worst.label == "negative" and neutral.label == "neutral"


def test_empty_text_is_an_input_error(sentiment: PrototypeClassifier) -> None:
    ok, empty = sentiment.predict(["fine", "  "])
    assert not isinstance(ok, InputError)
    assert isinstance(empty, InputError) and empty.code == "empty_text"


def test_batched_equals_one_at_a_time(sentiment: PrototypeClassifier) -> None:
    texts = [
        "ok",
        "This is a much longer sentence about a product that broke after two days of use. " * 3,
        "meh",
        "Great!",
    ]
    batched = sentiment.predict(texts)
    for text, together in zip(texts, batched, strict=True):
        (alone,) = sentiment.predict([text])
        for label in together.scores:
            assert abs(together.scores[label] - alone.scores[label]) < 1e-4


def test_truncation_is_flagged(sentiment: PrototypeClassifier) -> None:
    (long,) = sentiment.predict(["word " * 400])
    assert long.truncated is True
