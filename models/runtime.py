"""Torch device and thread selection, done in the process that runs the model (never before fork)."""

from __future__ import annotations

import os


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

    count = threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(count)
    return count
