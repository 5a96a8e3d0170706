"""The house rules of the layout: what each top-level package may import, no cycles, a light API process.

docs/DESIGN.md's map states the same table; change both together.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from config.settings import ROOT

#: package → the packages of ours it may import (directly or in a function body).
ALLOWED: dict[str, set[str]] = {
    "config": set(),
    "contract": set(),
    "store": {"config", "contract"},
    "models": {"config"},
    "broker": {"config"},
    "telemetry": {"config"},
    "webhooks": {"config"},
    "pipeline": {"config", "contract", "store", "models", "broker", "telemetry", "webhooks"},
    "tasks": {"config", "pipeline", "webhooks"},
    "workers": {"config", "broker", "tasks", "pipeline", "telemetry", "models"},
    "app": {"config", "contract", "store", "broker", "telemetry", "pipeline", "webhooks", "models"},
}
#: The only modules of `models` the API may touch: probing uploads needs PyAV, never torch; checking a
#: call-record file's first lines needs only the standard library (models.cdr.spec).
API_MODELS = {"models", "models.audio", "models.base", "models.cdr.spec"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """module → every module of ours it imports, at any depth of its body."""
    found: dict[str, set[str]] = defaultdict(set)
    for package in ALLOWED:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            module = _module_name(path)
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
                else:
                    continue
                found[module] |= {name for name in names if name.split(".")[0] in ALLOWED}
    return found


def test_every_import_goes_down_the_table() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, targets in _imports().items()
        for target in targets
        if (src := module.split(".")[0]) != (dst := target.split(".")[0]) and dst not in ALLOWED[src]
    ]
    assert wrong == []


def test_the_api_uses_only_the_torch_free_part_of_models() -> None:
    used = {t for m, targets in _imports().items() if m.startswith("app") for t in targets if t.startswith("models")}
    names = ("InvalidAudio", "probe_audio", "CdrInputError", "EmptyCdrFileError", "CdrParameters", "Sniffed",
             "column_map", "sniff", "head_bytes", "INTEGER_PARAMETERS", "REQUIRED_COLUMNS")  # fmt: skip
    assert used <= API_MODELS | {f"{m}.{name}" for m in API_MODELS for name in names}


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle in a directed graph, or None."""
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        if state.get(node) == 1:
            return [*path[path.index(node) :], node]
        if state.get(node) == 2:
            return None
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if found := visit(nxt, [*path, node]):
                return found
        state[node] = 2
        return None

    for node in sorted(edges):
        if found := visit(node, []):
            return found
    return None


def test_no_import_cycles_between_packages_or_modules() -> None:
    imports = _imports()
    packages: dict[str, set[str]] = defaultdict(set)
    for module, targets in imports.items():
        packages[module.split(".")[0]] |= {t.split(".")[0] for t in targets} - {module.split(".")[0]}
    assert _cycle(packages) is None
    modules = {m: {t for t in targets if t in imports and t != m} for m, targets in imports.items()}
    assert _cycle(modules) is None
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the check itself works


def test_the_api_process_imports_no_http_client_and_no_model_library() -> None:
    heavy = [
        "requests",
        "urllib3",
        "standardwebhooks",
        "torch",
        "transformers",
        "faster_whisper",
        "ctranslate2",
        "duckdb",
    ]
    code = f"import sys, app.wsgi; print([m for m in {heavy!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stderr[-2000:]
