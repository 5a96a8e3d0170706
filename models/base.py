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
class Embedding:
    """A text's sentence embedding, as the encoder computed it for the batch (no extra model call)."""

    vector: Any  # 1-D float32 tensor or array, L2-normalised
    model: str
    truncated: bool = False
    tokens: int | None = None

    def vector_json(self) -> dict[str, Any]:
        """{"vector": [float32 values as JSON numbers], "model", "dimension"}."""
        values = self.vector.tolist()
        return {"vector": values, "model": self.model, "dimension": len(values)}

    def to_json(self) -> dict[str, Any]:
        """The result of the `embedding` analysis."""
        return {"embedding": self.vector_json(), "model": self.model, "truncated": self.truncated}


@dataclass(frozen=True)
class TextPrediction:
    label: str
    score: float
    scores: dict[str, float]
    model: str
    truncated: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    # Not part of the result unless a job asks (options return_embedding / return_diagnostics):
    embedding: Embedding | None = field(default=None, compare=False, repr=False)
    tokens: int | None = None

    def to_json(self) -> dict[str, Any]:
        data = {
            "label": self.label,
            "score": self.score,
            "scores": dict(self.scores),
            "model": self.model,
            "truncated": self.truncated,
        }
        return {**data, **self.extra}


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

    def predict_text(self, items: list[tuple[str, str]]) -> list[TextPrediction | Embedding | InputError]:
        """(analysis, text) pairs → decided predictions (an Embedding for `sentence-embedding`), in order."""
        ...

    @property
    def speech(self) -> SpeechEngine: ...
