"""Cache keys and result annotation: pure logic, tested in-process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.result_cache import cache_key
from config.catalog import load_catalog
from config.settings import load_settings
from pipeline.annotate import Timing, annotate, bounded
from store.api import JobSpec
from store.worker import ClaimedJob, Outcome

CATALOG = load_catalog()
SETTINGS = load_settings()


def key(text: str, tenant: str = "t1", settings=SETTINGS, catalog=CATALOG, analysis="sentiment", **spec) -> str:
    from config.catalog import head_version

    job = JobSpec(analysis, {"text": text}, **spec)
    return cache_key(settings, tenant, job, head_version(settings, catalog, analysis))


def test_texts_differing_only_in_whitespace_or_unicode_composition_share_a_key() -> None:
    assert key("café  au\tlait ") == key("  cafe\u0301 au lait")
    assert key("café au lait") != key("Café au lait")  # case is left to the model


def test_tenants_are_apart_unless_the_deployment_shares_the_cache() -> None:
    assert key("hello", "t1") != key("hello", "t2")
    shared = load_settings(cache_shared_across_tenants=True)
    assert key("hello", "t1", settings=shared) == key("hello", "t2", settings=shared)


def test_analysis_options_and_namespace_are_part_of_the_key() -> None:
    assert key("hello") != key("hello", analysis="toxicity")
    assert key("hello") != key("hello", options={"return_embedding": True})
    assert key("hello") != key("hello", settings=load_settings(cache_namespace="2026-11"))


def test_another_model_or_an_edited_head_changes_the_key() -> None:
    other_model = load_settings(analysis_models={"sentiment": "embedding-prototype:/models/other-minilm"})
    assert key("hello") != key("hello", settings=other_model)
    assert key("hello") != key("hello", settings=load_settings(max_model_tokens=128))
    sentiment = CATALOG["sentiment"]
    labels = {**sentiment.labels, "positive": [*sentiment.labels["positive"], "Superb, thank you"]}
    for edited in (sentiment.model_copy(update={"labels": labels}), sentiment.model_copy(update={"version": 2})):
        assert key("hello") != key("hello", catalog={**CATALOG, "sentiment": edited})
    assert key("hello") == key("hello", catalog=dict(CATALOG))


def test_a_result_over_the_size_limit_fails_its_job_alone() -> None:
    small, large = Outcome("a", 1, result={"label": "x"}), Outcome("b", 1, result={"v": [0.1] * 1000})
    assert bounded(small, 1024) == small
    failed = bounded(large, 1024)
    assert failed.error_code == "result_too_large" and failed.result is None and "1024" in (failed.error_message or "")


def test_diagnostics_only_where_asked_with_stage_timings_and_versions() -> None:
    now = datetime.now(UTC)
    asked = ClaimedJob("a", "sentiment", {}, 1, now - timedelta(seconds=2), now, options={"return_diagnostics": True})
    plain = ClaimedJob("b", "sentiment", {}, 1, now, now)
    outcomes = [Outcome("a", 1, result={"label": "p", "diagnostics": {"tokens": 5}}), Outcome("b", 1, result={})]
    a, b = annotate(SETTINGS, CATALOG, [asked, plain], outcomes, Timing(claim=0.004, model=0.25))
    diagnostics = a.result["diagnostics"]
    assert diagnostics["tokens"] == 5 and diagnostics["batch_size"] == 2
    assert diagnostics["model_ms"] == 250 and diagnostics["claim_ms"] == 4 and 1999 < diagnostics["queued_ms"] < 2001
    assert diagnostics["head_version"].startswith("v1-") and diagnostics["engine"] == "embedding-head"
    assert b.result == {}
