"""`make run`: a port another program holds (no "Assay is running" banner, which variable to set); the banner;
signals while it stops."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

from config.settings import ROOT, load_settings
from deploy.local.run import startup_failure


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_taken_api_port_names_the_variable_and_the_url_to_use() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        settings = load_settings(api_bind=f"127.0.0.1:{port}", flower_port=_free_port(), worker_metrics_port=0)
        message = startup_failure("api", settings)
    assert "api stopped before the API answered" in message
    assert f"127.0.0.1:{port} is taken by another program" in message
    assert f"ASSAY_API_BIND=127.0.0.1:{port + 1} make run" in message
    assert f"ASSAY_URL=http://127.0.0.1:{port + 1}" in message


def test_a_taken_flower_port_is_named_and_free_ports_are_not() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        settings = load_settings(api_bind=f"127.0.0.1:{_free_port()}", flower_port=port, worker_metrics_port=0)
        message = startup_failure("flower", settings)
    assert f"ASSAY_FLOWER_PORT={port + 1}" in message
    assert "ASSAY_API_BIND" not in message


def test_the_banner_names_the_database_and_redis_it_uses_without_passwords() -> None:
    """Admin commands need DATABASE_URL; make run never said which server it had found or started."""
    from deploy.local.run import banner

    text = banner(
        "http://127.0.0.1:8000", "http://127.0.0.1:5555", "admin", "pw", "assay_k", False,
        "postgresql://ops:hunter2@db:5432/assay", "redis://:s3cret@cache:6379/0",
    )  # fmt: skip
    assert "DATABASE_URL=postgresql://ops:***@db:5432/assay REDIS_URL=redis://:***@cache:6379/0" in text
    assert "hunter2" not in text and "s3cret" not in text


def test_make_run_stops_before_starting_anything_when_another_api_holds_its_port() -> None:
    """An earlier `make run` still on port 8000 answered the new one's health check: it printed "Assay is
    running", started workers on the same queues, and never named ASSAY_API_BIND while its gunicorn failed."""
    import os
    import subprocess
    import sys
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from config.settings import ROOT

    class Healthy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with HTTPServer(("127.0.0.1", 0), Healthy) as other:
        threading.Thread(target=other.serve_forever, daemon=True).start()
        port = other.server_address[1]
        env = {
            **os.environ,
            "ASSAY_API_BIND": f"127.0.0.1:{port}",
            "ASSAY_FLOWER_PORT": str(_free_port()),
            # Nothing answers here: had the run gone on, it could not have started a thing against real data.
            "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/assay",
            "REDIS_URL": "redis://127.0.0.1:1/0",
        }
        done = subprocess.run(
            [sys.executable, "-m", "deploy.local.run"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        other.shutdown()
    assert done.returncode != 0
    assert "Assay is running" not in done.stderr
    assert f"127.0.0.1:{port} is taken by another program" in done.stderr, done.stderr
    assert f"ASSAY_API_BIND=127.0.0.1:{port + 1} make run" in done.stderr


def test_after_the_first_interrupt_later_signals_cannot_cut_the_stopping_short() -> None:
    """The first Ctrl-C or SIGTERM unwinds make run, stopping what it started; a second one, while that ran,
    raised KeyboardInterrupt inside the stopping and left the rest (workers, the private servers) running."""
    script = textwrap.dedent(
        """
        import os, signal, time
        from deploy.local.run import stop_on_signals
        stop_on_signals()
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            print("unwinding", flush=True)
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
            print("stopped everything", flush=True)
        """
    )
    argv = [sys.executable, "-c", script]
    done = subprocess.run(argv, check=False, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["unwinding", "stopped", "everything"], (done.returncode, done.stderr[-800:])
