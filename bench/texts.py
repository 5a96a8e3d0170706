"""Benchmark inputs: short customer messages of varied length, the same set for pipeline and raw runs."""

from __future__ import annotations

import random

OPENERS = [
    "I love this product",
    "The delivery was late again",
    "Support answered quickly and fixed my problem",
    "This is the worst service I have ever had",
    "The package arrived on Tuesday",
    "Please cancel my subscription",
    "Great value for the price",
    "The app crashes every time I open it",
]
DETAILS = [
    "and I wanted to let you know",
    "even though I paid for express shipping",
    "which I did not expect after last month",
    "so I will probably order again next year",
    "and the box was slightly damaged on one side",
    "but the manual was missing from the package",
]


def messages(count: int, seed: int = 7) -> list[str]:
    """`count` messages of 5 to ~60 words, reproducible."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        parts = [rng.choice(OPENERS)] + [rng.choice(DETAILS) for _ in range(rng.choice([0, 0, 1, 2, 4, 6]))]
        out.append(f"#{i}: " + ", ".join(parts) + ".")
    return out
