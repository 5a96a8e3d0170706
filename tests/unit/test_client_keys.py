"""Idempotency keys derived from content, and how submit_many cuts its input into keyed chunks."""

from __future__ import annotations

from pathlib import Path

import pytest
from assay_client.batching import plan_chunks
from assay_client.idempotency import canonical_json, content_key, entry_digest, random_key
from assay_client.inputs import Audio, JobRequest

A = entry_digest({"analysis": "sentiment", "input": {"text": "a"}})
B = entry_digest({"analysis": "sentiment", "input": {"text": "b"}})


def test_canonical_json_ignores_key_order_but_not_values() -> None:
    assert canonical_json({"b": 1, "a": [1, "é"]}) == canonical_json({"a": [1, "é"], "b": 1})
    assert entry_digest({"input": {"text": "x"}, "analysis": "s"}) == entry_digest(
        {"analysis": "s", "input": {"text": "x"}}
    )
    assert entry_digest({"analysis": "s", "input": {"text": "x"}}) != entry_digest(
        {"analysis": "s", "input": {"text": "y"}}
    )


def test_content_key_is_stable_and_changes_with_everything_that_matters() -> None:
    key = content_key([A, B], chunk_index=0)
    assert key == content_key([A, B], chunk_index=0)
    others = {
        content_key([B, A], chunk_index=0),  # order
        content_key([A], chunk_index=0),  # membership
        content_key([A, B], chunk_index=1),  # position in the input: identical chunks stay distinct jobs
        content_key([A, B], chunk_index=0, salt="fresh"),  # --fresh
        content_key([A, B], chunk_index=0, webhook={"url": "https://example.com/h", "events": ["completed"]}),
    }
    assert key not in others and len(others) == 5


def test_keys_fit_the_api_limit_with_the_batch_suffix() -> None:
    assert len(content_key([A] * 1000, chunk_index=10**6) + "#999") <= 200
    assert len(random_key()) <= 200 and random_key() != random_key()


def test_plan_chunks_cuts_in_order_with_positions() -> None:
    plan = list(plan_chunks("sentiment", [f"t{i}" for i in range(7)], chunk_size=3, keys="content"))
    assert [(c.index, c.start, c.size) for c in plan] == [(0, 0, 3), (1, 3, 3), (2, 6, 1)]
    assert [e["input"]["text"] for c in plan for e in c.body["jobs"]] == [f"t{i}" for i in range(7)]


def test_content_keys_repeat_on_a_rerun_and_random_ones_do_not() -> None:
    texts = [f"t{i}" for i in range(5)]
    again = [c.key for c in plan_chunks("sentiment", texts, chunk_size=2, keys="content")]
    assert [c.key for c in plan_chunks("sentiment", texts, chunk_size=2, keys="content")] == again
    assert [c.key for c in plan_chunks("toxicity", texts, chunk_size=2, keys="content")] != again
    randoms = [c.key for c in plan_chunks("sentiment", texts, chunk_size=2)]
    assert set(randoms).isdisjoint(c.key for c in plan_chunks("sentiment", texts, chunk_size=2))


def test_identical_chunks_get_different_keys() -> None:
    keys = [c.key for c in plan_chunks("sentiment", ["same"] * 6, chunk_size=2, keys="content")]
    assert len(set(keys)) == 3


def test_a_caller_prefix_numbers_the_chunks() -> None:
    assert [c.key for c in plan_chunks("sentiment", "abcde", chunk_size=2, key_prefix="run-7")] == [
        "run-7.0",
        "run-7.1",
        "run-7.2",
    ]


def test_batch_metadata_and_webhook_go_into_the_body() -> None:
    requests = [JobRequest(text="x", metadata={"n": 1}), JobRequest(text="y")]
    hook = {"url": "https://example.com/h", "events": ["completed"]}
    (chunk,) = plan_chunks("sentiment", requests, metadata={"batch": "b", "n": 0}, webhook=hook)
    assert chunk.body["webhook"] == hook
    assert [e["metadata"] for e in chunk.body["jobs"]] == [{"batch": "b", "n": 1}, {"batch": "b", "n": 0}]


def test_audio_is_read_only_when_its_chunk_is_built(tmp_path: Path) -> None:
    clip = tmp_path / "a.wav"
    clip.write_bytes(b"RIFF....")
    plan = plan_chunks("transcription", [clip, Audio(data=b"raw", filename="b.ogg")], chunk_size=1)
    clip.write_bytes(b"RIFF-changed")  # nothing read yet
    first, second = (c.body["jobs"][0]["input"] for c in plan)
    assert first == {"audio_base64": "UklGRi1jaGFuZ2Vk", "filename": "a.wav"}
    assert second == {"audio_base64": "cmF3", "filename": "b.ogg"}


def test_bad_items_are_refused() -> None:
    with pytest.raises(TypeError):
        list(plan_chunks("sentiment", [42]))  # type: ignore[list-item]
    with pytest.raises(ValueError, match="exactly one"):
        JobRequest()
