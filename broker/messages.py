"""Celery task messages as kombu's Redis transport stores them, built without a kombu connection.

Publishing through kombu costs a producer, a channel and several Redis round trips per message; the
publisher here pushes many messages and reads the broker epoch in one MULTI/EXEC instead. The message
is the one Celery itself would send: Celery builds the task protocol 2 headers and body
(`app.amqp.as_task_v2`), and the envelope is what `kombu.transport.redis.Channel._put` writes for the
anonymous exchange, so workers consume and restore it exactly like one sent with `send_task`.
"""

from __future__ import annotations

import base64
import json
import socket
import uuid

from celery import Celery

ORIGIN = f"assay@{socket.gethostname()}"


def task_message(app: Celery, task: str, args: list[object], queue: str, task_id: str | None = None) -> bytes:
    """The JSON a Redis-backed Celery worker reads from `queue` for `task(*args)`."""
    task_id = task_id or str(uuid.uuid4())
    headers, properties, body, _ = app.amqp.as_task_v2(task_id, task, args=args, ignore_result=True, origin=ORIGIN)
    envelope = {
        "body": base64.b64encode(json.dumps(body).encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            **properties,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return json.dumps(envelope).encode()


def message_args(raw: bytes | str) -> list[object]:
    """The positional arguments of a task message read back from Redis (a queue or the unacked hash)."""
    envelope = json.loads(raw)
    args, _kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
    return list(args)
