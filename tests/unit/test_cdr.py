"""The call-record detection as a library: reading, thresholds, windows, risk, bad files (DuckDB, real files)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from bench.cdr_data import generate, write
from models.cdr.detect import CdrSource, detect, mixed_line_endings, risk_score
from models.cdr.spec import CdrInputError, CdrParameters, column_map, sniff

COLUMNS = column_map(None)
DAY = 86_400


def _run(path: Path, params: CdrParameters | None = None, columns: dict[str, str] | None = None):
    cols = columns or COLUMNS
    sniffed = sniff(path.read_bytes()[:300_000], cols, max_line_bytes=65_536, complete=True)
    return detect(CdrSource(path, sniffed, cols), params or CdrParameters(), threads=1, memory_limit_mb=128)


def _csv(tmp_path: Path, rows: list[str], header: str = "caller,callee,start_time,duration") -> Path:
    path = tmp_path / "calls.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _burst(caller: str, n: int, start: int, duration: float, first_callee: int = 9000) -> list[str]:
    return [f"{caller},{first_callee + i},{start + i * 60},{duration}" for i in range(n)]


@pytest.fixture(scope="module")
def fixture_file(tmp_path_factory: pytest.TempPathFactory):
    columns, truth = generate(4000, sim_boxes=4, intensity=80, call_centres=2, auto_diallers=2, borderline=2, days=1)
    path = tmp_path_factory.mktemp("cdr") / "calls.csv.gz"
    write(columns, path)
    return path, truth


def test_the_generated_fixture_is_separated_exactly(fixture_file) -> None:
    path, truth = fixture_file
    report = _run(path)
    flagged = {f.caller for f in report.flagged_callers}
    assert flagged == set(truth.sim_boxes)  # precision and recall 1.0
    assert report.totals["records"] == truth.records
    risks = [f.risk_score for f in report.flagged_callers]
    assert risks == sorted(risks, reverse=True) and all(0.5 <= r <= 1 for r in risks)
    top = report.flagged_callers[0].evidence
    assert top.unique_destinations >= 50 and top.avg_duration_seconds <= 3.0
    assert len(top.first_destinations) == 5 and len(set(top.first_destinations)) == 5


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_semicolon_tab_and_pipe_separated_files_read_as_the_comma_one(fixture_file, tmp_path, delimiter) -> None:
    """Switch and billing exports are often `;` or `|` separated (and a `;` file has commas in its values
    here: a quoted field keeps them); the file was refused, its header read as one column."""
    path, truth = fixture_file
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    header, rows = lines[0], lines[1:]
    converted = [header.replace(",", delimiter)] + [
        row.replace(",", delimiter) if delimiter != ";" else _with_a_comma_value(row) for row in rows
    ]
    other = tmp_path / "calls.txt"
    other.write_text("\n".join(converted) + "\n")
    sniffed = sniff(other.read_bytes()[:300_000], COLUMNS, max_line_bytes=65_536, complete=True)
    assert sniffed.delimiter == delimiter and sniffed.header == tuple(header.split(","))
    comma, report = _run(path), _run(other)
    assert {f.caller for f in report.flagged_callers} == set(truth.sim_boxes)
    assert report.totals == comma.totals and [f.risk_score for f in report.flagged_callers] == [
        f.risk_score for f in comma.flagged_callers
    ]


@pytest.mark.parametrize("compressed", [False, True])
def test_a_file_mixing_line_endings_names_the_line_where_they_change(fixture_file, tmp_path, compressed) -> None:
    """Two exports joined (one from Windows): DuckDB's strict reader said only "the CSV Parser state
    machine reached an invalid state"; the error now says what is wrong and where."""
    path, _ = fixture_file
    lines = gzip.decompress(path.read_bytes()).splitlines()
    data = b"".join(line + b"\n" for line in lines[:1500]) + b"".join(line + b"\r\n" for line in lines[1500:])
    mixed = tmp_path / ("mixed.csv.gz" if compressed else "mixed.csv")
    mixed.write_bytes(gzip.compress(data) if compressed else data)
    sniffed = sniff(mixed.read_bytes()[:300_000], COLUMNS, max_line_bytes=65_536, complete=False)
    with pytest.raises(CdrInputError) as refused:
        detect(CdrSource(mixed, sniffed, COLUMNS), CdrParameters(), threads=1, memory_limit_mb=128)
    assert refused.value.row == 1501
    assert "mixes line endings" in refused.value.message and "line 1501" in refused.value.message
    assert mixed_line_endings(CdrSource(mixed, sniffed, COLUMNS), chunk_bytes=7) == 1501  # \r\n split by a read


def test_one_kind_of_line_ending_throughout_is_not_mixed(fixture_file, tmp_path) -> None:
    path, truth = fixture_file
    crlf = tmp_path / "windows.csv"
    crlf.write_bytes(gzip.decompress(path.read_bytes()).replace(b"\n", b"\r\n"))
    sniffed = sniff(crlf.read_bytes()[:300_000], COLUMNS, max_line_bytes=65_536, complete=False)
    assert mixed_line_endings(CdrSource(crlf, sniffed, COLUMNS), chunk_bytes=7) is None
    assert _run(crlf).totals["records"] == truth.records


def _with_a_comma_value(row: str) -> str:
    """A `;`-separated record whose last column (call_type) is quoted and holds a comma."""
    *fields, last = row.split(",")
    return ";".join([*fields, f'"{last}, outgoing"'])


def test_a_header_no_delimiter_splits_into_our_columns_reports_the_comma_split(tmp_path: Path) -> None:
    path = _csv(tmp_path, ["1:2:3:4"], header="caller:callee:start_time:duration")
    with pytest.raises(CdrInputError, match="missing"):
        sniff(path.read_bytes(), COLUMNS, max_line_bytes=65_536, complete=True)


def test_lower_thresholds_catch_the_near_misses(fixture_file) -> None:
    path, truth = fixture_file
    report = _run(path, CdrParameters(min_unique_destinations=40))
    assert {f.caller for f in report.flagged_callers} == set(truth.sim_boxes) | set(truth.borderline)
    report = _run(path, CdrParameters(max_avg_duration_seconds=1000))
    assert set(truth.call_centres) <= {f.caller for f in report.flagged_callers}


def test_thresholds_are_inclusive_and_min_calls_applies(tmp_path: Path) -> None:
    path = _csv(tmp_path, _burst("111", 50, 1_800_000_000, 3.0))
    assert [f.caller for f in _run(path).flagged_callers] == ["111"]
    assert _run(path).flagged_callers[0].risk_score == 0.5
    assert _run(path, CdrParameters(min_calls=51)).flagged_callers == []
    assert _run(path, CdrParameters(max_avg_duration_seconds=2.9)).flagged_callers == []


def test_windows_are_tumbling_on_the_utc_epoch(tmp_path: Path) -> None:
    midnight = 1_800_057_600  # a UTC midnight
    rows = _burst("222", 30, midnight - 30 * 60, 1.0) + _burst("222", 30, midnight, 1.0, 8000)  # 30 either side
    path = _csv(tmp_path, rows)
    assert _run(path).flagged_callers == []  # split by the day boundary
    flagged = _run(path, CdrParameters(time_window_hours=72)).flagged_callers  # 72 h windows: no boundary there
    assert [f.evidence.calls for f in flagged] == [60]
    assert flagged[0].evidence.window_start.endswith("T00:00:00Z")


def test_risk_grows_past_the_thresholds() -> None:
    params = CdrParameters()
    assert risk_score(50, 3.0, params) == 0.5
    assert risk_score(100, 3.0, params) < risk_score(400, 3.0, params) < risk_score(400, 0.5, params) < 1


def test_iso_times_json_lines_mapping_and_rejected_rows(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    lines = [
        f'{{"a": "333", "b": "{i}", "t": "2026-01-01T{i // 60:02d}:{i % 60:02d}:00+00:00", "d": "1.5", "x": 1}}'
        for i in range(60)
    ]
    lines.append('{"a": "", "b": "1", "t": 1767225600, "d": 2}')  # no caller: rejected, counted
    path.write_text("\n".join(lines) + "\n")
    mapping = column_map({"caller": "a", "callee": "b", "start_time": "t", "duration": "d"})
    report = _run(path, columns=mapping)
    assert [f.caller for f in report.flagged_callers] == ["333"]
    assert report.totals["rejected_rows"] == 1 and report.totals["records"] == 61


@pytest.mark.parametrize(
    ("rows", "line", "words"),
    [
        (["1,2,1800000000,3", "1,2,yesterday,3"], 3, "start_time"),
        (["1,2,1800000000,3", "1,2,1800000000,-4"], 3, "negative"),
        (["1,2,1800000000,3", "1,2,1800000000,3,9"], 3, "Expected Number of Columns"),
        (["1,2,1800000000,3", "1,2,1800000000,abc"], 3, "duration"),
        (["1,2,1800000000,3", "1," + "9" * 70_000 + ",1800000000,3"], 3, "longer"),
        # Times no report can write (past 64 bits, not a number, after year 9999): the line, not an OSError.
        (["1,2,1800000000,3", "1,2,9000000000000000000,3"], 3, "start time"),
        (["1,2,1800000000,3", "1,2,1e29,3"], 3, "start time"),
        (["1,2,1800000000,3", "1,2,nan,3"], 3, "start time"),
        (["1,2,1800000000,3", "1,2,-100000000000000,3"], 3, "start time"),
    ],
)
def test_bad_rows_name_their_line(tmp_path: Path, rows: list[str], line: int, words: str) -> None:
    with pytest.raises(CdrInputError) as caught:
        _run(_csv(tmp_path, rows))
    assert caught.value.row == line and words in caught.value.message, caught.value.message


def test_sniff_refuses_cheaply(tmp_path: Path) -> None:
    with pytest.raises(CdrInputError, match="missing: duration"):
        sniff(b"caller,callee,start_time\n1,2,3\n", COLUMNS, max_line_bytes=1024)
    with pytest.raises(CdrInputError, match="longer than 1024"):
        sniff(b"x" * 5000, COLUMNS, max_line_bytes=1024)
    with pytest.raises(CdrInputError, match="longer than 1024"):  # a gzip bomb of one line stops at the bound
        sniff(gzip.compress(b"y" * 10_000_000), COLUMNS, max_line_bytes=1024)
    sniffed = sniff(
        gzip.compress(b"caller,callee,start_time,duration\n1,2,1800000000,3\n"), COLUMNS, max_line_bytes=1024
    )
    assert (sniffed.format, sniffed.compression, sniffed.time_format) == ("csv", "gzip", "epoch")


def test_json_lines_with_unreadable_times_name_the_files_line_not_the_querys(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    good = '{"caller": "1", "callee": "2", "start_time": 1800000000, "duration": 1}'
    for bad in ('"NaN"', "1.23e29"):
        lines = [good] * 3 + [good.replace("1800000000", bad)] + [good] * 20
        path.write_text("\n".join(lines) + "\n")
        with pytest.raises(CdrInputError) as caught:
            _run(path)
        assert caught.value.row == 4 and caught.value.message.startswith("line 4:"), caught.value.message


_RECORD = '{"caller": "1", "callee": "2", "start_time": 1800000000, "duration": 1}'


@pytest.mark.parametrize(
    ("lines", "line"),
    [
        ([_RECORD, '{"caller": "1",,}', _RECORD], 2),  # DuckDB said "line 3": one past the bad record
        ([_RECORD] * 4 + ['{"caller": "1"'], 5),  # the last line, cut short
        ([_RECORD, "", "   ", '{"caller": "1",,}'], 4),  # blank lines hold no record but are lines
        ([_RECORD, "", "[1, 2]", _RECORD], 3),  # not an object: DuckDB counted records, not lines
        ([_RECORD] * 2999 + ["{,}"] + [_RECORD] * 10, 3000),
    ],
)
@pytest.mark.parametrize("compressed", [False, True])
def test_malformed_json_lines_name_the_files_line(tmp_path: Path, lines: list[str], line: int, compressed) -> None:
    data = ("\n".join(lines) + "\n").encode()
    path = tmp_path / "calls.jsonl"
    path.write_bytes(gzip.compress(data) if compressed else data)
    with pytest.raises(CdrInputError) as caught:
        _run(path)
    assert caught.value.row == line and f"line {line}:" in caught.value.message, caught.value.message
    assert f"line {line + 1}" not in caught.value.message, caught.value.message


@pytest.mark.parametrize("row", ["1\x002,3,1800000000,3", "1,\x00,1800000000,3"])
def test_a_nul_in_a_number_names_its_line(tmp_path: Path, row: str) -> None:
    """PostgreSQL's jsonb cannot hold \\u0000: a flagged caller or a destination with one made the result
    unwritable, and the job stayed running until its lease ran out, attempt after attempt. (Every caller is
    flagged here.)"""
    with pytest.raises(CdrInputError) as caught:
        _run(_csv(tmp_path, ["1,2,1800000000,3", "1,3,1800000000,3", row]), CdrParameters(min_unique_destinations=1))
    assert caught.value.row == 4 and "NUL" in caught.value.message, caught.value.message


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        (_RECORD.replace("1800000000", '"not a time"'), "cannot be read"),
        (_RECORD.replace('"2"', '"2\\u0000"'), "NUL"),
    ],
)
def test_a_bad_json_value_after_blank_lines_names_the_files_line(tmp_path: Path, bad: str, words: str) -> None:
    """The value checks after the read (an unreadable time, a NUL in a number) named the row's position among
    the records, not the file's line: blank lines hold no record, so the line named was one too early per
    blank line before it (here: line 3 for a bad line 5), as the reader's own errors once were."""
    path = tmp_path / "calls.jsonl"
    path.write_text("\n".join([_RECORD, "", "  ", _RECORD, bad, _RECORD]) + "\n")
    with pytest.raises(CdrInputError) as caught:
        _run(path, CdrParameters(min_unique_destinations=1, min_calls=1))
    assert caught.value.row == 5 and caught.value.message.startswith("line 5:"), caught.value.message
    assert words in caught.value.message, caught.value.message


def test_the_earliest_and_latest_times_are_written_as_rfc3339(tmp_path: Path) -> None:
    report = _run(_csv(tmp_path, ["1,2,0001-02-01T00:00:00Z,3", "1,3,9999-11-29T00:00:00Z,3"]))
    assert report.time_range == {"start": "0001-02-01T00:00:00Z", "end": "9999-11-29T00:00:00Z"}


def test_a_first_record_without_a_start_time_does_not_decide_the_time_format(tmp_path: Path) -> None:
    report = _run(_csv(tmp_path, ["c0,1,,1", "", "1,2,1800000000,3", "1,3,1800000060,3"]))
    assert report.totals["rejected_rows"] == 1 and report.totals["records"] == 3
    assert report.time_range["start"] == "2027-01-15T08:00:00Z"


@pytest.mark.parametrize(
    ("header", "columns", "words"),
    [
        ("caller,Caller,callee,start_time,duration", None, "twice"),
        ("caller,,callee,start_time,duration", None, "column 2 has no name"),
    ],
)
def test_headers_the_reader_would_refuse_are_refused_by_sniff(header: str, columns, words: str) -> None:
    with pytest.raises(CdrInputError, match=words):
        sniff(f"{header}\n1,x,2,1700000000,5\n".encode(), column_map(columns), max_line_bytes=1024)


@pytest.mark.parametrize(
    ("header", "rows"),
    [
        ("Caller,CALLEE,Start_Time,Duration", ["1,2,1800000000,3", "1,3,1800000060,3"]),  # exports capitalise
        ("caller,callee,start_time,duration,", ["1,2,1800000000,3,", "1,3,1800000060,3,"]),  # ends with a delimiter
        ("Caller;Callee;Start_Time;Duration;", ["1;2;1800000000;3;", "1;3;1800000060;3;"]),
    ],
    ids=["capitalised", "trailing-delimiter", "both-semicolon"],
)
def test_headers_common_exports_write_are_read(tmp_path: Path, header: str, rows: list[str]) -> None:
    """DuckDB's CSV reader matches names ignoring case, but the sniffer compared them exactly: `Caller` was
    refused as missing `caller`. A delimiter at the end of every line made an unnamed last column, refused."""
    report = _run(_csv(tmp_path, rows, header=header), CdrParameters(min_unique_destinations=1, min_calls=1))
    assert report.totals["records"] == 2 and report.totals["rejected_rows"] == 0, report.totals
    assert [f.caller for f in report.flagged_callers] == ["1"], report.flagged_callers


def test_json_keys_are_matched_exactly_as_the_json_reader_does() -> None:
    with pytest.raises(CdrInputError, match="missing: caller"):
        sniff(b'{"Caller":"1","callee":"2","start_time":1800000000,"duration":3}\n', COLUMNS, max_line_bytes=1024)


def test_a_first_json_record_without_a_field_is_a_rejected_row_not_a_refused_file(tmp_path: Path) -> None:
    """JSON writers leave empty fields out: a first record without `duration` refused the whole file at
    submission, while the same record on line 2 was one rejected row."""
    lines = ['{"caller":"1","callee":"2","start_time":1800000000}'] + [
        f'{{"caller":"1","callee":"{n}","start_time":1800000060,"duration":3}}' for n in (3, 4)
    ]
    path = tmp_path / "calls.jsonl"
    path.write_text("\n".join(lines) + "\n")
    report = _run(path, CdrParameters(min_unique_destinations=1, min_calls=1))
    assert report.totals["records"] == 3 and report.totals["rejected_rows"] == 1, report.totals
    with pytest.raises(CdrInputError, match="missing: duration"):  # a key no line has is still refused
        sniff("\n".join(lines[:1] * 3).encode() + b"\n", COLUMNS, max_line_bytes=1024, complete=True)


def test_two_of_our_columns_cannot_read_one_column_of_the_file() -> None:
    """With duration also read from start_time, DuckDB refused its own query (a Binder Error quoting our SQL)."""
    for mapping in ({"duration": "start_time"}, {"caller": "Callee"}):
        with pytest.raises(ValueError, match="to the same column"):
            column_map(mapping)


def test_a_column_mapped_onto_one_of_another_type_names_the_line(tmp_path: Path) -> None:
    path = _csv(tmp_path, ["1,2,2026-01-01T00:00:00Z,3"])
    with pytest.raises(CdrInputError, match=r"line 2: .*cannot read") as caught:
        _run(path, columns=column_map({"duration": "start_time", "start_time": "duration"}))
    assert "LINE" not in caught.value.message and "SELECT" not in caught.value.message, caught.value.message


def test_parameters_resolve_over_catalog_defaults() -> None:
    defaults = {"time_window_hours": 24, "min_unique_destinations": 50, "max_avg_duration_seconds": 3.0}
    params = CdrParameters.resolve({"min_unique_destinations": 10}, defaults)
    assert (params.min_unique_destinations, params.time_window_hours, params.window_seconds) == (10, 24.0, DAY)
    for bad in ({"min_unique_destinations": 1.5}, {"bogus": 1}, {"time_window_hours": -1}, {"min_calls": True}):
        with pytest.raises(ValueError):
            CdrParameters.resolve(bad, defaults)
    for huge in (10**400, -(10**309)):  # JSON integers beyond a float's range still get a ValueError's message
        with pytest.raises(ValueError, match=r"must be from .* got a number beyond 1e300"):
            CdrParameters.resolve({"min_calls": huge}, defaults)


@pytest.mark.parametrize(
    "head",
    [
        b"caller,callee,start_time,duration\n111,222,20260101,1\n",
        b'{"caller":"1","callee":"2","start_time":20260101,"duration":1}\n',
    ],
)
def test_a_date_without_separators_is_refused_not_read_as_1970(head: bytes) -> None:
    """`20260101` matched the epoch pattern: every call landed on 1970-08-23, windows and all, with no error."""
    with pytest.raises(CdrInputError, match="YYYYMMDD"):
        sniff(head, COLUMNS, max_line_bytes=1024, complete=True)


def test_epoch_seconds_of_today_are_still_epoch() -> None:
    sniffed = sniff(b"caller,callee,start_time,duration\n111,222,1796685515,1\n", COLUMNS, max_line_bytes=1024)
    assert sniffed.time_format == "epoch"


def test_a_spill_folder_that_cannot_be_made_leaves_no_held_lock(tmp_path: Path, monkeypatch) -> None:
    """A full disk at the folder's mkdir left its flocked lock file open for the worker's life: no clean-up
    could take it, and each failed run added another descriptor."""
    import errno
    import os

    from models.cdr import detect as detect_module

    real_mkdir = Path.mkdir

    def full_disk(self: Path, *args, **kwargs) -> None:
        if self.name.startswith("run-"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", full_disk)
    descriptors = len(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError, match="No space"):
        detect_module._own_temp_dir(tmp_path / "spill")
    assert list((tmp_path / "spill").iterdir()) == []
    assert len(os.listdir("/proc/self/fd")) == descriptors
