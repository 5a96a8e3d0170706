"""docs/CONFIGURATION.md is the settings object as it is: every setting, its default, bounds and meaning."""

from __future__ import annotations

from config.reference import reference
from config.settings import ROOT, Settings


def test_every_setting_says_what_it_is_for() -> None:
    assert [name for name, field in Settings.model_fields.items() if not field.description] == []


def test_the_reference_in_docs_is_current() -> None:
    """Regenerate with `.venv/bin/python -m config.reference > docs/CONFIGURATION.md`."""
    assert (ROOT / "docs" / "CONFIGURATION.md").read_text() == reference() + "\n"


def test_every_setting_is_in_the_reference() -> None:
    text = reference()
    for name in Settings.model_fields:
        assert f"ASSAY_{name.upper()}`" in text, name
