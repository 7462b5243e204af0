"""Every CEM metric against hand computations, late events and re-delivery, on both backends.

The scorer runs for real: real store (chdb and clickhouse-server), real producer on the test
broker; only the consumer is replaced by handing ``Scorer.handle`` the records directly.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
import pytest
from prometheus_client import REGISTRY

from services.api import create_app
from services.core.broker import LocalBroker
from services.core.cem_metrics import URGENT_FLAGS, window_start, wire_fields
from services.core.settings import Settings
from services.core.store import Store
from tests.conftest import run
from tests.pipeline_harness import read_topic
from tests.scoring_fixtures import (
    E1,
    E2,
    E3,
    E4,
    E5,
    FIXTURE,
    MINUTE_ALL,
    MINUTE_APP_MIDSALE,
    MINUTE_GAPS,
    MINUTE_SOCIAL_UNKNOWN,
    MINUTE_TOPICS,
    ROLLUP_ALL,
    ROLLUP_TOPICS,
    T0,
    event,
    records,
    score_row,
    scoring_rig,
    snapshot,
)


def assert_figures(row: dict | None, expected: dict) -> None:
    assert row is not None
    for name, value in expected.items():
        if value is None or isinstance(value, int):
            assert row[name] == value, name
        else:
            assert row[name] == pytest.approx(value, abs=1e-9), name


async def topic_figures(store: Store, seconds: int, start: datetime = T0
                        ) -> dict[str, tuple[int, float]]:
    rows = await store.query(
        "SELECT topic, mentions, mean_topic_sentiment FROM topic_scores FINAL "
        "WHERE touchpoint = 'delivery' AND window_seconds = %(s)s AND channel = '' "
        "AND stage = '' AND window_start = %(start)s", {"s": seconds, "start": start})
    return {r["topic"]: (r["mentions"], r["mean_topic_sentiment"]) for r in rows}


def test_every_metric_matches_the_hand_computation(store_url: str, settings: Settings,
                                                   broker: LocalBroker) -> None:
    async def scenario() -> None:
        async with scoring_rig(store_url, settings, broker.bootstrap) as rig:
            await rig.scorer.handle(records(FIXTURE[:2]))
            await rig.scorer.handle(records(FIXTURE[2:]))
            store = rig.store
            minute = await score_row(store, seconds=60, start=T0)
            assert_figures(minute, MINUTE_ALL)
            gaps = dict(zip(minute["gap_metrics"], minute["gaps"]))
            assert gaps.keys() == MINUTE_GAPS.keys()
            for metric, value in MINUTE_GAPS.items():
                assert gaps[metric] == pytest.approx(value), metric
            assert_figures(await score_row(store, seconds=60, start=T0, channel="app",
                                           stage="售中"), MINUTE_APP_MIDSALE)
            assert_figures(await score_row(store, seconds=60, start=T0, channel="social",
                                           stage="unknown"), MINUTE_SOCIAL_UNKNOWN)
            assert_figures(await score_row(store, seconds=60, start=T0, channel="social"),
                           {"volume": 2, "negative_share": 0.5})
            assert_figures(await score_row(store, seconds=60, start=T0, stage="售后"),
                           {"volume": 1, "complaint_rate": 1.0, "nps": None})
            for seconds in (300, 3600, 86400):
                start = window_start(T0, seconds)
                assert_figures(await score_row(store, seconds=seconds, start=start), ROLLUP_ALL)
                topics = await topic_figures(store, seconds, start)
                assert topics.keys() == ROLLUP_TOPICS.keys()
                for topic, (mentions, mean) in ROLLUP_TOPICS.items():
                    assert topics[topic][0] == mentions
                    assert topics[topic][1] == pytest.approx(mean)
            topics = await topic_figures(store, 60)
            assert {t: (m, pytest.approx(s)) for t, (m, s) in topics.items()} == MINUTE_TOPICS
            totals = await store.query(
                "SELECT * FROM cem_scores FINAL WHERE window_seconds = 60 AND channel = '' "
                "AND stage = '' ORDER BY window_start")
            assert [(r["volume"], r["negative_count"]) for r in totals] == [(4, 2), (1, 0)], \
                "the all x all rows the alerting stage reads"

    run(scenario())
    published = [v for _, v in read_topic(broker.bootstrap, settings.topic("scores"))]
    newest = {}
    for value in published:
        newest[(value["channel"], value["stage"], value["window_start"])] = value
    assert {v["window"] for v in published} == {"1m"}, "only base windows go on the topic"
    whole = newest[("", "", T0.isoformat().replace("+00:00", "Z"))]
    assert whole["schema"] == "score.v2" and whole["volume"] == 4
    assert whole["urgent_flags"] == {f: MINUTE_ALL[f"{f}_count"] for f in URGENT_FLAGS}
    for metric, _ in wire_fields():
        assert whole[metric.name] == pytest.approx(MINUTE_ALL[metric.name]), metric.name
    assert {e["metric"]: e["gap"] for e in whole["expectations"]}["nps"] == -30
    assert whole["topics"][0] == {"topic": "logistics_delivery", "mentions": 2,
                                  "mean_sentiment": pytest.approx(0.05)}


def test_redelivery_and_crash_restart_change_no_figure(store_url: str, settings: Settings,
                                                       broker: LocalBroker) -> None:
    async def scenario() -> None:
        async with scoring_rig(store_url, settings, broker.bootstrap) as rig:
            await rig.scorer.handle(records(FIXTURE))
            clean = await snapshot(rig.store)
            await rig.scorer.handle(records(FIXTURE))
            await rig.scorer.handle(records([E3, E1, E3]))
            assert await snapshot(rig.store) == clean, "a re-delivered event changed a figure"

            # Crash after the feedback rows were written but before any score row: the next
            # scorer (a restart) gets the same batch again and must converge.
            restarted = rig.new_scorer()
            real_insert = rig.store.insert
            crashed = False

            async def crash_on_scores(table: str, rows: list, **kwargs: str) -> None:
                nonlocal crashed
                if table == "cem_scores":
                    crashed = True
                    raise RuntimeError("simulated crash")
                await real_insert(table, rows, **kwargs)

            extra = [event("e6", T0 + timedelta(seconds=30), score=-0.5, nps=0,
                           intent="complaint")]
            rig.store.insert = crash_on_scores  # type: ignore[method-assign]
            with pytest.raises(RuntimeError, match="simulated crash"):
                await rig.scorer.handle(records(extra))
            rig.store.insert = real_insert  # type: ignore[method-assign]
            assert crashed
            await restarted.handle(records(extra))
            minute = await score_row(rig.store, seconds=60, start=T0)
            assert (minute["volume"], minute["nps_responses"], minute["nps_detractors"]) == \
                (5, 4, 2)
            day = await score_row(rig.store, seconds=86400, start=window_start(T0, 86400))
            assert day["volume"] == 6
            after = await snapshot(rig.store)
            await restarted.handle(records([*FIXTURE, *extra]))
            assert await snapshot(rig.store) == after

    run(scenario())


def test_late_events_land_in_their_window_and_too_late_ones_are_counted(
        store_url: str, settings: Settings, broker: LocalBroker) -> None:
    settings = settings.model_copy(update={"allowed_lateness_s": 120})

    async def scenario() -> None:
        async with scoring_rig(store_url, settings, broker.bootstrap) as rig:
            await rig.scorer.handle(records([E1, E2, E3, E4]))
            # Newest event time of delivery moves to 10:10:00.
            await rig.scorer.handle(records([event("now", T0 + timedelta(minutes=10),
                                                   score=0.5)]))
            before = await score_row(rig.store, seconds=60, start=T0)
            # 10:08:30 is in window [10:08, 10:09); 10:09 + 120 s > 10:10: still on time.
            # 10:00:30 is in window [10:00, 10:01); 10:01 + 120 s <= 10:10: too late.
            # 10:07:00 is in window [10:07, 10:08); 10:08 + 120 s = 10:10: too late (boundary).
            counted_before = REGISTRY.get_sample_value("voc_scoring_too_late_total") or 0
            late_ok = event("late-ok", T0 + timedelta(minutes=8, seconds=30), score=-0.8,
                            intent="complaint")
            too_late = event("too-late", T0 + timedelta(seconds=30), score=-0.8, nps=0)
            boundary = event("boundary", T0 + timedelta(minutes=7), score=-0.8)
            await rig.scorer.handle(records([late_ok, too_late, boundary]))
            assert rig.scorer.too_late == 2
            assert REGISTRY.get_sample_value("voc_scoring_too_late_total") == counted_before + 2
            assert_figures(await score_row(rig.store, seconds=60,
                                           start=T0 + timedelta(minutes=8)),
                           {"volume": 1, "negative_share": 1.0, "complaint_rate": 1.0})
            assert await score_row(rig.store, seconds=60, start=T0 + timedelta(minutes=7)) is None
            after = await score_row(rig.store, seconds=60, start=T0)
            assert {k: v for k, v in after.items() if k != "computed_ms"} == \
                {k: v for k, v in before.items() if k != "computed_ms"}
            hour = await score_row(rig.store, seconds=3600, start=T0)
            assert hour["volume"] == 6, "e1-e4, 'now' and 'late-ok'; not the too-late ones"
            flags = {r["event_id"]: r["too_late"] for r in await rig.store.query(
                "SELECT event_id, too_late FROM feedback FINAL")}
            assert flags == {"e1": 0, "e2": 0, "e3": 0, "e4": 0, "now": 0, "late-ok": 0,
                             "too-late": 1, "boundary": 1}, "too-late events are still stored"
            # A restarted scorer judges the same: re-delivery changes nothing.
            restarted = rig.new_scorer()
            frozen = await snapshot(rig.store)
            await restarted.handle(records([too_late, late_ok, boundary]))
            assert await snapshot(rig.store) == frozen
            # E5 (10:03:10): window [10:03, 10:04) ended 10:04; + 120 s <= 10:10 -> too late
            # for a fresh scorer too, since it reads the newest time from the store.
            await restarted.handle(records([E5]))
            assert restarted.too_late == 1
            app = create_app(settings, broker.bootstrap, rig.store)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://127.0.0.1") as client:
                listed = (await client.get("/v1/touchpoints")).json()["touchpoints"]
                assert [(t["events"], t["too_late_events"]) for t in listed] == [(6, 3)]
                items = (await client.get("/v1/feedback", params={
                    "from": T0.isoformat(), "to": (T0 + timedelta(hours=1)).isoformat(),
                    "q": "配送"})).json()["items"]
                assert {i["event_id"]: i["scored"] for i in items}["too-late"] is False

    run(scenario())
