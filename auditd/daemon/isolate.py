"""Finding the items a batch cannot take, by halving it: the batch is tried whole; a failure
splits it in two, each half tried again, down to single items (a list page down to single
objects). Everything that can be taken in is, once; what fails alone is returned with why.

Pure: how to try a batch (and put memory back when it fails) is the caller's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

# Try these items: None when they were taken in, else why not (memory is as before the try).
Attempt = Callable[[Sequence[T]], str | None]
# The halves of one item that holds several (a list page), or None when it is one thing.
Halve = Callable[[T], tuple[T, T] | None]


def isolate(batch: Sequence[T], attempt: Attempt[T], halve: Halve[T]) -> list[tuple[T, str]]:
    """Take in all of ``batch`` that can be; return each item that fails on its own."""
    if not batch:
        return []
    reason = attempt(batch)
    if reason is None:
        return []
    if len(batch) > 1:
        mid = len(batch) // 2
        return isolate(batch[:mid], attempt, halve) + isolate(batch[mid:], attempt, halve)
    halves = halve(batch[0])
    if halves is not None:
        return isolate([halves[0]], attempt, halve) + isolate([halves[1]], attempt, halve)
    return [(batch[0], reason)]
