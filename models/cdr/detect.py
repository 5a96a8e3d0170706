"""Short-duration, high-frequency (SDHF) detection over a CDR file, in DuckDB.

Why DuckDB (docs/DESIGN.md "Call records" has the measurements): it reads CSV in parallel and gzip as a
stream, with typed columns and the line number of the first bad value; its aggregations are vectorised
and columnar; and its buffer manager holds memory to `memory_limit`, spilling to `temp_directory` past
it, so a worker's memory does not grow with the file. Polars was as fast on plain CSV but inflates a
gzip file fully into memory.

The plan, per job:
1. one parallel read of the file into a columnar table (the only pass over the file), with the window,
   a 64-bit hash of the caller and a "row complete" flag computed as it goes;
2. per (caller hash, window) the number of calls: one group-by over integer keys;
3. candidates: caller-windows with at least `max(min_unique_destinations, min_calls)` calls (a caller
   cannot have more distinct destinations than calls) — a tiny fraction of a real file; their calls are
   copied out in one scan (a semi-join);
4. distinct destinations, average and median duration, the thresholds and the evidence, on those alone.
Windows are tumbling, aligned to the epoch (UTC): window k covers [k·W, (k+1)·W).
"""

from __future__ import annotations

import fcntl
import gzip
import math
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
import zlib
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from models.cdr.spec import UTF8_BOM, CdrInputError, CdrParameters, Sniffed
from models.transient import is_transient

FIRST_DESTINATIONS = 5
_LINE = re.compile(r"(?:CSV Error on Line|line)[: ]+(\d+)", re.IGNORECASE)
#: DuckDB's pointer into our own SQL ("LINE 7: CAST(floor(..."): its number is not a line of the file.
_QUERY_CONTEXT = re.compile(r"^LINE \d+:.*$", re.MULTILINE)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Start times a report can write: 0001-02-01 to 9999-11-30 UTC, a longest window (31 days) inside years 1-9999.
#: Past them a time is a value that cannot be read, like one that is not a number.
FIRST_SECOND = int((datetime(1, 2, 1, tzinfo=UTC) - _EPOCH).total_seconds())
LAST_SECOND = int((datetime(9999, 11, 30, tzinfo=UTC) - _EPOCH).total_seconds())


@dataclass(frozen=True)
class Evidence:
    window_start: str
    window_end: str
    calls: int
    unique_destinations: int
    avg_duration_seconds: float
    median_duration_seconds: float
    first_destinations: list[str]


@dataclass(frozen=True)
class FlaggedCaller:
    caller: str
    risk_score: float
    flagged_windows: int
    evidence: Evidence  # its riskiest window


@dataclass
class CdrReport:
    flagged_callers: list[FlaggedCaller]
    totals: dict[str, int]
    parameters: CdrParameters
    time_range: dict[str, str | None]
    timings: dict[str, float] = field(default_factory=dict)
    engine: str = "duckdb"

    def to_json(self) -> dict[str, Any]:
        return {
            "flagged": bool(self.flagged_callers),
            "flagged_callers": [asdict(f) for f in self.flagged_callers],
            "totals": self.totals,
            "time_range": self.time_range,
            "parameters": self.parameters.to_json(),
            "window": "tumbling, aligned to the UTC epoch",
            "engine": self.engine,
            "timings": self.timings,
        }


def risk_score(unique: int, avg_duration: float, params: CdrParameters) -> float:
    """0.5 at the thresholds, towards 1 the further past them: 0.5 + 0.5·(1 - e^(-x)),
    x = ln(unique / min_unique) + ln(max_avg / avg) (an average under 0.1 s counts as 0.1 s)."""
    x = math.log(max(unique, 1) / max(params.min_unique_destinations, 1))
    if params.max_avg_duration_seconds > 0:
        x += math.log(params.max_avg_duration_seconds / max(avg_duration, 0.1))
    return round(0.5 + 0.5 * (1 - math.exp(-max(x, 0.0))), 4)


@dataclass(frozen=True)
class CdrSource:
    """A file on local disk and how to read it (from `spec.sniff` on its first bytes)."""

    path: Path
    sniffed: Sniffed
    columns: dict[str, str]  # ours → the file's


#: The name given to the empty last column of a header written with a delimiter at the end of every line.
UNNAMED_LAST_COLUMN = "_assay_unnamed_last"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _reader(source: CdrSource, max_line_bytes: int) -> str:
    """The table function reading the file, with the four columns typed and the rest left as text."""
    s, cols = source.sniffed, source.columns
    compression = "gzip" if s.compression == "gzip" else "none"
    if s.format == "jsonl":
        types = {cols["caller"]: "VARCHAR", cols["callee"]: "VARCHAR", cols["start_time"]: "VARCHAR",
                 cols["duration"]: "VARCHAR"}  # fmt: skip
        spec = ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in types.items())
        return (
            f"read_json({_literal(str(source.path))}, format='newline_delimited', columns={{{spec}}}, "
            f"compression={_literal(compression)}, maximum_object_size={max(max_line_bytes, 1 << 20)})"
        )
    time_type = "DOUBLE" if s.time_format == "epoch" else "TIMESTAMPTZ"
    # Keyed in lower case: the header may spell `Caller`; DuckDB's quoted names then match ours, ignoring case.
    typed = {cols["caller"].lower(): "VARCHAR", cols["callee"].lower(): "VARCHAR",
             cols["start_time"].lower(): time_type, cols["duration"].lower(): "DOUBLE"}  # fmt: skip
    names = [name or UNNAMED_LAST_COLUMN for name in s.header]  # sniff lets only the last column be unnamed
    spec = ", ".join(f"{_literal(name)}: {_literal(typed.get(name.lower(), 'VARCHAR'))}" for name in names)
    return (
        f"read_csv({_literal(str(source.path))}, header=true, auto_detect=false, delim={_literal(s.delimiter)}, "
        "quote='\"', "
        f"escape='\"', columns={{{spec}}}, compression={_literal(compression)}, strict_mode=true, "
        f"max_line_size={max_line_bytes}, null_padding=false)"
    )


def _load_sql(source: CdrSource, max_line_bytes: int, window: int) -> str:
    """One pass over the file into a columnar table: the four columns, plus what every later query needs
    precomputed once — the window, a 64-bit hash of the caller (integer keys group several times faster
    than strings; two callers colliding in 64 bits is a ~1e-8 chance at a million callers, and the
    flagged are re-grouped by the number itself), and whether the row is complete."""
    c = {k: _quote(v) for k, v in source.columns.items()}
    if source.sniffed.format == "jsonl":
        raw_time = f"TRIM({c['start_time']})"
        ts = f"COALESCE(TRY_CAST({raw_time} AS DOUBLE), epoch(TRY_CAST({raw_time} AS TIMESTAMPTZ)))"
        duration = f"TRY_CAST({c['duration']} AS DOUBLE)"
        bad = (
            f"({c['start_time']} IS NOT NULL AND {ts} IS NULL) OR ({c['duration']} IS NOT NULL AND {duration} IS NULL)"
        )
    else:
        ts = c["start_time"] if source.sniffed.time_format == "epoch" else f"epoch({c['start_time']})"
        duration = c["duration"]
        bad = "false"
    return f"""
        CREATE TABLE calls AS SELECT *, hash(caller) AS ch, ts // {window} AS w,
            (caller IS NOT NULL AND callee IS NOT NULL AND ts IS NOT NULL AND dur IS NOT NULL) AS ok
        FROM (
            SELECT caller, callee, dur,
                CASE WHEN t BETWEEN {FIRST_SECOND} AND {LAST_SECOND} THEN t END AS ts,
                unparsable OR (given AND coalesce(t NOT BETWEEN {FIRST_SECOND} AND {LAST_SECOND}, true)) AS unparsable
            FROM (
                SELECT
                    NULLIF({c["caller"]}, '') AS caller,
                    NULLIF({c["callee"]}, '') AS callee,
                    TRY_CAST(floor({ts}) AS BIGINT) AS t,  -- NULL for NaN, infinity, beyond 64 bits
                    {c["start_time"]} IS NOT NULL AS given,
                    {duration} AS dur,
                    {bad} AS unparsable
                FROM {_reader(source, max_line_bytes)}
            )
        )
    """


#: The sentences of DuckDB's reader errors that say what is wrong (the rest is advice for its own users).
_REASONS = (
    "Error when converting",
    "Expected Number of Columns",
    "Value with unterminated quote",
    "Maximum line size",
    "Invalid unicode",
    "Malformed JSON",
)


def mixed_line_endings(source: CdrSource, chunk_bytes: int = 1 << 20) -> int | None:
    """The first line whose ending (CRLF or LF) differs from the first line's, or None.

    DuckDB's strict reader stops on such a file with "the CSV Parser state machine reached an invalid
    state", which tells a user nothing; this scan runs only after that error, to say what it was.
    Quoted fields holding line breaks are not told apart (call records do not have them)."""
    opener = gzip.open if source.sniffed.compression == "gzip" else open
    first: bool | None = None  # the first line ends in CRLF
    line, previous = 1, b""
    with opener(source.path, "rb") as file:
        while chunk := file.read(chunk_bytes):
            start = 0
            while (newline := chunk.find(b"\n", start)) != -1:
                before = chunk[newline - 1 : newline] if newline else previous
                crlf = before == b"\r"
                if first is None:
                    first = crlf
                elif crlf != first:
                    return line
                line += 1
                start = newline + 1
            previous = chunk[-1:]
    return None


#: Deflate cannot inflate one byte into more than this many (258-byte matches in ~2 bits): a compressed
#: file this many times smaller than the limit cannot pass it, and is not inflated to find out.
MAX_DEFLATE_RATIO = 1032


class InflatesTooLarge(Exception):  # noqa: N818 (what the file does, as the job's error says)
    """A gzip file inflates past the limit (`limit`); the job fails with `input_too_large`."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the call-record file inflates to more than {limit} bytes")
        self.limit = limit


def may_inflate_past(source: CdrSource, limit: int) -> bool:
    """Whether the file could inflate past `limit` at all: a gzip file bigger than limit ÷ deflate's ratio."""
    return source.sniffed.compression == "gzip" and source.path.stat().st_size * MAX_DEFLATE_RATIO > limit


def inflated_past(
    source: CdrSource, limit: int, chunk_bytes: int = 1 << 20, stop: threading.Event | None = None
) -> int | None:
    """The bytes inflated once a gzip file passed `limit` (stopping there), or None if it did not (or
    `stop` was set first).

    The upload limit counts compressed bytes; without this a few MB of gzip (one row repeated) inflated to
    GBs: hours of a tabular worker, DuckDB spilling to disk until it is full, then retried as a transient
    out-of-memory. One streaming pass, bounded by `limit`; `detect` runs it beside DuckDB's read (zlib lets
    go of the GIL) and interrupts the read if it passes: run first, it added half again to a 5M-record job."""
    if not may_inflate_past(source, limit):
        return None
    inflated, pending = 0, b""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    with source.path.open("rb") as file:
        while stop is None or not stop.is_set():
            if not pending and not (pending := file.read(chunk_bytes)):
                return None
            try:
                inflated += len(inflater.decompress(pending, 16 * chunk_bytes))
            except zlib.error:
                return None  # corrupt: DuckDB's read fails it and names the line
            if inflated > limit:
                return inflated
            if inflater.eof:  # another gzip member may follow: a new inflater, as gzip readers do
                pending, inflater = inflater.unused_data, zlib.decompressobj(16 + zlib.MAX_WBITS)
            else:
                pending = inflater.unconsumed_tail
    return None


class _InflationGuard:
    """`inflated_past` on a thread beside DuckDB's read of the same file; interrupts the read if it passes."""

    def __init__(self, source: CdrSource, limit: int, con: Any) -> None:
        self.limit, self.passed = limit, False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(source, con), name="cdr-inflation-guard")
        self._thread.start()

    def _run(self, source: CdrSource, con: Any) -> None:
        if inflated_past(source, self.limit, stop=self._stop) is not None:
            self.passed = True
            con.interrupt()

    def finish(self) -> None:
        """Wait for the count to end (it reads faster than DuckDB: it has usually ended); raise if it passed."""
        self._thread.join()
        if self.passed:
            raise InflatesTooLarge(self.limit)

    def abandon(self) -> None:
        self._stop.set()
        self._thread.join()


def _without_bom(source: CdrSource, folder: Path, max_inflated_bytes: int | None) -> CdrSource:
    """A copy of a JSON lines file without its byte order mark (inflated, if it was gzip) in `folder`.

    DuckDB's CSV reader skips a BOM, its JSON reader refuses one ("byte order mark (BOM) is not supported"):
    a file the upload's sniffer accepted then failed its job. Windows tools (PowerShell 5, Notepad) write one.
    Bounded like the read itself: a gzip file inflating past `max_inflated_bytes` raises InflatesTooLarge."""
    gzipped = source.sniffed.compression == "gzip"
    target = folder / "input-without-bom.jsonl"
    written = 0
    try:
        with gzip.open(source.path, "rb") if gzipped else source.path.open("rb") as src, target.open("wb") as out:
            src.read(len(UTF8_BOM))
            while chunk := src.read(1 << 20):
                written += len(chunk)
                if gzipped and max_inflated_bytes is not None and written > max_inflated_bytes:
                    raise InflatesTooLarge(max_inflated_bytes)
                out.write(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        if isinstance(exc, OSError) and is_transient(exc):  # our copy met a full disk: not the file's fault
            raise
        raise CdrInputError(f"the file cannot be decompressed: {exc}") from None
    return CdrSource(target, replace(source.sniffed, compression="none", bom=False), source.columns)


def _input_error(exc: Exception, path: Path) -> CdrInputError:
    """DuckDB's reader errors as ours: the line number and what is wrong, never the row or the file's path."""
    text = _QUERY_CONTEXT.sub("", str(exc).replace(str(path), "the file"))
    match = _LINE.search(text)
    lines = [line.strip() for line in text.splitlines()]
    reason = next((line for line in lines if line.startswith(_REASONS)), "")
    if not reason:
        reason = re.sub(r"^[A-Za-z ]+Error: ", "", lines[0] if lines else text)
    reason = re.sub(r' in file "the file"', "", reason)
    reason = re.sub(r"Could not convert string (.*) to '", r"cannot read \1 as '", reason)[:300]
    if "Maximum line size" in text or "maximum line size" in text:
        reason = "a line is longer than the limit"
    row = int(match.group(1)) if match else None
    where = f"line {row}: " if row else ""
    return CdrInputError(f"{where}{reason}", row)


def _json_line_error(error: CdrInputError, source: CdrSource) -> CdrInputError:
    """A JSON lines reader error with the file's line in place of DuckDB's number.

    DuckDB's JSON reader numbers records, not lines (blank lines hold none), and a malformed record as the one
    after it: a bad line 3 was reported as "line 4", a bad line after a blank one by the wrong count."""
    if error.row is None:
        return error
    record = error.row - 1 if "Malformed JSON" in error.message else error.row
    line = _record_line(source, record)
    if line is None or line == error.row:
        return error
    return CdrInputError(re.sub(rf"\bline {error.row}\b", f"line {line}", error.message), line)


def _record_line(source: CdrSource, record: int, chunk_bytes: int = 1 << 20) -> int | None:
    """The line number of the file's `record`-th non-blank line (1-based), or None if it has fewer; one
    streamed pass up to it, in chunks (a line may be longer than a chunk)."""
    if record < 1:
        return None
    seen, number, blank = 0, 1, True  # `blank`: the line being read holds only whitespace so far
    try:
        with gzip.open(source.path, "rb") if source.sniffed.compression == "gzip" else source.path.open("rb") as file:
            while chunk := file.read(chunk_bytes):
                *complete, rest = chunk.split(b"\n")
                for piece in complete:
                    if not (blank and not piece.strip()):
                        seen += 1
                        if seen == record:
                            return number
                    number, blank = number + 1, True
                blank = blank and not rest.strip()
    except (OSError, EOFError, zlib.error):
        return None
    return number if not blank and seen + 1 == record else None  # a last line without a newline


def detect(
    source: CdrSource,
    params: CdrParameters,
    *,
    memory_limit_mb: int = 512,
    threads: int = 0,
    temp_dir: Path | None = None,
    max_line_bytes: int = 65_536,
    max_flagged: int = 1_000,
    max_inflated_bytes: int | None = None,
) -> CdrReport:
    """Read the file once, flag SDHF callers; CdrInputError (with a line) for a file that cannot be read,
    InflatesTooLarge for a gzip file inflating past `max_inflated_bytes`."""
    import duckdb

    config: dict[str, Any] = {
        "memory_limit": f"{memory_limit_mb}MB",
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": True,
    }
    if threads:
        config["threads"] = threads
    own_temp, lock = None, None
    if temp_dir is not None:
        own_temp, lock = _own_temp_dir(temp_dir)
        config["temp_directory"] = str(own_temp)
    header_lines = 1 if source.sniffed.format == "csv" else 0
    try:
        con = duckdb.connect(config=config)
    except BaseException:
        if lock is not None:  # nothing else will: its lock held, no orphan clean-up could take the folder
            _close_temp(own_temp, lock)
        raise
    guard, scratch = None, None
    try:
        con.execute("SET TimeZone = 'UTC'")  # an ISO time without an offset is UTC, whatever the host's zone
        if source.sniffed.format == "jsonl" and source.sniffed.bom:
            scratch = own_temp or Path(tempfile.mkdtemp(prefix="assay-cdr-"))
            source = _without_bom(source, scratch, max_inflated_bytes)
        if max_inflated_bytes is not None and may_inflate_past(source, max_inflated_bytes):
            guard = _InflationGuard(source, max_inflated_bytes, con)  # its interrupt can only meet the read
        began = time.perf_counter()
        try:
            con.execute(_load_sql(source, max_line_bytes, params.window_seconds))
            if guard is not None:
                guard.finish()
        except duckdb.InterruptException:
            if guard is not None:
                guard.finish()  # raises InflatesTooLarge: the guard interrupted the read
            raise
        except (duckdb.ConversionException, duckdb.InvalidInputException) as exc:
            if "state machine" in str(exc) and (line := mixed_line_endings(source)) is not None:
                raise CdrInputError(
                    f"line {line}: the file mixes line endings (CRLF and LF), as files joined from two systems do; "
                    "convert it to one (dos2unix, or save it again) and send it again",
                    line,
                ) from None
            error = _input_error(exc, source.path)
            raise (_json_line_error(error, source) if source.sniffed.format == "jsonl" else error) from None
        except duckdb.IOException as exc:
            if is_transient(exc):  # its spill files met a full disk: not the file's fault, try again later
                raise
            raise CdrInputError(f"the file cannot be read: {_input_error(exc, source.path).message}") from None
        except duckdb.BinderException as exc:  # our query refused for the columns as mapped: still the input's fault
            reason = _input_error(exc, source.path).message
            raise CdrInputError(f"the columns cannot be read as mapped: {reason}") from None
        loaded = time.perf_counter()
        _check_values(con, source, header_lines)
        report = _detect(con, params, max_flagged)
        _refuse_nul(con, source, report, header_lines)
        report.timings = {
            "read_seconds": round(loaded - began, 4),
            "detect_seconds": round(time.perf_counter() - loaded, 4),
        }
        report.engine = f"duckdb {duckdb.__version__}"
        return report
    finally:
        # Closing frees the tables (~40 ms at a million rows): done on a thread, after the result is out.
        # Not a daemon: the interpreter waits for it at exit. A daemon thread still inside DuckDB's C++
        # when the interpreter finalises aborts the process ("terminate called ... exception not
        # rethrown", exit 134), which a worker stopping after a failed detection did.
        if guard is not None:
            guard.abandon()  # ended already, or the read failed for another reason: its count is of no use
        threading.Thread(target=_close, args=(con, own_temp, lock), name="duckdb-close").start()
        if scratch is not None and scratch != own_temp:  # own_temp goes with `_close`
            shutil.rmtree(scratch, ignore_errors=True)


def _close(con: Any, temp: Path | None, lock: int | None) -> None:
    try:
        con.close()
    finally:  # a close that fails must not keep the folder and its lock for the worker's life
        _close_temp(temp, lock)


def _close_temp(temp: Path | None, lock: int | None) -> None:
    if temp is not None:
        shutil.rmtree(temp, ignore_errors=True)
    if lock is not None:
        Path(f"{temp}.lock").unlink(missing_ok=True)  # after the folder: a folder is never seen without its lock
        os.close(lock)


def _own_temp_dir(temp_dir: Path) -> tuple[Path, int]:
    """A spill folder of this run's own (it may still be closing when the next starts), held by an flock on
    `run-<token>.lock` beside it until it is deleted; first, the folders of runs whose process died.

    A tabular worker killed mid-detection (its container's memory limit is the usual killer) never ran
    `_close`: its spill files, up to the size of the file, stayed in the folder for good, each kill adding
    more, until the disk or the pod's emptyDir sizeLimit was full (the kubelet then evicts the pod). The
    kernel drops a dead process's flock, so a lock that can be taken marks an orphan; tabular workers
    sharing the folder never take each other's."""
    temp_dir.mkdir(parents=True, exist_ok=True)
    _remove_orphans(temp_dir)
    while True:
        own = temp_dir / f"run-{secrets.token_hex(6)}"
        lock = os.open(f"{own}.lock", os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_CLOEXEC, 0o600)
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:  # another worker's clean-up may have taken the file between its creation and the flock
            if os.stat(f"{own}.lock").st_ino == os.fstat(lock).st_ino:
                own.mkdir()
                return own, lock
        except FileNotFoundError:
            pass
        except BaseException:  # the folder cannot be made (a full disk): a lock held for the worker's life
            Path(f"{own}.lock").unlink(missing_ok=True)
            os.close(lock)
            raise
        os.close(lock)


def _remove_orphans(temp_dir: Path) -> None:
    for entry in temp_dir.iterdir():
        if not entry.name.startswith("run-"):
            continue
        if not entry.name.endswith(".lock"):
            if not Path(f"{entry}.lock").exists():  # a lock is made before its folder and deleted after it
                shutil.rmtree(entry, ignore_errors=True)
            continue
        try:
            fd = os.open(entry, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live run's
        else:
            shutil.rmtree(str(entry)[: -len(".lock")], ignore_errors=True)
            entry.unlink(missing_ok=True)
        finally:
            os.close(fd)


def _row_line(source: CdrSource, rowid: int, header_lines: int) -> int:
    """The file's line of the table's row `rowid`: in JSON lines a blank line holds no row (`_record_line`)."""
    record = rowid + 1
    if source.sniffed.format == "jsonl":
        return _record_line(source, record) or record
    return record + header_lines


def _check_values(con: Any, source: CdrSource, header_lines: int) -> None:
    """Fail on the first row whose time cannot be read or whose duration is negative or not finite."""
    row = con.execute(
        "SELECT min(rowid) FILTER (unparsable), min(rowid) FILTER (dur < 0 OR NOT isfinite(dur)) FROM calls"
    ).fetchone()
    unparsable, bad_duration = row if row else (None, None)
    if unparsable is not None:
        line = _row_line(source, unparsable, header_lines)
        raise CdrInputError(f"line {line}: the start time or duration cannot be read", line)
    if bad_duration is not None:
        line = _row_line(source, bad_duration, header_lines)
        (value,) = con.execute("SELECT dur FROM calls WHERE rowid = ?", [bad_duration]).fetchone()
        raise CdrInputError(f"line {line}: duration {value} is negative or not a number", line)


def _refuse_nul(con: Any, source: CdrSource, report: CdrReport, header_lines: int) -> None:
    """Fail on a NUL in a number the report shows: PostgreSQL's jsonb cannot store one, so the result could never
    be written and the job stayed running until its lease ran out, attempt after attempt. Checked on the report
    (a few numbers), not on every row: the file's line is looked up only when there is one."""
    flagged = report.flagged_callers
    shown = [f.caller for f in flagged] + [number for f in flagged for number in f.evidence.first_destinations]
    if not any("\x00" in number for number in shown):
        return
    row = con.execute("SELECT min(rowid) FROM calls WHERE contains(caller, chr(0)) OR contains(callee, chr(0))")
    first = row.fetchone()[0]
    line = None if first is None else _row_line(source, first, header_lines)
    raise CdrInputError(f"{f'line {line}: ' if line else ''}the caller or callee holds a NUL character", line)


def _detect(con: Any, params: CdrParameters, max_flagged: int) -> CdrReport:
    window = params.window_seconds
    floor_calls = max(params.min_unique_destinations, params.min_calls)
    con.execute("CREATE TEMP TABLE cw AS SELECT ch, w, count(*) AS calls FROM calls WHERE ok GROUP BY ch, w")
    records, rejected, first, last = con.execute(
        "SELECT count(*), count(*) FILTER (NOT ok), min(ts) FILTER (ok), max(ts) FILTER (ok) FROM calls"
    ).fetchone()
    callers, windows = con.execute("SELECT count(DISTINCT ch), count(*) FROM cw").fetchone()
    # The rows of candidate caller-windows, once (one scan of the table); the rest works on them alone.
    con.execute(
        f"""
        CREATE TEMP TABLE candidate_calls AS
        SELECT c.caller, c.w, c.callee, c.ts, c.dur FROM calls c
        SEMI JOIN (SELECT ch, w FROM cw WHERE calls >= {floor_calls}) k ON c.ch = k.ch AND c.w = k.w
        WHERE c.ok
        """
    )
    stats = con.execute(
        """
        SELECT caller, w, count(*) AS calls, count(DISTINCT callee) AS uniq, avg(dur) AS avg_dur,
               median(dur) AS median_dur
        FROM candidate_calls GROUP BY caller, w
        HAVING count(DISTINCT callee) >= ? AND avg(dur) <= ? AND count(*) >= ?
        """,
        [params.min_unique_destinations, params.max_avg_duration_seconds, params.min_calls],
    ).fetchall()
    by_caller: dict[str, list[tuple[float, Any]]] = {}
    for caller, w, calls, uniq, avg_dur, median_dur in stats:
        risk = risk_score(uniq, avg_dur, params)
        by_caller.setdefault(caller, []).append((risk, (w, calls, uniq, avg_dur, median_dur)))
    ranked = sorted(
        (
            (max(windows_, key=lambda x: (x[0], -x[1][0])), len(windows_), caller)
            for caller, windows_ in by_caller.items()
        ),
        key=lambda item: (-item[0][0], item[2]),
    )
    shown = ranked[:max_flagged]
    destinations = _first_destinations(con, [(caller, best[1][0]) for best, _, caller in shown])
    flagged = [
        FlaggedCaller(
            caller=caller,
            risk_score=risk,
            flagged_windows=count,
            evidence=Evidence(
                window_start=_iso(w * window),
                window_end=_iso((w + 1) * window),
                calls=calls,
                unique_destinations=uniq,
                avg_duration_seconds=round(avg_dur, 3),
                median_duration_seconds=round(median_dur, 3),
                first_destinations=destinations.get((caller, w), []),
            ),
        )
        for (risk, (w, calls, uniq, avg_dur, median_dur)), count, caller in shown
    ]
    totals = {
        "records": int(records),
        "rejected_rows": int(rejected),
        "callers": int(callers),
        "windows": int(windows),
        "flagged_callers": len(ranked),
        "flagged_windows": len(stats),
    }
    time_range = {"start": _iso(first) if first is not None else None, "end": _iso(last) if last is not None else None}
    return CdrReport(flagged, totals, params, time_range)


def _first_destinations(con: Any, keys: list[tuple[str, int]]) -> dict[tuple[str, int], list[str]]:
    """The first few distinct destinations (by call time) of each flagged caller-window shown."""
    if not keys:
        return {}
    rows = con.execute(
        f"""
        WITH shown AS (SELECT unnest(?::VARCHAR[]) AS caller, unnest(?::BIGINT[]) AS w),
        firsts AS (
            SELECT r.caller, r.w, r.callee, min(r.ts) AS first_at
            FROM candidate_calls r SEMI JOIN shown s ON r.caller = s.caller AND r.w = s.w
            GROUP BY ALL
        )
        SELECT caller, w, (list(callee ORDER BY first_at, callee))[1:{FIRST_DESTINATIONS}] FROM firsts GROUP BY ALL
        """,
        [[caller for caller, _ in keys], [w for _, w in keys]],
    ).fetchall()
    return {(caller, w): list(callees) for caller, w, callees in rows}


def _iso(epoch_seconds: int) -> str:
    """RFC 3339 with a four-digit year (glibc's strftime writes year 1 as "1")."""
    return (_EPOCH + timedelta(seconds=epoch_seconds)).isoformat().replace("+00:00", "Z")
