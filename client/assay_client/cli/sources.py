"""Reading what to analyse: text arguments, a JSONL or plain-text file, a folder of audio.

A file is JSONL when its first non-blank line is a JSON object: then every non-blank line must be an
object with a string `text` (and may carry a `metadata` object, echoed back on its job). Otherwise
every non-blank line is one text. Blank lines are skipped; `source` keeps the real line number.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from assay_client.inputs import AUDIO_EXTENSIONS, Audio, JobRequest

Format = Literal["auto", "jsonl", "text"]


class InputError(Exception):
    pass


@dataclass(frozen=True)
class Item:
    """One job to make, and where it came from (printed with its result: `tickets.jsonl:12`)."""

    source: str
    request: JobRequest


def _looks_like_jsonl(lines: list[str]) -> bool:
    for line in lines:
        if line.strip():
            try:
                return isinstance(json.loads(line), dict)
            except ValueError:
                return False
    return False


def parse_lines(lines: Iterable[str], name: str, fmt: Format = "auto") -> list[Item]:
    lines = list(lines)
    jsonl = fmt == "jsonl" or (fmt == "auto" and _looks_like_jsonl(lines))
    items = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{name}:{number}"
        if not jsonl:
            items.append(Item(where, JobRequest(text=line.rstrip("\r\n"))))
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise InputError(f"{where}: not valid JSON ({exc}); every line of a JSONL file must be") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise InputError(f'{where}: expected a JSON object with a string "text" field')
        metadata = record.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise InputError(f'{where}: "metadata" must be a JSON object')
        items.append(Item(where, JobRequest(text=record["text"], metadata=metadata)))
    return items


def read_file(path: str, fmt: Format = "auto") -> list[Item]:
    """`-` reads standard input, as bytes: UTF-8 (a BOM dropped) whatever the locale, like a named file."""
    name = "stdin" if path == "-" else path
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        text = data.decode("utf-8-sig")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InputError(f"{name} is not UTF-8 text") from None
    return parse_lines(_lines(text), name, fmt)


def _lines(text: str) -> list[str]:
    """Lines ended by \n alone (each keeps its end). `str.splitlines` also breaks at U+2028, form feeds and
    other characters that are text inside a JSON string or a line: one line became two jobs, or bad JSON."""
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])


def audio_files(directory: str, recursive: bool = False) -> list[Item]:
    """Audio by extension (wav, mp3, m4a, ogg, opus, flac, webm), sorted by path: that is the input order."""
    root = Path(directory)
    if not root.is_dir():
        raise InputError(f"{directory} is not a directory")
    found = root.rglob("*") if recursive else root.iterdir()
    paths = sorted(
        (p for p in found if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS), key=lambda p: p.as_posix()
    )
    if not paths:
        exts = ", ".join(sorted(e.lstrip(".") for e in AUDIO_EXTENSIONS))
        raise InputError(f"no audio files ({exts}) in {directory}")
    return [Item(str(p), JobRequest(audio=Audio.of(p, filename=p.name))) for p in paths]


#: Call-record files by name (the API sniffs the format and compression itself).
CDR_SUFFIXES = (".csv", ".gz", ".jsonl", ".ndjson", ".tsv", ".txt")


def record_files(file: str | None, directory: str | None, recursive: bool = False) -> list[Item]:
    """Call-record files, one job each: the file itself, or a folder's by suffix, sorted by path."""
    if file is not None:
        path = Path(file)
        if file == "-":
            raise InputError("a call-record job takes a file, not standard input: --file PATH or --dir DIR")
        if not path.exists():
            raise InputError(f"{file}: no such file")
        if not path.is_file():
            raise InputError(f"{file} is not a file")
        paths = [path]
    else:
        root = Path(directory or ".")
        if not root.is_dir():
            raise InputError(f"{directory} is not a directory")
        found = root.rglob("*") if recursive else root.iterdir()
        paths = sorted((p for p in found if p.is_file() and p.name.lower().endswith(CDR_SUFFIXES)), key=Path.as_posix)
        if not paths:
            raise InputError(f"no call-record files ({', '.join(CDR_SUFFIXES)}) in {directory}")
    return [Item(str(p), JobRequest(audio=Audio.of(p, filename=p.name))) for p in paths]


def text_arguments(texts: Iterable[str]) -> list[Item]:
    return [Item(f"arg:{n}", JobRequest(text=t)) for n, t in enumerate(texts, start=1)]
