"""The process table (workers/processes.py) is the one description of every process kind.

Compose and Kubernetes name a role (`python -m workers.role ROLE` is the image's entry point) and never
write a command line themselves; this test fails when they disagree with the table: a role missing or
unknown, a hand-written celery/gunicorn command, more than one replica of a singleton, a port that is
not the one the table's process listens on.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import yaml

from config.settings import ROOT, load_settings
from deploy.manifests import OVERLAYS, pod_specs, render
from workers.processes import SERVICE_KINDS, SINGLETON_KINDS, ProcessKind, service_processes

ROLES = set(get_args(ProcessKind))
HAND_WRITTEN = ("celery", "gunicorn", "store.migrate", "-Q", "--basic-auth")


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())["services"]


@functools.cache
def _rendered() -> list[dict[str, Any]]:
    """Both kustomize overlays, rendered (deploy/manifests.py)."""
    return [doc for overlay in OVERLAYS for doc in render(overlay)]


def _k8s_containers() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload document, container) for every container that runs the Assay image."""
    return [
        (doc, container)
        for doc, pod in pod_specs(_rendered())
        for container in pod["containers"]
        if str(container.get("image", "")).split("@")[0].rsplit(":", 1)[0].endswith("/assay")
    ]


def test_compose_runs_every_role_of_the_table_by_name() -> None:
    assay = {name: svc for name, svc in _compose().items() if "build" in svc}
    roles = {name: svc["command"] for name, svc in assay.items()}
    assert all(len(cmd) == 1 and cmd[0] in ROLES for cmd in roles.values()), roles
    assert {cmd[0] for cmd in roles.values()} == {*SERVICE_KINDS, "migrate"}


def test_kubernetes_runs_every_role_of_the_table_by_name() -> None:
    containers = _k8s_containers()
    for _, container in containers:
        assert "command" not in container, f"{container['name']}: the image's entry point renders the command"
        assert len(container["args"]) == 1 and container["args"][0] in ROLES, container["args"]
    assert {c["args"][0] for _, c in containers} == {*SERVICE_KINDS, "migrate"}
    for doc, container in containers:
        if container["args"][0] in SINGLETON_KINDS:
            assert doc["spec"].get("replicas", 1) == 1, f"{doc['metadata']['name']} must run one replica"
            assert doc["spec"].get("strategy", {}).get("type") == "Recreate", "never two during a rollout"


def test_no_manifest_writes_a_command_line_by_hand() -> None:
    texts = [
        (ROOT / "deploy" / "docker-compose.yml").read_text(),
        *(p.read_text() for p in (ROOT / "deploy" / "k8s").rglob("*.yaml")),
    ]
    for _, container in _k8s_containers():
        assert not any(word in " ".join(container.get("args", [])) for word in HAND_WRITTEN)
    for svc in _compose().values():
        if "build" in svc:
            assert not any(word in " ".join(svc["command"]) for word in HAND_WRITTEN)
    assert texts


def _prometheus() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())


def test_ports_agree_with_the_table() -> None:
    settings = load_settings(api_bind="0.0.0.0:8000")
    kinds = {spec.kind: spec for spec in service_processes(settings, [], 2)}
    flower_port = next(a for a in kinds["flower"].args if a.startswith("--port=")).split("=")[1]
    ports = {c["args"][0]: [p["containerPort"] for p in c.get("ports", [])] for _, c in _k8s_containers()}
    config = next(d for d in _rendered() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "assay-config")
    metrics_port = int(config["data"]["ASSAY_METRICS_BIND"].rsplit(":", 1)[1])
    assert ports["api"] == [int(settings.api_bind.rsplit(":", 1)[1]), metrics_port]
    assert ports["flower"] == [int(flower_port)]
    compose = _compose()
    assert compose["flower"]["ports"][0].endswith(f":{flower_port}")
    # Each metrics port the table gives a role is the one its pod declares and Prometheus is told to scrape.
    for role in ("tabular", "webhooks", "maintenance"):
        port = int(kinds[role].env["ASSAY_WORKER_METRICS_PORT"])
        assert port and ports[role] == [port], (role, port, ports[role])
    scraped = {t for job in _prometheus()["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    assert {f"worker-tabular:{kinds['tabular'].env['ASSAY_WORKER_METRICS_PORT']}", "webhooks:9165"} <= scraped
    # The maintenance worker's sweep sets the result cache's gauges; no process served them before.
    assert f"maintenance:{kinds['maintenance'].env['ASSAY_WORKER_METRICS_PORT']}" in scraped


def test_every_role_renders_a_command_from_the_table() -> None:
    env = {"PATH": "/usr/bin:/bin", "ASSAY_GPUS": "0,1", "ASSAY_DEVICE": "cuda"}
    for role in sorted(ROLES):
        done = subprocess.run(
            [sys.executable, "-m", "workers.role", role, "--dry-run"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert "[role]" in done.stderr
        if role == "worker":
            assert done.stderr.count("[role]") == 2, "one worker per visible GPU"
        if role == "flower":
            assert "--basic-auth" not in done.stderr and "assay-dev" not in done.stderr, "no secret in argv"


def test_the_table_is_what_make_run_starts() -> None:
    kinds = [spec.kind for spec in service_processes(load_settings(), [], 2)]
    assert kinds == list(SERVICE_KINDS)
    assert Path(ROOT / "deploy" / "local" / "run.py").read_text().count("service_processes(") == 1


def test_call_records_have_their_own_cpu_worker_even_beside_gpus() -> None:
    settings = load_settings()
    specs = service_processes(settings, ["0", "1"], 8)
    queues = {spec.name: spec.args[spec.args.index("-Q") + 1] for spec in specs if "-Q" in spec.args}
    (tabular,) = [spec for spec in specs if spec.kind == "tabular"]
    assert queues[tabular.name] == settings.queue_name("tabular")
    assert tabular.env["CUDA_VISIBLE_DEVICES"] == "" and tabular.env["ASSAY_DEVICE"] == "cpu"
    assert tabular.env["ASSAY_MAX_BATCH_SIZE"] == "1"  # one file per message: a second worker takes the next
    gpu_queues = [queues[spec.name] for spec in specs if spec.kind == "worker"]
    assert len(gpu_queues) == 2 and all("tabular" not in q for q in gpu_queues)
