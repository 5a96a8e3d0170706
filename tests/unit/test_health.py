"""`assay-health` learns the role from PID 1's command line through the process table."""

from __future__ import annotations

from typing import get_args

from config.settings import load_settings
from workers.health import kind_of, main, role_from_environ
from workers.processes import ProcessKind, role_process

SETTINGS = load_settings()
SPECS = [spec for kind in get_args(ProcessKind) for spec in role_process(kind, SETTINGS, [], 1)]


def test_every_role_is_recognised_from_its_command_line() -> None:
    for spec in SPECS:
        assert kind_of(["/opt/venv/bin/python", *spec.args], SPECS) == spec.kind


def test_a_gpu_worker_and_the_supervisor_of_several_are_workers() -> None:
    for spec in role_process("worker", SETTINGS, ["0", "1"], 4):
        assert kind_of(["python", *spec.args], SPECS) == "worker"
    assert kind_of(["python", "-m", "workers.role", "worker"], SPECS) == "worker"


def test_anything_else_is_no_role() -> None:
    assert kind_of(["/bin/sh", "-c", "sleep 1"], SPECS) is None
    assert kind_of(["python", "-m", "workers.role", "shell"], SPECS) is None


def test_an_api_that_does_not_answer_is_unhealthy(monkeypatch) -> None:
    monkeypatch.setenv("ASSAY_API_BIND", "127.0.0.1:9")  # discard port: nothing listens
    from config import get_settings

    get_settings.cache_clear()
    try:
        assert main(["api"]) == 1
        assert main(["migrate"]) == 0
    finally:
        get_settings.cache_clear()


def test_the_role_entry_point_leaves_its_role_in_pid_1s_environment() -> None:
    assert role_from_environ(b"PATH=/opt/venv/bin\0ASSAY_ROLE=webhooks\0HOME=/home/assay\0") == "webhooks"
    assert role_from_environ(b"PATH=/opt/venv/bin\0ASSAY_ROLE=shell\0") is None
    assert role_from_environ(b"PATH=/opt/venv/bin\0") is None
