"""Deterministic subsets and splits: a fixed seed, stratified by label and source."""

from __future__ import annotations

import random
from collections import defaultdict

from train.data import Example

SEED = 20261123


def stratified_sample(rows: list[Example], n: int, seed: int = SEED) -> list[Example]:
    """About n rows with the label and group mix of the whole (all rows when n ≥ len)."""
    if n >= len(rows):
        return list(rows)
    strata: dict[tuple[str, str], list[Example]] = defaultdict(list)
    for row in rows:
        strata[(row.label, row.group)].append(row)
    rng = random.Random(seed)
    out: list[Example] = []
    for key in sorted(strata):
        members = strata[key]
        rng.shuffle(members)
        out.extend(members[: max(1, round(n * len(members) / len(rows)))])
    return out


def split(rows: list[Example], test_fraction: float, seed: int = SEED) -> tuple[list[int], list[int]]:
    """(train, test) indices, stratified by label and group; the test part is never used for fitting."""
    strata: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        strata[(row.label, row.group)].append(i)
    rng = random.Random(seed + 1)
    train: list[int] = []
    test: list[int] = []
    for key in sorted(strata):
        members = strata[key]
        rng.shuffle(members)
        cut = round(len(members) * test_fraction)
        test.extend(members[:cut])
        train.extend(members[cut:])
    return sorted(train), sorted(test)
