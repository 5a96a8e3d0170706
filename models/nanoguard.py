"""metatronnanoguard's 16.8M-parameter prompt-injection classifier, one feature of the injection head.

The package (MIT) pads every input to 512 tokens and its attention takes no mask, so the pads change
the answer and a 20-token text pays for a 512-token pass (0.63 s on the CPU). Here a batch is padded
only to its longest text, and the pads are masked out of attention and of the mean pool: each text
gets what it gets alone at its own length, batched or not (tests/unit/test_nanoguard.py), at a
fraction of the cost. Under the injection head's cross-validation that real-length score added about
one accuracy point (docs/MODELS.md); alone it is 80 % on bastioncorpus at real length (76.8 % padded).

The weights and the tokenizer (a pickled tiktoken encoding) load from the installed package; the
model code is the package's, except the attention call, which is rewritten here to take the mask.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from models.batching import forward_batch, plan_batches

MAX_FORWARD_BATCH = 32  # texts per pass on a GPU; the CPU takes fewer (models/batching.py)
MAX_TOKENS = 512  # the package's own limit (its rotary tables cover 1,024 positions)
LOG_ODDS_LIMIT = 12.0  # the feature is log P(injection) / P(safe), clamped: saturated scores stay finite


@functools.cache
def _loaded(device: str) -> tuple[Any, Any]:
    import importlib.resources

    from nanoguard.model import Classifier
    from nanoguard.tokenizer import Tokenizer

    with importlib.resources.as_file(importlib.resources.files("nanoguard.assets").joinpath("model.pt")) as path:
        model, _, _ = Classifier.from_checkpoint(str(path), device=device)
    return Tokenizer.from_bundled(), model.to(device)


def _attention(attn: Any, x: Any, cos_sin: tuple[Any, Any], keep: Any) -> Any:
    """nanoguard.model.BidirectionalAttention.forward with a key mask (`keep`: [B, 1, 1, T] bool)."""
    from nanoguard.model import apply_rotary_emb, norm
    from torch.nn.functional import scaled_dot_product_attention

    b, t, c = x.size()
    q = attn.c_q(x).view(b, t, attn.n_head, attn.head_dim)
    k = attn.c_k(x).view(b, t, attn.n_kv_head, attn.head_dim)
    v = attn.c_v(x).view(b, t, attn.n_kv_head, attn.head_dim)
    cos, sin = cos_sin
    q, k = norm(apply_rotary_emb(q, cos, sin)), norm(apply_rotary_emb(k, cos, sin))
    y = scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=keep)
    return attn.c_proj(y.transpose(1, 2).contiguous().view(b, t, c))


def _logits(model: Any, ids: Any, mask: Any) -> Any:
    """nanoguard.model.Classifier.forward, its blocks calling the masked attention above."""
    from nanoguard.model import norm

    cos_sin = model.cos[:, : ids.size(1)], model.sin[:, : ids.size(1)]
    keep = mask[:, None, None, :]
    x = x0 = norm(model.transformer.wte(ids))
    for i, block in enumerate(model.transformer.h):
        x = model.resid_lambdas[i] * x + model.x0_lambdas[i] * x0
        x = x + _attention(block.attn, norm(x), cos_sin, keep)
        x = x + block.mlp(norm(x))
    x = norm(x)
    weight = mask.unsqueeze(-1).to(x.dtype)
    pooled = model.cls_norm((x * weight).sum(dim=1) / weight.sum(dim=1).clamp(min=1))
    return model.cls_head(pooled.float())


def injection_log_odds(texts: list[str], device: str = "cpu") -> np.ndarray:
    """[n, 1] float32: log P(injection) / P(safe) per text, each at its real length.

    Texts go through in chunks of similar length (sorted), so one long text does not pad a whole
    batch; the mask makes the grouping invisible in the result (within float rounding, < 1e-4).
    """
    import torch

    tokenizer, model = _loaded(device)
    ids = [tokenizer.encode(text, max_length=MAX_TOKENS) for text in texts]
    out = np.zeros((len(texts), 1), dtype=np.float32)
    for batch in plan_batches([len(row) for row in ids], forward_batch(device, MAX_FORWARD_BATCH)):
        rows = [ids[i] for i in batch]
        width = max(map(len, rows))
        padded = torch.tensor([row + [tokenizer.pad_token_id] * (width - len(row)) for row in rows], device=device)
        mask = torch.tensor([[True] * len(row) + [False] * (width - len(row)) for row in rows], device=device)
        with torch.inference_mode():
            logp = torch.log_softmax(_logits(model, padded, mask).float(), dim=-1)
        odds = (logp[:, 1] - logp[:, 0]).clamp(-LOG_ODDS_LIMIT, LOG_ODDS_LIMIT)
        out[batch, 0] = odds.cpu().numpy()
    return out
