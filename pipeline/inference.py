"""From claimed jobs to outcomes: text through the text engines, audio through transcription (and pipelines).

Plain functions over the `models.base.Engines` seam, unit-tested directly. Every failure is per job:
an error in one input never fails its neighbours.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from config.catalog import AnalysisConfig
from models.base import Embedding, Engines, InputError, TextPrediction, Transcript
from models.transient import is_transient
from store.worker import ClaimedJob, Outcome

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


def outcome(job: ClaimedJob, value: dict[str, Any] | InputError) -> Outcome:
    if isinstance(value, InputError):
        return Outcome(job.id, job.attempt, error_code=value.code, error_message=value.message)
    return Outcome(job.id, job.attempt, result=value)


def guarded(
    call: Callable[[list[Item]], list[Result | InputError]], items: list[Item], label: str
) -> list[Result | InputError]:
    """Call with the whole batch; if that raises, call item by item to isolate the culprit.

    An item that raises a transient error (models.transient: memory, disk) re-raises it: the job is
    not at fault, and the batch loop hands it back for another attempt instead of failing it."""
    try:
        return call(items)
    except Exception:
        log.exception("batch failed; retrying items one at a time", extra={"step": label, "size": len(items)})
    results: list[Result | InputError] = []
    for item in items:
        try:
            results.extend(call([item]))
        except Exception as exc:
            if is_transient(exc):
                raise
            results.append(InputError("inference_error", f"{type(exc).__name__}: {exc}"))
    return results


def text_of(job: ClaimedJob) -> str | InputError:
    text = job.input.get("text")
    if not isinstance(text, str):
        return InputError("invalid_input", "input.text must be a string")
    return text


def run_text(engines: Engines, jobs: list[ClaimedJob]) -> list[Outcome]:
    """One engines call for the batch: each model (the shared encoder, each classifier) runs once."""
    texts = [text_of(job) for job in jobs]
    valid = [i for i, text in enumerate(texts) if isinstance(text, str)]
    pairs = [(jobs[i].analysis, str(texts[i])) for i in valid]
    predictions = guarded(engines.predict_text, pairs, "text inference")
    values: dict[int, dict[str, Any] | InputError] = {
        i: text for i, text in enumerate(texts) if isinstance(text, InputError)
    }
    for i, prediction in zip(valid, predictions, strict=True):
        values[i] = prediction if isinstance(prediction, InputError) else _text_result(prediction, jobs[i].options)
    return [outcome(job, values[i]) for i, job in enumerate(jobs)]


def _text_result(prediction: TextPrediction | Embedding, options: dict[str, Any] | None) -> dict[str, Any]:
    """The result, with what the job's options ask for: both come from the batch's one encoder pass."""
    value = prediction.to_json()
    options = options or {}
    if options.get("return_embedding") and isinstance(prediction, TextPrediction) and prediction.embedding:
        value["embedding"] = prediction.embedding.vector_json()
    if options.get("return_diagnostics"):
        value["diagnostics"] = {"tokens": prediction.tokens, "truncated": prediction.truncated}
    return value


def run_audio(
    engines: Engines,
    catalog: dict[str, AnalysisConfig],
    jobs: list[ClaimedJob],
    blobs: dict[str, bytes],
    max_audio_seconds: float,
) -> list[Outcome]:
    """Decode every clip, transcribe them in one batched call, then run pipelines' text steps together."""
    from models.audio import InvalidAudio, decode_audio

    audio: dict[int, Any] = {}
    values: dict[int, dict[str, Any] | InputError] = {}
    for i, job in enumerate(jobs):
        data = blobs.get(job.id)
        if data is None:
            values[i] = InputError("audio_missing", "the job's audio is gone (erased?)")
            continue
        try:
            audio[i] = decode_audio(data, max_seconds=max_audio_seconds)
        except InvalidAudio as exc:
            values[i] = InputError(exc.code, exc.message)
        except Exception as exc:  # FFmpeg or PyAV failing in a way we did not foresee: this job only
            if is_transient(exc):
                raise
            log.warning("audio decoding failed", exc_info=True, extra={"job_id": job.id})
            values[i] = InputError("invalid_audio", f"audio could not be decoded: {type(exc).__name__}")
    order = list(audio)
    transcripts = guarded(engines.speech.transcribe, [audio[i] for i in order], "transcription")
    heard: dict[int, Transcript | InputError] = dict(zip(order, transcripts, strict=True))

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
        predictions = guarded(engines.predict_text, [(name, text) for _, name, text in followups], "pipeline")
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
    return [outcome(job, values[i]) for i, job in enumerate(jobs)]


def _step_result(prediction: TextPrediction | Embedding | InputError) -> dict[str, Any]:
    if isinstance(prediction, InputError):  # e.g. silence: nothing to analyse
        return {"error": {"code": prediction.code, "message": prediction.message}}
    return prediction.to_json()
