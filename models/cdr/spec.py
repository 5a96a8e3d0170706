"""What a CDR job is: its columns, its parameters, and a cheap look at a file's first lines.

Standard library only: the API runs `sniff` on the head of every upload (a bounded read, a bounded
gunzip) so that a file with the wrong columns or one enormous first line is refused with a 4xx before
anything is queued; the worker runs the same function again on the file it reads.
"""

from __future__ import annotations

import csv
import json
import re
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

#: The columns a CDR file must have (after the request's `columns` mapping); any others are ignored.
REQUIRED_COLUMNS = ("caller", "callee", "start_time", "duration")
#: Parameters that must be whole numbers.
INTEGER_PARAMETERS = ("min_unique_destinations", "min_calls")
GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
_EPOCH = re.compile(r"^\s*-?\d+(\.\d+)?\s*$")
#: A calendar date written without separators (ISO 8601 basic, YYYYMMDD, 1900-2099): a number, so it passed
#: for epoch seconds, where it lands in 1970 (20260101 s is 1970-08-23) and every window is wrong, silently.
_BASIC_DATE = re.compile(r"^\s*(19|20)\d\d(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])\s*$")

Format = Literal["csv", "jsonl"]
Compression = Literal["gzip", "none"]
TimeFormat = Literal["epoch", "iso8601"]


class CdrInputError(ValueError):
    """The file cannot be analysed; `row` is the 1-based line of the file where that was seen, if any."""

    def __init__(self, message: str, row: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.row = row


class EmptyCdrFileError(CdrInputError):
    """The file holds nothing once inflated (a gzip file of an empty file): as empty as a file of no bytes."""


@dataclass(frozen=True)
class CdrParameters:
    """Detection thresholds; a caller-window is flagged when it is past all of them."""

    time_window_hours: float = 24.0
    min_unique_destinations: int = 50
    max_avg_duration_seconds: float = 3.0
    min_calls: int = 0

    #: (minimum, maximum) of each parameter a request may set.
    BOUNDS: ClassVar[dict[str, tuple[float, float]]] = {
        "time_window_hours": (1 / 60, 24 * 31),
        "min_unique_destinations": (1, 1_000_000),
        "max_avg_duration_seconds": (0.0, 86_400.0),
        "min_calls": (0, 10_000_000),
    }

    @classmethod
    def resolve(cls, requested: Any, defaults: dict[str, float]) -> CdrParameters:
        """The request's parameters over the catalog's defaults; ValueError names the first bad one."""
        if requested is None:
            requested = {}
        if not isinstance(requested, dict):
            raise ValueError("parameters must be a JSON object")
        unknown = sorted(set(requested) - set(cls.BOUNDS))
        if unknown:
            raise ValueError(f"unknown parameters {unknown}; known: {sorted(cls.BOUNDS)}")
        values: dict[str, Any] = {**defaults, **requested}
        for name, (low, high) in cls.BOUNDS.items():
            value = values.get(name, getattr(cls, name))
            integral = name in INTEGER_PARAMETERS
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"parameter {name} must be a number")
            if integral and value != int(value):
                raise ValueError(f"parameter {name} must be a whole number")
            if not low <= value <= high:
                # JSON integers are unbounded: one past a float's range cannot be formatted with :g.
                got = f"{value:g}" if abs(value) <= 1e300 else "a number beyond 1e300"
                raise ValueError(f"parameter {name} must be from {low:g} to {high:g}, got {got}")
            values[name] = int(value) if integral else float(value)
        return cls(**{name: values[name] for name in cls.BOUNDS})

    @property
    def window_seconds(self) -> int:
        return max(1, round(self.time_window_hours * 3600))

    def to_json(self) -> dict[str, float]:
        return asdict(self)


def column_map(requested: Any) -> dict[str, str]:
    """{our column: the file's column}; the request may rename any of the four, nothing else."""
    if requested is None:
        requested = {}
    if not isinstance(requested, dict):
        raise ValueError('columns must be a JSON object such as {"caller": "a_number"}')
    unknown = sorted(set(requested) - set(REQUIRED_COLUMNS))
    if unknown:
        raise ValueError(f"columns can map only {list(REQUIRED_COLUMNS)}; unknown: {unknown}")
    for key, value in requested.items():
        if not isinstance(value, str) or not 0 < len(value) <= 128:
            raise ValueError(f"columns.{key} must be a column name of 1-128 characters")
    mapped = {name: requested.get(name, name) for name in REQUIRED_COLUMNS}
    by_file_column: dict[str, list[str]] = {}
    for ours, theirs in mapped.items():
        by_file_column.setdefault(theirs.lower(), []).append(ours)  # the reader matches names ignoring case
    if shared := next((ours for ours in by_file_column.values() if len(ours) > 1), None):
        raise ValueError(f"columns maps {' and '.join(shared)} to the same column of the file")
    return mapped


@dataclass(frozen=True)
class Sniffed:
    """What the first lines of a file say: how to read the rest."""

    format: Format
    compression: Compression
    header: tuple[str, ...]  # CSV: the header's columns, in order; JSON lines: the first lines' keys
    time_format: TimeFormat
    delimiter: str = ","  # CSV: one of DELIMITERS
    bom: bool = False  # the (decompressed) file starts with a UTF-8 byte order mark


#: Field separators a CSV may use, in the order tried: switch and billing exports are often `;` or `|`
#: separated, spreadsheets in many locales write `;`, and TSV is common. The first that makes the header
#: name every column the job reads wins, so an ordinary comma file never depends on the others.
DELIMITERS = (",", ";", "\t", "|")


#: Lines `sniff` reads: the header and the first records, enough to find a start time when the first few leave it empty.
SNIFF_LINES = 8


def _first_lines(head: bytes, max_line_bytes: int) -> tuple[list[str], bool]:
    """Up to `SNIFF_LINES` complete lines of the (already decompressed) head, and whether the head was all of it."""
    if head.startswith(UTF8_BOM):
        head = head[len(UTF8_BOM) :]
    lines: list[str] = []
    start = 0
    for number in range(1, SNIFF_LINES + 1):
        end = head.find(b"\n", start)
        if end < 0:
            rest = head[start:]
            if len(rest) > max_line_bytes:
                raise CdrInputError(f"line {number} is longer than {max_line_bytes} bytes", number)
            return lines, False
        if end - start > max_line_bytes:
            raise CdrInputError(f"line {number} is longer than {max_line_bytes} bytes", number)
        try:
            lines.append(head[start:end].decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError:
            raise CdrInputError(f"line {number} is not UTF-8 text", number) from None
        start = end + 1
    return lines, True


def _time_format(value: Any) -> TimeFormat:
    if not isinstance(value, bool) and _BASIC_DATE.match(str(value)):
        raise CdrInputError(
            f"the first record's start_time {str(value).strip()!r} reads as a date without separators "
            "(YYYYMMDD), which would be taken for epoch seconds in 1970: send ISO 8601 "
            "(2026-01-01T00:00:00Z) or epoch seconds"
        )
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "epoch"
    return "epoch" if isinstance(value, str) and _EPOCH.match(value) else "iso8601"


def head_bytes(max_line_bytes: int) -> int:
    """How much of the start of a file `sniff` wants: a few lines at the longest (so a gzip header, the
    CSV header and a first record all fit)."""
    return 4 * max_line_bytes + 4


def sniff(head: bytes, columns: dict[str, str], *, max_line_bytes: int, complete: bool = False) -> Sniffed:
    """Look at the start of a CDR file: format, compression, header, time format.

    `head` is the first bytes of the file (a few times `max_line_bytes` is plenty); `complete` says it is
    the whole file, so a last line without a newline is a line and not a cut. Raises CdrInputError for a
    file that cannot be right whatever follows: not gzip or text, a first line past the limit, columns
    missing.
    """
    compression: Compression = "none"
    if head.startswith(GZIP_MAGIC):
        compression = "gzip"
        try:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            head = inflater.decompress(head, 2 * max_line_bytes + 2)  # bounded: a gzip bomb stops here
            complete = complete and inflater.eof
        except zlib.error as exc:
            raise CdrInputError(f"the file looks gzip-compressed but cannot be decompressed: {exc}") from None
        if complete and not head:
            raise EmptyCdrFileError("the call-record file is empty (it inflates to nothing)")
    if complete and not head.endswith(b"\n"):
        head += b"\n"
    bom = head.startswith(UTF8_BOM)
    lines, _ = _first_lines(head, max_line_bytes)
    if not lines:
        raise CdrInputError("the file has no complete first line (empty, or cut short)", 1)
    first = lines[0].strip()
    if first.startswith("{"):
        try:
            record = json.loads(first)
        except (ValueError, RecursionError) as exc:
            raise CdrInputError(f"line 1 is not a JSON object: {str(exc)[:200]}", 1) from None
        if not isinstance(record, dict):
            raise CdrInputError("line 1 is not a JSON object", 1)
        keys, start_time = _json_keys(record, lines[1:], columns["start_time"])
        _check_columns(keys, columns, "the first JSON lines have keys")
        return Sniffed("jsonl", compression, keys, _time_format(start_time), bom=bom)
    delimiter = _delimiter(lines[0], columns.values())
    try:
        header = tuple(next(csv.reader([lines[0]], delimiter=delimiter)))
        rows = [next(csv.reader([line], delimiter=delimiter)) for line in lines[1:] if line.strip()]
    except (csv.Error, StopIteration) as exc:  # a NUL byte, an empty first line
        raise CdrInputError(f"the first lines are not CSV: {exc}", 1) from None
    # DuckDB's CSV reader matches column names ignoring case (`Caller` is read as `caller`), so the check does.
    _check_columns(header, columns, "the CSV header has columns", ignore_case=True)
    named = header[:-1] if len(header) > 1 and header[-1] == "" else header  # a delimiter ending every line
    if "" in named:
        raise CdrInputError(f"the CSV header's column {named.index('') + 1} has no name", 1)
    if len({name.lower() for name in header}) != len(header):
        raise CdrInputError("the CSV header names a column twice (names are compared ignoring case)", 1)
    index = [name.lower() for name in header].index(columns["start_time"].lower())
    # The first start time given decides: a first record may leave it empty (a skipped row, counted).
    given = next((row[index] for row in rows if index < len(row) and row[index].strip()), None)
    time_format = _time_format(given) if given is not None else "iso8601"
    return Sniffed("csv", compression, header, time_format, delimiter, bom)


def _json_keys(first: dict[str, Any], rest: list[str], start_time: str) -> tuple[tuple[str, ...], Any]:
    """The keys of the first JSON lines, and the first start time given. JSON writers leave out empty fields,
    so a first record without `duration` (an unanswered call) is a record the reader counts as rejected, as it
    does later ones, not a file to refuse; a key no sniffed line has is still refused (a misspelt name)."""
    keys, given = dict.fromkeys(first), first.get(start_time)
    for line in rest:
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            break  # the worker names the line
        if not isinstance(record, dict):
            break
        keys.update(dict.fromkeys(record))
        given = record.get(start_time) if given is None else given
    return tuple(keys), given


def _delimiter(line: str, wanted: Iterable[str]) -> str:
    """The first of DELIMITERS whose split of the header line names every wanted column (ignoring case); ","
    if none does (the missing columns are then reported as the comma split shows them)."""
    wanted = {name.lower() for name in wanted}
    for delimiter in DELIMITERS:
        try:
            if wanted <= {name.lower() for name in next(csv.reader([line], delimiter=delimiter))}:
                return delimiter
        except (csv.Error, StopIteration):
            continue
    return ","


def _check_columns(found: tuple[str, ...], columns: dict[str, str], what: str, *, ignore_case: bool = False) -> None:
    """Every column we read is in the file. JSON keys are matched exactly, as DuckDB's JSON reader does."""
    present = {name.lower() for name in found} if ignore_case else set(found)
    missing = [f"{ours} (as {theirs!r})" if ours != theirs else ours for ours, theirs in columns.items()
               if (theirs.lower() if ignore_case else theirs) not in present]  # fmt: skip
    if missing:
        shown = [name[:40] for name in found[:20]]
        raise CdrInputError(f"{what} {shown}; missing: {', '.join(missing)}", 1)
