"""Every setting as a Markdown reference, generated from the settings object itself.

    .venv/bin/python -m config.reference > docs/CONFIGURATION.md

The README's table names the settings a newcomer meets; an operator needs all of them, with their
defaults and bounds, and a hand-kept list drifts from the code (about thirty were documented nowhere).
Sections follow the `# --- name ---` comments of config/settings.py; a unit test keeps the file current.
"""

from __future__ import annotations

import enum
import json
import re
import typing
from pathlib import Path
from typing import get_args, get_origin

import annotated_types
from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo

from config.settings import ROOT, Settings

_SECTION = re.compile(r"^\s*# --- (?!end)(.+?) -+\s*$")
_FIELD = re.compile(r"^    ([a-z_][a-z0-9_]*): ")


def variable(name: str, field: FieldInfo) -> str:
    """The environment variable(s) a field is read from."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return ", ".join(f"`{choice}`" for choice in alias.choices)
    return f"`ASSAY_{name.upper()}`"


def default_text(field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, Path):
        value = value.relative_to(ROOT).as_posix() if value.is_relative_to(ROOT) else str(value)
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None or value == "":
        return "empty"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, list | dict):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def bounds_text(field: FieldInfo) -> str:
    """What a value may be: the choices of a Literal, numeric bounds, a pattern, a length."""
    if get_origin(field.annotation) is typing.Literal:
        return " / ".join(f"`{choice}`" for choice in get_args(field.annotation))
    parts = []
    for rule in field.metadata:
        for kind, attribute, sign in (
            (annotated_types.Ge, "ge", "≥"),
            (annotated_types.Gt, "gt", ">"),
            (annotated_types.Le, "le", "≤"),
            (annotated_types.Lt, "lt", "<"),
        ):
            if isinstance(rule, kind):
                parts.append(f"{sign} {getattr(rule, attribute)}")
        if isinstance(rule, annotated_types.MaxLen):
            parts.append(f"≤ {rule.max_length} chars")
        if (pattern := getattr(rule, "pattern", None)) is not None:
            parts.append(f"`{pattern}`".replace("|", "\\|"))
    return ", ".join(parts)


def sections() -> list[tuple[str, list[str]]]:
    """(heading, field names) in the order of config/settings.py."""
    source = Path(__file__).with_name("settings.py").read_text().splitlines()
    found: list[tuple[str, list[str]]] = [("Services", [])]
    for line in source:
        if line.startswith("    def ") or line.startswith("    @"):
            break  # the validators: no fields after them
        if heading := _SECTION.match(line):
            title = heading.group(1).split(" (")[0].strip()
            found.append((title[0].upper() + title[1:], []))
        elif (name := _FIELD.match(line)) and name.group(1) in Settings.model_fields:
            found[-1][1].append(name.group(1))
    return [(heading, names) for heading, names in found if names]


def reference() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Generated from `config/settings.py` by `python -m config.reference`; do not edit by hand.",
        "Every variable is read once, at start; a value out of its bounds stops the process with its name.",
        "",
    ]
    listed: set[str] = set()
    for heading, names in sections():
        lines += [f"## {heading}", "", "| variable | default | allowed | meaning |", "|---|---|---|---|"]
        for name in names:
            field = Settings.model_fields[name]
            meaning = (field.description or "").replace("|", "\\|")
            lines.append(f"| {variable(name, field)} | {default_text(field)} | {bounds_text(field)} | {meaning} |")
            listed.add(name)
        lines.append("")
    unlisted = sorted(set(Settings.model_fields) - listed)
    if unlisted:
        raise RuntimeError(f"settings outside any section of config/settings.py: {unlisted}")
    return "\n".join(lines)


def main() -> int:
    print(reference())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
