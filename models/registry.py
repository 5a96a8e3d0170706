"""Engines for the analyses in the catalog, built once per worker process and shared.

Every embedding-prototype analysis is a head on one `PrototypeBank` over one encoder, so any
mix of text analyses in a batch costs one encoder pass; an `hf-classifier` analysis gets its own
model. Decisions (flagged, risk score, verdict) are applied here, identically for both engines.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from config import Settings
from config.analyses import AnalysisConfig, model_choice, model_label
from models.base import InputError, TextPrediction
from models.decisions import decide

log = logging.getLogger(__name__)

PROTOTYPES = "embedding-prototype"


@dataclass
class EngineRegistry:
    settings: Settings
    catalog: dict[str, AnalysisConfig]
    load_seconds: dict[str, float] = field(default_factory=dict)
    _bank: Any = None
    _classifiers: dict[str, Any] = field(default_factory=dict)
    _transcriber: Any = None

    # --- loading ---------------------------------------------------------------------------------

    def load(self, families: set[str] | None = None) -> None:
        """Build the engines a worker serves now, so the first job does not pay for loading."""
        for name, config in self.catalog.items():
            if families is None or config.family in families:
                self._ensure(name)

    def warm_up(self) -> None:
        text = [name for name in self.catalog if self._is_text(name) and self._loaded(name)]
        if text:
            self.predict_text([(name, "warm-up") for name in text])
        if self._transcriber is not None:
            self._transcriber.warm_up()

    def _is_text(self, analysis: str) -> bool:
        return self.catalog[analysis].input == "text"

    def _loaded(self, analysis: str) -> bool:
        if self.catalog[analysis].engine == "pipeline":
            return False
        engine = model_choice(self.settings, self.catalog[analysis]).engine
        if engine == PROTOTYPES:
            return self._bank is not None and analysis in self._bank.heads
        return analysis in self._classifiers

    def _timed(self, key: str, build: Any) -> Any:
        started = time.perf_counter()
        built = build()
        self.load_seconds[key] = time.perf_counter() - started
        log.info("model loaded", extra={"model": key, "seconds": round(self.load_seconds[key], 3)})
        return built

    def _ensure(self, analysis: str) -> None:
        config = self.catalog[analysis]
        if config.engine == "pipeline":
            for name in config.steps + config.then:
                self._ensure(name)
            return
        choice = model_choice(self.settings, config)
        s = self.settings
        if choice.engine == PROTOTYPES:
            if self._bank is None:
                from models.encoder import SentenceEncoder, packaged_minilm_path
                from models.prototype import PrototypeBank

                source = s.text_model_path or packaged_minilm_path()
                encoder = self._timed(
                    choice.model,
                    lambda: SentenceEncoder(
                        source,
                        device=s.device,
                        max_length=s.max_model_tokens,
                        max_batch_size=s.max_batch_size,
                        local_files_only=not s.allow_model_download,
                        name=choice.model,
                    ),
                )
                self._bank = PrototypeBank(encoder)
            if analysis not in self._bank.heads:
                self._bank.add_head(
                    analysis, config.labels, temperature=config.temperature, model_name=model_label(s, config)
                )
        elif choice.engine == "hf-classifier":
            if analysis not in self._classifiers:
                from models.hf_classifier import HFClassifier

                self._classifiers[analysis] = self._timed(
                    choice.model,
                    lambda: HFClassifier(
                        choice.model,
                        device=s.device,
                        max_length=s.max_model_tokens,
                        max_batch_size=s.max_batch_size,
                        local_files_only=not s.allow_model_download,
                    ),
                )
        elif choice.engine == "whisper":
            if self._transcriber is None:
                from models.transcriber import WhisperTranscriber, packaged_tiny_en_path

                source = s.speech_model_path or packaged_tiny_en_path()
                self._transcriber = self._timed(
                    choice.model,
                    lambda: WhisperTranscriber(
                        source,
                        device=s.device,
                        compute_type=s.speech_compute_type,
                        cpu_threads=s.torch_threads,
                        beam_size=s.speech_beam_size,
                        max_batch_size=s.max_batch_size,
                        local_files_only=not s.allow_model_download,
                        name=choice.model,
                    ),
                )
        else:
            raise ValueError(f"analysis {analysis!r}: unknown engine {choice.engine!r}")

    # --- inference -------------------------------------------------------------------------------

    def predict_text(self, items: list[tuple[str, str]]) -> list[TextPrediction | InputError]:
        """(analysis, text) pairs → decided predictions, in order; one call per model."""
        for analysis in {a for a, _ in items}:
            self._ensure(analysis)
        results: list[TextPrediction | InputError] = [InputError("internal", "not computed")] * len(items)
        by_model: dict[str, list[int]] = defaultdict(list)
        for index, (analysis, _) in enumerate(items):
            engine = model_choice(self.settings, self.catalog[analysis]).engine
            by_model[PROTOTYPES if engine == PROTOTYPES else analysis].append(index)
        for key, indices in by_model.items():
            if key == PROTOTYPES:
                predictions = self._bank.predict_many([items[i] for i in indices])
            else:
                predictions = self._classifiers[key].predict([items[i][1] for i in indices])
            for i, prediction in zip(indices, predictions, strict=True):
                results[i] = prediction if isinstance(prediction, InputError) else self._decide(items[i][0], prediction)
        return results

    def _decide(self, analysis: str, prediction: TextPrediction) -> TextPrediction:
        config = self.catalog[analysis]
        return decide(prediction, flag_label=config.flag_label, threshold=config.threshold, verdicts=config.verdicts)

    @property
    def transcriber(self) -> Any:
        if self._transcriber is None:
            self._ensure(next(n for n, c in self.catalog.items() if c.engine == "whisper"))
        return self._transcriber
