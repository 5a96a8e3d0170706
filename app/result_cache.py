"""Intake's side of the result cache: derive each job's key, then serve it, attach it, or let it run.

Runs inside the transaction that creates the jobs (app.jobs_api), so a hit is a job created already
succeeded, and its events and metrics follow the one job-finished path after commit. The stored side
(entries, attached jobs, what happens when a source finishes) is store.result_cache.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import Connection

from config import Settings
from config.catalog import AnalysisConfig, head_version
from store.api import JobSpec
from store.ids import new_ordered_id
from store.result_cache import lookup

#: Bump when what goes into a key changes shape: every old entry then misses. 2: the text as sent.
KEY_FORMAT = 2
#: Inputs the cache serves. Call records are left out: their answer also depends on per-job columns and
#: parameters, and one file is rarely sent twice.
CACHED_INPUTS = ("text", "audio")


def keyed_input(spec: JobSpec) -> str:
    """What the key sees of the input: the audio's sha256, or the text exactly as sent.

    Not normalised: the heads read more than the encoder's WordPiece tokens (line-anchored injection
    rules, character n-grams, VADER's punctuation and case), so texts differing only in whitespace or
    Unicode composition can be scored differently, and a key that merged them served one text's verdict
    for the other (a newline-separated delimiter spoof got the "allow" of its one-line twin)."""
    audio = spec.input.get("audio")
    if isinstance(audio, dict):
        return f"audio:{audio['sha256']}"
    return f"text:{spec.input.get('text', '')}"


def _scope_hash(settings: Settings, tenant: str, analysis: str, version: str, options: dict | None) -> Any:
    """sha256 fed with everything but the input: shared by the jobs of a request that agree on it."""
    scope = "*" if settings.cache_shared_across_tenants else tenant
    parts = [KEY_FORMAT, settings.cache_namespace, scope, analysis, version, options or {}]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode())


def cache_key(settings: Settings, tenant: str, spec: JobSpec, version: str) -> str:
    """sha256 over the scope (the tenant, unless shared), analysis, its head version, options and input."""
    return _input_key(_scope_hash(settings, tenant, spec.analysis, version, spec.options), spec)


def _input_key(scope: Any, spec: JobSpec) -> str:
    digest = scope.copy()
    digest.update(b"\0" + keyed_input(spec).encode())
    return digest.hexdigest()


def cache_keys(
    settings: Settings, catalog: dict[str, AnalysisConfig], tenant: str, specs: list[JobSpec]
) -> list[str | None]:
    """`cache_key` of each spec the cache serves (None for the rest), hashing the part of the key that
    is not the input once per analysis and options: the same keys, for a third of the cost on a batch."""
    scopes: dict[tuple[str, str], Any] = {}
    keys: list[str | None] = []
    for spec in specs:
        if not spec.use_cache or catalog[spec.analysis].input not in CACHED_INPUTS:
            keys.append(None)
            continue
        options = json.dumps(spec.options, sort_keys=True) if spec.options else ""
        scope = scopes.get((spec.analysis, options))
        if scope is None:
            version = head_version(settings, catalog, spec.analysis)
            scope = scopes[spec.analysis, options] = _scope_hash(settings, tenant, spec.analysis, version, spec.options)
        keys.append(_input_key(scope, spec))
    return keys


def plan_jobs(
    conn: Connection, settings: Settings, catalog: dict[str, AnalysisConfig], tenant: str, specs: list[JobSpec]
) -> tuple[list[JobSpec], list[tuple[str, str]]]:
    """Each spec with its id and key, and either a cached result or the live job it attaches to.

    Returns (specs, [(analysis, "hit" | "miss" | "coalesced")]). A live job is preferred to a finished
    result (its answer is newer); the first of several identical specs in one request runs and the
    rest attach to it.
    """
    if not settings.cache_enabled:
        return specs, []
    keys = cache_keys(settings, catalog, tenant, specs)
    wanted = sorted({k for k in keys if k})
    sources, hits = lookup(conn, wanted, settings.cache_ttl_seconds)
    planned, outcomes = [], []
    for spec, key in zip(specs, keys, strict=True):
        if key is None:
            planned.append(spec)
            continue
        if key in sources:
            planned.append(spec.planned(cache_key=key, attach_to=sources[key]))
            outcomes.append((spec.analysis, "coalesced"))
        elif key in hits:
            planned.append(spec.planned(cached=hits[key]))
            outcomes.append((spec.analysis, "hit"))
        else:
            job_id = new_ordered_id("job")
            sources[key] = job_id
            planned.append(spec.planned(job_id=job_id, cache_key=key))
            outcomes.append((spec.analysis, "miss"))
    return planned, outcomes
