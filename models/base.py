"""The engine interface and its result types."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


class InputError(ValueError):
    """One input the engine cannot process; fails only that input's job."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class TextPrediction:
    label: str
    score: float
    scores: dict[str, float]
    model: str
    truncated: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        extra = data.pop("extra")
        return {**data, **extra}


class TextEngine(Protocol):
    """Loaded once per process, then called with whole batches."""

    model_name: str

    def predict(self, texts: list[str]) -> list[TextPrediction | InputError]:
        """One prediction (or an InputError) per text, in input order."""
        ...
