"""Results arrive as jobs finish; they are written in input order, each as soon as all before it are."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class OrderedWriter(Generic[T]):
    """Holds back item *i* until items 0 .. i-1 have been emitted; memory holds only the out-of-order ones."""

    def __init__(self, emit: Callable[[T], None]) -> None:
        self._emit = emit
        self._held: dict[int, T] = {}
        self.written = 0

    def put(self, index: int, item: T) -> None:
        if index < self.written or index in self._held:
            raise ValueError(f"item {index} was given twice")
        self._held[index] = item
        while self.written in self._held:
            self._emit(self._held.pop(self.written))
            self.written += 1

    @property
    def waiting(self) -> int:
        return len(self._held)
