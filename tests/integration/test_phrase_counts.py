"""Phrase counts rolled up per bucket (migration 0019, services/alerting/phrase_rollup.py),
on both store backends.

Feedback rows go straight into the store, as the scoring stage writes them: three hours at
two touchpoints, one event delivered twice (a batch retried after a failure writes its rows
again). Then:

- a store fault during the first roll-up (``phrase_counts`` gone) leaves every bucket not done
  (the run tries each, then raises): readers count them from ``feedback``, and the next run
  rolls them all up;
- one row per (bucket, touchpoint, phrase), the redelivered event counted once, phrase ''
  holding the bucket's events;
- the detector's counts and volumes read through the roll-up are those read from the feedback
  rows alone, for a window whose baseline starts and ends inside buckets, per touchpoint and
  overall;
- a late event in a rolled bucket: the next run rolls up that bucket alone, again, and the
  counts follow;
- a bucket whose roll-up fails on every try blocks no other: the later buckets are rolled up,
  the failed one is counted from ``feedback`` (same answers) and in the failure metric, and
  each run still raises until it succeeds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

import schemas
from services.alerting import emerging, phrase_rollup, queries
from services.alerting.emerging import Excluded, Thresholds, Window
from services.alerting.phrase_rollup import RollupIncomplete
from services.core.migrations import migrate
from services.core.store import Store, StoreError, open_store
from tests.conftest import run

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
BUCKET_S = 3600
NOW = T0 + timedelta(hours=3, minutes=20)
WORDS = [["物流", "物流 很快"], ["客服", "态度"], ["价格", "便宜"], ["包装"], ["质量", "一般"]]


def row(n: int, touchpoint: str, at: datetime, phrases: list[str], inserted_ms: int = 1,
        customer: str | None = None) -> dict:
    return {"event_id": f"{touchpoint}-{n}", "source": "test", "channel": "app",
            "touchpoint": touchpoint, "customer_id": customer or f"c{n % 7}", "text": "",
            "occurred_at": at, "received_at": at, "enriched_at": at,
            "sentiment_label": "neutral", "phrases": phrases, "inserted_ms": inserted_ms}


def feedback() -> list[dict]:
    """Three hours and twenty minutes at two touchpoints, one event a minute each; from 11:10
    checkout hears 电池 鼓包 from six customers."""
    rows = []
    for n in range(200):
        at = T0 + timedelta(minutes=n)
        rows.append(row(n, "delivery", at, WORDS[n % 5]))
        surge = n >= 186
        rows.append(row(n, "checkout", at, ["电池", "电池 鼓包", "鼓包"] if surge
                        else WORDS[(n + 1) % 5], customer=f"k{n}" if surge else None))
    return rows


async def counted(store: Store) -> list[dict]:
    return await store.query(
        "SELECT bucket_s, toUInt32(bucket) AS bucket, touchpoint, phrase, mentions"
        " FROM phrase_counts FINAL ORDER BY bucket, touchpoint, phrase")


async def records(store: Store) -> dict[int, tuple[int, int]]:
    rows = await store.query(
        "SELECT toUInt32(bucket) AS at, argMax(done, rolled_ms) AS done,"
        " argMax(events, rolled_ms) AS events FROM phrase_rollups GROUP BY bucket")
    return {int(r["at"]) - int(T0.timestamp()): (int(r["done"]), int(r["events"]))
            for r in rows}


async def detections(store: Store, bucket_s: int, baseline_s: int = 7200) -> dict:
    """What the detector reads and decides, through the roll-up (``bucket_s``) or from the
    feedback rows alone (0), for a window whose baseline begins and ends mid-bucket."""
    window = Window(NOW - timedelta(minutes=9), 300, baseline_s, 100, bucket_s)
    t = Thresholds(min_mentions=2, min_customers=2, new_min_mentions=3, new_min_customers=3,
                   min_llr=5, min_lift=2, min_baseline_volume=10)
    rolled = None
    if bucket_s:
        rolled = await queries.rolled_buckets(store, bucket_s=bucket_s, lo=window.lo,
                                              start=window.start)
    got = {"rolled": rolled.starts if rolled else ()}
    for overall in (False, True):
        got[f"counts{overall}"] = await queries.phrase_counts(
            store, touchpoints=None, lo=window.lo, start=window.start, hi=window.end,
            min_mentions=1, limit=100, overall=overall, rolled=rolled)
        got[f"volumes{overall}"] = sorted(await queries.phrase_volumes(
            store, touchpoints=None, lo=window.lo, start=window.start, hi=window.end,
            overall=overall, rolled=rolled), key=lambda v: v.touchpoint)
        got[f"rising{overall}"] = await emerging.rising(store, window, t, Excluded([]),
                                                        overall=overall)
    got["only_delivery"] = await queries.phrase_counts(
        store, touchpoints=["delivery"], lo=window.lo, start=window.start, hi=window.end,
        min_mentions=1, limit=100, rolled=rolled)
    return got


def test_rolled_up_counts_read_as_the_feedback_rows(store_url: str) -> None:
    async def scenario() -> dict:
        store = await open_store(store_url)
        try:
            await migrate(store)
            rows = feedback()
            await store.insert("feedback", rows)
            await store.insert("feedback", [{**rows[10], "inserted_ms": 2}])  # a retried batch
            got: dict = {"raw": await detections(store, 0)}
            await store.execute("DROP TABLE phrase_counts")
            with pytest.raises(RollupIncomplete) as fault:
                await phrase_rollup.roll_up(store, bucket_s=BUCKET_S, horizon=7200, now=NOW)
            got["fault"] = fault.value
            got["after_fault"] = await records(store)
            got["read_after_fault"] = await detections(store, BUCKET_S)
            [created] = [s for m in schemas.migrations() if m.version == 19
                         for s in m.statements if "phrase_counts" in s]
            await store.execute(created)
            got["first"] = await phrase_rollup.roll_up(store, bucket_s=BUCKET_S, horizon=7200,
                                                       now=NOW)
            got["records"] = await records(store)
            got["counted"] = await counted(store)
            got["rolled"] = await detections(store, BUCKET_S)
            got["again"] = await phrase_rollup.roll_up(store, bucket_s=BUCKET_S, horizon=7200,
                                                       now=NOW)
            await store.insert("feedback", [row(900, "delivery", T0 + timedelta(minutes=135),
                                                ["包装", "破损"])])
            got["late"] = await phrase_rollup.roll_up(store, bucket_s=BUCKET_S, horizon=7200,
                                                      now=NOW)
            got["late_counted"] = await counted(store)
            got["late_raw"] = await detections(store, 0)
            got["late_rolled"] = await detections(store, BUCKET_S)
            return got
        finally:
            await store.close()

    got = run(scenario())
    hour = lambda h: int(T0.timestamp()) + h * 3600  # noqa: E731
    # the fault: every bucket was tried, each failed and stays begun but not done; nothing
    # is read from phrase_counts, and the answers are the feedback rows' own
    fault = got["fault"]
    assert (fault.run.rolled, fault.run.failed) == ((), (hour(0), hour(1), hour(2)))
    assert all(isinstance(e, StoreError) for e in fault.errors.values())
    assert {at: done for at, (done, _) in got["after_fault"].items()} == \
        {0: 0, 3600: 0, 7200: 0}
    assert got["after_fault"][0][1] in (120, 121), \
        "60 events of each touchpoint, and the redelivery until a merge collapses it"
    assert got["read_after_fault"] == {**got["raw"], "rolled": ()}
    # the next run rolls up every closed bucket of the horizon (08:00 to 11:00)
    assert got["first"].rolled == (hour(0), hour(1), hour(2))
    assert {at: done for at, (done, _) in got["records"].items()} == \
        {0: 1, 3600: 1, 7200: 1}
    rows = got["counted"]
    keys = [(r["bucket"], r["touchpoint"], r["phrase"]) for r in rows]
    assert len(keys) == len(set(keys)), "one row per bucket, touchpoint and phrase"
    first = {(r["touchpoint"], r["phrase"]): int(r["mentions"]) for r in rows
             if r["bucket"] == hour(0)}
    assert first[("delivery", "")] == 60 and first[("checkout", "")] == 60, \
        "the redelivered event is one event"
    assert first[("delivery", "物流")] == 12 and first[("delivery", "物流 很快")] == 12
    assert {r["bucket_s"] for r in rows} == {BUCKET_S}
    # through the roll-up, the same counts as from the feedback rows alone
    assert got["rolled"]["rolled"] == (hour(2),), \
        "the baseline 09:06 to 11:06 holds one whole bucket; its ends are read from feedback"
    assert {k: v for k, v in got["rolled"].items() if k != "rolled"} == \
        {k: v for k, v in got["raw"].items() if k != "rolled"}
    [surge] = got["raw"]["risingFalse"]["checkout"].rising
    assert (surge.phrase, surge.mentions, surge.customers, surge.new) == \
        ("电池 鼓包", 5, 5, True), "the test has something to find"
    assert got["raw"]["countsTrue"], "overall counts read too"
    # nothing changed: nothing is rolled up again; a late event: its bucket alone
    assert got["again"].rolled == () and got["again"].current == 3
    assert got["late"].rolled == (hour(2),)
    late = {(r["touchpoint"], r["phrase"]): int(r["mentions"])
            for r in got["late_counted"] if r["bucket"] == hour(2)}
    assert late[("delivery", "")] == 61 and late[("delivery", "破损")] == 1
    assert {k: v for k, v in got["late_rolled"].items() if k != "rolled"} == \
        {k: v for k, v in got["late_raw"].items() if k != "rolled"}
    assert got["late_raw"]["volumesFalse"] != got["raw"]["volumesFalse"], \
        "the late event is in the baseline"


def test_a_bucket_that_always_fails_blocks_no_other(store_url: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The first bucket's roll-up fails on every try (as one too large for the server's memory
    limit would): the fault is injected in our own query function, the store underneath is
    real, so the begun record, the later buckets and every read go through the store."""
    real = queries.roll_up_phrases
    first = int(T0.timestamp())

    async def too_large(store: Store, *, bucket_s: int, start: int, rolled_ms: int) -> None:
        if start == first:
            raise StoreError("INSERT INTO phrase_counts ...: Memory limit (for query) exceeded")
        await real(store, bucket_s=bucket_s, start=start, rolled_ms=rolled_ms)

    def failures() -> float:
        return REGISTRY.get_sample_value("voc_phrase_rollup_failures_total") or 0.0

    async def scenario() -> dict:
        store = await open_store(store_url)
        try:
            await migrate(store)
            await store.insert("feedback", feedback())
            whole = 3 * 3600 + 360  # a baseline holding the three closed hours whole
            got: dict = {"raw": await detections(store, 0, whole), "before": failures()}
            monkeypatch.setattr(queries, "roll_up_phrases", too_large)
            got["runs"] = []
            for _ in range(2):
                with pytest.raises(RollupIncomplete) as failed:
                    await phrase_rollup.roll_up(store, bucket_s=BUCKET_S, horizon=7200,
                                                now=NOW)
                got["runs"].append(failed.value)
            got["failures"] = failures() - got["before"]
            got["records"] = await records(store)
            got["read"] = await detections(store, BUCKET_S, whole)
            monkeypatch.setattr(queries, "roll_up_phrases", real)
            got["healed"] = await phrase_rollup.roll_up(store, bucket_s=BUCKET_S, horizon=7200,
                                                        now=NOW)
            got["read_healed"] = await detections(store, BUCKET_S, whole)
            return got
        finally:
            await store.close()

    got = run(scenario())
    hour = lambda h: int(T0.timestamp()) + h * 3600  # noqa: E731
    first_run, second_run = got["runs"]
    assert (first_run.run.rolled, first_run.run.failed) == ((hour(1), hour(2)), (hour(0),)), \
        "the buckets after the failing one are rolled up in the same run"
    assert (second_run.run.rolled, second_run.run.current, second_run.run.failed) == \
        ((), 2, (hour(0),)), "the next run tries the failed bucket again, and only it"
    assert "Memory limit" in str(first_run) and "2026-11-23T08:00:00" in str(first_run)
    assert got["failures"] == 2
    assert {at: done for at, (done, _) in got["records"].items()} == {0: 0, 3600: 1, 7200: 1}, \
        "the failed bucket keeps its begun-without-done record"
    assert got["read"]["rolled"] == (hour(1), hour(2)), \
        "readers take the rolled buckets from phrase_counts, the failed one from feedback"
    assert {k: v for k, v in got["read"].items() if k != "rolled"} == \
        {k: v for k, v in got["raw"].items() if k != "rolled"}
    assert got["raw"]["volumesFalse"][0].baseline > 120, "the baseline holds the failed hour"
    assert got["healed"].rolled == (hour(0),) and got["healed"].failed == ()
    assert got["read_healed"]["rolled"] == (hour(0), hour(1), hour(2))
    assert {k: v for k, v in got["read_healed"].items() if k != "rolled"} == \
        {k: v for k, v in got["raw"].items() if k != "rolled"}
