"""What the worker adds to outcomes after the model ran: diagnostics where asked for, and the result size limit.

Diagnostics describe the run that computed the result (a cache hit or an attached job carries its
source's, beside `cached`). The size limit holds for every result, whatever options added to it: a
result heavier than ASSAY_MAX_RESULT_BYTES as JSON fails its job (`result_too_large`), alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from config import Settings
from config.catalog import AnalysisConfig, head_version, model_choice, model_label
from config.engines import engine_versions
from store.worker import ClaimedJob, Outcome


@dataclass(frozen=True)
class Timing:
    """One model batch's stages, in seconds."""

    claim: float
    model: float


def annotate(
    settings: Settings,
    catalog: dict[str, AnalysisConfig],
    claimed: list[ClaimedJob],
    outcomes: list[Outcome],
    timing: Timing,
) -> list[Outcome]:
    """Outcomes with diagnostics added where a job asked, then every result held to the size limit."""
    jobs = {job.id: job for job in claimed}
    versions: dict[str, dict[str, Any]] = {}
    annotated = []
    for o in outcomes:
        job = jobs[o.job_id]
        result = o.result
        if result is not None and (job.options or {}).get("return_diagnostics") and job.analysis in catalog:
            if job.analysis not in versions:
                versions[job.analysis] = _versions(settings, catalog, job.analysis)
            diagnostics = {**_diagnostics(job, result, len(claimed), timing), **versions[job.analysis]}
            result = {**result, "diagnostics": diagnostics}
        annotated.append(bounded(replace(o, result=result), settings.max_result_bytes))
    return annotated


def _diagnostics(job: ClaimedJob, result: dict[str, Any], batch_size: int, timing: Timing) -> dict[str, Any]:
    queued = (job.started_at - job.created_at).total_seconds() if job.started_at and job.created_at else None
    return {
        **result.get("diagnostics", {}),
        "queued_ms": None if queued is None else round(queued * 1000, 3),
        "claim_ms": round(timing.claim * 1000, 3),
        "model_ms": round(timing.model * 1000, 3),
        "batch_size": batch_size,
        "attempt": job.attempt,
    }


def _versions(settings: Settings, catalog: dict[str, AnalysisConfig], analysis: str) -> dict[str, Any]:
    config = catalog[analysis]
    return {
        "engine": model_choice(settings, config).engine,
        "model": model_label(settings, config),
        "head_version": head_version(settings, catalog, analysis),
        "engine_versions": engine_versions(),
    }


def bounded(o: Outcome, limit: int) -> Outcome:
    """The outcome, or a `result_too_large` failure if its result weighs more than `limit` bytes as JSON."""
    if o.result is None:
        return o
    size = len(json.dumps(o.result, separators=(",", ":"), ensure_ascii=False).encode(errors="surrogatepass"))
    if size <= limit:
        return o
    return Outcome(
        o.job_id,
        o.attempt,
        error_code="result_too_large",
        error_message=f"the result is {size} bytes as JSON; the limit is {limit} (ASSAY_MAX_RESULT_BYTES)",
    )
