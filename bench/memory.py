"""Memory of one CPU worker serving every analysis (text and audio), after real work.

    .venv/bin/python -m bench.memory [--jobs 400]

Starts the worker on both queues, runs a mixed load (text jobs of every analysis in batches,
short and long audio clips, audio_threat), then reads the worker's resident set (VmRSS) and its
peak (VmHWM) from /proc. Target (issue 12): under 2 GiB with Whisper base and every trained head.
"""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path

from bench.harness import bench_stack, record, table
from bench.texts import messages
from tests.integration.helpers import wait_all_final
from tests.support import Client

AUDIO = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "audio"


def proc_status(pid: int) -> dict[str, int]:
    """kB values of VmRSS and VmHWM (the solo pool runs everything in this one process)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--jobs", type=int, default=400)
    args = parser.parse_args(argv)
    text_analyses = ["sentiment", "toxicity", "prompt_injection", "phishing"]
    clips = {name: base64.b64encode((AUDIO / name).read_bytes()).decode() for name in ("hello.wav", "long.wav")}

    with bench_stack() as bench:
        worker = bench.stack.worker("memory", families=("text", "audio"))
        loaded = proc_status(worker.pid)
        client = Client(bench.stack.api()[1], bench.key())
        body = {
            "jobs": [
                {"analysis": text_analyses[i % 4], "input": {"text": t}} for i, t in enumerate(messages(args.jobs))
            ]
        }
        ids = [j["id"] for j in client.post("/v1/jobs/batch", json=body).json()["data"]]
        audio = [
            {"analysis": analysis, "input": {"audio_base64": clip, "filename": name}}
            for analysis in ("transcription", "audio_threat")
            for name, clip in clips.items()
            for _ in range(4)
        ]
        ids += [j["id"] for j in client.post("/v1/jobs/batch", json={"jobs": audio}).json()["data"]]
        statuses = wait_all_final(bench.db, ids, timeout=900)
        after = proc_status(worker.pid)

    assert set(statuses.values()) == {"succeeded"}, statuses
    mib = 1024
    rows = [
        ["after start-up (all models loaded, warmed up)", f"{loaded['VmRSS'] / mib:.0f}", ""],
        [
            f"after {args.jobs} text + {len(audio)} audio jobs",
            f"{after['VmRSS'] / mib:.0f}",
            f"{after['VmHWM'] / mib:.0f}",
        ],
    ]
    text = table(["worker (text + audio queues, solo pool)", "RSS MiB", "peak RSS MiB"], rows)
    notes = (
        "One worker process serving sentiment, toxicity, prompt_injection, phishing (one MiniLM encoder), "
        "transcription and audio_threat (Whisper base int8), on the CPU. Target: < 2 GiB."
    )
    record("Worker memory (CPU)", "python -m bench.memory " + " ".join(argv or sys.argv[1:]), text, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
