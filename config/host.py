"""What this host lets the process use: the CPUs for thread pools, counted the way a container limits them.

`os.sched_getaffinity` sees every core of the node; a Kubernetes CPU limit is a cgroup quota that it
ignores, so a worker with `cpu: "4"` on a 64-core node ran 64 torch threads and was throttled most of
each period. The quota (cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us`) caps the count, rounded up.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def usable_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """Cores this process may run on, capped by its cgroup's CPU quota; at least 1."""
    cores = len(os.sched_getaffinity(0))
    quota = _cgroup_quota(cgroup_root)
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def _cgroup_quota(root: Path) -> float | None:
    """CPUs' worth of quota, or None when unlimited or unreadable."""
    try:
        v2 = root / "cpu.max"
        if v2.is_file():  # "max 100000" (no limit) or "<quota> <period>"
            fields = v2.read_text().split()
            if not fields or fields[0] == "max":
                return None
            return int(fields[0]) / int(fields[1] if len(fields) > 1 else 100_000)
        quota_file, period_file = root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us"
        if quota_file.is_file():
            quota, period = int(quota_file.read_text()), int(period_file.read_text())
            return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None
    return None
