"""`assay-health` (python -m workers.health [KIND]): the image's HEALTHCHECK, one probe per role.

One image runs every role, so the check first learns which: from its argument, else from the ASSAY_ROLE
that the role entry point put in PID 1's environment, else from PID 1's command line matched against
the process table (the same argv the entry point exec'd). Each
probe is cheap and local: the API's /health, a worker's metrics port (served once its models are
loaded), Flower's port, and a Celery ping addressed to this node for the maintenance and webhook
workers (their pool must answer, not just their process exist). Exit 0 healthy, 1 not.
"""

from __future__ import annotations

import socket
import sys
import urllib.request
from pathlib import Path
from typing import get_args

from config import Settings, get_settings
from config.settings import run_command
from workers.processes import ProcessKind, ProcessSpec, role_process

TIMEOUT_SECONDS = 5.0


def _shape(args: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Arguments without the Celery node name (`-n gpu1@%h` and `-n cpu0@%h` are one kind)."""
    return tuple("NODE" if i and args[i - 1] == "-n" else a for i, a in enumerate(args))


def kind_of(cmdline: list[str], specs: list[ProcessSpec]) -> ProcessKind | None:
    """The process-table kind whose arguments PID 1 runs (its argv after the interpreter)."""
    if len(cmdline) == 4 and cmdline[1:3] == ["-m", "workers.role"]:  # a supervisor of several GPU workers
        kind = cmdline[3]
        return kind if kind in get_args(ProcessKind) else None  # type: ignore[return-value]
    args = _shape(cmdline[1:])
    for spec in specs:
        if args == _shape(spec.args):
            return spec.kind
    return None


def _local(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    return ("127.0.0.1" if host in ("", "0.0.0.0", "[::]") else host.strip("[]")), int(port)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as answer:
        return 200 <= answer.status < 300


def _port_open(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=TIMEOUT_SECONDS):
        return True


def _celery_ping(node: str, settings: Settings) -> bool:
    """A broadcast ping answered by this node's own consumer: its pool is alive, not just its process.
    A bare Celery app is enough (no tasks registered): the check must stay cheap."""
    from broker.celery import make_celery

    replies = make_celery(settings).control.ping(destination=[node], timeout=TIMEOUT_SECONDS)
    return any(node in reply for reply in replies)


def probe(kind: ProcessKind, settings: Settings) -> bool:
    host = socket.gethostname()
    if kind == "api":
        address, port = _local(settings.api_bind)
        return _http_ok(f"http://{address}:{port}/health")
    if kind == "worker":
        if settings.worker_metrics_port:
            return _http_ok(f"http://127.0.0.1:{settings.worker_metrics_port}/metrics")
        return _celery_ping(f"cpu0@{host}", settings)
    if kind == "tabular":  # its port is the table's (past the GPU workers'), not the container's setting
        (spec,) = role_process("tabular", settings, [], 1)
        port = int(spec.env.get("ASSAY_WORKER_METRICS_PORT", "0"))
        return _http_ok(f"http://127.0.0.1:{port}/metrics") if port else _celery_ping(f"tabular@{host}", settings)
    if kind == "flower":
        return _port_open("127.0.0.1", settings.flower_port)
    if kind in ("maintenance", "webhooks"):
        return _celery_ping(f"{kind}@{host}", settings)
    return True  # migrate: a one-shot whose exit status is its health


def role_from_environ(raw: bytes) -> ProcessKind | None:
    """ASSAY_ROLE from a /proc/PID/environ blob (NUL-separated KEY=VALUE)."""
    for item in raw.split(b"\0"):
        key, _, value = item.partition(b"=")
        if key == b"ASSAY_ROLE" and value.decode(errors="replace") in get_args(ProcessKind):
            return value.decode()  # type: ignore[return-value]
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    settings = get_settings()
    kinds = get_args(ProcessKind)
    if argv and argv[0] in kinds:
        kind: ProcessKind | None = argv[0]  # type: ignore[assignment]
    else:
        try:
            kind = role_from_environ(Path("/proc/1/environ").read_bytes())
        except OSError:  # another user's PID 1: fall back to its command line
            kind = None
        if kind is None:
            cmdline = Path("/proc/1/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
            specs = [spec for k in kinds for spec in role_process(k, settings, [], 1)]
            kind = kind_of(cmdline, specs)
    if kind is None:
        print("assay-health: PID 1 runs no role of the process table", file=sys.stderr)
        return 1
    try:
        healthy = probe(kind, settings)
    except OSError as exc:
        print(f"assay-health: {kind}: {exc}", file=sys.stderr)
        return 1
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(run_command(main))
