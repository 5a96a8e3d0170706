"""Cache keys and result annotation: pure logic, tested in-process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.result_cache import cache_key, cache_keys
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


def test_only_the_same_text_shares_a_key() -> None:
    """The heads read whitespace, line breaks and composition (injection rules, n-grams, VADER): so does the key."""
    assert key("café au lait") == key("café au lait")
    for variant in ("café  au lait", "café au lait ", "café\nau lait", "cafe\u0301 au lait", "Café au lait"):
        assert key(variant) != key("café au lait"), repr(variant)


def test_tenants_are_apart_unless_the_deployment_shares_the_cache() -> None:
    assert key("hello", "t1") != key("hello", "t2")
    shared = load_settings(cache_shared_across_tenants=True)
    assert key("hello", "t1", settings=shared) == key("hello", "t2", settings=shared)


def test_analysis_options_and_namespace_are_part_of_the_key() -> None:
    assert key("hello") != key("hello", analysis="toxicity")
    assert key("hello") != key("hello", options={"return_embedding": True})
    assert key("hello") != key("hello", settings=load_settings(cache_namespace="2026-11"))


def test_a_batchs_keys_are_each_jobs_own_key_and_skip_what_the_cache_does_not_serve() -> None:
    specs = [
        JobSpec("sentiment", {"text": "one"}),
        JobSpec("sentiment", {"text": "two"}, options={"return_embedding": True}),
        JobSpec("toxicity", {"text": "one"}),
        JobSpec("sentiment", {"text": "one"}, use_cache=False),
        JobSpec("sentiment", {"text": "two"}),
        JobSpec("sentiment", {"text": "two"}, options={"return_embedding": True}),
    ]
    keys = cache_keys(SETTINGS, CATALOG, "t1", specs)
    assert keys[3] is None
    expected = [key(s.input["text"], analysis=s.analysis, options=s.options) for s in specs]
    assert [k for i, k in enumerate(keys) if i != 3] == [k for i, k in enumerate(expected) if i != 3]
    assert keys[1] == keys[5] != keys[4]
    assert len({keys[0], keys[1], keys[2], keys[4]}) == 4


def test_intakes_decisions_are_copied_onto_a_spec_and_nothing_else_is() -> None:
    spec = JobSpec("sentiment", {"text": "one"}, metadata={"a": 1})
    planned = spec.planned(job_id="job_x", cache_key="k")
    assert (planned.job_id, planned.cache_key, planned.metadata, spec.job_id) == ("job_x", "k", {"a": 1}, None)
    assert planned == JobSpec("sentiment", {"text": "one"}, metadata={"a": 1}, job_id="job_x", cache_key="k")
    try:
        spec.planned(analysis="toxicity")
    except TypeError:
        pass
    else:
        raise AssertionError("planned() changed a validated field")


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


def test_a_result_is_weighed_in_utf8_bytes() -> None:
    """json.dumps' default \\u escapes weighed a CJK transcript at twice its UTF-8 size (6 bytes a
    character against 3): a result well inside ASSAY_MAX_RESULT_BYTES failed with result_too_large."""
    transcript = Outcome("a", 1, result={"text": "日" * 300})  # {"text":"…"}: 10 + 900 bytes in UTF-8
    assert bounded(transcript, 1024) == transcript
    assert bounded(Outcome("b", 1, result={"text": "日" * 400}), 1024).error_code == "result_too_large"


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
