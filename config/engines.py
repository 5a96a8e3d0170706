"""The names of the inference engines: one definition, read by settings, the catalog and the model registry."""

from __future__ import annotations

from typing import Literal, get_args

#: An analysis is served by a model engine, or is a pipeline of other analyses.
#: `sdhf` is the call-record detection (models/cdr), a query rather than a model.
EngineName = Literal["embedding-prototype", "hf-classifier", "whisper", "pipeline", "sdhf"]
#: Engines that load a model, so `ASSAY_ANALYSIS_MODELS` may point an analysis at one.
ModelEngineName = Literal["embedding-prototype", "hf-classifier", "whisper"]

ENGINE_NAMES: tuple[EngineName, ...] = get_args(EngineName)
MODEL_ENGINE_NAMES: tuple[ModelEngineName, ...] = get_args(ModelEngineName)
