"""Engines for the analyses in the catalog, built once per worker process and shared.

One encoder instance serves every embedding-prototype analysis, so several text analyses
cost one model in memory.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from config import Settings
from config.analyses import AnalysisConfig
from models.base import TextEngine

log = logging.getLogger(__name__)


@dataclass
class EngineRegistry:
    settings: Settings
    catalog: dict[str, AnalysisConfig]
    _engines: dict[str, TextEngine] = field(default_factory=dict)
    _encoder: object | None = None
    load_seconds: dict[str, float] = field(default_factory=dict)

    def engine(self, analysis: str) -> TextEngine:
        if analysis not in self._engines:
            self._engines[analysis] = self._build(self.catalog[analysis])
        return self._engines[analysis]

    def load(self, families: set[str] | None = None) -> None:
        """Build the engines a worker serves now, so the first job does not pay for loading."""
        for name, config in self.catalog.items():
            if families is None or config.family in families:
                self.engine(name)

    def warm_up(self) -> None:
        for engine in self._engines.values():
            engine.predict(["warm-up"])

    def _shared_encoder(self) -> object:
        from models.encoder import SentenceEncoder, packaged_minilm_path

        if self._encoder is None:
            started = time.perf_counter()
            source = self.settings.text_model_path or packaged_minilm_path()
            self._encoder = SentenceEncoder(
                source,
                name=self.settings.text_model_path or "all-MiniLM-L6-v2",
                device=self.settings.device,
                max_length=self.settings.max_model_tokens,
                max_batch_size=self.settings.max_batch_size,
            )
            self.load_seconds["encoder"] = time.perf_counter() - started
            log.info("model loaded", extra={"model": source, "seconds": round(self.load_seconds["encoder"], 3)})
        return self._encoder

    def _build(self, config: AnalysisConfig) -> TextEngine:
        if config.engine == "embedding-prototype":
            from models.prototype import PrototypeClassifier

            encoder = self._shared_encoder()
            return PrototypeClassifier(
                encoder,  # type: ignore[arg-type]
                config.labels,
                temperature=config.temperature,
                name=f"{encoder.name}+{config.name}-prototypes-v{config.version}",  # type: ignore[attr-defined]
            )
        raise ValueError(f"analysis {config.name!r}: unknown engine {config.engine!r}")
