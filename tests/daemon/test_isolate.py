"""Halving a batch down to the items it cannot take (daemon/isolate.py)."""

from __future__ import annotations

from collections.abc import Sequence

from auditd.daemon.isolate import isolate

Item = tuple[str, ...]  # a "page" of names; one name is one thing


def test_every_good_item_is_taken_once_and_each_bad_one_is_named_alone() -> None:
    bad = {"c", "g", "h"}
    taken: list[str] = []

    def attempt(batch: Sequence[Item]) -> str | None:
        names = [n for page in batch for n in page]
        poison = sorted(bad & set(names))
        if poison:
            return f"cannot take {poison[0]}"
        taken.extend(names)
        return None

    def halve(page: Item) -> tuple[Item, Item] | None:
        return (page[: len(page) // 2], page[len(page) // 2 :]) if len(page) > 1 else None

    batch: list[Item] = [("a",), ("b", "c", "d"), ("e",), ("f", "g", "h", "i"), ("j",)]
    failed = isolate(batch, attempt, halve)
    assert sorted(taken) == ["a", "b", "d", "e", "f", "i", "j"]  # once each
    assert failed == [
        (("c",), "cannot take c"),
        (("g",), "cannot take g"),
        (("h",), "cannot take h"),
    ]


def test_a_batch_that_is_taken_whole_is_tried_once() -> None:
    tries: list[int] = []
    assert isolate([("a",), ("b",)], lambda b: tries.append(len(b)), lambda p: None) == []
    assert tries == [2]
    assert isolate([], lambda b: "never", lambda p: None) == []
