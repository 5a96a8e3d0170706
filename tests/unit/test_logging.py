from __future__ import annotations

import io
import json
import logging

from config.logging import bound, configure_logging
from config.settings import load_settings


def test_json_lines_carry_bound_context_and_extra_fields() -> None:
    stream = io.StringIO()
    configure_logging(load_settings(log_json=True), stream=stream)
    with bound(job_id="job_1", task_id="t"):
        logging.getLogger("assay.test").info("batch processed", extra={"size": 3})
    logging.getLogger("assay.test").info("after")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["event"] == "batch processed" and first["size"] == 3
    assert first["job_id"] == "job_1" and first["task_id"] == "t" and first["level"] == "info"
    assert "job_id" not in second


def test_routine_lines_of_periodic_tasks_are_dropped_unless_debugging() -> None:
    """Celery's own wording (celery.beat, celery.worker.strategy, celery.app.trace) for a sweep's run."""
    routine = [
        ("celery.beat", logging.INFO, "Scheduler: Sending due task %s (%s)", ("webhook-sweep", "assay.webhooks.sweep")),
        ("celery.worker.strategy", logging.INFO, "Task %s[%s] received", ("assay.sweep", "8f0c")),
        ("celery.app.trace", logging.INFO, "Task %s[%s] succeeded in %ss: %s", ("assay.uploads.sweep", "1a", 0.1, 0)),
    ]
    kept = [
        ("celery.app.trace", logging.ERROR, "Task %s[%s] raised unexpected: %s", ("assay.sweep", "9b", "boom")),
        ("celery.worker.strategy", logging.INFO, "Task %s[%s] received", ("assay.analyze", "2c")),
        ("pipeline.recovery", logging.INFO, "sweep %s", ("assay.sweep[",)),
    ]
    for level, expected in (("DEBUG", routine + kept), ("INFO", kept)):
        stream = io.StringIO()
        configure_logging(load_settings(log_json=True, log_level=level), stream=stream)
        for name, severity, message, args in routine + kept:
            logging.getLogger(name).log(severity, message, *args)
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert [(line["logger"], line["event"]) for line in lines] == [
            (name, message % args) for name, _, message, args in expected
        ]
