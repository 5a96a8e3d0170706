"""Audio bytes in, facts or samples out, independent of any speech model.

PyAV bundles FFmpeg, so any container FFmpeg reads (WAV, MP3, OGG/Opus, WebM, M4A, FLAC...)
works without a system ffmpeg. Probing reads only the container header, so limits can be
checked before a job pays for decoding; decoding yields what Whisper-style models want:
float32 mono at a fixed sample rate.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from models.base import InputError


class InvalidAudio(InputError):  # noqa: N818 (the name the service uses for its error codes)
    """Bytes that are not usable audio: `empty_audio` (nothing to hear) or `invalid_audio` (not decodable).

    An InputError, so it fails only the job whose input it is, never the batch.
    """


def open_audio(data: bytes) -> Any:
    """A PyAV container over the bytes themselves, and nothing they name.

    FFmpeg's demuxers that refer to other inputs (an ffconcat script, an HLS or DASH playlist, an
    image sequence) open them through a protocol: an uploaded `ffconcat version 1.0 / file var/x.wav`
    made the API's probe read a file of the server's own disk, and the worker transcribe it for the
    tenant. No protocol is allowed, so every such nested open fails and the upload is `invalid_audio`.
    """
    import av

    return av.open(
        io.BytesIO(data), mode="r", metadata_errors="ignore", container_options={"protocol_whitelist": "none"}
    )


@dataclass(frozen=True)
class AudioInfo:
    duration_seconds: float
    sample_rate: int
    channels: int
    codec: str


def probe_audio(data: bytes, *, max_seconds: float | None = None, deadline_seconds: float = 1.0) -> AudioInfo:
    """Duration, rate, channels and codec of the first audio stream, in bounded time.

    The duration comes from the stream or container header. When neither has one (streamed
    WebM/Ogg, raw ADTS), the packets are counted without decoding them; once they pass
    `max_seconds` the answer is known ("too long") and counting stops. Only packets without
    durations are decoded, again stopping at `max_seconds`. A probe still undecided after
    `deadline_seconds` raises `audio_probe_timeout`: an upload can never hold the caller longer.
    The duration reported is then a lower bound when it exceeds `max_seconds`.
    """
    if not data:
        raise InvalidAudio("empty_audio", "audio is empty")
    import av

    deadline = time.monotonic() + deadline_seconds
    try:
        with open_audio(data) as container:
            if not container.streams.audio:
                raise InvalidAudio("invalid_audio", "no audio stream found")
            stream = container.streams.audio[0]
            context = stream.codec_context
            if context is None:  # a header PyAV opens but no decoder takes (e.g. a WAV with 0 bits per sample)
                raise InvalidAudio("invalid_audio", "audio could not be read: no decoder for its format")
            duration = _header_duration(container, stream)
            if duration is None or duration <= 0:
                duration = _counted_duration(data, max_seconds, deadline)
            info = AudioInfo(
                duration_seconds=round(duration, 3),
                sample_rate=int(context.sample_rate or 0),
                channels=int(context.channels or 0),
                codec=context.name,
            )
    except av.FFmpegError as exc:
        raise InvalidAudio("invalid_audio", f"audio could not be read: {exc.strerror or exc}") from exc
    if info.duration_seconds <= 0:
        raise InvalidAudio("empty_audio", "audio has no samples")
    return info


def decode_audio(data: bytes, sample_rate: int = 16000, *, max_seconds: float | None = None) -> Any:
    """Float32 mono samples at `sample_rate` (a numpy array), decoded as faster-whisper decodes files.

    `max_seconds` stops a file whose header understates its length (a small upload that
    decodes to hours of audio) with `audio_too_long` once that much has been decoded.
    """
    if not data:
        raise InvalidAudio("empty_audio", "audio is empty")
    import av
    import numpy as np

    limit = None if max_seconds is None else int(max_seconds * sample_rate)
    chunks: list[Any] = []
    decoded = 0
    resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
    try:
        with open_audio(data) as container:
            if not container.streams.audio:
                raise InvalidAudio("invalid_audio", "no audio stream found")
            for frame in _frames(container, container.streams.audio[0]):
                frame.pts = None  # resample by sample count; broken timestamps must not drop audio
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                    decoded += out.samples
                if limit is not None and decoded > limit:
                    raise InvalidAudio("audio_too_long", f"audio is longer than {max_seconds:g} s")
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except av.FFmpegError as exc:
        raise InvalidAudio("invalid_audio", f"audio could not be decoded: {exc.strerror or exc}") from exc
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    if samples.size == 0:
        raise InvalidAudio("empty_audio", "audio has no samples")
    if limit is not None and samples.size > limit:
        raise InvalidAudio("audio_too_long", f"audio is longer than {max_seconds:g} s")
    return samples.astype(np.float32) / 32768.0


def _header_duration(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        import av

        return container.duration / av.time_base
    return None


def _frames(container: Any, stream: Any) -> Iterator[Any]:
    """Decoded frames, skipping damaged packets the way faster-whisper does."""
    import av

    frames = container.decode(stream)
    while True:
        try:
            yield next(frames)
        except StopIteration:
            return
        except av.error.InvalidDataError:
            continue


def _counted_duration(data: bytes, max_seconds: float | None, deadline: float) -> float:
    """Seconds of audio found by demuxing packets (cheap: no decoding), or by decoding when packets
    carry no durations; stops early past `max_seconds`, raises past `deadline`."""

    with open_audio(data) as container:
        stream = container.streams.audio[0]
        seconds, undated = 0.0, 0
        for count, packet in enumerate(container.demux(stream), 1):
            if packet.duration and packet.time_base:
                seconds += float(packet.duration * packet.time_base)
            elif packet.size:
                undated += 1
            if max_seconds is not None and seconds > max_seconds:
                return seconds
            if count % 512 == 0 and time.monotonic() > deadline:
                raise _probe_timeout()
        if not undated:
            return seconds
    return _decoded_duration(data, max_seconds, deadline)


def _decoded_duration(data: bytes, max_seconds: float | None, deadline: float) -> float:

    with open_audio(data) as container:
        stream = container.streams.audio[0]
        samples = 0
        rate = stream.codec_context.sample_rate or 0
        for count, frame in enumerate(_frames(container, stream), 1):
            samples += frame.samples
            rate = frame.sample_rate or rate
            if rate and max_seconds is not None and samples / rate > max_seconds:
                break
            if count % 64 == 0 and time.monotonic() > deadline:
                raise _probe_timeout()
    return samples / rate if rate else 0.0


def _probe_timeout() -> InvalidAudio:
    return InvalidAudio(
        "audio_probe_timeout", "the audio's length could not be read quickly; send a file whose header states it"
    )
