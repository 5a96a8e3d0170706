"""Errors that say "not now" rather than "never": the job goes back for another attempt instead of failing.

A full disk under DuckDB's spill files, a MemoryError or an accelerator out of memory while another
batch held it, a process out of file descriptors: the same job succeeds once the pressure is gone, so
failing it for good (as a model that chokes on its input must be) would turn a passing condition into
lost work. A worker that crashes outright already gets this treatment from the sweeper; this is the
same for the errors a worker survives. Types are matched by module and name, so neither torch nor
duckdb is imported to ask.
"""

from __future__ import annotations

import errno

#: errno values of resources that come back: space, quota, memory, descriptors.
TRANSIENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.ENOMEM, errno.EMFILE, errno.ENFILE})
#: Out-of-memory exception names of the engines' libraries (torch.cuda.OutOfMemoryError, duckdb's).
_OUT_OF_MEMORY = frozenset({"OutOfMemoryError", "OutOfMemoryException"})
_LIBRARIES = frozenset({"torch", "duckdb", "_duckdb"})
#: What DuckDB's IOException says when a spill or temp file hits a full disk or quota (strerror text).
_DISK_FULL = ("No space left on device", "Disk quota exceeded")


def is_transient(exc: BaseException) -> bool:
    """True if `exc`, or an exception it was raised from, is a resource running out rather than bad input."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _transient_itself(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _transient_itself(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS:
        return True
    library = type(exc).__module__.split(".")[0]
    if library not in _LIBRARIES:
        return False
    return type(exc).__name__ in _OUT_OF_MEMORY or any(text in str(exc) for text in _DISK_FULL)
