"""Thread pools sized to the CPU quota a container gets, not to every core of the node."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from config.host import usable_cpus

CORES = len(os.sched_getaffinity(0))


def _v2(root: Path, text: str) -> Path:
    (root / "cpu.max").write_text(text)
    return root


def _v1(root: Path, quota: int, period: int = 100_000) -> Path:
    (root / "cpu").mkdir()
    (root / "cpu" / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (root / "cpu" / "cpu.cfs_period_us").write_text(f"{period}\n")
    return root


def test_a_cgroup_v2_quota_caps_the_count(tmp_path: Path) -> None:
    assert usable_cpus(_v2(tmp_path, "50000 100000\n")) == 1  # half a CPU rounds up to one thread


@pytest.mark.skipif(CORES < 2, reason="needs 2 cores to show a quota of 1.5 rounding up")
def test_a_fractional_quota_rounds_up(tmp_path: Path) -> None:
    assert usable_cpus(_v2(tmp_path, "150000 100000\n")) == 2


def test_no_quota_is_every_core_this_process_may_use(tmp_path: Path) -> None:
    assert usable_cpus(_v2(tmp_path, "max 100000\n")) == CORES
    assert usable_cpus(tmp_path / "missing") == CORES


def test_cgroup_v1(tmp_path: Path) -> None:
    limited, unlimited = tmp_path / "limited", tmp_path / "unlimited"
    limited.mkdir()
    unlimited.mkdir()
    assert usable_cpus(_v1(limited, 100_000)) == 1
    assert usable_cpus(_v1(unlimited, -1)) == CORES  # -1: no quota


def test_a_quota_above_the_cores_is_the_cores(tmp_path: Path) -> None:
    assert usable_cpus(_v2(tmp_path, f"{64 * 100_000} 100000\n")) == CORES
