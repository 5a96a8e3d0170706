"""The engine interfaces and their result types: what the worker calls, and what it gets back.

The worker (pipeline/) depends on these Protocols only, never on a concrete engine, so an engine can
be swapped by configuration and a test can build the real one small.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    AudioSamples = npt.NDArray[np.float32]  # 16 kHz mono float32


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


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    duration: float
    segments: list[Segment]
    model: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class TextEngine(Protocol):
    """One text model, loaded once per process, then called with whole batches."""

    model_name: str

    def predict(self, texts: list[str]) -> list[TextPrediction | InputError]:
        """One prediction (or an InputError) per text, in input order."""
        ...


class SpeechEngine(Protocol):
    """A speech-to-text model, called with whole batches of clips."""

    def warm_up(self) -> None: ...

    def transcribe(self, audios: list[AudioSamples]) -> list[Transcript | InputError]:
        """One transcript (or an InputError) per clip, in input order."""
        ...


class Engines(Protocol):
    """What the worker calls: every analysis of the catalog, by name."""

    load_seconds: dict[str, float]

    def load(self, families: set[str] | None = None) -> None:
        """Build the engines of these model families now, before the first job."""
        ...

    def warm_up(self) -> None: ...

    def predict_text(self, items: list[tuple[str, str]]) -> list[TextPrediction | InputError]:
        """(analysis, text) pairs → decided predictions, in order."""
        ...

    @property
    def speech(self) -> SpeechEngine: ...
