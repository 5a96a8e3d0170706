"""The chaos run's fifth client: every kind of job the four text clients never send.

Audio uploaded as a file and as base64 in a batch (transcription, audio_threat: the GPU-family worker's
other queue), call-record files (the tabular worker, its spool folder), texts sent again and again (result
cache hits and jobs attached to a live twin), Idempotency-Keys retried until they get an answer (a request
whose answer a kill swallowed), and jobs canceled right after they are accepted. Each has a property the
run checks at the end (`MixedClient.findings`): one job per key, a canceled job stays canceled, a call-record
result flags exactly the planted SIM boxes, a repeated text gets one label.
"""

from __future__ import annotations

import base64
import gzip
import json
import random
import secrets
import tempfile
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import Engine, select

from bench.cdr_data import generate, write
from config.settings import ROOT
from store.tables import jobs

AUDIO = ROOT / "tests" / "fixtures" / "audio"
REPEATED = [
    "The delivery was late but support was helpful.",
    "Your account is suspended. Click here to verify your password.",
    "I love this product, it works perfectly.",
]
CDR_PARAMETERS = {"min_unique_destinations": 50, "max_avg_duration_seconds": 3.0}


def call_record_files(count: int) -> list[tuple[bytes, set[str]]]:
    """(gzipped CSV, planted SIM boxes) of `count` different days of calls, each ~10,000 records."""
    folder = Path(tempfile.mkdtemp(prefix="assay-chaos-cdr-"))
    files = []
    for seed in range(count):
        columns, truth = generate(10_000, sim_boxes=3, intensity=80, call_centres=2, auto_diallers=1, days=1, seed=seed)
        path = folder / f"calls{seed}.csv"
        write(columns, path)
        files.append((gzip.compress(path.read_bytes()), set(truth.sim_boxes)))
    return files


@dataclass
class MixedClient:
    url: str
    key: str
    hook: str
    pause: float = 0.2  # between requests
    cdr_files: list[tuple[bytes, set[str]]] = field(default_factory=lambda: call_record_files(4))
    statuses: Counter[int] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)  # jobs accepted per kind of request
    accepted: list[str] = field(default_factory=list)
    keyed: dict[str, set[str]] = field(default_factory=dict)  # Idempotency-Key -> every job id answered for it
    unanswered_keys: int = 0  # keys that never got an answer (the retry budget ran out)
    canceled: list[str] = field(default_factory=list)  # jobs a cancel answered 200 for
    planted: dict[str, set[str]] = field(default_factory=dict)  # call-record job -> its SIM boxes
    repeated: dict[str, int] = field(default_factory=dict)  # job -> index into REPEATED
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {self.key}"
        self.rng = random.Random(5)
        self.webhook = {"url": self.hook}

    def run(self) -> None:
        """Audio and call records one request in eight each (a clip costs the one CPU worker about a
        second), the cheap kinds in between."""
        cheap = [self.repeated_text, self.keyed_job, self.cancel_after_accept]
        kinds: list[Callable[[], None]] = [
            self.audio_upload,
            *cheap,
            self.call_records,
            *cheap,
            self.audio_batch,
            *cheap,
            self.call_records,
            *cheap,
        ]
        i = 0
        while not self.stop.is_set():
            kinds[i % len(kinds)]()
            i += 1
            self.stop.wait(self.pause)

    def _post(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        try:
            response = self.session.post(f"{self.url}{path}", timeout=30, **kwargs)
            body = response.json() if response.content else None
        except (requests.RequestException, ValueError):
            return 0, None
        return response.status_code, body

    def _took(self, kind: str, status: int, body: Any) -> list[str]:
        """Ids of the jobs a 202 created (a batch's too), counted under `kind`."""
        self.statuses[status] += 1
        if status != 202:
            return []
        ids = [job["id"] for job in body["data"]] if "data" in body else [body["id"]]
        self.accepted += ids
        self.by_kind[kind] += len(ids)
        return ids

    def audio_upload(self) -> None:
        name = self.rng.choice(["hello.wav", "benign.wav"])
        files = {"file": (name, (AUDIO / name).read_bytes(), "audio/wav")}
        data = {"analysis": "transcription", "webhook": json.dumps(self.webhook)}
        self._took("audio upload", *self._post("/v1/jobs", files=files, data=data))

    def audio_batch(self) -> None:
        entries = [
            {"analysis": "audio_threat", "input": {"audio_base64": base64.b64encode((AUDIO / n).read_bytes()).decode()}}
            for n in ("phishing.wav", "numbers.wav")
        ]
        self._took("audio batch", *self._post("/v1/jobs/batch", json={"jobs": entries, "webhook": self.webhook}))

    def call_records(self) -> None:
        data, sim_boxes = self.cdr_files[self.rng.randrange(len(self.cdr_files))]
        params = {
            "analysis": "cdr_fraud",
            "parameters": json.dumps(CDR_PARAMETERS),
            "webhook": json.dumps(self.webhook),
        }
        status, body = self._post("/v1/jobs", params=params, data=data, headers={"Content-Type": "application/gzip"})
        for job_id in self._took("call records", status, body):
            self.planted[job_id] = sim_boxes

    def repeated_text(self) -> None:
        index = self.rng.randrange(len(REPEATED))
        body = {"analysis": "sentiment", "input": {"text": REPEATED[index]}, "webhook": self.webhook}
        for job_id in self._took("repeated text", *self._post("/v1/jobs", json=body)):
            self.repeated[job_id] = index

    def keyed_job(self) -> None:
        """One job under a fresh Idempotency-Key, sent until some answer names it (then once more)."""
        key = secrets.token_hex(8)
        body = {"analysis": "toxicity", "input": {"text": f"keyed request {key}"}, "webhook": self.webhook}
        answers = 0
        for _ in range(90):  # a restart of everything fits well inside 90 tries a second apart
            status, answer = self._post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
            self.statuses[status] += 1
            if status in (200, 202):
                self.keyed.setdefault(key, set()).add(answer["id"])
                if status == 202:
                    self.accepted.append(answer["id"])
                    self.by_kind["idempotent"] += 1
                answers += 1
                if answers == 2:
                    return
            elif 400 <= status < 500 and status != 429:
                return
            else:
                threading.Event().wait(1)
        if key not in self.keyed:
            self.unanswered_keys += 1

    def cancel_after_accept(self) -> None:
        body = {"analysis": "phishing", "input": {"text": f"cancel me {secrets.token_hex(4)}"}, "webhook": self.webhook}
        for job_id in self._took("canceled", *self._post("/v1/jobs", json=body)):
            status, _ = self._post(f"/v1/jobs/{job_id}/cancel")
            if status == 200:
                self.canceled.append(job_id)

    def findings(self, db: Engine) -> dict[str, int]:
        """What the run checks beyond "final and delivered", counted (every figure should be 0)."""
        with db.connect() as conn:
            rows = {
                r.id: r
                for r in conn.execute(
                    select(jobs.c.id, jobs.c.status, jobs.c.result, jobs.c.error_code).where(
                        jobs.c.id.in_(self.accepted)
                    )
                )
            }
        labels: dict[int, set[str]] = {}
        for job_id, index in self.repeated.items():
            row = rows.get(job_id)
            if row is not None and row.status == "succeeded":
                labels.setdefault(index, set()).add(row.result["label"])
        return {
            "keys answered with two different jobs": sum(1 for ids in self.keyed.values() if len(ids) > 1),
            "keys never answered": self.unanswered_keys,
            "canceled (200), then not canceled": sum(
                1 for job_id in self.canceled if job_id in rows and rows[job_id].status != "canceled"
            ),
            "call-record results not exactly the planted SIM boxes": sum(
                1
                for job_id, planted in self.planted.items()
                if job_id in rows
                and (
                    rows[job_id].status != "succeeded"
                    or {e["caller"] for e in rows[job_id].result["flagged_callers"]} != planted
                )
            ),
            "repeated texts with more than one label": sum(1 for found in labels.values() if len(found) > 1),
        }
