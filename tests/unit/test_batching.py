from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from models.batching import plan_batches


def test_batches_are_length_sorted_and_capped() -> None:
    lengths = [5, 100, 7, 90, 6, 95]
    batches = plan_batches(lengths, max_batch=2)
    assert batches == [[1, 5], [3, 2], [4, 0]]


def test_token_budget_closes_a_batch_early() -> None:
    batches = plan_batches([100, 100, 10, 10, 10], max_batch=8, token_budget=250)
    assert batches == [[0, 1], [2, 3, 4]]


@given(
    st.lists(st.integers(1, 512), max_size=200),
    st.integers(1, 64),
    st.one_of(st.none(), st.integers(1, 4096)),
)
def test_every_index_exactly_once_and_bounds_hold(lengths: list[int], max_batch: int, budget: int | None) -> None:
    batches = plan_batches(lengths, max_batch, budget)
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(len(lengths)))
    for batch in batches:
        assert 1 <= len(batch) <= max_batch
        if budget is not None and len(batch) > 1:
            assert max(lengths[i] for i in batch) * len(batch) <= budget
