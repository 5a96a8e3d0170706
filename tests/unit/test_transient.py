"""Which errors hand a job back for another attempt instead of failing it (models.transient)."""

from __future__ import annotations

import errno

import pytest

from models.transient import is_transient


def _raised_from(cause: BaseException) -> RuntimeError:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise RuntimeError("the engine gave up") from inner
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize(
    "exc",
    [
        MemoryError(),
        OSError(errno.ENOSPC, "No space left on device"),
        OSError(errno.EDQUOT, "Disk quota exceeded"),
        OSError(errno.EMFILE, "Too many open files"),
        _raised_from(MemoryError()),
    ],
)
def test_resources_that_come_back_are_transient(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("input.text must be a string"),
        RuntimeError("CUDA error: device-side assert triggered"),
        OSError(errno.ENOENT, "No such file or directory"),
        OSError(errno.EFBIG, "File too large"),  # the same file fails the same way next time
        _raised_from(KeyError("label")),
    ],
)
def test_errors_of_the_input_or_the_code_are_not(exc: BaseException) -> None:
    assert not is_transient(exc)


def test_torch_out_of_memory_is_transient() -> None:
    import torch

    assert is_transient(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))


def test_duckdb_out_of_memory_is_transient_and_its_input_errors_are_not() -> None:
    import duckdb

    con = duckdb.connect(config={"memory_limit": "1MB", "threads": 1, "temp_directory": ""})
    try:
        with pytest.raises(duckdb.Error) as out_of_memory:
            con.execute("SELECT i % 100000 AS k, list(i) FROM range(3000000) t(i) GROUP BY k").fetchall()
        with pytest.raises(duckdb.Error) as conversion:
            con.execute("SELECT 'x'::INTEGER").fetchall()
    finally:
        con.close()
    assert type(out_of_memory.value).__name__ == "OutOfMemoryException"
    assert is_transient(out_of_memory.value)
    assert not is_transient(conversion.value)
