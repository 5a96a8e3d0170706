"""deploy/docker-compose.yml against the Compose Specification's JSON schema, and the local policy.

The schema is the one check-jsonschema vendors (pinned in requirements-dev.txt), used offline.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import check_jsonschema
import jsonschema
import yaml

from config.settings import ROOT

COMPOSE = ROOT / "deploy" / "docker-compose.yml"
LOOPBACK_ONLY = ("flower", "prometheus", "grafana")


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    path = Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor" / "compose-spec.json"
    return jsonschema.Draft202012Validator(json.loads(path.read_text()))


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def schema_errors(doc: dict[str, Any]) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in _validator().iter_errors(doc)]


def test_compose_file_follows_the_compose_spec() -> None:
    assert schema_errors(compose()) == []


def test_the_schema_check_refuses_a_misspelt_key() -> None:
    doc = copy.deepcopy(compose())
    doc["services"]["api"]["read_onyl"] = True
    doc["services"]["worker"]["stop_grace_period"] = {"seconds": 120}
    errors = schema_errors(doc)
    assert any("read_onyl" in e for e in errors) and any(e.startswith("$.services.worker") for e in errors)
    assert not any(e.startswith(("$.services.postgres", "$.services.flower")) for e in errors)


def test_operator_consoles_listen_on_loopback_only_and_metrics_are_not_published() -> None:
    services = compose()["services"]
    for name in LOOPBACK_ONLY:
        assert services[name]["ports"] and all(p.startswith("127.0.0.1:") for p in services[name]["ports"]), name
    published = [p for svc in services.values() for p in svc.get("ports", []) if not p.startswith("127.0.0.1:")]
    assert published == ["8000:8000"], "only the API's public port leaves the host"
    env = services["api"]["environment"]
    assert env["ASSAY_METRICS_BIND"].endswith(":9102") and env["ASSAY_ENVIRONMENT"] == "production"


def test_assay_containers_are_hardened_and_take_credentials_from_the_environment() -> None:
    services = compose()["services"]
    assay = {name: svc for name, svc in services.items() if "build" in svc}
    assert set(assay) >= {"api", "worker", "worker-gpu", "maintenance", "webhooks", "flower", "migrate"}
    for name, svc in assay.items():
        assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"], name
        assert svc["user"].split(":")[0] != "0" and "no-new-privileges:true" in svc["security_opt"], name
        assert len(svc["command"]) == 1, f"{name}: a role, never a command line carrying a credential"
        assert svc["environment"]["ASSAY_FLOWER_PASSWORD"].startswith("${ASSAY_FLOWER_PASSWORD:?"), name


def test_gpu_profile_reserves_a_gpu_on_the_cuda_image() -> None:
    services = compose()["services"]
    gpu = services["worker-gpu"]
    assert gpu["profiles"] == ["gpu"] and gpu["build"]["target"] == "cuda"
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"] and device["count"] == 1
    assert gpu["environment"]["ASSAY_DEVICE"] == "cuda"
    assert all("profiles" not in svc for name, svc in services.items() if name != "worker-gpu")
    assert services["worker"]["build"]["target"] == "cpu"


def test_grafana_provisions_the_dashboards_folder() -> None:
    grafana = compose()["services"]["grafana"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"] if v.startswith("./"))
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/assay.yml").read_text())
    (entry,) = provider["providers"]
    assert mounts["./grafana/dashboards"] == entry["options"]["path"]
    assert (ROOT / "deploy" / "grafana" / "dashboards").is_dir()
    datasource = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"


def test_prometheus_scrapes_the_metrics_listener_not_the_public_port() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert targets["assay-api"] == ["api:9102"]
    assert set(targets["assay-workers"]) == {"worker:9100", "worker-gpu:9100"}
