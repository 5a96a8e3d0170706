"""The names of the inference engines: one definition, read by settings, the catalog and the model registry."""

from __future__ import annotations

import functools
from importlib import metadata
from typing import Literal, get_args

#: An analysis is served by a model engine, or is a pipeline of other analyses.
#: `sdhf` is the call-record detection (models/cdr), a query rather than a model; `sentence-embedding`
#: answers with the text encoder's vector alone; `embedding-head` is a trained head on that vector (issue 12).
EngineName = Literal[
    "embedding-prototype", "embedding-head", "hf-classifier", "whisper", "pipeline", "sdhf", "sentence-embedding"
]
#: Engines that load a model, so `ASSAY_ANALYSIS_MODELS` may point an analysis at one.
ModelEngineName = Literal["embedding-prototype", "embedding-head", "hf-classifier", "whisper"]

ENGINE_NAMES: tuple[EngineName, ...] = get_args(EngineName)
MODEL_ENGINE_NAMES: tuple[ModelEngineName, ...] = get_args(ModelEngineName)

#: The libraries whose release can change an answer; part of every cache key and of diagnostics.
ENGINE_PACKAGES = ("torch", "transformers", "faster-whisper", "ctranslate2")


@functools.cache
def engine_versions() -> dict[str, str]:
    """Installed versions of ENGINE_PACKAGES, read from package metadata (nothing is imported)."""
    found = {}
    for package in ENGINE_PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "absent"
    return found
