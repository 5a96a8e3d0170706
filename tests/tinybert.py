"""A tiny, randomly initialised BERT classifier that tests build and save, for the hf-classifier path."""

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


def build_tiny_bert(directory: Path, labels: tuple[str, ...] = ("safe", "injection")) -> Path:
    """Save model + tokenizer to `directory` (transformers format), like a fine-tuned model on disk."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(directory / "vocab.txt"), do_lower_case=True, model_max_length=64)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    torch.manual_seed(1234)
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
