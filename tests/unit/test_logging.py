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
