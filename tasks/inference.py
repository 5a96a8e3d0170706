"""From claimed jobs to outcomes: text through the text engines, audio through transcription (and pipelines).

Plain functions over a registry, unit-tested directly. Every failure is per job: an error in one
input never fails its neighbours.
"""

from __future__ import annotations

import logging
from typing import Any

from config.analyses import AnalysisConfig
from models.base import InputError, TextPrediction
from store.jobs import ClaimedJob, Outcome

log = logging.getLogger(__name__)


def _outcome(job: ClaimedJob, value: Any) -> Outcome:
    if isinstance(value, InputError):
        return Outcome(job.id, job.attempt, error_code=value.code, error_message=value.message)
    return Outcome(job.id, job.attempt, result=value)


def _guarded(call: Any, items: list[Any], label: str) -> list[Any]:
    """Call with the whole batch; if that raises, call item by item to isolate the culprit."""
    try:
        return call(items)
    except Exception:
        log.exception("batch failed; retrying items one at a time", extra={"step": label, "size": len(items)})
    results = []
    for item in items:
        try:
            results.extend(call([item]))
        except Exception as exc:
            results.append(InputError("inference_error", f"{type(exc).__name__}: {exc}"))
    return results


def text_of(job: ClaimedJob) -> str | InputError:
    text = job.input.get("text")
    if not isinstance(text, str):
        return InputError("invalid_input", "input.text must be a string")
    return text


def run_text(registry: Any, jobs: list[ClaimedJob]) -> list[Outcome]:
    """One registry call for the batch: each model (the shared encoder, each classifier) runs once."""
    texts = [text_of(job) for job in jobs]
    valid = [i for i, text in enumerate(texts) if isinstance(text, str)]
    predictions = _guarded(registry.predict_text, [(jobs[i].analysis, texts[i]) for i in valid], "text inference")
    values: dict[int, Any] = {i: texts[i] for i in range(len(jobs)) if i not in set(valid)}
    for i, prediction in zip(valid, predictions, strict=True):
        values[i] = prediction if isinstance(prediction, InputError) else prediction.to_json()
    return [_outcome(job, values[i]) for i, job in enumerate(jobs)]


def run_audio(
    registry: Any, catalog: dict[str, AnalysisConfig], jobs: list[ClaimedJob], blobs: dict[str, bytes]
) -> list[Outcome]:
    """Decode every clip, transcribe them in one batched call, then run pipelines' text steps together."""
    from models.audio import InvalidAudio, decode_audio

    audio: dict[int, Any] = {}
    values: dict[int, Any] = {}
    for i, job in enumerate(jobs):
        data = blobs.get(job.id)
        if data is None:
            values[i] = InputError("audio_missing", "the job's audio is gone (erased?)")
            continue
        try:
            audio[i] = decode_audio(data, max_seconds=registry.settings.max_audio_seconds)
        except InvalidAudio as exc:
            values[i] = InputError(exc.code, exc.message)
    order = list(audio)
    transcripts = _guarded(registry.transcriber.transcribe, [audio[i] for i in order], "transcription")
    heard = dict(zip(order, transcripts, strict=True))

    followups: list[tuple[int, str, str]] = []  # (job index, analysis, transcript text)
    for i, transcript in heard.items():
        if isinstance(transcript, InputError):
            values[i] = transcript
            continue
        config = catalog[jobs[i].analysis]
        if config.engine == "pipeline":
            followups += [(i, name, transcript.text) for name in config.then]
        values[i] = transcript.to_json()
    if followups:
        predictions = _guarded(registry.predict_text, [(name, text) for _, name, text in followups], "pipeline")
        steps: dict[int, dict[str, Any]] = {}
        for (i, name, _), prediction in zip(followups, predictions, strict=True):
            steps.setdefault(i, {})[name] = _step_result(prediction)
        for i, results in steps.items():
            values[i] = {
                "transcript": values[i],
                "analyses": results,
                "flagged": any(r.get("flagged") is True for r in results.values()),
                "flagged_by": sorted(name for name, r in results.items() if r.get("flagged") is True),
            }
    return [_outcome(job, values[i]) for i, job in enumerate(jobs)]


def _step_result(prediction: TextPrediction | InputError) -> dict[str, Any]:
    if isinstance(prediction, InputError):  # e.g. silence: nothing to analyse
        return {"error": {"code": prediction.code, "message": prediction.message}}
    return prediction.to_json()
