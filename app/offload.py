"""CPU-bound request work (probing an upload) off the gevent event loop.

Under gunicorn's gevent workers, Python code that runs for a while stalls every other request of
that worker. Such work runs in gevent's pool of real threads instead: the interpreter switches
threads every few milliseconds, so the loop keeps serving. Outside gevent it simply runs here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def under_gevent() -> bool:
    """Whether this process runs on gevent's cooperative loop (gunicorn's gevent workers)."""
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a pinned dependency
        return False
    return bool(monkey.is_module_patched("socket"))


def off_loop(work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`work(*args, **kwargs)` on a real thread; what it raises is raised here, in the request's greenlet.

    The exception is carried back as a value: gevent's pool prints the traceback of every exception a
    task raises, and an upload refused as invalid audio (the client's mistake, a 422) wrote ~30 lines of
    non-JSON to the API's log each time."""
    if not under_gevent():
        return work(*args, **kwargs)
    import gevent

    def guarded() -> tuple[bool, Any]:
        try:
            return True, work(*args, **kwargs)
        except Exception as exc:  # re-raised below, in the caller's greenlet
            return False, exc

    done, value = gevent.get_hub().threadpool.apply(guarded)
    if not done:
        raise value
    return value


class _Done:
    """The result of work that ran at once (outside gevent), shaped like gevent's AsyncResult."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def ready(self) -> bool:
        return True

    def get(self) -> Any:
        return self.value


def in_background(work: Callable[..., Any], *args: Any) -> Any:
    """Start blocking work (an fdatasync) on gevent's real threads and return at once; `.get()` waits.
    Outside gevent it runs here and now."""
    if not under_gevent():
        return _Done(work(*args))
    import gevent

    return gevent.get_hub().threadpool.spawn(work, *args)
