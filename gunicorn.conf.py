"""Gunicorn settings, taken from Assay's settings object (ASSAY_API_BIND, ASSAY_API_WORKERS, ...)."""

import fcntl
import os
import shutil

from config import get_settings

_settings = get_settings()

# prometheus-client's multiprocess mode: every gunicorn worker writes its samples under this
# folder and /metrics adds them up. prometheus-client reads the variable itself, so it must be
# set here, in the master, before any worker imports it; the folder starts empty each run. A reload
# (SIGHUP) reads this file again in the same master: the folder is kept, the live workers write there.
# The master holds a lock beside the folder for its life: a second gunicorn on the same address (a
# `make api` beside `make run`) reads this file before it fails to bind, and emptied the folder of the
# live one, whose /metrics then lost every counter for good. It leaves a folder another master holds.
_metrics_dir = _settings.var_dir / "prometheus" / f"api-{_settings.api_bind.replace(':', '-')}"
if os.environ.get("PROMETHEUS_MULTIPROC_DIR") != str(_metrics_dir):
    _metrics_dir.parent.mkdir(parents=True, exist_ok=True)
    _metrics_lock = open(_metrics_dir.with_name(_metrics_dir.name + ".lock"), "a")  # noqa: SIM115 - held for life
    try:
        fcntl.flock(_metrics_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pass  # a live master writes there; this one will not get its address either
    else:
        shutil.rmtree(_metrics_dir, ignore_errors=True)
_metrics_dir.mkdir(parents=True, exist_ok=True)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_dir)

# ASSAY_METRICS_BIND adds a second listener that serves only /metrics (app/meta_api.py): the public
# Service exposes the first port alone.
bind = [_settings.api_bind, *([_settings.metrics_bind] if _settings.metrics_bind else [])]
workers = _settings.api_workers
worker_class = "app.gunicorn_worker.JsonErrorGeventWorker"  # gevent, with gunicorn's own errors in JSON
worker_connections = _settings.api_worker_connections
# Recycle workers now and then so slow leaks cannot grow forever; jitter keeps them from
# restarting all at once.
max_requests = 20_000
max_requests_jitter = 2_000
worker_tmp_dir = "/dev/shm"
timeout = 60  # > the longest ?wait=N long-poll
graceful_timeout = 30
keepalive = 5
# Gunicorn answers requests past these limits itself (414, 431; in the one JSON error shape, through
# app/gunicorn_worker.py); past them is junk or an attack. Inside them every request reaches the app.
limit_request_line = 8190
limit_request_field_size = 32768
# Gunicorn 25's control socket (gunicornc) defaults to one path per user, ~/.gunicorn/gunicorn.ctl: every
# master on a host (two APIs, a test run beside `make run`) took it over from the one before, so the tool
# reached whichever started last. Assay is driven by signals (HUP, TERM, TTIN/TTOU; docs/OPERATIONS.md).
control_socket_disable = True
accesslog = "-"
access_log_format = (
    '{"ts":"%(t)s","logger":"assay.access","method":"%(m)s","path":"%(U)s","query":"%(q)s",'
    '"status":%(s)s,"bytes":%(B)s,"duration_us":%(D)s,"request_id":"%({x-request-id}o)s",'
    '"remote":"%(h)s","user_agent":"%(a)s"}'
)
errorlog = "-"
loglevel = _settings.log_level.lower()


def child_exit(server, worker):
    """A dead worker's gauges must not linger in the sums."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_fork(server, worker):
    """psycopg2 blocks the gevent loop unless patched: one slow query would stall every request."""
    from config.green import green_psycopg

    green_psycopg(_settings)
    from config.logging import configure_logging

    configure_logging(_settings)
