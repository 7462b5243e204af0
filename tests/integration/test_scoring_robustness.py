"""Scoring against what re-sends, old data and faults do, on both store backends:

- a re-send with a corrected timestamp or touchpoint is the same event (dedupe by id alone);
- a batch spanning 200 months is stored and scored (inserts chunked per 100 partitions);
- a row dated 2099 already in the store does not make real events too late after a restart;
- a failed insert leaves the touchpoint's newest time as it was, so the retried batch is not
  judged too late by its own events;
- the newest times kept in memory are bounded, and an evicted touchpoint is judged the same.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.core.broker import LocalBroker
from services.core.events import utc_now
from services.core.settings import Settings
from services.core.store import StoreError
from services.scoring.sink import feedback_row
from tests.conftest import run
from tests.scoring_fixtures import event, records, scoring_rig


def test_a_resend_with_corrected_time_and_touchpoint_is_one_event(
        store_url: str, settings: Settings, broker: LocalBroker) -> None:
    now = utc_now().replace(microsecond=0) - timedelta(hours=1)

    async def scenario() -> None:
        async with scoring_rig(store_url, settings, broker.bootstrap) as rig:
            first = event("same-id", now, touchpoint="delivery", score=-0.8)
            await rig.scorer.handle(records([first]))
            retimed = first.model_copy(update={"occurred_at": now - timedelta(minutes=17)})
            await rig.scorer.handle(records([retimed]))
            moved = first.model_copy(update={"touchpoint": "hotline"})
            await rig.new_scorer().handle(records([moved, retimed]))
            rows = await rig.store.query(
                "SELECT event_id, touchpoint, occurred_at FROM feedback FINAL")
            assert rows == [{"event_id": "same-id", "touchpoint": "delivery", "occurred_at": now}]
            volumes = await rig.store.query(
                "SELECT touchpoint, sum(volume) AS n FROM cem_scores FINAL WHERE "
                "window_seconds = 60 AND channel = '' AND stage = '' GROUP BY touchpoint")
            assert volumes == [{"touchpoint": "delivery", "n": 1}]

    run(scenario())


def months_back(count: int) -> list[datetime]:
    """Noon on the 15th of each of the ``count`` months before this one, newest first."""
    today = utc_now()
    year, month = today.year, today.month
    out = []
    for _ in range(count):
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
        out.append(datetime(year, month, 15, 12, tzinfo=UTC))
    return out


def test_a_batch_spanning_200_months_is_stored_and_scored(
        store_url: str, settings: Settings, broker: LocalBroker) -> None:
    settings = settings.model_copy(update={"max_event_age_s": 20 * 365 * 86400})
    moments = months_back(200)
    assert len({(m.year, m.month) for m in moments}) == 200

    async def scenario() -> None:
        async with scoring_rig(store_url, settings, broker.bootstrap) as rig:
            await rig.scorer.handle(records([event(f"m{i}", m, score=0.5)
                                             for i, m in enumerate(moments)]))
            stored = await rig.store.query("SELECT count() AS n FROM feedback FINAL")
            days = await rig.store.query(
                "SELECT count() AS n, sum(volume) AS v FROM cem_scores FINAL WHERE "
                "window_seconds = 86400 AND channel = '' AND stage = ''")
            assert stored == [{"n": 200}]
            assert days == [{"n": 200, "v": 200}]
            assert rig.scorer.too_late == 0

    run(scenario())


def test_a_row_dated_2099_does_not_silence_its_touchpoint_after_a_restart(
        store_url: str, settings: Settings, broker: LocalBroker) -> None:
    now = utc_now().replace(microsecond=0)

    async def scenario() -> None:
        async with scoring_rig(store_url, settings, broker.bootstrap) as rig:
            poisoned = event("from-2099", datetime(2099, 1, 1, tzinfo=UTC))
            # Stored as it was before entrance bounds existed: straight into the table.
            await rig.store.insert("feedback", [{**feedback_row(poisoned, 1), "too_late": 0}])
            restarted = rig.new_scorer()
            await restarted.handle(records([event("real-1", now - timedelta(minutes=3)),
                                            event("real-2", now - timedelta(minutes=1))]))
            assert restarted.too_late == 0
            flags = await rig.store.query(
                "SELECT event_id, too_late FROM feedback FINAL WHERE event_id LIKE 'real%%' "
                "ORDER BY event_id")
            assert flags == [{"event_id": "real-1", "too_late": 0},
                             {"event_id": "real-2", "too_late": 0}]
            assert restarted.newest["delivery"] <= int(now.timestamp()) + \
                settings.max_clock_skew_s

    run(scenario())


def test_a_failed_insert_does_not_make_the_retried_batch_too_late(
        store_url: str, settings: Settings, broker: LocalBroker) -> None:
    """The batch's own newest event is two hours after its oldest: had the newest time moved
    before the failed insert, the retry would flag the oldest too late (lateness 1 h)."""
    now = utc_now().replace(microsecond=0)
    batch = [event("early", now - timedelta(hours=2)), event("late", now)]

    async def scenario() -> None:
        async with scoring_rig(store_url, settings, broker.bootstrap) as rig:
            real_insert = rig.store.insert
            failures = []

            async def failing_once(table: str, rows: list, **kwargs: str) -> None:
                if table == "feedback_ids" and not failures:
                    failures.append(table)
                    raise StoreError("clickhouse failed to insert: Code: 242. Table is in "
                                     "readonly mode")
                await real_insert(table, rows, **kwargs)

            rig.store.insert = failing_once  # type: ignore[method-assign]
            try:
                try:
                    await rig.scorer.handle(records(batch))
                except StoreError:
                    pass
                assert failures and "delivery" not in rig.scorer.newest
                await rig.scorer.handle(records(batch))
            finally:
                rig.store.insert = real_insert  # type: ignore[method-assign]
            assert rig.scorer.too_late == 0
            rows = await rig.store.query(
                "SELECT event_id, too_late FROM feedback FINAL ORDER BY event_id")
            assert rows == [{"event_id": "early", "too_late": 0},
                            {"event_id": "late", "too_late": 0}]
            hour = await rig.store.query(
                "SELECT sum(volume) AS n FROM cem_scores FINAL WHERE window_seconds = 60 "
                "AND channel = '' AND stage = ''")
            assert hour == [{"n": 2}], "both counted, once"

    run(scenario())


def test_newest_times_in_memory_are_bounded_and_an_evicted_touchpoint_is_judged_the_same(
        store_url: str, settings: Settings, broker: LocalBroker) -> None:
    settings = settings.model_copy(update={"scoring_touchpoint_cache": 2,
                                           "allowed_lateness_s": 120})
    now = utc_now().replace(microsecond=0)

    async def scenario() -> None:
        async with scoring_rig(store_url, settings, broker.bootstrap) as rig:
            await rig.scorer.handle(records([event(f"tp{i}", now, touchpoint=f"tp{i}")
                                             for i in range(5)]))
            assert len(rig.scorer.newest) == 2
            assert "tp0" not in rig.scorer.newest
            # tp0's newest time (now) comes back from the store: 10 minutes back is too late.
            await rig.scorer.handle(records([event("old", now - timedelta(minutes=10),
                                                   touchpoint="tp0")]))
            assert rig.scorer.too_late == 1

    run(scenario())
