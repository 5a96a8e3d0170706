"""Embeddings of the training texts with the service's own packaged MiniLM, cached under var/train/.

The same encoder and the same token limit as the service (settings.max_model_tokens), so a head
sees at training time exactly the vectors it will see at run time.
"""

from __future__ import annotations

import functools
import hashlib
import sys
import time

import numpy as np

from config.settings import load_settings
from models.encoder import SentenceEncoder, packaged_minilm_path
from train.data import CACHE


@functools.cache
def encoder() -> SentenceEncoder:
    settings = load_settings()
    return SentenceEncoder(
        packaged_minilm_path(), device="cpu", max_length=settings.max_model_tokens, max_batch_size=32
    )


def embed(texts: list[str], name: str, layers: tuple[int, ...] = ()) -> np.ndarray:
    """[n, 384 * (1 + len(layers))] float32: the pools of `layers`, then the last layer's (the order
    models/heads.py feeds a head), computed once per (texts, token limit, layers) and cached."""
    enc = encoder()
    key = "\x00".join(texts) + f"|{enc.max_length}" + (f"|layers={layers}" if layers else "")
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = CACHE / "embeddings" / f"{name}-{digest}.npy"
    if path.exists():
        return np.load(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    chunks = []
    for start in range(0, len(texts), 512):
        encoded = enc.encode(texts[start : start + 512], layers)
        parts = [encoded.layers, encoded.vectors] if layers else [encoded.vectors]
        chunks.append(np.concatenate([part.numpy() for part in parts], axis=1))
        print(f"  embed {name}: {start + len(chunks[-1])}/{len(texts)}", file=sys.stderr, flush=True)
    vectors = np.concatenate(chunks).astype(np.float32)
    np.save(path, vectors)
    print(f"  embedded {name} in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return vectors
