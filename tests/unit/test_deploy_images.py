"""Dockerfile.prod: hadolint clean (the binary pinned in requirements-dev.txt), both targets built the
way the issue asks (digest-pinned bases, hashed installs, no compilers or root at run time, a
HEALTHCHECK), and the hashed locks in step with requirements.txt."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from config.settings import ROOT

DOCKERFILE = ROOT / "Dockerfile.prod"
HADOLINT = Path(sys.executable).parent / "hadolint"
LOCKS = {"cpu": ROOT / "requirements" / "cpu.lock", "cuda": ROOT / "requirements" / "cuda.lock"}
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", re.MULTILINE)


def hadolint(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "Dockerfile"
    path.write_text(text)
    return subprocess.run([str(HADOLINT), "--no-color", str(path)], capture_output=True, text=True, check=False)


def stages() -> dict[str, list[str]]:
    """Stage name → its instructions (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    found: dict[str, list[str]] = {"": []}
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("FROM "):
            current = line.split(" AS ")[-1].strip() if " AS " in line else line
            found[current] = []
        if line and not line.startswith("#"):
            found[current].append(line)
    return found


def test_hadolint_passes(tmp_path: Path) -> None:
    done = hadolint(DOCKERFILE.read_text(), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_would_catch_a_careless_dockerfile(tmp_path: Path) -> None:
    done = hadolint("FROM python:latest\nRUN apt-get install curl\nRUN cd /app && pip install flask\n", tmp_path)
    assert done.returncode != 0 and "DL3007" in done.stdout and "DL3013" in done.stdout


def test_bases_are_pinned_by_digest() -> None:
    args = dict(re.findall(r"^ARG (\w+_BASE)=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE))
    assert set(args) == {"PYTHON_BASE", "CUDA_BASE"}
    assert all(re.search(r"@sha256:[0-9a-f]{64}$", ref) for ref in args.values()), args
    assert args["CUDA_BASE"].startswith("nvidia/cuda:") and "cudnn-runtime" in args["CUDA_BASE"]


@pytest.mark.parametrize("target", ["cpu", "cuda"])
def test_runtime_targets_are_non_root_compiler_free_and_health_checked(target: str) -> None:
    body = stages()[target]
    text = "\n".join(body)
    assert body[0] == f"FROM {target}-base AS {target}"
    assert "USER 10001:10001" in body and "HEALTHCHECK --interval=30s --timeout=10s" in text
    assert 'ENTRYPOINT ["assay-role"]' in body
    assert not re.search(r"build-essential|gcc|python3\.11-dev|pip install", text), "nothing is built at run time"
    assert f"COPY --from={target}-builder /opt/venv /opt/venv" in body


@pytest.mark.parametrize("target", ["cpu", "cuda"])
def test_builders_install_only_hashed_pins(target: str) -> None:
    text = "\n".join(stages()[f"{target}-builder"])
    assert f"COPY requirements/{target}.lock" in text
    installs = re.findall(r"pip install[^\n]*", text)
    assert installs and all("--require-hashes" in cmd and "--no-deps" in cmd for cmd in installs)


@pytest.mark.parametrize("target", ["cpu", "cuda"])
def test_locks_pin_exactly_requirements_txt_with_hashes(target: str) -> None:
    wanted = dict(PIN.findall((ROOT / "requirements.txt").read_text()))
    text = LOCKS[target].read_text()
    locked = {name.lower().replace("_", "-"): version for name, version in PIN.findall(text)}
    for name, version in wanted.items():
        got = locked.get(name.lower().replace("_", "-"))
        assert got is not None and got.split("+")[0] == version, f"{name}: requirements {version}, lock {got}"
    lines = text.splitlines()
    pinned = [i for i, line in enumerate(lines) if PIN.match(line)]
    assert pinned and all(lines[i].endswith("\\") and "--hash=sha256:" in lines[i + 1] for i in pinned)
    assert ("+cpu" in locked["torch"]) == (target == "cpu")
    assert any(name.startswith("nvidia-") for name in locked) == (target == "cuda")


def test_the_header_names_every_role_the_image_runs() -> None:
    """Whoever starts the processes as Dockerfile.prod lists them starts all of them (it lacked `tabular`,
    without which call-record jobs never run)."""
    from typing import get_args

    from workers.processes import ProcessKind

    listed = re.search(r"docker run assay:cpu ([a-z|]+)", DOCKERFILE.read_text())
    assert listed is not None
    assert set(listed.group(1).split("|")) == set(get_args(ProcessKind))


def test_secrets_and_dumps_stay_out_of_the_build_context() -> None:
    """`COPY deploy /app/deploy` put deploy/.env (the one-host secrets OPERATIONS has you fill in) in a layer."""
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {"deploy/.env", "backups"} <= ignored


def test_the_image_owns_every_path_compose_mounts_a_named_volume_on() -> None:
    """A named volume's root is created root-owned unless the image has the path: uploads were not writable."""
    import yaml

    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    owned = {
        path for line in re.findall(r"chown 10001:10001 ([^\n]+)", (ROOT / "Dockerfile.prod").read_text())
        for path in line.split()
    }  # fmt: skip
    volumes = set(compose.get("volumes", {}))
    for name, service in compose["services"].items():
        if not str(service.get("image", "")).startswith("assay") and "build" not in service:
            continue
        for mount in service.get("volumes", []):
            source, _, target = str(mount).split()[0].partition(":")
            if source in volumes:
                assert target.split(":")[0] in owned, (name, target, owned)
