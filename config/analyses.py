"""The analysis catalog: what this deployment serves, declared in versioned JSON files.

Both the API (validation, GET /v1/analyses) and the workers (engine choice) read it, so it
lives here rather than in models/: the API must never import torch.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

CATALOG_DIR = Path(__file__).resolve().parent / "analyses"


class AnalysisConfig(BaseModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    version: int = 1
    description: str
    input: Literal["text", "audio"]
    family: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="one broker queue per model family")
    engine: str
    temperature: float = 0.05
    labels: dict[str, list[str]] = Field(default_factory=dict)


@functools.cache
def load_catalog(directory: Path = CATALOG_DIR) -> dict[str, AnalysisConfig]:
    """Every `*.json` in the catalog directory, by analysis name."""
    catalog: dict[str, AnalysisConfig] = {}
    for path in sorted(directory.glob("*.json")):
        analysis = AnalysisConfig.model_validate(json.loads(path.read_text()))
        catalog[analysis.name] = analysis
    return catalog
