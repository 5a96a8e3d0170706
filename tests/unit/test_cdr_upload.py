"""The API side of a call-record upload, in-process: size limit from settings, spooling, cheap refusals."""

from __future__ import annotations

import gzip
import hashlib
import io
from pathlib import Path

import pytest

from app.cdr_input import cdr_spec, discard_spooled
from app.entries import EntryError
from config.catalog import load_catalog
from config.settings import load_settings

CSV = b"caller,callee,start_time,duration,extra\n1,2,2026-11-01T10:00:00Z,4,x\n"


def _settings(tmp_path: Path, **overrides: object):
    return load_settings(var_dir=tmp_path, max_cdr_bytes=4096, max_cdr_line_bytes=256, **overrides)


def _spec(tmp_path: Path, data: bytes, **fields: object):
    settings = _settings(tmp_path)
    args = {"filename": "c.csv", "columns": None, "parameters": None, "metadata": {}, "idempotency_key": None}
    return cdr_spec(load_catalog()["cdr_fraud"], io.BytesIO(data), settings=settings, **{**args, **fields})


def test_a_file_is_spooled_with_its_size_hash_and_format(tmp_path: Path) -> None:
    packed = gzip.compress(CSV)
    spec = _spec(tmp_path, packed, parameters={"min_calls": 3})
    described = spec.input["cdr"]
    spooled = tmp_path / "uploads" / described["file"]
    assert spooled.read_bytes() == packed and described["sha256"] == hashlib.sha256(packed).hexdigest()
    assert (described["format"], described["compression"], described["bytes"]) == ("csv", "gzip", len(packed))
    assert spec.input["parameters"]["min_calls"] == 3 and spec.input["parameters"]["min_unique_destinations"] == 50
    discard_spooled([spec], _settings(tmp_path))
    assert not spooled.exists()


@pytest.mark.parametrize(
    ("data", "fields", "status", "code"),
    [
        (CSV * 100, {}, 413, "input_too_large"),  # past ASSAY_MAX_CDR_BYTES (4096 here)
        (b"caller," + b"x" * 1000, {}, 422, "invalid_input"),  # first line past ASSAY_MAX_CDR_LINE_BYTES
        (CSV, {"columns": {"caller": "a_number"}}, 422, "invalid_input"),  # the mapped column is not there
        (CSV, {"parameters": {"max_avg_duration_seconds": "3"}}, 422, "invalid_parameters"),
        (b"", {}, 422, "empty_file"),
    ],
)
def test_refusals_leave_nothing_behind(tmp_path: Path, data: bytes, fields: dict, status: int, code: str) -> None:
    with pytest.raises(EntryError) as caught:
        _spec(tmp_path, data, **fields)
    assert (caught.value.status, caught.value.code) == (status, code)
    spool = tmp_path / "uploads"
    assert not spool.exists() or not any(spool.iterdir())


def test_a_spool_file_past_the_write_behind_step_keeps_every_byte(tmp_path: Path) -> None:
    """Writes past WRITE_BEHIND_BYTES start background syncs; the kept file is whole, a dropped one is gone."""
    from app.spool_upload import WRITE_BEHIND_BYTES, SpoolFile

    chunk = bytes(range(256)) * 4096  # 1 MiB
    count = WRITE_BEHIND_BYTES // len(chunk) * 2 + 3
    kept = SpoolFile(tmp_path, head_bytes=100)
    for _ in range(count):
        kept.write(chunk)
    final = tmp_path / "final.csv"
    kept.keep(final)
    kept.close()
    assert final.read_bytes() == chunk * count and kept.size == len(chunk) * count
    assert kept.sha256 == hashlib.sha256(chunk * count).hexdigest() and kept.head == chunk[:100]
    dropped = SpoolFile(tmp_path, head_bytes=100)
    for _ in range(count):
        dropped.write(chunk)
    dropped.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final.csv"]
