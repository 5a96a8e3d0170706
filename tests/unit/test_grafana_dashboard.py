"""The Grafana dashboard asks only for metrics Assay (or a named exporter) exports, in valid PromQL shape."""

from __future__ import annotations

import json
import re

from prometheus_client import REGISTRY

import app.http_metrics  # noqa: F401  (registers the API's metrics)
import telemetry.metrics  # noqa: F401
from config.settings import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "assay.json"
EXTERNAL = {"process_resident_memory_bytes", "DCGM_FI_DEV_GPU_UTIL"}  # prometheus-client's process collector, dcgm
NOISE = re.compile(r"\{[^}]*\}|\[[^\]]*\]|\bby \([^)]*\)")  # label matchers, ranges, grouping
NAME = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")  # identifiers that are not function calls


def _ours() -> set[str]:
    names = {"assay_queue_depth"}  # a custom collector, registered by the API's /metrics view
    for metric in REGISTRY.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(metric.type, [""])
        names |= {metric.name + suffix for suffix in suffixes}
    return names


def test_every_query_names_a_known_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    known = _ours() | EXTERNAL
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 20
    for expr in exprs:
        assert expr.count("(") == expr.count(")"), expr
        used = set(NAME.findall(NOISE.sub("", expr)))
        assert used and used <= known, (expr, used - known)


def test_panels_cover_what_operators_ask_for() -> None:
    text = DASHBOARD.read_text()
    for metric in (
        "assay_queue_depth",
        "assay_jobs_finished_total",
        "assay_batch_size_bucket",
        "assay_queue_wait_seconds_bucket",
        "assay_inference_seconds_bucket",
        "assay_webhook_attempts_total",
        "process_resident_memory_bytes",
        "DCGM_FI_DEV_GPU_UTIL",
    ):
        assert metric in text, metric
    ids = [p["id"] for p in json.loads(text)["panels"]]
    assert len(ids) == len(set(ids))
