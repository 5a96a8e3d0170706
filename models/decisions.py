"""Turning label probabilities into the decisions security tools report: flagged, risk score, verdict."""

from __future__ import annotations

from dataclasses import replace

from models.base import TextPrediction


def decide(
    prediction: TextPrediction,
    *,
    flag_label: str | None,
    threshold: float = 0.5,
    verdicts: dict[str, float] | None = None,
) -> TextPrediction:
    """Add `flagged` (probability of `flag_label` ≥ threshold) and, with verdicts, `risk_score` and `verdict`.

    Labels are matched case-insensitively, so a Hugging Face model reporting `INJECTION` or
    `SAFE` works with the same catalog entry. Verdicts are checked from the highest minimum
    down; below every minimum the verdict is `allow`.
    """
    if not flag_label:
        return prediction
    by_lower = {label.lower(): p for label, p in prediction.scores.items()}
    risk = float(by_lower.get(flag_label.lower(), 0.0))
    extra = {**prediction.extra, "flagged": risk >= threshold}
    if verdicts:
        verdict = "allow"
        for name, minimum in sorted(verdicts.items(), key=lambda item: item[1], reverse=True):
            if risk >= minimum:
                verdict = name
                break
        extra.update(risk_score=round(risk, 6), verdict=verdict)
    return replace(prediction, extra=extra)
