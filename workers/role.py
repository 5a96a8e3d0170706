"""`python -m workers.role KIND`: run one process kind of the process table, as a container does.

Images and manifests name a role, never a command line, so the table in workers/processes.py is the
only place one is written. A single process is exec'd (signals reach it directly: Celery's warm
shutdown, gunicorn's graceful stop); a GPU pod that sees several GPUs gets the launcher's supervisor.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import cast, get_args

from config import get_settings
from config.host import usable_cpus
from config.settings import run_command
from workers.launch import detect_gpus
from workers.processes import ProcessKind


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.role", description=__doc__)
    parser.add_argument("kind", choices=get_args(ProcessKind))
    parser.add_argument("--dry-run", action="store_true", help="print the command line(s) and exit")
    args = parser.parse_args(argv)
    kind = cast(ProcessKind, args.kind)
    settings = get_settings()
    from workers.processes import role_process

    specs = role_process(kind, settings, detect_gpus(settings), usable_cpus())
    for spec in specs:
        print(f"[role] {spec.name}: {' '.join(spec.argv())}", file=sys.stderr)
    if args.dry_run:
        return 0
    if len(specs) == 1:
        (spec,) = specs
        # ASSAY_ROLE: how `assay-health` (workers/health.py) learns the role from /proc/1/environ.
        os.execve(sys.executable, spec.argv(), {**os.environ, **spec.env, "ASSAY_ROLE": kind})
    from workers.launch import supervise

    os.environ["ASSAY_ROLE"] = kind
    return supervise(specs)


if __name__ == "__main__":
    sys.exit(run_command(main))
