"""The batching writer of services/scoring/sink.py: order, empty batches, failures.

A pure unit test of our own logic with recording sinks; the store and topic sinks are used by
every scoring test on the real store and broker.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from services.scoring.sink import BatchWriter
from tests.conftest import run


class Recording:
    def __init__(self, name: str, log: list[tuple[str, list[int]]], fail: bool = False) -> None:
        self.name = name
        self.log = log
        self.fail = fail

    async def write_batch(self, items: Sequence[int]) -> None:
        if self.fail:
            raise RuntimeError(f"{self.name} is down")
        self.log.append((self.name, list(items)))


def test_sinks_are_written_in_the_writers_order_with_everything_added() -> None:
    log: list[tuple[str, list[int]]] = []
    rows, ids, empty = Recording("rows", log), Recording("ids", log), Recording("empty", log)
    writer = BatchWriter(rows, empty, ids)
    writer.add(ids, [1, 2])
    writer.add(rows, [1])
    writer.add(rows, [2])
    writer.add(empty, [])
    run(writer.flush())
    assert log == [("rows", [1, 2]), ("ids", [1, 2])], "empty batches are not written"
    run(writer.flush())
    assert len(log) == 2, "a flush writes only what was added since the last one"


def test_a_failed_write_stops_the_later_sinks_and_keeps_nothing() -> None:
    log: list[tuple[str, list[int]]] = []
    first, broken, last = Recording("a", log), Recording("b", log, fail=True), Recording("c", log)
    writer = BatchWriter(first, broken, last)
    for sink in (first, broken, last):
        writer.add(sink, [7])
    with pytest.raises(RuntimeError, match="b is down"):
        run(writer.flush())
    assert log == [("a", [7])], "output after the failed one waits for the retry"
    broken.fail = False
    run(writer.flush())
    assert log == [("a", [7])], "the retry adds its items again; none are kept"


def test_only_the_writers_sinks_take_items() -> None:
    log: list[tuple[str, list[int]]] = []
    writer = BatchWriter(Recording("a", log))
    with pytest.raises(ValueError, match="'other' is not one of this writer's"):
        writer.add(Recording("other", log), [1])
