from __future__ import annotations

from models.base import TextPrediction
from models.decisions import decide


def prediction(risk: float) -> TextPrediction:
    return TextPrediction("INJECTION", risk, {"INJECTION": risk, "SAFE": 1 - risk}, "m")


def test_flag_and_verdicts_match_labels_case_insensitively() -> None:
    verdicts = {"block": 0.8, "review": 0.5}
    high = decide(prediction(0.93), flag_label="injection", threshold=0.5, verdicts=verdicts).to_json()
    mid = decide(prediction(0.6), flag_label="injection", threshold=0.5, verdicts=verdicts).to_json()
    low = decide(prediction(0.1), flag_label="injection", threshold=0.5, verdicts=verdicts).to_json()
    assert (high["flagged"], high["verdict"], high["risk_score"]) == (True, "block", 0.93)
    assert (mid["flagged"], mid["verdict"]) == (True, "review")
    assert (low["flagged"], low["verdict"]) == (False, "allow")


def test_no_flag_label_leaves_the_prediction_alone() -> None:
    plain = prediction(0.9)
    assert decide(plain, flag_label=None) is plain
    assert "flagged" not in plain.to_json()
