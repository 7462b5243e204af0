"""Rollups are exact under any batching, order and duplication, on both backends.

300 seeded random events over two hours arrive in shuffled batches of random size with a third
of them re-delivered. Every stored row of every level (1m, 5m, 1h, 1d) and every channel x
stage combination must equal the counts computed here directly from the distinct events.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import timedelta

import pytest

from services.core.broker import LocalBroker
from services.core.events import EnrichedFeedback
from services.core.settings import Settings
from services.scoring.rows import cube, rollup
from tests.conftest import run
from tests.scoring_fixtures import T0, event, records, scoring_rig

CHANNELS = ("app", "web", "call")
STAGES = ("售前", "售中", "售后", None)
TOPICS = ("logistics_delivery", "waiting_time", "price_fees")


def random_events(seed: int, n: int) -> list[EnrichedFeedback]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        rated = rng.random() < 0.6
        out.append(event(
            f"r{i}", T0 + timedelta(seconds=rng.uniform(0, 7200)),
            touchpoint=rng.choice(["delivery", "hotline"]), channel=rng.choice(CHANNELS),
            stage=rng.choice(STAGES), score=round(rng.uniform(-1, 1), 3),
            nps=rng.randint(0, 10) if rated else None,
            csat=rng.randint(1, 5) if rated and rng.random() < 0.5 else None,
            ces=rng.randint(1, 7) if rng.random() < 0.3 else None,
            intent=rng.choice(["complaint", "praise", "inquiry"]),
            topics=[(t, round(rng.uniform(-1, 1), 3)) for t in rng.sample(TOPICS, rng.randint(0, 2))],
            flags=rng.sample(["churn_intent", "safety"], rng.randint(0, 1))))
    return out


def expected_counts(events: list[EnrichedFeedback]) -> dict[tuple, Counter]:
    """(touchpoint, seconds, channel, stage, window epoch) -> counts, computed directly."""
    out: dict[tuple, Counter] = defaultdict(Counter)
    for e in events:
        stage = e.stage or "unknown"
        epoch = int(e.occurred_at.timestamp())
        for seconds in (60, 300, 3600, 86400):
            for channel, st in ((e.channel, stage), (e.channel, ""), ("", stage), ("", "")):
                c = out[(e.touchpoint, seconds, channel, st, epoch - epoch % seconds)]
                c["volume"] += 1
                c[f"{e.sentiment.label}_count"] += 1
                c["sentiment_sum"] += e.sentiment.score
                c["nps_responses"] += e.ratings.nps is not None
                c["nps_promoters"] += (e.ratings.nps or 0) >= 9
                c["nps_detractors"] += e.ratings.nps is not None and e.ratings.nps <= 6
                c["csat_responses"] += e.ratings.csat is not None
                c["csat_satisfied"] += (e.ratings.csat or 0) >= 4
                c["ces_responses"] += e.ratings.ces is not None
                c["ces_sum"] += e.ratings.ces or 0
                c["complaint_count"] += e.intent == "complaint"
                c["urgent_count"] += bool(e.urgency)
                c["safety_count"] += any(u.flag == "safety" for u in e.urgency)
    return out


def test_rollups_equal_direct_counts_under_shuffled_duplicated_batches(
        store_url: str, settings: Settings, broker: LocalBroker) -> None:
    settings = settings.model_copy(update={"allowed_lateness_s": 10 * 86400})
    events = random_events(seed=11, n=300)
    rng = random.Random(5)
    stream = events + rng.sample(events, 100)
    rng.shuffle(stream)
    batches = []
    while stream:
        size = rng.randint(1, 60)
        batches.append(stream[:size])
        stream = stream[size:]

    async def scenario() -> list[dict]:
        async with scoring_rig(store_url, settings, broker.bootstrap) as rig:
            for batch in batches:
                await rig.scorer.handle(records(batch))
            return await rig.store.query("SELECT * FROM cem_scores FINAL")

    stored = {(r["touchpoint"], r["window_seconds"], r["channel"], r["stage"],
               int(r["window_start"].timestamp())): r for r in run(scenario())}
    expected = expected_counts(events)
    assert stored.keys() == expected.keys()
    for key, counts in expected.items():
        row = stored[key]
        for name in ("volume", "positive_count", "neutral_count", "negative_count",
                     "nps_responses", "nps_promoters", "nps_detractors", "csat_responses",
                     "csat_satisfied", "ces_responses", "complaint_count", "urgent_count",
                     "safety_count"):
            assert row[name] == counts[name], (key, name)
        assert row["sentiment_sum"] == pytest.approx(counts["sentiment_sum"], abs=1e-6), key
        assert row["ces_sum"] == pytest.approx(counts["ces_sum"]), key


def test_in_memory_rollup_sums_finer_rows_per_coarse_window_in_any_order() -> None:
    rng = random.Random(3)
    finer = [{"tp": tp, "epoch": epoch, "agg_volume": volume, "agg_sentiment_sum": total}
             for tp, epoch, volume, total in [("a", 0, 2, 0.1), ("a", 60, 1, 0.2),
                                              ("a", 300, 5, -0.3), ("b", 120, 1, 0.7),
                                              ("a", 240, 3, 1e-9)]]
    expected = {("a", 0): (6, 0.300000001), ("a", 300): (5, -0.3), ("b", 0): (1, 0.7)}
    for _ in range(5):
        rng.shuffle(finer)
        summed = {(r["tp"], r["epoch"]): (r["agg_volume"], r["agg_sentiment_sum"])
                  for r in rollup(finer, ("tp",), ("volume", "sentiment_sum"), 300)}
        assert summed == expected


def test_cube_adds_the_all_channel_and_all_stage_rows_of_each_cell() -> None:
    cells = [{"tp": "a", "ch": "app", "st": "售前", "tid": "t", "epoch": 60, "agg_mentions": 2,
              "agg_topic_sentiment_sum": 0.5},
             {"tp": "a", "ch": "web", "st": "售前", "tid": "t", "epoch": 60, "agg_mentions": 1,
              "agg_topic_sentiment_sum": -0.25},
             {"tp": "a", "ch": "web", "st": "unknown", "tid": "t", "epoch": 60,
              "agg_mentions": 4, "agg_topic_sentiment_sum": 1.0},
             {"tp": "a", "ch": "web", "st": "unknown", "tid": "u", "epoch": 60,
              "agg_mentions": 1, "agg_topic_sentiment_sum": 0.0}]
    rows = cube(cells, ("tp", "ch", "st", "tid"), ("mentions", "topic_sentiment_sum"))
    got = {(r["ch"], r["st"], r["tid"]): (r["agg_mentions"], r["agg_topic_sentiment_sum"])
           for r in rows}
    assert got == {("app", "售前", "t"): (2, 0.5), ("web", "售前", "t"): (1, -0.25),
                   ("web", "unknown", "t"): (4, 1.0), ("app", "", "t"): (2, 0.5),
                   ("web", "", "t"): (5, 0.75), ("", "售前", "t"): (3, 0.25),
                   ("", "unknown", "t"): (4, 1.0), ("", "", "t"): (7, 1.25),
                   ("web", "unknown", "u"): (1, 0.0), ("web", "", "u"): (1, 0.0),
                   ("", "unknown", "u"): (1, 0.0), ("", "", "u"): (1, 0.0)}
    assert {(r["tp"], r["epoch"]) for r in rows} == {("a", 60)}
