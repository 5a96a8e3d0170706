"""Inference library: engines with explicit arguments, dataclass results, no Celery/Flask/SQL.

Importing this package is cheap: torch and transformers load only when an engine is built.
"""

from models.base import InputError, TextEngine, TextPrediction

__all__ = ["InputError", "TextEngine", "TextPrediction"]
