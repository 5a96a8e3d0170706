"""Engines for the analyses in the catalog, built once per worker process and shared.

Every embedding-prototype or embedding-head analysis is a head on one `PrototypeBank` over one
encoder, so any mix of text analyses in a batch costs one encoder pass; an `hf-classifier` analysis gets its own
model. Decisions (flagged, risk score, verdict) are applied here, identically for both engines.
Which engine builds an analysis is a table (`_BUILDERS`), keyed by the one list of engine names.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from config import Settings
from config.catalog import AnalysisConfig, ModelChoice, model_choice, model_label
from config.engines import EngineName
from models.base import Embedding, InputError, SpeechEngine, TextEngine, TextPrediction
from models.decisions import decide
from models.prototype import PrototypeBank

log = logging.getLogger(__name__)

PROTOTYPES: EngineName = "embedding-prototype"
EMBEDDING: EngineName = "sentence-embedding"
HEAD: EngineName = "embedding-head"  # a trained head on the shared vector (issue 12)
#: Engines served by the one shared encoder pass of the PrototypeBank.
ON_ENCODER = (PROTOTYPES, EMBEDDING, HEAD)
T = TypeVar("T")


@dataclass
class EngineRegistry:
    """Implements `models.base.Engines` for a deployment's catalog and settings."""

    settings: Settings
    catalog: dict[str, AnalysisConfig]
    load_seconds: dict[str, float] = field(default_factory=dict)
    _bank: PrototypeBank | None = None
    _classifiers: dict[str, TextEngine] = field(default_factory=dict)
    _speech: SpeechEngine | None = None

    # --- loading ---------------------------------------------------------------------------------

    def load(self, families: set[str] | None = None) -> None:
        """Build the engines a worker serves now, so the first job does not pay for loading."""
        for name, config in self.catalog.items():
            if families is None or config.family in families:
                self._ensure(name)

    def warm_up(self) -> None:
        text = [name for name, config in self.catalog.items() if config.input == "text" and self._loaded(name)]
        if text:
            self.predict_text([(name, "warm-up") for name in text])
        if self._speech is not None:
            self._speech.warm_up()

    def _loaded(self, analysis: str) -> bool:
        config = self.catalog[analysis]
        if config.engine == "pipeline":
            return False
        engine = model_choice(self.settings, config).engine
        if engine == EMBEDDING:
            return self._bank is not None and analysis in self._bank.embedding_only
        if engine in (PROTOTYPES, HEAD):
            return self._bank is not None and analysis in self._bank.heads
        return analysis in self._classifiers

    def timed(self, key: str, build: Callable[[], T]) -> T:
        """Build a model and remember how long it took (the `assay_model_load_seconds` metric)."""
        started = time.perf_counter()
        built = build()
        self.load_seconds[key] = time.perf_counter() - started
        log.info("model loaded", extra={"model": key, "seconds": round(self.load_seconds[key], 3)})
        return built

    def _ensure(self, analysis: str) -> None:
        config = self.catalog[analysis]
        choice = model_choice(self.settings, config)
        _BUILDERS[choice.engine](self, analysis, config, choice)

    # --- inference -------------------------------------------------------------------------------

    def predict_text(self, items: list[tuple[str, str]]) -> list[TextPrediction | Embedding | InputError]:
        """(analysis, text) pairs → decided predictions, in order; one call per model.

        Analyses on the shared encoder (prototype heads and plain embeddings) share one encoder pass.
        """
        for analysis in {a for a, _ in items}:
            self._ensure(analysis)
        results: list[TextPrediction | Embedding | InputError] = [InputError("internal", "not computed")] * len(items)
        by_model: dict[str, list[int]] = defaultdict(list)
        for index, (analysis, _) in enumerate(items):
            engine = model_choice(self.settings, self.catalog[analysis]).engine
            by_model[PROTOTYPES if engine in ON_ENCODER else analysis].append(index)
        for key, indices in by_model.items():
            predictions: list[TextPrediction | Embedding | InputError]
            if key == PROTOTYPES:
                assert self._bank is not None
                predictions = self._bank.predict_many([items[i] for i in indices])
            else:
                predictions = list(self._classifiers[key].predict([items[i][1] for i in indices]))
            for i, prediction in zip(indices, predictions, strict=True):
                decided = isinstance(prediction, TextPrediction)
                results[i] = self._decide(items[i][0], prediction) if decided else prediction
        return results

    def _decide(self, analysis: str, prediction: TextPrediction) -> TextPrediction:
        config = self.catalog[analysis]
        return decide(prediction, flag_label=config.flag_label, threshold=config.threshold, verdicts=config.verdicts)

    @property
    def speech(self) -> SpeechEngine:
        if self._speech is None:
            self._ensure(next(n for n, c in self.catalog.items() if c.engine == "whisper"))
        assert self._speech is not None
        return self._speech


# --- builders: one per engine name ------------------------------------------------------------------


def _model_args(settings: Settings) -> dict[str, Any]:
    """Constructor arguments every model engine takes from settings."""
    return {
        "device": settings.device,
        "max_batch_size": settings.max_batch_size,
        "local_files_only": not settings.allow_model_download,
    }


def _ensure_bank(reg: EngineRegistry, choice: ModelChoice) -> PrototypeBank:
    """The one encoder every prototype head and the embedding analysis share, built on first use."""
    if reg._bank is None:
        from models.encoder import SentenceEncoder, packaged_minilm_path

        source = reg.settings.text_model_path or packaged_minilm_path()
        encoder = reg.timed(
            choice.model,
            lambda: SentenceEncoder(
                source, max_length=reg.settings.max_model_tokens, name=choice.model, **_model_args(reg.settings)
            ),
        )
        reg._bank = PrototypeBank(encoder)
    return reg._bank


def _add_prototype_head(reg: EngineRegistry, analysis: str, config: AnalysisConfig, choice: ModelChoice) -> None:
    bank = _ensure_bank(reg, choice)
    if analysis not in bank.heads:
        label = model_label(reg.settings, config)
        bank.add_head(analysis, config.labels, temperature=config.temperature, model_name=label)


def _add_trained_head(reg: EngineRegistry, analysis: str, config: AnalysisConfig, choice: ModelChoice) -> None:
    bank = _ensure_bank(reg, choice)
    if analysis not in bank.heads:
        from config.settings import ROOT
        from models.heads import TrainedHead

        assert config.head is not None
        head = TrainedHead.load(ROOT / config.head, model_name=model_label(reg.settings, config))
        bank.add_trained_head(analysis, head)


def _add_embedding(reg: EngineRegistry, analysis: str, config: AnalysisConfig, choice: ModelChoice) -> None:
    _ensure_bank(reg, choice).add_embedding(analysis)


def _add_classifier(reg: EngineRegistry, analysis: str, config: AnalysisConfig, choice: ModelChoice) -> None:
    if analysis not in reg._classifiers:
        from models.hf_classifier import HFClassifier

        reg._classifiers[analysis] = reg.timed(
            choice.model,
            lambda: HFClassifier(choice.model, max_length=reg.settings.max_model_tokens, **_model_args(reg.settings)),
        )


def _add_speech(reg: EngineRegistry, analysis: str, config: AnalysisConfig, choice: ModelChoice) -> None:
    if reg._speech is None:
        from models.packaged_whisper import PACKAGED_WHISPER, packaged_whisper_path
        from models.transcriber import WhisperTranscriber

        s = reg.settings
        source = choice.model
        if source in PACKAGED_WHISPER:
            source = packaged_whisper_path(source, s.var_dir / "models")
        reg._speech = reg.timed(
            choice.model,
            lambda: WhisperTranscriber(
                source,
                compute_type=s.speech_compute_type,
                cpu_threads=s.torch_threads,
                beam_size=s.speech_beam_size,
                name=choice.model,
                **_model_args(s),
            ),
        )


def _add_pipeline(reg: EngineRegistry, analysis: str, config: AnalysisConfig, choice: ModelChoice) -> None:
    for name in config.steps + config.then:
        reg._ensure(name)


def _add_sdhf(reg: EngineRegistry, analysis: str, config: AnalysisConfig, choice: ModelChoice) -> None:
    """Call records load no model: tabular workers run them (pipeline/tabular.py) with DuckDB."""


_BUILDERS: dict[EngineName, Callable[[EngineRegistry, str, AnalysisConfig, ModelChoice], None]] = {
    "embedding-prototype": _add_prototype_head,
    "embedding-head": _add_trained_head,
    "hf-classifier": _add_classifier,
    "whisper": _add_speech,
    "pipeline": _add_pipeline,
    "sdhf": _add_sdhf,
    "sentence-embedding": _add_embedding,
}
