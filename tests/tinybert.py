"""Randomly initialised BERT classifiers that tests build and save, for the hf-classifier path: a tiny one,
and (by size arguments) a slow one for tests that need a batch to outlive its lease."""

from __future__ import annotations

from pathlib import Path

WORDS = [
    "the",
    "a",
    "an",
    "i",
    "you",
    "we",
    "it",
    "is",
    "was",
    "this",
    "that",
    "product",
    "service",
    "love",
    "hate",
    "great",
    "awful",
    "good",
    "bad",
    "ignore",
    "all",
    "previous",
    "instructions",
    "print",
    "your",
    "system",
    "prompt",
    "account",
    "suspended",
    "click",
    "here",
    "verify",
    "password",
    "weather",
    "nice",
    "today",
    "park",
    "and",
    "to",
    "of",
    "in",
    "on",
    "for",
    "with",
    "very",
    "not",
    "worst",
    "ever",
    "have",
    "had",
]


def build_tiny_bert(
    directory: Path,
    labels: tuple[str, ...] = ("safe", "injection"),
    *,
    hidden: int = 32,
    layers: int = 2,
    positions: int = 64,
) -> Path:
    """Save model + tokenizer to `directory` (transformers format), like a fine-tuned model on disk."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(
        vocab_file=str(directory / "vocab.txt"), do_lower_case=True, model_max_length=positions
    )
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(2, hidden // 64),
        intermediate_size=hidden * 2,
        max_position_embeddings=positions,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    torch.manual_seed(1234)
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
