"""The names of the inference engines: one definition, read by settings, the catalog and the model registry."""

from __future__ import annotations

from typing import Literal, get_args

#: An analysis is served by a model engine, or is a pipeline of other analyses.
EngineName = Literal["embedding-prototype", "embedding-head", "hf-classifier", "whisper", "pipeline"]
#: Engines that load a model, so `ASSAY_ANALYSIS_MODELS` may point an analysis at one.
ModelEngineName = Literal["embedding-prototype", "embedding-head", "hf-classifier", "whisper"]

ENGINE_NAMES: tuple[EngineName, ...] = get_args(EngineName)
MODEL_ENGINE_NAMES: tuple[ModelEngineName, ...] = get_args(ModelEngineName)
