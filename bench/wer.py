"""Word error rate of the packaged Whisper models on generated speech.

    .venv/bin/python -m bench.wer [--models whisper-base whisper-tiny.en]

No labelled speech corpus is reachable here, so the set is synthesised: every sentence in SENTENCES
(numbers, amounts, dates, names, account and phone details, everyday and call-centre speech) is spoken
by espeak-ng in each voice and speed of VOICES (American, British, Scottish and Caribbean English, a
female variant; slow and espeak's default speed), resampled to 16 kHz without dither, cached under
var/bench/wer/. The clips go through the service's own batched transcriber (`WhisperTranscriber`),
and WER is computed with jiwer after Whisper's own English normaliser (whisper-normalizer) on both
sides, so "12" and "twelve" or "Mr" and "mister" are not counted as errors, as in Whisper's paper.

Synthetic speech is cleaner than a phone line and more robotic than a person: read the figures as a
comparison between models on one fixed set, not as the error rate on real calls.
Needs Debian's espeak-ng and sox (`apt-get install espeak-ng sox`).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import record, table
from config.settings import load_settings

SENTENCES = [
    "Please transfer 250 dollars from my checking account to my savings account.",
    "Your bank account number ends in 4 7 1 9.",
    "The meeting with Sarah Johnson is moved to Thursday at 3 o'clock.",
    "Call me back on 0 7 7 0 0, 9 0 0, 1 2 3.",
    "I ordered 3 pairs of shoes on the 14th of March and only 2 arrived.",
    "Doctor Patel will see you in room 12 on the second floor.",
    "We have received your payment of 1,250 pounds, thank you.",
    "The flight from Chicago to Dublin leaves at 7 in the evening.",
    "My name is Michael O'Brien and I live at 42 Elm Street.",
    "Your verification code is 8 3 5 2 0 6. Do not share it with anyone.",
    "The weather today is sunny with a high of 24 degrees.",
    "Can you tell me why my internet bill went up by 15 percent this month?",
    "Maria Gonzalez from the finance team approved the invoice yesterday.",
    "There are 365 days in a year and 52 weeks.",
    "I would like to cancel my subscription and get a refund, please.",
    "The package will be delivered between 9 and 11 tomorrow morning.",
    "Press 1 for billing, 2 for technical support, or stay on the line.",
    "Thomas Anderson reported that the server went down at midnight.",
    "The total comes to 89 dollars and 99 cents including tax.",
    "Our office in Berlin opens on Monday, the 3rd of June.",
    "Someone called pretending to be from the bank and asked for my password.",
    "The children played football in the park until it started to rain.",
    "Please confirm your date of birth and the last 4 digits of your card.",
    "Professor Nakamura published her results in the journal last week.",
]

# (espeak-ng voice, words per minute): 175 is espeak-ng's default speed.
VOICES = [
    ("en-us", 175),
    ("en-us+f3", 150),
    ("en-gb", 175),
    ("en-gb-scotland", 150),
    ("en-029", 160),
]


def clip_path(cache: Path, voice: str, speed: int, text: str) -> Path:
    key = hashlib.sha256(f"{voice}|{speed}|{text}".encode()).hexdigest()[:12]
    return cache / f"{voice}-{speed}-{key}.wav"


def synthesise(cache: Path) -> list[tuple[str, str, Path]]:
    """(voice label, reference text, 16 kHz wav) for every sentence in every voice, made once."""
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        sys.exit("bench.wer needs espeak-ng and sox: apt-get install -y espeak-ng sox")
    cache.mkdir(parents=True, exist_ok=True)
    clips = []
    for voice, speed in VOICES:
        for text in SENTENCES:
            out = clip_path(cache, voice, speed, text)
            if not out.exists():
                raw = out.with_suffix(".raw.wav")
                subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text], check=True)
                subprocess.run(
                    ["sox", "-D", "-G", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(out)], check=True
                )
                raw.unlink()
            clips.append((f"{voice} {speed} wpm", text, out))
    return clips


DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
DIGIT_WORDS = {word: str(i) for i, word in enumerate(DIGITS)}
DIGIT_WORDS["oh"] = "0"


def join_digit_runs(text: str) -> str:
    """'4 7 one 9' and '4719' are the same spoken account number: a run of two or more digit tokens
    (digits, or digit words inside such a run) becomes one token. Whisper's normaliser leaves digit
    strings as the model spaced them, which would count a correctly heard code as several errors."""
    out: list[str] = []
    run: list[str] = []
    for token in [*text.split(), ""]:
        digit = token if token.isdigit() else DIGIT_WORDS.get(token)
        if digit is not None:
            run.append(token)
            continue
        if len(run) >= 2:
            out.append("".join(t if t.isdigit() else DIGIT_WORDS[t] for t in run))
        else:
            out.extend(run)
        run = []
        if token:
            out.append(token)
    return " ".join(out)


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """Corpus WER (total edits / total reference words) after Whisper's English normaliser."""
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    normalise = EnglishTextNormalizer()
    refs = [join_digit_runs(normalise(text)) for text in references]
    hyps = [join_digit_runs(normalise(text)) for text in hypotheses]
    return float(jiwer.wer(refs, hyps))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.wer", description=__doc__)
    parser.add_argument("--models", nargs="+", default=["whisper-base", "whisper-tiny.en"])
    parser.add_argument("--batch", type=int, default=16, help="clips per transcriber call (the worker's batch)")
    parser.add_argument("--beam-size", type=int, default=None, help="default: the service's ASSAY_SPEECH_BEAM_SIZE")
    args = parser.parse_args(argv)

    from models.audio import decode_audio
    from models.packaged_whisper import packaged_whisper_path
    from models.transcriber import Transcript, WhisperTranscriber

    settings = load_settings()
    clips = synthesise(settings.var_dir / "bench" / "wer")
    audio = [decode_audio(path.read_bytes()) for _, _, path in clips]
    seconds = sum(len(a) for a in audio) / 16000
    rows = []
    voices: list[str] = []
    for name in args.models:
        path = packaged_whisper_path(name, settings.var_dir / "models") if not Path(name).exists() else name
        beam = args.beam_size or settings.speech_beam_size
        model = WhisperTranscriber(path, device="cpu", name=name, max_batch_size=args.batch, beam_size=beam)
        started = time.perf_counter()
        texts: list[str] = []
        for start in range(0, len(audio), args.batch):
            for result in model.transcribe(audio[start : start + args.batch]):
                texts.append(result.text if isinstance(result, Transcript) else "")
        elapsed = time.perf_counter() - started
        per_voice = {
            label: word_error_rate([c[1] for c, t in pairs], [t for c, t in pairs])
            for label in dict.fromkeys(c[0] for c in clips)
            if (pairs := [(c, t) for c, t in zip(clips, texts, strict=True) if c[0] == label])
        }
        worst = max(per_voice, key=per_voice.__getitem__)
        total = word_error_rate([c[1] for c in clips], texts)
        rows.append(
            [
                name,
                beam,
                len(clips),
                f"{seconds:.0f}",
                f"{100 * total:.1f}%",
                f"{worst} {100 * per_voice[worst]:.1f}%",
                f"{seconds / elapsed:.1f}",
            ]
        )
        voices += [f"{name} · {label}: {100 * wer:.1f}%" for label, wer in per_voice.items()]
    headers = ["model", "beam", "clips", "audio s", "WER", "worst voice", "× real time (CPU)"]
    record(
        "bench.wer",
        "python -m bench.wer " + " ".join(sys.argv[1:]),
        table(headers, rows),
        "WER per voice: " + "; ".join(voices) + ".",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
