"""`make run`: the whole service on one machine, with everything it needs.

Finds or starts PostgreSQL and Redis (deploy.local.services), migrates, makes sure a development
API key exists (kept in var/dev-api-key), then supervises gunicorn, the inference worker(s),
the maintenance worker with the sweeper's beat, and Flower. Ctrl-C stops all of it, including
any database or Redis it started.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import re
import signal
import socket
import sys
import time
import urllib.request
from pathlib import Path

from config.host import usable_cpus
from config.settings import ROOT, Settings, load_settings, run_command
from deploy.local.services import running
from store.db import make_engine
from store.keys import create_key, tenant_for_key
from store.migrate import upgrade
from workers.launch import detect_gpus
from workers.processes import service_processes
from workers.supervisor import Supervisor

DEV_TENANT = "dev"


def dev_api_key(database_url: str, key_file: Path) -> str:
    """The key in var/dev-api-key if it still works, else a new one for tenant `dev`."""
    engine = make_engine(load_settings(database_url=database_url), pool_size=1)
    try:
        with engine.begin() as conn:
            if key_file.exists():
                key = key_file.read_text().strip()
                if tenant_for_key(conn, key):
                    return key
            key = create_key(conn, DEV_TENANT, "make run").secret
    finally:
        engine.dispose()
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    return key


def dev_secrets_key(key_file: Path) -> str:
    """The development Fernet key in var/secrets-key (made once): encrypts webhook secrets at rest."""
    from cryptography.fernet import Fernet

    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_text(Fernet.generate_key().decode() + "\n")
        key_file.chmod(0o600)
    return key_file.read_text().strip()


def local_webhooks(settings: Settings) -> bool:
    """Whether webhooks may reach this machine and its network: yes when the API only listens on loopback
    and nobody set ASSAY_WEBHOOK_ALLOW_PRIVATE. Only someone on this machine can submit a job then, and
    they can reach those addresses anyway; a receiver on localhost is how webhooks are tried out."""
    if "webhook_allow_private" in settings.model_fields_set:
        return False
    return _loopback(settings.api_bind)


def _loopback(bind: str) -> bool:
    """Whether `host:port` listens on loopback only."""
    host = bind.rsplit(":", 1)[0].strip("[]")
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host).is_loopback
    return host == "localhost"


def wait_healthy(url: str, supervisor: Supervisor, timeout: float = 90) -> str | None:
    """Wait until the API answers; the name of a child that exited first, or None.

    The banner is printed only when this returns None: it said "Assay is running" above the
    supervisor's own "api exited with 1" when port 8000 was taken."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in supervisor.children:
            if child.popen is not None and child.popen.poll() is not None:
                return child.name
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return None
        time.sleep(0.3)
    print(f"[run] {url} did not answer within {timeout:.0f}s", file=sys.stderr)
    return None


def _taken(host: str, port: int) -> bool:
    """Whether another program already listens on host:port (binding it fails with EADDRINUSE)."""
    host = host.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _ports(settings: Settings, *, worker_metrics: bool = True) -> list[tuple[str, int, str, str]]:
    """(address, port, the variable that picks it, another value for it) of what `make run` listens on."""
    host, _, port = settings.api_bind.rpartition(":")
    ports = [(host, int(port), "ASSAY_API_BIND", f"{host or '127.0.0.1'}:{int(port) + 1}")]
    ports.append((settings.flower_address, settings.flower_port, "ASSAY_FLOWER_PORT", str(settings.flower_port + 1)))
    if worker_metrics and settings.worker_metrics_port:
        port = settings.worker_metrics_port
        ports.append(("0.0.0.0", port, "ASSAY_WORKER_METRICS_PORT", str(port + 1)))
    return ports


def _taken_lines(ports: list[tuple[str, int, str, str]]) -> list[str]:
    lines = []
    for address, number, variable, other in ports:
        if _taken(address, number):
            lines.append(
                f"[run] {address}:{number} is taken by another program: choose another, "
                f"e.g. {variable}={other} make run"
            )
            if variable == "ASSAY_API_BIND":
                lines.append(f"[run] then point the CLI and the README's examples at it: ASSAY_URL=http://{other}")
    return lines


def ports_taken(settings: Settings) -> str | None:
    """Before anything starts: what to tell a user whose API or Flower port another program holds, or None.

    Checked after the fact only, an earlier `make run` still running on port 8000 answered this one's
    health check: the banner said "Assay is running" while this gunicorn failed to bind, its workers took
    jobs from the same queues, and the variable to set was never named."""
    lines = _taken_lines(_ports(settings, worker_metrics=False))
    if not lines:
        return None
    return "\n".join(["[run] nothing was started:", *lines])


def startup_failure(name: str, settings: Settings) -> str:
    """What to tell a user whose `make run` lost a process before the API answered."""
    lines = [f"[run] {name} stopped before the API answered (its output is above); nothing is running."]
    return "\n".join(lines + _taken_lines(_ports(settings)))


def _masked(url: str) -> str:
    """A URL for the terminal: its password, if it has one, replaced by ***."""
    return re.sub(r"://([^:/@]*):[^@/]*@", r"://\1:***@", url)


def banner(
    api: str, flower: str, user: str, password: str, key: str, local_hooks: bool, database_url: str, redis_url: str
) -> str:
    hooks = "\n  Webhooks may target this machine (the API listens on loopback only).\n" if local_hooks else ""
    return f"""
  Assay is running.
    API      {api}            (OpenAPI: {api}/openapi.json, metrics: {api}/metrics)
    Flower   {flower}         (user {user}, password {password})
    API key  {key}
    Data     DATABASE_URL={_masked(database_url)} REDIS_URL={_masked(redis_url)}
             (`make key`, `make backup` find these; prefix other admin commands with them)

  Try it:
    curl -s -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\
         -d '{{"analysis":"sentiment","input":{{"text":"I love this product"}}}}' {api}/v1/jobs
    curl -s -H "Authorization: Bearer {key}" "{api}/v1/jobs/<id>?wait=10"
{hooks}
  Ctrl-C stops everything.
"""


def _interrupt(signum: int, _frame: object) -> None:
    """Ctrl-C or SIGTERM (`kill`, systemd, a container stop) outside the supervisor's own wait: unwind, so the
    children started so far and the servers started here are stopped, not orphaned. Later signals are
    ignored: a second Ctrl-C while they stop would abort the stopping halfway and orphan the rest."""
    _ignore_signals()
    raise KeyboardInterrupt


def stop_on_signals() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)


def _ignore_signals() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


def main() -> int:
    settings = load_settings()
    if taken := ports_taken(settings):
        print(taken, file=sys.stderr, flush=True)
        return 1
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    stop_on_signals()
    try:
        return _serve(settings)
    except KeyboardInterrupt:
        print("[run] interrupted: everything started has been stopped", file=sys.stderr, flush=True)
        return 130


def _serve(settings: Settings) -> int:
    with running(settings) as services:
        env = {**os.environ, **services.env(), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        if not settings.secrets_key_list:
            env["ASSAY_SECRETS_KEYS"] = dev_secrets_key(settings.var_dir / "secrets-key")
        local_hooks = local_webhooks(settings)
        if local_hooks:
            env["ASSAY_WEBHOOK_ALLOW_PRIVATE"] = "true"
        # Workers' /metrics on loopback when nothing else here is reachable from outside either.
        if "worker_metrics_address" not in settings.model_fields_set and _loopback(settings.api_bind):
            env["ASSAY_WORKER_METRICS_ADDRESS"] = "127.0.0.1"
        live = load_settings(
            database_url=services.database_url,
            redis_url=services.redis_url,
            secrets_keys=env.get("ASSAY_SECRETS_KEYS", ""),
            webhook_allow_private=settings.webhook_allow_private or local_hooks,
        )
        upgrade(live)  # migrations read the secrets key from `live` where they re-encrypt
        key = dev_api_key(services.database_url, settings.var_dir / "dev-api-key")

        supervisor = Supervisor(ROOT)
        try:
            for spec in service_processes(live, detect_gpus(live), usable_cpus()):
                supervisor.start(spec.name, spec.argv(), {**env, **spec.env})
            api = f"http://{live.api_bind}"
            flower = f"http://127.0.0.1:{live.flower_port}"
            died = wait_healthy(api + "/health", supervisor)
            if died is None:
                text = banner(
                    api,
                    flower,
                    live.flower_user,
                    live.flower_password,
                    key,
                    local_hooks,
                    services.database_url,
                    services.redis_url,
                )
                print(text, file=sys.stderr)
            code = supervisor.wait()
        finally:
            # Children lead their own sessions: a Ctrl-C or SIGTERM before supervisor.wait() (while models
            # load, say) reaches only this process, and they would outlive it and the servers below. From
            # here on everything is being stopped, the servers too: a second signal must not cut that short.
            _ignore_signals()
            supervisor.stop()
        if died is not None:
            print(startup_failure(died, live), file=sys.stderr, flush=True)
        return code


if __name__ == "__main__":
    sys.exit(run_command(main))
