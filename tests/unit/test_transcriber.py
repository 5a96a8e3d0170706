"""Speech to text on the real packaged Whisper models (base and tiny.en, from site-packages, no hub) and audio probing.

The clips are espeak-ng speech (tests/fixtures/audio/README.md); the models mishear a word
here and there, so text is scored by word accuracy rather than compared exactly, except
where two paths of our own must agree exactly.
"""

from __future__ import annotations

import json
import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from bench.wer import word_error_rate
from config.settings import load_settings
from models.audio import AudioInfo, InvalidAudio, decode_audio, probe_audio
from models.base import InputError
from models.packaged_whisper import PACKAGED_WHISPER, WHISPER_BASE, WHISPER_TINY_EN, packaged_whisper_path
from models.transcriber import Segment, Transcript, WhisperTranscriber

AUDIO = Path(__file__).resolve().parent.parent / "fixtures" / "audio"
EXPECTED: dict[str, str] = json.loads((AUDIO / "transcripts.json").read_text())
SHORT = ["hello.wav", "phishing.wav", "benign.wav", "numbers.wav"]


def word_accuracy(expected: str, got: str) -> float:
    """1 - WER, scored as bench/wer.py scores (Whisper's English normaliser: "7" is "seven")."""
    return 1 - word_error_rate([expected], [got])


def wav_seconds(name: str) -> float:
    with wave.open(str(AUDIO / name), "rb") as wav:
        return wav.getnframes() / wav.getframerate()


@pytest.fixture(scope="module", params=[(WHISPER_BASE, 5), (WHISPER_TINY_EN, 1)], ids=lambda p: f"{p[0]}-beam{p[1]}")
def transcriber(request: pytest.FixtureRequest) -> WhisperTranscriber:
    """whisper-base (the default, assembled from two packages) with the default 5 beams, and
    whisper-tiny.en greedy: both decoding paths must batch without changing a transcript."""
    name, beams = request.param
    path = packaged_whisper_path(name, load_settings().var_dir / "models")
    return WhisperTranscriber(path, device="cpu", name=name, beam_size=beams)


@pytest.fixture(scope="module")
def clips() -> dict[str, np.ndarray]:
    return {name: decode_audio((AUDIO / name).read_bytes()) for name in [*SHORT, "long.wav"]}


@pytest.fixture(scope="module")
def batched(transcriber: WhisperTranscriber, clips: dict[str, np.ndarray]) -> dict[str, Transcript]:
    """The four short clips in one call: one batched model call, as jobs from a worker batch."""
    results = transcriber.transcribe([clips[name] for name in SHORT])
    assert all(isinstance(result, Transcript) for result in results)
    return dict(zip(SHORT, results, strict=True))  # type: ignore[arg-type]


def test_word_accuracy_helper() -> None:
    assert word_accuracy("Hello, World!", "hello world") == 1.0
    assert word_accuracy("There are seven days in a week.", "there are 7 days in a week") == 1.0
    assert word_accuracy("the cat sat on the mat", "the cat sat on a mat") == pytest.approx(5 / 6)
    assert word_accuracy("the cat sat", "") == 0.0


@pytest.mark.parametrize("name", SHORT)
def test_short_clips_are_transcribed(name: str, batched: dict[str, Transcript], clips: dict[str, np.ndarray]) -> None:
    """Each clip is heard (a word or two may go: int8 kernels differ between CPUs, and on an AMD EPYC
    whisper-base hears benign.wav's "The weather is nice today" as "However, is the ice today", 0.67,
    where Intel machines hear it right); the set as a whole is held to more below."""
    transcript = batched[name]
    assert word_accuracy(EXPECTED[name], transcript.text) >= 0.6, transcript.text
    assert transcript.language == "en" and transcript.model in PACKAGED_WHISPER
    assert transcript.duration == pytest.approx(len(clips[name]) / 16000, abs=1e-3)
    assert transcript.segments and " ".join(s.text for s in transcript.segments) == transcript.text
    for segment in transcript.segments:
        assert 0 <= segment.start <= segment.end <= transcript.duration


def test_the_short_clips_are_heard_well_together(batched: dict[str, Transcript]) -> None:
    accuracy = [word_accuracy(EXPECTED[name], batched[name].text) for name in SHORT]
    assert sum(accuracy) / len(accuracy) >= 0.85, accuracy


def test_batched_equals_one_at_a_time(
    transcriber: WhisperTranscriber, batched: dict[str, Transcript], clips: dict[str, np.ndarray]
) -> None:
    for name in SHORT:
        (alone,) = transcriber.transcribe([clips[name]])
        assert alone == batched[name], name


def test_batched_path_is_close_to_faster_whisper(
    transcriber: WhisperTranscriber, batched: dict[str, Transcript], clips: dict[str, np.ndarray]
) -> None:
    for name in ["hello.wav", "numbers.wav"]:
        segments, _ = transcriber.model.transcribe(
            clips[name],
            language="en",
            beam_size=transcriber.beam_size,
            temperature=0.0,
            condition_on_previous_text=False,
        )
        reference = "".join(segment.text for segment in segments)
        assert word_accuracy(reference, batched[name].text) >= 0.9, (reference, batched[name].text)


def test_long_audio_goes_window_by_window(transcriber: WhisperTranscriber, clips: dict[str, np.ndarray]) -> None:
    assert wav_seconds("long.wav") > 30
    (transcript,) = transcriber.transcribe([clips["long.wav"]])
    assert isinstance(transcript, Transcript)
    assert word_accuracy(EXPECTED["long.wav"], transcript.text) >= 0.8, transcript.text
    assert len(transcript.segments) > 1
    assert transcript.segments[-1].end > 30
    starts = [segment.start for segment in transcript.segments]
    assert starts == sorted(starts)
    assert transcript.segments[-1].end <= transcript.duration


def test_bad_inputs_fail_alone_and_keep_their_place(
    transcriber: WhisperTranscriber, clips: dict[str, np.ndarray]
) -> None:
    empty, good, stereo = transcriber.transcribe(
        [np.zeros(0, dtype=np.float32), clips["benign.wav"], np.zeros((2, 16000), dtype=np.float32)]
    )
    assert isinstance(empty, InputError) and empty.code == "empty_audio"
    assert isinstance(good, Transcript) and word_accuracy(EXPECTED["benign.wav"], good.text) >= 0.6
    assert good == transcriber.transcribe([clips["benign.wav"]])[0]  # its place and its own transcript
    assert isinstance(stereo, InputError) and stereo.code == "invalid_audio"


def test_digital_silence_is_heard_as_nothing(transcriber: WhisperTranscriber, clips: dict[str, np.ndarray]) -> None:
    """With 5 beams whisper-base heard "You" in zeros, and its no-speech rule kept it."""
    quiet = np.full(32_000, 5e-5, dtype=np.float32)
    quiet[::2] *= -1
    zeros, faint, good = transcriber.transcribe([np.zeros(48_000, dtype=np.float32), quiet, clips["benign.wav"]])
    for silent, seconds in ((zeros, 3.0), (faint, 2.0)):
        assert isinstance(silent, Transcript) and silent.text == "" and silent.segments == [], silent
        assert silent.duration == seconds
    assert isinstance(good, Transcript) and word_accuracy(EXPECTED["benign.wav"], good.text) >= 0.6


def test_a_tone_or_hum_is_not_heard_as_a_loop_of_words(
    transcriber: WhisperTranscriber, clips: dict[str, np.ndarray]
) -> None:
    """whisper-base heard "I'm sorry, I'm sorry, ..." (some 30 times) in a 1 kHz tone and in 50 Hz mains
    hum, windows it rated as likely speechless; in a batch with speech, the speech is still heard."""
    seconds = np.arange(5 * 16_000, dtype=np.float32) / 16_000
    tone = (0.9 * np.sin(2 * np.pi * 1000 * seconds[: 2 * 16_000])).astype(np.float32)
    hum = (0.2 * np.sin(2 * np.pi * 50 * seconds)).astype(np.float32)
    heard_tone, heard_hum, good = transcriber.transcribe([tone, hum, clips["benign.wav"]])
    for silent in (heard_tone, heard_hum):
        assert isinstance(silent, Transcript) and silent.segments == [], silent
    assert isinstance(good, Transcript) and word_accuracy(EXPECTED["benign.wav"], good.text) >= 0.6


def test_the_loop_rule_drops_only_what_the_model_calls_speechless() -> None:
    from models.transcriber import compression_ratio, looks_unspoken

    loop = compression_ratio("I'm sorry, " * 30)
    assert loop > 10 and compression_ratio("Hello, this is a test of the transcription service.") < 1.2
    assert looks_unspoken(0.8, -0.1, loop)  # speechless by the model's own account, and a loop
    assert looks_unspoken(0.8, -1.5, 1.0)  # faster-whisper's rule: speechless and improbable
    assert not looks_unspoken(0.8, -0.3, 1.0)  # probable, varied text: kept, as faster-whisper keeps it
    assert not looks_unspoken(0.1, -0.1, loop)  # repeated words the model hears as speech ("no, no, no, ...")


def test_transcript_json() -> None:
    transcript = Transcript(
        text="Hi there.", language="en", duration=1.5, segments=[Segment(0.0, 1.5, "Hi there.")], model="m"
    )
    assert transcript.to_json() == {
        "text": "Hi there.",
        "language": "en",
        "duration": 1.5,
        "segments": [{"start": 0.0, "end": 1.5, "text": "Hi there."}],
        "model": "m",
    }
    json.dumps(transcript.to_json())


@pytest.mark.parametrize("name", [*SHORT, "long.wav"])
def test_probe_reads_the_header(name: str) -> None:
    info = probe_audio((AUDIO / name).read_bytes())
    assert isinstance(info, AudioInfo)
    assert info.duration_seconds == pytest.approx(wav_seconds(name), abs=0.1)
    assert (info.sample_rate, info.channels, info.codec) == (16000, 1, "pcm_s16le")


def test_decode_gives_float32_mono(clips: dict[str, np.ndarray]) -> None:
    with wave.open(str(AUDIO / "hello.wav"), "rb") as wav:
        frames = wav.getnframes()
    samples = clips["hello.wav"]
    assert samples.dtype == np.float32 and samples.shape == (frames,)
    assert 0 < np.abs(samples).max() <= 1.0


def test_decode_stops_audio_longer_than_allowed() -> None:
    with pytest.raises(InvalidAudio) as caught:
        decode_audio((AUDIO / "long.wav").read_bytes(), max_seconds=10)
    assert caught.value.code == "audio_too_long"


@pytest.mark.parametrize("format_tag", [0, 3, 0xFFFE, 0x1234])
@pytest.mark.parametrize("bits", [0, 8])
def test_wav_headers_no_decoder_takes_are_input_errors(format_tag: int, bits: int) -> None:
    """PyAV opens these (format tags 0, 3, 0xFFFE and unknown ones with odd sample sizes) with no codec context."""
    fmt = struct.pack("<HHIIHH", format_tag, 1, 8000, 0, 0, bits)
    data = b"RIFF$\x00\x00\x00WAVEfmt \x10\x00\x00\x00" + fmt + b"data\x00\x00\x00\x00"
    for read in (probe_audio, decode_audio):
        with pytest.raises(InvalidAudio) as caught:
            read(data)
        assert caught.value.code in ("invalid_audio", "empty_audio") and caught.value.message


@pytest.mark.parametrize(("name", "code"), [("not_audio.wav", "invalid_audio"), ("empty.wav", "empty_audio")])
def test_unusable_files_are_input_errors(name: str, code: str) -> None:
    data = (AUDIO / name).read_bytes()
    for read in (probe_audio, decode_audio):
        with pytest.raises(InvalidAudio) as caught:
            read(data)
        assert caught.value.code == code and caught.value.message
        assert isinstance(caught.value, InputError)
