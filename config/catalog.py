"""The analysis catalog: what this deployment serves, declared in versioned JSON files.

Both the API (validation, GET /v1/analyses) and the workers (engine choice) read it, so it
lives here rather than in models/: the API must never import torch.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Literal, cast

from pydantic import BaseModel, Field, model_validator

from config.engines import EngineName, ModelEngineName, engine_versions
from config.settings import Settings

CATALOG_DIR = Path(__file__).resolve().parent / "analyses"
PACKAGED_TEXT_MODEL = "all-MiniLM-L6-v2"
PACKAGED_SPEECH_MODEL = "whisper-base"  # models/packaged_whisper.py; "whisper-tiny.en" is the fast one


class ModelChoice(BaseModel):
    """The engine that serves an analysis and the model it loads (a path, a hub id or a packaged name)."""

    engine: EngineName
    model: str


class AnalysisConfig(BaseModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    version: int = 1
    description: str
    input: Literal["text", "audio", "cdr"]
    family: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="one broker queue per model family")
    engine: EngineName
    temperature: float = 0.05
    labels: dict[str, list[str]] = Field(default_factory=dict)
    flag_label: str | None = Field(None, description="the label whose probability sets `flagged`")
    threshold: float = Field(0.5, ge=0, le=1)
    verdicts: dict[str, float] = Field(default_factory=dict, description="verdict name → minimum risk score")
    production: ModelChoice | None = Field(None, description="the model README recommends in production")
    steps: list[str] = Field(default_factory=list, description="pipeline: the audio step, e.g. transcription")
    then: list[str] = Field(default_factory=list, description="pipeline: text analyses run on the transcript")
    head: str | None = Field(None, description="embedding-head: the trained head's .npz, relative to the repo root")
    parameters: dict[str, float] = Field(
        default_factory=dict, description="defaults of the per-job parameters a request may override (cdr)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> AnalysisConfig:
        if self.engine == "embedding-prototype" and len(self.labels) < 2:
            raise ValueError(f"{self.name}: an embedding-prototype analysis needs two or more labels")
        if self.flag_label and self.labels and self.flag_label not in self.labels:
            raise ValueError(f"{self.name}: flag_label {self.flag_label!r} is not one of its labels")
        if self.engine == "embedding-head" and not self.head:
            raise ValueError(f"{self.name}: an embedding-head analysis names its head file")
        if self.engine == "pipeline" and not (self.steps and self.then):
            raise ValueError(f"{self.name}: a pipeline needs steps and then")
        if (self.engine == "sdhf") != (self.input == "cdr"):
            raise ValueError(f"{self.name}: call records (input cdr) are read by the sdhf engine, and only them")
        return self


@functools.cache
def load_catalog(directory: Path = CATALOG_DIR) -> dict[str, AnalysisConfig]:
    """Every `*.json` in the catalog directory, by analysis name; pipelines must name known analyses."""
    catalog: dict[str, AnalysisConfig] = {}
    for path in sorted(directory.glob("*.json")):
        analysis = AnalysisConfig.model_validate(json.loads(path.read_text()))
        catalog[analysis.name] = analysis
    for analysis in catalog.values():
        unknown = [name for name in analysis.steps + analysis.then if name not in catalog]
        if unknown:
            raise ValueError(f"pipeline {analysis.name} names unknown analyses: {unknown}")
    return catalog


def model_choice(settings: Settings, analysis: AnalysisConfig) -> ModelChoice:
    """Engine and model source for an analysis: ASSAY_ANALYSIS_MODELS overrides the catalog default.

    The override value is `engine:source`, e.g. `hf-classifier:/models/sst2` or
    `hf-classifier:distilbert/distilbert-base-uncased-finetuned-sst-2-english`.
    """
    override = settings.analysis_models.get(analysis.name)
    if override:
        engine, _, source = override.partition(":")
        return ModelChoice(engine=cast(ModelEngineName, engine), model=source)
    if analysis.engine in ("embedding-prototype", "embedding-head"):
        return ModelChoice(engine=analysis.engine, model=settings.text_model_path or PACKAGED_TEXT_MODEL)
    if analysis.engine == "sentence-embedding":
        return ModelChoice(engine=analysis.engine, model=settings.text_model_path or PACKAGED_TEXT_MODEL)
    if analysis.engine == "whisper":
        return ModelChoice(engine=analysis.engine, model=settings.speech_model_path or PACKAGED_SPEECH_MODEL)
    if analysis.engine == "sdhf":
        return ModelChoice(engine=analysis.engine, model=f"sdhf-v{analysis.version}")
    return ModelChoice(engine=analysis.engine, model="+".join(analysis.steps + analysis.then))


def model_label(settings: Settings, analysis: AnalysisConfig) -> str:
    """The model name results carry, e.g. `all-MiniLM-L6-v2+sentiment-prototypes-v1`."""
    choice = model_choice(settings, analysis)
    if choice.engine == "embedding-prototype":
        return f"{choice.model}+{analysis.name}-prototypes-v{analysis.version}"
    if choice.engine == "embedding-head":
        return f"{choice.model}+{analysis.name}-head-v{analysis.version}"
    return choice.model


@functools.cache
def _file_sha256(relative: str) -> str:
    """A trained head's content hash, read once per process (heads change only with a deploy)."""
    return hashlib.sha256((CATALOG_DIR.parent.parent / relative).read_bytes()).hexdigest()


#: (id(settings), id(catalog), name) → (settings, catalog, version). The objects are held so that their ids
#: cannot be reused while cached; settings and a loaded catalog are never changed in place.
_HEAD_VERSIONS: dict[tuple[int, int, str], tuple[Settings, dict[str, AnalysisConfig], str]] = {}


def head_version(settings: Settings, catalog: dict[str, AnalysisConfig], name: str) -> str:
    """`v<version>-<hash>`: the analysis's declared version and a hash of everything else its answer depends on.

    The hash covers the catalog entry (labels, temperature, thresholds, verdicts), the engine and model
    chosen for it, the token limit, speech settings for audio, the pipelines' steps, recursively, and the
    installed engine libraries. Editing a head without bumping `version`, or pointing an analysis at
    another model, changes it: the result cache keys on it, so an old answer is never served.
    Computed once per process and analysis: every submission and every result asks for it.
    """
    key = (id(settings), id(catalog), name)
    cached = _HEAD_VERSIONS.get(key)
    if cached is not None and cached[0] is settings and cached[1] is catalog:
        return cached[2]
    version = _hash_head(settings, catalog, name)
    if len(_HEAD_VERSIONS) >= 1024:  # only tests build many settings objects
        _HEAD_VERSIONS.clear()
    _HEAD_VERSIONS[key] = (settings, catalog, version)
    return version


def _hash_head(settings: Settings, catalog: dict[str, AnalysisConfig], name: str) -> str:
    analysis = catalog[name]
    parts: dict[str, object] = {
        "config": analysis.model_dump(mode="json"),
        "choice": model_choice(settings, analysis).model_dump(mode="json"),
        "max_model_tokens": settings.max_model_tokens,
        "engines": engine_versions(),
        "steps": [head_version(settings, catalog, step) for step in analysis.steps + analysis.then],
    }
    if analysis.head:  # a retrained head (issue 12) changes answers without a catalog edit
        parts["head_sha256"] = _file_sha256(analysis.head)
    if analysis.input == "audio":
        parts["speech"] = [settings.speech_compute_type, settings.speech_beam_size, settings.max_audio_seconds]
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return f"v{analysis.version}-{digest[:12]}"
