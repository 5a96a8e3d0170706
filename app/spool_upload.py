"""Large multipart file parts written straight into the upload folder, hashed as they arrive.

Why: a call-record file used to be parsed into a temporary file by werkzeug and then copied into the
upload folder with its sha256 computed on the way: every byte was written twice and read once more.
Here the form parser's stream factory hands out a `SpoolFile` that lives in the upload folder itself, so
accepting the file is an fsync and a rename (same folder, same filesystem). Small bodies keep werkzeug's
in-memory default. A part that does not become a job (audio, a rejected request) is deleted when the
request closes its files; a crash in between leaves an `.incoming-*` file to the upload sweep.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from typing import IO, Any

from flask import Request, current_app
from werkzeug.formparser import FormDataParser, MultiPartParser, default_stream_factory

from app.offload import in_background
from models.cdr.spec import head_bytes

#: Bodies at most this large are parsed into memory as before.
SPOOL_ABOVE_BYTES = 1 << 20
#: The multipart parser's read size (werkzeug's default is 64 KiB; see `LargeReadFormDataParser`): the
#: largest recv() gunicorn makes for a body.
PARSER_READ_BYTES = 1 << 20
#: The largest non-file form field; also the most werkzeug's multipart decoder buffers, so it must hold a
#: read and what is left of the previous one (Flask's default, 500 kB, is smaller than a read).
FORM_FIELD_BYTES = 2 * PARSER_READ_BYTES
#: Written data is handed to the disk (fdatasync on a real thread) every this many bytes, so the fsync
#: that accepts the file waits for the last few MiB only, not the whole file.
WRITE_BEHIND_BYTES = 8 << 20


class SpoolFile:
    """A write-then-read file in the upload folder that keeps the sha256, size and first bytes of what
    was written. Deleted on close unless `keep` renamed it.

    Every `WRITE_BEHIND_BYTES` the data so far is handed to the disk by an fdatasync on a real thread,
    overlapping the rest of the upload: the fsync of `keep` then waits for the tail only (61 MiB: upload
    0.42 → 0.33 s, median of 12; fsync of the whole file alone is ~0.085 s on this disk).

    (Hashing and writing on a real thread while the greenlet parses the next chunk was tried: no gain on
    the 2-core machine, where the client, the parser and that thread share the cores.)
    """

    def __init__(self, folder: Path, head_bytes: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f".incoming-{secrets.token_hex(8)}"
        self._file: IO[bytes] = self.path.open("w+b")
        self._digest = hashlib.sha256()
        self._want_head = head_bytes
        self.head = b""
        self.size = 0
        self.kept = False
        self._synced = 0
        self._syncing: Any = None

    def write(self, data: bytes) -> int:
        self._digest.update(data)
        if len(self.head) < self._want_head:
            self.head += bytes(data[: self._want_head - len(self.head)])
        self.size += len(data)
        written = self._file.write(data)
        if self.size - self._synced >= WRITE_BEHIND_BYTES and (self._syncing is None or self._syncing.ready()):
            self._synced = self.size
            self._file.flush()
            # On its own descriptor: the file may be closed (a rejected upload) while the sync still runs.
            self._syncing = in_background(_sync_and_close, os.dup(self._file.fileno()))
        return written

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def keep(self, final: Path) -> None:
        """Make the file durable under its final name (the row that names it commits after this)."""
        self._file.flush()
        os.fsync(self._file.fileno())  # covers every byte, a write-behind sync still running included
        os.replace(self.path, final)
        self.path, self.kept = final, True

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def flush(self) -> None:
        self._file.flush()

    @property
    def closed(self) -> bool:
        return self._file.closed

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
        if not self.kept:
            self.path.unlink(missing_ok=True)

    def __del__(self) -> None:  # a parse that failed half-way never hands its streams to anyone
        self.close()

    def __getattr__(self, name: str) -> Any:  # readline, readinto, … for readers of an audio part
        return getattr(self._file, name)


def _sync_and_close(fd: int) -> None:
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


class LargeReadFormDataParser(FormDataParser):
    """werkzeug's form parser reading the body 1 MiB at a time instead of 64 KiB.

    Measured (py-spy on a gunicorn gevent worker, 61 MiB upload): gunicorn's body reader receives up to
    1 MiB per recv() and, on every smaller read, copies what is left of it into a new buffer; at 64 KiB
    reads that copying was ~45 % of the request's time. Reads as large as its receives copy little.
    """

    def _parse_multipart(
        self, stream: IO[bytes], mimetype: str, content_length: int | None, options: dict[str, str]
    ) -> Any:
        parser = MultiPartParser(
            stream_factory=self.stream_factory,
            max_form_memory_size=FORM_FIELD_BYTES,
            max_form_parts=self.max_form_parts,
            cls=self.cls,
            buffer_size=PARSER_READ_BYTES,
        )
        boundary = options.get("boundary", "").encode("ascii")
        if not boundary:
            raise MalformedFormError("the multipart body's Content-Type names no boundary")
        try:
            form, files = parser.parse(stream, boundary, content_length)
        except ValueError as exc:  # werkzeug would drop the whole form silently: a 422 about a field that was sent
            raise MalformedFormError(f"the multipart body does not parse: {exc}") from None
        return stream, form, files


class MalformedFormError(Exception):
    """A multipart body that cannot be parsed (no boundary, no closing boundary, cut short): a 400."""


class BodyCutShortError(Exception):
    """The client closed its side before sending the `Content-Length` it declared."""

    def __init__(self, declared: int, received: int) -> None:
        super().__init__(f"the request body ended after {received} of its declared {declared} bytes (Content-Length)")
        self.declared, self.received = declared, received


class BodyTimeoutError(Exception):
    """The client sent nothing of its body for `ASSAY_API_READ_TIMEOUT_SECONDS` (the socket's timeout)."""

    def __init__(self) -> None:
        super().__init__("the request body stalled: nothing of it arrived within the server's read timeout")


class _WholeBody:
    """`wsgi.input` that raises `BodyCutShortError` where the body ends before its Content-Length, and
    `BodyTimeoutError` where the client stops sending (the socket timeout set in app/gunicorn_worker.py).

    gunicorn's reader returns b"" at the client's end of stream as if the body were complete, and werkzeug's
    reader, limited by `max_content_length` rather than the declared length, takes that as the end: a client
    that disconnected mid-upload got its truncated call-record file (or JSON that still parsed) made a job.
    werkzeug's reader also takes a socket error (the timeout) for a disconnect, with a message that says not."""

    def __init__(self, stream: Any, declared: int | None) -> None:
        self._stream, self._declared, self._received = stream, declared, 0

    def _count(self, read: Any, size: int | None) -> bytes:
        try:
            data: bytes = read(size)
        except TimeoutError:
            raise BodyTimeoutError() from None
        self._received += len(data)
        if not data and size != 0 and self._declared is not None and self._received < self._declared:
            raise BodyCutShortError(self._declared, self._received)
        return data

    def read(self, size: int | None = None) -> bytes:
        return self._count(self._stream.read, size)

    def readline(self, size: int | None = None) -> bytes:
        return self._count(self._stream.readline, size)

    def __iter__(self) -> Any:
        return iter(self.readline, b"")

    def __getattr__(self, name: str) -> Any:
        if name == "readinto":  # every read goes through `read`, counted
            raise AttributeError(name)
        return getattr(self._stream, name)


class SpoolingRequest(Request):
    """Flask's request, with large file parts spooled into the upload folder (see the module doc), and a body
    cut short of its Content-Length or stalled refused (`_WholeBody`)."""

    form_data_parser_class = LargeReadFormDataParser

    def __init__(self, environ: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        declared = environ.get("CONTENT_LENGTH", "")
        if "wsgi.input" in environ and not isinstance(environ["wsgi.input"], _WholeBody):
            environ["wsgi.input"] = _WholeBody(environ["wsgi.input"], int(declared) if declared.isdigit() else None)
        super().__init__(environ, *args, **kwargs)

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        if total_content_length is not None and total_content_length <= SPOOL_ABOVE_BYTES:
            return default_stream_factory(total_content_length, content_type, filename, content_length)
        settings = current_app.extensions["assay"].settings
        return SpoolFile(settings.cdr_upload_dir, head_bytes(settings.max_cdr_line_bytes))  # type: ignore[return-value]
