"""The cap on distinct touchpoints (services/core/touchpoints.py) against a real store on both
backends: the store's ``feedback`` table is the record of the touchpoints that exist."""

from __future__ import annotations

from datetime import UTC, datetime

from services.core.migrations import migrate
from services.core.store import Store, open_store
from services.core.touchpoints import TouchpointLimit
from tests.conftest import run
from tests.integration.test_store import feedback

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


async def _stored(store: Store, *touchpoints: str) -> None:
    await store.insert("feedback", [feedback(f"e-{tp}", tp, T0, 0.1, "neutral")
                                    for tp in touchpoints])


def test_new_touchpoints_fit_until_the_cap_counting_what_the_store_holds(store_url: str) -> None:
    async def scenario() -> None:
        store = await open_store(store_url)
        try:
            await migrate(store)
            await _stored(store, "a", "b")
            limit = TouchpointLimit(store, cap=3)
            assert await limit.refused(["a", "b"]) == []
            assert await limit.refused(["c", "a"]) == [], "one more fits"
            assert await limit.refused(["c", "d", "e"]) == ["d", "e"], "in order, past the room"
            assert await limit.refused(["d"]) == [], "refusing changes nothing"
            limit.remember(["c"])
            assert await limit.refused(["d"]) == ["d"]
            assert await limit.refused(["a", "b", "c"]) == [], "known ones always fit"
            reasons = await limit.screen([_Event("a"), _Event("d")])
            assert reasons[0] is None and "VOC_MAX_TOUCHPOINTS" in (reasons[1] or "")
        finally:
            await store.close()

    run(scenario())


def test_a_store_with_more_touchpoints_than_the_cap_keeps_them_all_and_adds_none(
        store_url: str) -> None:
    """The cap was lowered below what is stored: every stored touchpoint still fits, no new
    one does, and this process holds at most the cap of each kind of name."""
    async def scenario() -> None:
        store = await open_store(store_url)
        try:
            await migrate(store)
            stored = [f"t{i}" for i in range(6)]
            await _stored(store, *stored)
            limit = TouchpointLimit(store, cap=2)
            for touchpoint in stored:
                assert await limit.refused([touchpoint]) == [], touchpoint
            assert await limit.refused(["new"]) == ["new"]
            limit.remember(stored)
            assert len(limit._known) <= 2 and len(limit._beyond) <= 2
        finally:
            await store.close()

    run(scenario())


def test_touchpoints_others_stored_are_seen_after_the_reload_interval(store_url: str) -> None:
    async def scenario() -> None:
        store = await open_store(store_url)
        try:
            await migrate(store)
            limit = TouchpointLimit(store, cap=2, reload_s=0)
            assert await limit.refused(["x"]) == []
            await _stored(store, "y", "z")  # another ingest copy or a direct producer
            assert await limit.refused(["x"]) == ["x"], "the store is full now"
        finally:
            await store.close()

    run(scenario())


class _Event:
    def __init__(self, touchpoint: str) -> None:
        self.touchpoint = touchpoint
