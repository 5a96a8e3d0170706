"""The API's own metrics: requests by route and status, and their latency."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter("assay_http_requests_total", "API requests", ["method", "route", "status"])
HTTP_LATENCY = Histogram("assay_http_request_seconds", "API request latency", ["method", "route"])
