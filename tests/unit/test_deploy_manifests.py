"""Every Kubernetes object both overlays render is schema-valid and obeys the deployment policy.

Rendering uses the kubectl pinned in requirements-dev.txt (`kubectl kustomize`); built-in kinds are
validated strictly against kubernetes-validate's bundled schemas (offline); KEDA's resources, which no
schema package ships, against the subset of their CRD schema written below. Each policy rule is also
shown to fire on a manifest that breaks it, so a passing run means something.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import jsonschema
import pytest

from deploy.manifests import OVERLAYS, pod_specs, policy_violations, render, schema_errors

_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_BEHAVIOR = {"type": "object"}  # autoscaling/v2 HPABehavior: checked by the API server's HPA schema
#: keda.sh/v1alpha1 as the KEDA 2.x CRDs define the fields used here (unknown fields refused).
KEDA_SCHEMAS: dict[str, dict[str, Any]] = {
    "ScaledObject": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "kind": {"const": "ScaledObject"},
            "metadata": {"type": "object", "required": ["name"]},
            "spec": {
                "type": "object",
                "required": ["scaleTargetRef", "triggers"],
                "additionalProperties": False,
                "properties": {
                    "scaleTargetRef": {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": False,
                        "properties": {"name": {"type": "string"}, "kind": {"type": "string"},
                                       "apiVersion": {"type": "string"}},
                    },
                    "minReplicaCount": {"type": "integer", "minimum": 0},
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "pollingInterval": {"type": "integer", "minimum": 1},
                    "cooldownPeriod": {"type": "integer", "minimum": 0},
                    "advanced": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "horizontalPodAutoscalerConfig": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {"behavior": _BEHAVIOR, "name": {"type": "string"}},
                            },
                            "restoreToOriginalReplicaCount": {"type": "boolean"},
                        },
                    },
                    "triggers": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["type", "metadata"],
                            "additionalProperties": False,
                            "properties": {
                                "type": {"type": "string"},
                                "name": {"type": "string"},
                                "metadata": _STR_MAP,
                                "authenticationRef": {
                                    "type": "object",
                                    "required": ["name"],
                                    "properties": {"name": {"type": "string"}, "kind": {"type": "string"}},
                                },
                            },
                        },
                    },
                },
            },
        },
    },
    "TriggerAuthentication": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "kind": {"const": "TriggerAuthentication"},
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "secretTargetRef": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["parameter", "name", "key"],
                            "additionalProperties": False,
                            "properties": {"parameter": {"type": "string"}, "name": {"type": "string"},
                                           "key": {"type": "string"}},
                        },
                    }
                },
            },
        },
    },
}  # fmt: skip


@functools.cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    return tuple(render(overlay))


def docs_of(overlay: str) -> list[dict[str, Any]]:
    return copy.deepcopy(list(rendered(overlay)))


def by_name(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_kubernetes_schemas(overlay: str) -> None:
    docs = docs_of(overlay)
    errors, custom = schema_errors(docs)
    assert errors == []
    assert {d["kind"] for d in custom} == set(KEDA_SCHEMAS), "only KEDA's kinds lack a bundled schema"
    for doc in custom:
        jsonschema.validate(doc, KEDA_SCHEMAS[doc["kind"]])
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "Job",
            "CronJob", "ScaledObject"} <= kinds  # fmt: skip


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_obeys_the_policy(overlay: str) -> None:
    assert policy_violations(docs_of(overlay)) == []


def test_the_schema_check_refuses_a_misspelt_field() -> None:
    docs = docs_of("cpu")
    container = by_name(docs, "Deployment", "assay-api")["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["readOnlyRootFileSystem"] = True
    errors, _ = schema_errors(docs)
    assert len(errors) == 1 and "assay-api" in errors[0]


@pytest.mark.parametrize(
    ("breach", "expected"),
    [
        (lambda pod, c: c["securityContext"].update(readOnlyRootFilesystem=False), "root filesystem is writable"),
        (lambda pod, c: c["securityContext"]["capabilities"].update(drop=[]), "capabilities"),
        (lambda pod, c: pod["securityContext"].update(runAsNonRoot=False), "runAsNonRoot"),
        (lambda pod, c: pod["securityContext"].pop("seccompProfile"), "seccomp"),
        (lambda pod, c: pod.update(automountServiceAccountToken=True), "service-account token"),
        (lambda pod, c: c["resources"].pop("limits"), "no limits"),
        (lambda pod, c: c.update(args=["flower", "--basic-auth=ops:hunter2hunter2"]), "command line"),
        (lambda pod, c: c.update(args=["api", "postgresql://assay:pw@db/assay"]), "command line"),
        (lambda pod, c: c.setdefault("env", []).append({"name": "ASSAY_FLOWER_PASSWORD", "value": "x"}), "literal"),
    ],
)
def test_each_policy_rule_fires(breach, expected: str) -> None:
    docs = docs_of("cpu")
    workload = by_name(docs, "Deployment", "assay-flower")
    pod = workload["spec"]["template"]["spec"]
    breach(pod, pod["containers"][0])
    problems = policy_violations(docs)
    assert problems and all("assay-flower" in p for p in problems) and any(expected in p for p in problems)


def test_public_service_never_exposes_the_metrics_port() -> None:
    docs = docs_of("cpu")
    api = by_name(docs, "Deployment", "assay-api")["spec"]["template"]["spec"]["containers"][0]
    config = by_name(docs, "ConfigMap", "assay-config")["data"]
    metrics_port = int(config["ASSAY_METRICS_BIND"].rsplit(":", 1)[1])
    assert {"name": "metrics", "containerPort": metrics_port} in api["ports"]
    service = by_name(docs, "Service", "assay-api")
    service["spec"]["ports"].append({"name": "metrics", "port": metrics_port, "targetPort": "metrics"})
    assert policy_violations(docs) == ["Service/assay-api: exposes a metrics port"]


def test_a_credential_in_a_configmap_or_an_unscaled_workload_is_refused() -> None:
    docs = docs_of("cpu")
    by_name(docs, "ConfigMap", "assay-config")["data"]["REDIS_URL"] = "redis://:pw@r:6379/0"
    docs = [d for d in docs if not (d["kind"] == "ScaledObject" and d["metadata"]["name"] == "assay-webhooks")]
    problems = policy_violations(docs)
    assert "ConfigMap/assay-config: REDIS_URL belongs in a Secret" in problems
    assert "Deployment/assay-webhooks: no replicas and no autoscaler" in problems


def test_queue_scalers_watch_the_queues_the_workers_consume() -> None:
    docs = docs_of("cpu")
    prefix = by_name(docs, "ConfigMap", "assay-config")["data"]["ASSAY_QUEUE_PREFIX"]
    for name, family in (
        ("assay-worker-text", "text"),
        ("assay-worker-audio", "audio"),
        ("assay-webhooks", "webhooks"),
    ):
        scaler = by_name(docs, "ScaledObject", name)
        assert scaler["spec"]["scaleTargetRef"]["name"] == name
        (trigger,) = scaler["spec"]["triggers"]
        assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == f"{prefix}.{family}"
        if family in ("text", "audio"):
            env = by_name(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]["env"]
            assert {"name": "ASSAY_WORKER_FAMILIES", "value": f'["{family}"]'} in env


def test_gpu_overlay_pins_one_gpu_per_inference_pod_and_nothing_else() -> None:
    docs = docs_of("gpu")
    for doc, pod in pod_specs(docs):
        container = pod["containers"][0]
        gpu = container["resources"].get("limits", {}).get("nvidia.com/gpu")
        if doc["metadata"]["labels"].get("app.kubernetes.io/component") == "worker":
            assert doc["metadata"]["name"] in ("assay-worker-text", "assay-worker-audio"), "CPU-only roles stay off"
            assert gpu == 1 and container["resources"]["requests"]["nvidia.com/gpu"] == 1
            assert container["image"].endswith("-cuda")
            assert {"name": "ASSAY_DEVICE", "value": "cuda"} in container["env"]
            assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
            assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
            assert pod["terminationGracePeriodSeconds"] >= 120
        else:
            assert gpu is None and not str(container["image"]).endswith("-cuda")
    cpu_workers = [p for d, p in pod_specs(docs_of("cpu")) if "worker" in d["metadata"]["name"]]
    assert all("nvidia.com/gpu" not in p["containers"][0]["resources"]["limits"] for p in cpu_workers)


def test_webhook_pods_may_reach_no_private_range() -> None:
    docs = docs_of("cpu")
    policy = by_name(docs, "NetworkPolicy", "assay-webhooks-internet")
    v4 = policy["spec"]["egress"][0]["to"][0]["ipBlock"]
    assert v4["cidr"] == "0.0.0.0/0"
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(v4["except"])
    internet = [
        d for d in docs if d["kind"] == "NetworkPolicy" and any("ipBlock" in t for e in d["spec"].get("egress", [])
                                                                for t in e.get("to", []))
    ]  # fmt: skip
    assert [d["metadata"]["name"] for d in internet] == ["assay-webhooks-internet"], "only webhooks go outside"
