"""Chaos: the whole stack under load while its parts are killed, as an orchestrator would see it.

    .venv/bin/python -m bench.chaos [--seconds 60] [--drain 300] [--freeze-workers] [--no-record]

A private PostgreSQL and a private Redis with persistence off (a killed Redis loses every message);
the processes of the process table (gunicorn with 2 gevent workers, one CPU inference worker, the
maintenance worker with its beat, the webhook worker), each restarted by a supervisor thread about
2 s after it exits. Four clients submit single jobs (sentiment, toxicity, phishing) and every tenth
request a batch of 20, all with a webhook to a loopback receiver that verifies every signature with
the `standardwebhooks` library and answers 503 one time in ten. A fifth client (bench.chaos_mix) sends
what they never do: audio (a file upload and base64 in a batch), call-record files for the tabular
worker, repeated texts (cache hits, attached jobs), Idempotency-Keys retried until answered, and
cancels. Kills, in seconds from the start: 8 inference worker (SIGKILL to its group), 18 Redis
(SIGKILL, back empty 3 s later), 25 one gunicorn worker (SIGKILL), 32 PostgreSQL (immediate stop, back
3 s later), 38 tabular worker, 42 webhook worker, 50 maintenance worker; 53 Redis frozen (SIGSTOP) for
4 s, 58 PostgreSQL frozen for 8 s, past the end of the load. `--freeze-workers` hangs workers instead
(SIGSTOP, then SIGCONT): 24 the inference worker for 40 s (past its 30 s lease, jobs claimed), 28 gunicorn
reloaded (SIGHUP), 38 the tabular worker for 40 s instead of its kill, 42 the webhook worker for 50 s
(past its 45 s claim locks) instead of its kill, so it also lives through the Redis restart. Then it
waits until every accepted job is final and its final event delivered, and reads jobs, webhook events
and the receiver's log. See ../shared/notes/fault-run.md for the run it mirrors; this one is harder.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import requests
from cryptography.fernet import Fernet
from sqlalchemy import Engine, func, select

from bench.chaos_mix import MixedClient
from bench.harness import record, table
from config.settings import ROOT, load_settings
from deploy.local.services import LocalRedis
from store.db import make_engine
from store.keys import create_key
from store.tables import jobs, webhook_events
from tests.integration.faults import private_postgres
from tests.receiver import Received, Receiver
from tests.support import Proc, free_port, wait_for
from workers.processes import (
    ProcessSpec,
    api_process,
    inference_process,
    maintenance_process,
    tabular_process,
    webhooks_process,
)

FAULT_TIMINGS = {
    "ASSAY_SWEEP_INTERVAL_SECONDS": "3",
    "ASSAY_REQUEUE_AFTER_SECONDS": "15",
    "ASSAY_LEASE_SECONDS": "30",
    "ASSAY_VISIBILITY_TIMEOUT_SECONDS": "60",
    "ASSAY_WEBHOOK_SCHEDULE_SECONDS": "[1, 2, 4, 8, 16, 32]",
    "ASSAY_WEBHOOK_SWEEP_INTERVAL_SECONDS": "2",
    "ASSAY_WEBHOOK_PUBLISH_GRACE_SECONDS": "10",
    "ASSAY_WEBHOOK_ALLOW_PRIVATE": "true",
    "ASSAY_API_WORKERS": "2",
    "ASSAY_AUTH_CACHE_SECONDS": "5",
    "ASSAY_WORKER_METRICS_PORT": "0",
    "ASSAY_LOG_LEVEL": "INFO",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
FINAL = ("succeeded", "failed", "canceled")
FINAL_EVENT = {"succeeded": "job.succeeded", "failed": "job.failed", "canceled": "job.canceled"}


@dataclass
class Supervised:
    """A process the chaos supervisor restarts ~2 s after it exits, like an orchestrator."""

    spec: ProcessSpec
    env: dict[str, str]
    logfile: Path
    proc: Proc | None = None
    restarts: int = 0

    def start(self) -> None:
        self.proc = Proc(self.spec.kind, self.spec.argv(), {**self.env, **self.spec.env}, ROOT, self.logfile)
        self.proc.start()


@dataclass
class Chaos:
    logdir: Path
    supervised: list[Supervised] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def add(self, spec: ProcessSpec, env: dict[str, str]) -> Supervised:
        member = Supervised(spec, env, self.logdir / f"{spec.kind}.log")
        member.start()
        self.supervised.append(member)
        return member

    def supervise(self) -> None:
        while not self.stopping.wait(0.5):
            for member in self.supervised:
                if member.proc is not None and not member.proc.alive() and not self.stopping.is_set():
                    time.sleep(2)
                    member.restarts += 1
                    member.start()

    def stop(self) -> None:
        self.stopping.set()
        for member in reversed(self.supervised):
            if member.proc is not None:
                member.proc.stop(20)


@dataclass
class Clients:
    """Four clients submitting singles and (every tenth request) batches of 20, each with a webhook."""

    url: str
    key: str
    hook: str
    statuses: Counter[int] = field(default_factory=Counter)
    accepted: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, n: int) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.key}"
        rng = random.Random(n)
        webhook = {"url": self.hook}
        i = 0
        while not self.stop.is_set():
            i += 1
            analysis = rng.choice(["sentiment", "toxicity", "phishing"])
            text = f"client {n} request {i}: please check my account, it {rng.choice(['works', 'broke'])}"
            try:
                if i % 10 == 0:
                    body = {
                        "jobs": [{"analysis": analysis, "input": {"text": f"{text} #{k}"}} for k in range(20)],
                        "webhook": webhook,
                    }
                    response = session.post(f"{self.url}/v1/jobs/batch", json=body, timeout=30)
                    ids = [job["id"] for job in response.json()["data"]] if response.status_code == 202 else []
                else:
                    body = {"analysis": analysis, "input": {"text": text}, "webhook": webhook}
                    response = session.post(f"{self.url}/v1/jobs", json=body, timeout=30)
                    ids = [response.json()["id"]] if response.status_code == 202 else []
                status = response.status_code
            except (requests.RequestException, ValueError):
                status, ids = 0, []
            with self.lock:
                self.statuses[status] += 1
                self.accepted += ids
            if status != 202:
                self.stop.wait(0.1)


def kill_group(member: Supervised) -> None:
    assert member.proc is not None
    member.proc.kill()


def kill_one_gunicorn_worker(member: Supervised) -> None:
    assert member.proc is not None
    found = subprocess.run(["pgrep", "-P", str(member.proc.pid)], capture_output=True, text=True, check=False)
    children = found.stdout.split()
    if children:
        os.kill(int(children[0]), signal.SIGKILL)


def freeze(pids: list[int], seconds: float) -> None:
    """SIGSTOP, then SIGCONT: a server that hangs without closing a socket (a stalled host, a long GC, a
    partition that drops packets), which no statement_timeout and no closed connection reports."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    time.sleep(seconds)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def freeze_group(member: Supervised, seconds: float) -> None:
    """`freeze` for a supervised process's whole group (a Celery worker and its pool), on a thread of its
    own: the rest of the timeline goes on while it hangs."""
    proc = member.proc
    assert proc is not None

    def hang() -> None:
        proc.signal(signal.SIGSTOP)
        time.sleep(seconds)
        with contextlib.suppress(ProcessLookupError):
            proc.signal(signal.SIGCONT)

    threading.Thread(target=hang, daemon=True).start()


def postgres_pids(datadir: Path) -> list[int]:
    """The postmaster and every backend and helper it started."""
    postmaster = int((datadir / "postmaster.pid").read_text().split()[0])
    found = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True, check=False)
    return [postmaster, *(int(pid) for pid in found.stdout.split())]


def outcome(db: Engine, accepted: list[str], receiver: Receiver) -> dict[str, int]:
    with db.connect() as conn:
        rows = dict(conn.execute(select(jobs.c.id, jobs.c.status).where(jobs.c.id.in_(accepted))).all())
        delivered = set(
            conn.execute(
                select(webhook_events.c.job_id).where(
                    webhook_events.c.job_id.in_(accepted),
                    webhook_events.c.type != "job.started",
                    webhook_events.c.status == "delivered",
                )
            ).scalars()
        )
    copies = accepted_final_events(receiver)
    final_copies = {
        job_id: [r.webhook_id for r in copies.get((job_id, FINAL_EVENT[status]), [])]
        for job_id, status in rows.items()
        if status in FINAL
    }
    return {
        "lost": len(set(accepted) - set(rows)),
        "not final": sum(status not in FINAL for status in rows.values()),
        "events not delivered": sum(1 for job_id in rows if job_id not in delivered),
        "missing": sum(1 for job_id in rows if not final_copies.get(job_id)),
        # Two events for one job's end: the invariant (ARCHITECTURE 2) broken.
        "doubled": sum(1 for ids in final_copies.values() if len(set(ids)) > 1),
        # One event received twice: at least once, what a SIGKILLed deliverer's in-flight attempts become.
        "re-sent": sum(1 for ids in final_copies.values() if len(ids) > 1 and len(set(ids)) == 1),
        "invalid signatures": sum(1 for r in receiver.received if not r.valid),
    }


def accepted_final_events(receiver: Receiver) -> dict[tuple[str, str], list[Received]]:
    """(job id, final event type) -> every copy the receiver verified and accepted (2xx), in arrival order."""
    copies: dict[tuple[str, str], list[Received]] = {}
    for r in receiver.received:
        if r.valid and r.accepted and r.path == "flaky" and r.payload["type"] in FINAL_EVENT.values():
            copies.setdefault((r.payload["data"]["id"], r.payload["type"]), []).append(r)
    return {key: sorted(rs, key=lambda r: r.at) for key, rs in copies.items()}


def doubled_detail(receiver: Receiver, started: float) -> str:
    """When the first copy of each doubled final event arrived, and whether the copies share a webhook-id
    (a re-send of one event: at least once) or not (two events for one job: a broken invariant)."""
    doubled = [rs for rs in accepted_final_events(receiver).values() if len(rs) > 1]
    if not doubled:
        return "no final event accepted twice"
    firsts = sorted(rs[0].at - started for rs in doubled)
    seconds = sorted(rs[1].at - started for rs in doubled)
    same = sum(1 for rs in doubled if len({r.webhook_id for r in rs}) == 1)
    return (
        f"{len(doubled)} final events accepted twice: first copies at {firsts[0]:.1f}-{firsts[-1]:.1f} s, second at "
        f"{seconds[0]:.1f}-{seconds[-1]:.1f} s; {same} with one webhook-id (a re-send of one event)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--drain", type=float, default=300, help="longest wait for everything final and delivered")
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument(
        "--freeze-workers",
        action="store_true",
        help="freeze workers past their leases and locks instead of only killing them (see FROZEN below)",
    )
    args = parser.parse_args(argv)
    logdir = Path(tempfile.mkdtemp(prefix="assay-chaos-"))
    print(f"[chaos] logs in {logdir}", file=sys.stderr)

    with private_postgres() as pg:
        broker_port = free_port()
        broker = LocalRedis(logdir / "redis", broker_port, persist=False)
        redis_url = broker.start()
        db = make_engine(load_settings(database_url=pg.url), pool_size=2)
        with db.begin() as conn:
            key = create_key(conn, "chaos").secret
        api_port = free_port()
        prefix = f"chaos{secrets.token_hex(2)}"
        env = {
            **os.environ,
            **FAULT_TIMINGS,
            "DATABASE_URL": pg.url,
            "REDIS_URL": redis_url,
            "ASSAY_QUEUE_PREFIX": prefix,
            "ASSAY_API_BIND": f"127.0.0.1:{api_port}",
            "ASSAY_VAR_DIR": str(logdir / "var"),
            "ASSAY_SECRETS_KEYS": Fernet.generate_key().decode(),
        }
        chaos = Chaos(logdir)
        worker = chaos.add(
            inference_process("chaos-cpu0@%h", [f"{prefix}.text", f"{prefix}.audio"], {"ASSAY_TORCH_THREADS": "2"}),
            env,
        )
        tabular = chaos.add(tabular_process(f"{prefix}.tabular", 0, hostname="chaos-tabular@%h"), env)
        maintenance = chaos.add(maintenance_process(f"{prefix}.maintenance", str(logdir / "beat")), env)
        deliverer = chaos.add(webhooks_process(f"{prefix}.webhooks", 8, hostname="chaos-webhooks@%h"), env)
        api = chaos.add(api_process(), env)
        url = f"http://127.0.0.1:{api_port}"
        wait_for(lambda: worker.proc is not None and worker.proc.log_events("worker ready"), 180, what="worker ready")
        with contextlib.suppress(requests.RequestException):
            wait_for(lambda: requests.get(f"{url}/health", timeout=1).status_code == 200, 60, what="api")
        receiver = Receiver(free_port()).start()
        receiver.secrets.append(
            requests.get(f"{url}/v1/webhooks/secret", headers={"Authorization": f"Bearer {key}"}, timeout=10).json()[
                "secret"
            ]
        )
        threading.Thread(target=chaos.supervise, daemon=True).start()

        clients = Clients(url, key, f"{receiver.url}/flaky")
        mixed = MixedClient(url, key, f"{receiver.url}/flaky", stop=clients.stop)
        threads = [threading.Thread(target=clients.run, args=(n,), daemon=True) for n in range(4)]
        threads.append(threading.Thread(target=mixed.run, daemon=True))
        started = time.monotonic()
        for thread in threads:
            thread.start()

        def at(second: float) -> None:
            time.sleep(max(0.0, started + second * args.seconds / 60 - time.monotonic()))

        frozen = args.freeze_workers
        at(8)
        kill_group(worker)
        at(18)
        assert broker.process is not None
        broker.process.send_signal(signal.SIGKILL)
        broker.process.wait(10)
        time.sleep(3)
        broker = LocalRedis(logdir / "redis", broker_port, persist=False)
        broker.start()
        if frozen:  # FROZEN: the restarted inference worker hangs past its lease (30 s) with jobs claimed
            at(24)
            freeze_group(worker, 40 * args.seconds / 60)
        at(25)
        kill_one_gunicorn_worker(api)
        if frozen:  # FROZEN: gunicorn reloads its workers under load
            at(28)
            assert api.proc is not None
            os.kill(api.proc.pid, signal.SIGHUP)
        at(32)
        pg.server.stop("immediate")
        time.sleep(3)
        pg.server.start()
        at(38)
        if frozen:  # FROZEN: the tabular worker hangs mid-file instead of dying
            freeze_group(tabular, 40 * args.seconds / 60)
        else:
            kill_group(tabular)
        at(42)
        if frozen:  # FROZEN: the deliverer lives through the Redis restart, then hangs past its claim locks (45 s)
            freeze_group(deliverer, 50 * args.seconds / 60)
        else:
            kill_group(deliverer)
        at(50)
        kill_group(maintenance)
        at(53)
        assert broker.process is not None
        freeze([broker.process.pid], 4)
        at(58)
        freeze(postgres_pids(pg.server.datadir), 8)
        at(60)
        clients.stop.set()
        for thread in threads:
            thread.join(120)  # the mixed client's keyed request may still be retrying
        load_ended = time.monotonic()
        accepted = clients.accepted + mixed.accepted

        def settled() -> bool:
            found = outcome(db, accepted, receiver)
            return not (found["lost"] or found["not final"] or found["events not delivered"] or found["missing"])

        try:
            wait_for(settled, args.drain, interval=2, what="every job final and its final event delivered")
            drained = time.monotonic() - load_ended
        except TimeoutError:
            drained = float("nan")
        time.sleep(3)  # anything doubled would arrive now
        found = outcome(db, accepted, receiver)
        findings = mixed.findings(db)
        detail = doubled_detail(receiver, started)
        finished = Counter(r["job_id"] for r in worker.proc.log_events("job finished")) if worker.proc else Counter()
        twice = sum(1 for count in finished.values() if count > 1)
        with db.connect() as conn:
            attempts: dict[int, int] = dict(
                conn.execute(select(jobs.c.attempts, func.count()).where(jobs.c.id.in_(accepted)).group_by(
                    jobs.c.attempts)).all()
            )  # fmt: skip
            failed: dict[str, int] = dict(
                conn.execute(select(jobs.c.error_code, func.count()).where(
                    jobs.c.id.in_(accepted), jobs.c.status == "failed").group_by(jobs.c.error_code)).all()
            )  # fmt: skip
        chaos.stop()
        receiver.stop()
        broker.stop()
        db.dispose()

    statuses = clients.statuses + mixed.statuses
    server_errors = sum(n for status, n in statuses.items() if status >= 500 and status != 503)
    in_flight = load_settings().webhook_concurrency
    rows = [
        ["accepted (202)", len(accepted)],
        ["… of them by the fifth client", ", ".join(f"{kind} {n}" for kind, n in sorted(mixed.by_kind.items()))],
        ["answers 503 (back-pressure or a dependency down)", statuses[503]],
        ["answers ≥ 500 other than 503", server_errors],
        ["connection errors (a gunicorn worker killed mid-request)", statuses[0]],
        ["lost (accepted, not in PostgreSQL)", found["lost"]],
        ["not final", found["not final"]],
        ["jobs finished twice", twice],
        ["final webhook event missing", found["missing"]],
        ["final webhook event doubled (two events for one job)", found["doubled"]],
        ["final webhook event re-sent (one event received twice)", found["re-sent"]],
        ["invalid signatures", found["invalid signatures"]],
        ["failed jobs", sum(failed.values())],
        *([name, n] for name, n in findings.items()),
        ["end of load → all final and delivered (s)", f"{drained:.0f}"],
    ]
    text = table(["chaos run", "value"], [[name, str(value)] for name, value in rows])
    restarts = ", ".join(f"{m.spec.kind} {m.restarts}" for m in chaos.supervised)
    notes = (
        f"{args.seconds:.0f} s of load by 4 text clients and the mixed one"
        f"{' (workers frozen past their leases and locks)' if args.freeze_workers else ''}; "
        f"restarts by the supervisor: {restarts}; "
        f"attempts per job: {dict(sorted(attempts.items()))}; "
        f"answers by status: {dict(sorted(statuses.items()))}; failed jobs by error code: {dict(failed)}. "
        "Doubled and re-sent count final events the receiver accepted (2xx) more than once, by whether the "
        "copies carry two webhook-ids (a second event: a broken invariant) or one (a re-send, which Standard "
        "Webhooks receivers drop by webhook-id): attempts a SIGKILLed deliverer had in flight, or delivered and "
        f"not yet recorded, are sent again once their locks run out, at most its {in_flight} attempts in flight "
        f"({detail})."
    )
    if args.no_record:
        print(text, "\n\n" + notes)
    else:
        record("Chaos (CPU)", "python -m bench.chaos " + " ".join(argv or sys.argv[1:]), text, notes)
    storm = found["re-sent"] > in_flight  # more than one killed deliverer could have had in flight
    broken = found["lost"] or found["missing"] or found["doubled"] or twice or storm or any(findings.values())
    ok = server_errors == 0 and not broken and not failed
    return 0 if ok and not math.isnan(drained) else 1


if __name__ == "__main__":
    sys.exit(main())
