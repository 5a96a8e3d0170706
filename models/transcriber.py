"""Speech to text with faster-whisper (CTranslate2 Whisper), batched across jobs.

faster-whisper's `transcribe()` handles one file at a time. Most jobs are short clips, and
Whisper always encodes a 30 s window however short the clip, so clips of at most 30 s from
different jobs are stacked into one `[batch, n_mels, 3000]` feature tensor and decoded by one
CTranslate2 `generate` call; longer files go through `transcribe()` one at a time.
Decoding is greedy or beam search at temperature 0 (no sampling fallback), so a clip gives
the same text whatever batch it lands in.
"""

from __future__ import annotations

import zlib
from typing import Any

from config.host import usable_cpus
from models.base import InputError, Segment, Transcript
from models.runtime import resolve_device

__all__ = ["Segment", "Transcript", "WhisperTranscriber"]

# faster-whisper's own defaults for skipping a window as silence.
NO_SPEECH_THRESHOLD = 0.6
LOG_PROB_THRESHOLD = -1.0
#: Whisper's bound on a decode's gzip compression ratio; past it the text is a repetition loop.
COMPRESSION_RATIO_THRESHOLD = 2.4
MAX_INITIAL_TIMESTAMP = 1.0
#: Peak amplitude (about -80 dBFS) under which a clip is digital silence. Whisper hears words in it
#: ("You", with 5 beams) that its no-speech rule keeps, so such a clip gets an empty transcript unheard.
SILENCE_PEAK = 1e-4


class WhisperTranscriber:
    """Loaded once per process, then called with whole batches of 16 kHz float32 mono arrays.

    `source` is a CTranslate2 Whisper directory (or a model id already in the local cache:
    with `local_files_only`, the default, nothing is downloaded). `language` is pinned
    (English-only models accept only "en"); None lets a multilingual model detect it per clip.
    """

    def __init__(
        self,
        source: str,
        *,
        device: str = "auto",
        compute_type: str = "default",
        cpu_threads: int = 0,
        language: str | None = "en",
        beam_size: int = 1,
        max_batch_size: int = 16,
        local_files_only: bool = True,
        name: str = "",
    ) -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        # torch is imported only to resolve "auto"/"cuda": a CPU transcriber does not need it.
        self.device = "cpu" if device == "cpu" else resolve_device(device)
        if compute_type == "default":
            compute_type = "float16" if self.device == "cuda" else "int8"
        self.compute_type = compute_type
        self.cpu_threads = cpu_threads or usable_cpus()
        self.model = WhisperModel(
            source,
            device=self.device,
            compute_type=compute_type,
            cpu_threads=self.cpu_threads,
            local_files_only=local_files_only,
        )
        multilingual = self.model.model.is_multilingual
        if not multilingual and language not in (None, "en"):
            raise ValueError(f"{source} is an English-only model; language {language!r} is not available")
        self.language = language if multilingual else "en"
        self.beam_size = beam_size
        self.max_batch_size = max_batch_size
        self.name = name or source
        self.sample_rate: int = self.model.feature_extractor.sampling_rate
        self.window_frames: int = self.model.feature_extractor.nb_max_frames
        self.window_samples: int = self.model.feature_extractor.n_samples
        self.tokenizer = Tokenizer(
            self.model.hf_tokenizer, multilingual, task="transcribe", language=self.language or "en"
        )
        self.suppress_tokens = list(get_suppressed_tokens(self.tokenizer, [-1]))

    def transcribe(self, audios: list[Any]) -> list[Transcript | InputError]:
        """One Transcript (or an InputError) per audio, in input order.

        Clips of at most 30 s share batched model calls (up to `max_batch_size` each);
        longer audio is transcribed window by window, one file at a time.
        """
        import numpy as np

        results: list[Transcript | InputError | None] = [None] * len(audios)
        arrays: dict[int, Any] = {}
        for index, audio in enumerate(audios):
            array = np.asarray(audio, dtype=np.float32) if audio is not None else np.zeros(0, dtype=np.float32)
            if array.ndim != 1:
                results[index] = InputError("invalid_audio", "audio must be one channel of samples")
            elif array.size == 0:
                results[index] = InputError("empty_audio", "audio has no samples")
            elif np.abs(np.nan_to_num(array, nan=0.0)).max() < SILENCE_PEAK:
                results[index] = self._transcript([], self.language or "en", array.shape[0] / self.sample_rate)
            else:
                arrays[index] = array
        short = [i for i, array in arrays.items() if array.shape[0] <= self.window_samples]
        for start in range(0, len(short), self.max_batch_size):
            chunk = short[start : start + self.max_batch_size]
            for index, transcript in zip(chunk, self._transcribe_short_batch([arrays[i] for i in chunk]), strict=True):
                results[index] = transcript
        for index, array in arrays.items():
            if results[index] is None:
                results[index] = self._transcribe_long(array)
        return results  # type: ignore[return-value]

    def warm_up(self) -> None:
        """One batched call on a second of silence, so the first job does not pay for lazy set-up."""
        import numpy as np

        self._transcribe_short_batch([np.zeros(self.sample_rate, dtype=np.float32)])

    def _transcribe_short_batch(self, audios: list[Any]) -> list[Transcript]:
        """Clips of at most 30 s, all decoded by one CTranslate2 `generate` call.

        Each clip's features are computed on its own and zero-padded to one 3000-frame
        window, exactly as `WhisperModel.transcribe` does for its first window, so a clip's
        result does not depend on the other clips in the batch.
        """
        import ctranslate2
        import numpy as np
        from faster_whisper.audio import pad_or_trim

        extractor = self.model.feature_extractor
        windows = []
        for audio in audios:
            features = extractor(audio)
            windows.append(pad_or_trim(features[:, : features.shape[-1] - 1], self.window_frames))
        features = ctranslate2.StorageView.from_array(np.ascontiguousarray(np.stack(windows)))
        languages = [self.language or "en"] * len(audios)
        if self.language is None:
            features = self.model.model.encode(features)
            languages = [found[0][0][2:-2] for found in self.model.model.detect_language(features)]
        prompts = [self._prompt(language) for language in languages]
        outputs = self.model.model.generate(
            features,
            prompts,
            beam_size=self.beam_size,
            patience=1,
            length_penalty=1,
            max_length=self.model.max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self.suppress_tokens,
            max_initial_timestamp_index=round(MAX_INITIAL_TIMESTAMP / self.model.time_precision),
        )
        transcripts = []
        for audio, language, output in zip(audios, languages, outputs, strict=True):
            duration = audio.shape[0] / self.sample_rate
            tokens = output.sequences_ids[0]
            pieces = [] if self._is_silence(output, len(tokens)) else self._pieces(tokens, duration)
            transcripts.append(self._transcript(pieces, language, duration))
        return transcripts

    def _transcribe_long(self, audio: Any) -> Transcript:
        segments, info = self.model.transcribe(
            audio,
            language=self.language,
            task="transcribe",
            beam_size=self.beam_size,
            temperature=0.0,
            condition_on_previous_text=False,
            vad_filter=False,
            without_timestamps=False,
            no_speech_threshold=NO_SPEECH_THRESHOLD,
            log_prob_threshold=LOG_PROB_THRESHOLD,
            max_initial_timestamp=MAX_INITIAL_TIMESTAMP,
        )
        duration = audio.shape[0] / self.sample_rate
        found = [  # consumes the generator
            (s.start, min(s.end, duration), s.text)
            for s in segments
            if not looks_unspoken(s.no_speech_prob, s.avg_logprob, s.compression_ratio)
        ]
        return self._transcript(found, info.language, duration)

    def _prompt(self, language: str) -> list[int]:
        """<|startoftranscript|> (+ <|lang|><|transcribe|> on multilingual models), timestamps on."""
        tokenizer = self.tokenizer
        if tokenizer.language is None:
            return [tokenizer.sot]
        return [tokenizer.sot, tokenizer.tokenizer.token_to_id(f"<|{language}|>"), tokenizer.transcribe]

    def _is_silence(self, output: Any, length: int) -> bool:
        """Likely no speech, and the text found is improbable (faster-whisper's rule) or a loop."""
        avg_logprob = output.scores[0] * length / (length + 1)
        begin = self.tokenizer.timestamp_begin
        text = self.tokenizer.decode([t for t in output.sequences_ids[0] if t < begin])
        return looks_unspoken(output.no_speech_prob, avg_logprob, compression_ratio(text))

    def _pieces(self, tokens: list[int], duration: float) -> list[tuple[float, float, str]]:
        """Split generated tokens at timestamp tokens: <|t0|> text <|t1|><|t1|> text <|t2|> ...

        Text after the last timestamp (the window ended mid-segment) runs to the clip's end;
        times are clamped to the clip, since the model may place them in the padding.
        """
        begin = self.tokenizer.timestamp_begin
        pieces: list[tuple[float, float, str]] = []
        start, pending = 0.0, []
        for token in [*tokens, None]:
            if token is not None and token < begin:
                pending.append(token)
                continue
            time = duration if token is None else min((token - begin) * self.model.time_precision, duration)
            if pending:
                pieces.append((min(start, time), time, self.tokenizer.decode(pending)))
            start, pending = time, []
        return pieces

    def _transcript(self, pieces: list[tuple[float, float, str]], language: str, duration: float) -> Transcript:
        """Pieces are (start, end, text as decoded): Whisper puts the space before a word in the token,
        so joining them as they are is right for every language; segment texts are stripped."""
        segments = [
            Segment(round(start, 3), round(end, 3), text.strip()) for start, end, text in pieces if text.strip()
        ]
        return Transcript(
            text="".join(text for _, _, text in pieces).strip(),
            language=language,
            duration=round(duration, 3),
            segments=segments,
            model=self.name,
        )


def compression_ratio(text: str) -> float:
    """Whisper's measure of repetition: the text's length over its zlib-compressed length."""
    data = text.encode()
    return len(data) / len(zlib.compress(data)) if data else 0.0


def looks_unspoken(no_speech_prob: float, avg_logprob: float, ratio: float) -> bool:
    """The model thinks there is no speech, and what it decoded is improbable or a repetition loop.

    faster-whisper keeps a window the model calls speechless when the decode is probable, but a loop
    ("I'm sorry, I'm sorry, ..." on a tone or mains hum) is probable by construction; Whisper would
    retry it at a higher temperature, which this deterministic decoder does not, so it is dropped.
    Speech the model hears as speech (no_speech_prob under the threshold) is never dropped."""
    if no_speech_prob <= NO_SPEECH_THRESHOLD:
        return False
    return avg_logprob < LOG_PROB_THRESHOLD or ratio > COMPRESSION_RATIO_THRESHOLD
