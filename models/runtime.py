"""Torch device and thread selection, done in the process that runs the model (never before fork)."""

from __future__ import annotations

from typing import Any

from config.host import usable_cpus


def resolve_device(device: str) -> str:
    """`auto` means CUDA when present. Importing torch here, not at module import, keeps forks safe."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("ASSAY_DEVICE=cuda but no CUDA device is visible")
    return device


def configure_threads(threads: int) -> int:
    """Intra-op threads for CPU inference; 0 means one per core this process may use."""
    import torch

    count = threads or usable_cpus()
    torch.set_num_threads(count)
    return count


def load_transformer(source: str, model_class: str, *, device: str, local_files_only: bool) -> tuple[Any, Any, str]:
    """(tokenizer, model in eval mode on its device, device) for a transformers `Auto*` model class.

    fp16 on CUDA; nothing is fetched from a hub unless `local_files_only` is False.
    """
    import transformers
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    resolved = resolve_device(device)
    tokenizer = transformers.AutoTokenizer.from_pretrained(source, local_files_only=local_files_only)
    model = getattr(transformers, model_class).from_pretrained(source, local_files_only=local_files_only)
    if resolved == "cuda":
        model = model.half()
    return tokenizer, model.to(resolved).eval(), resolved
