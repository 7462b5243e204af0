"""The table of rule kinds (services/alerting/kinds/).

Without I/O: the rules file's union is the table, an unknown kind is a load error naming the
file and line, every kind's alerts fit the alert.v3 contract, and history spans merge into
disjoint periods.

On the real broker and both store backends: one sample rule of every kind in the table,
evaluated by the live worker (fed a score update per touchpoint and window end, and the
enriched events) and by the backtest over the same stored history, produces the same alerts.
A new kind adds its sample to ``SAMPLES`` (a test fails until it does).
"""

from __future__ import annotations

from dataclasses import astuple
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

import schemas
from services.alerting.backtest import backtest, window_ends
from services.alerting.kinds import EVENT_KINDS, WINDOW_KINDS, kind_name, models
from services.alerting.kinds.base import Points, Wanted
from services.alerting.kinds.topic_spike import topic_counts
from services.alerting.rules import RuleSet, load_rules
from services.alerting.worker import AlertEvaluator, RulesFile
from services.core.broker import LocalBroker
from services.core.events import (
    AlertRuleType,
    AspectSentiment,
    EnrichedFeedback,
    Ratings,
    Score,
    Sentiment,
    TopicTag,
    UrgencyFlag,
)
from services.core.kafka import create_topics
from services.core.migrations import migrate
from services.core.settings import Settings
from services.core.store import Store, open_store
from services.scoring.sink import feedback_row
from tests import factories
from tests.conftest import run
from tests.pipeline_harness import read_topic, store_and_producer
from tests.scoring_fixtures import records

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
MINUTES = 30

# One rule per kind, each tuned to fire (and the figure ones to resolve) on the history that
# ``history`` stores: a negative surge at `delivery` in minutes 10-14, a surge of refund
# mentions at `hotline` in minutes 11-13, three escalation threats at `hotline` in minutes 20-22,
# an NPS 2 at `hotline` in minute 25, and `app`, which sends ten events a minute until minute 20
# and nothing after. The refund surge says a phrase no topic names (蓝牙 断连), which nothing
# said before. Every event is negative and from one of three customers (their history).
SAMPLES: dict[str, dict[str, Any]] = {
    "threshold": {"metric": "negative_share", "operator": ">", "threshold": 0.4,
                  "clear_threshold": 0.3, "resolve_after_s": 120, "lookback_s": 300,
                  "min_volume": 20},
    "rate_of_change": {"metric": "negative_count", "operator": ">=", "threshold": 3,
                       "clear_threshold": 1.5, "lookback_s": 180, "min_volume": 60},
    "anomaly": {"metric": "negative_share", "method": "zscore", "direction": "up",
                "sensitivity": 0.3, "clear_sensitivity": 0.1, "lookback_s": 60,
                "baseline_s": 600, "min_baseline_points": 5, "min_volume": 10},
    "topic_spike": {"topic": "after_sales_returns", "factor": 3, "min_count": 5,
                    "lookback_s": 300},
    "volume_drop": {"lookback_s": 180, "baseline_s": 600, "share": 0, "min_baseline": 5},
    "emerging_topic": {"window_s": 120, "baseline_s": 600, "min_baseline_volume": 10,
                       "new_min_mentions": 5, "new_min_customers": 3, "min_llr": 10},
    "event": {"match": {"urgency": ["escalation_threat"]}},
    "rating": {"nps_at_most": 6, "route": {"open_case": True}},
    "customer_history": {"min_contacts": 3, "within_days": 1},
}


def sample_rules() -> str:
    rules = [{"id": f"sample-{name}", "type": name, "cooldown_s": 3600, **fields}
             for name, fields in SAMPLES.items()]
    return yaml.safe_dump({"rules": rules}, allow_unicode=True)


# --- the table, without I/O -------------------------------------------------------------------

def test_every_kind_in_the_table_has_a_sample_and_its_own_tag() -> None:
    names = [kind_name(model) for model in models()]
    assert len(names) == len(set(names)), "two kinds share a `type` tag"
    assert set(names) == set(SAMPLES), "add a sample rule of the new kind to SAMPLES"
    assert len(models()) == len(WINDOW_KINDS) + len(EVENT_KINDS)


def test_the_rules_file_union_is_the_table(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(sample_rules(), encoding="utf-8")
    loaded = load_rules(path)
    assert [type(r) for r in loaded.rules] == [
        next(m for m in models() if kind_name(m) == name) for name in SAMPLES]
    assert {r.type for r in loaded.window_rules()} == {kind_name(k.model) for k in WINDOW_KINDS}
    assert {r.type for r in loaded.event_rules()} == {kind_name(k.model) for k in EVENT_KINDS}


def test_an_unknown_kind_is_a_load_error_naming_the_file_and_the_line_of_its_type(
        tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n"
                    "  - {id: fine, type: event, match: {segments: [VIP]}}\n"
                    "  - id: typo\n"
                    "    description: a kind nobody registered\n"
                    "    type: silense\n"
                    "    lookback_s: 600\n", encoding="utf-8")
    with pytest.raises(ValueError) as info:
        load_rules(path)
    message = str(info.value)
    assert f"{path}:5: rule 'typo' (rules[1]), field type:" in message
    assert "'silense'" in message
    for name in SAMPLES:
        assert f"'{name}'" in message, "the error lists the kinds there are"


def test_every_kind_may_appear_in_an_alert_event() -> None:
    """The alert's rule_type is a closed enum in events.py and alert.v3: a kind missing there
    could not publish its alerts."""
    names = {kind_name(model) for model in models()}
    assert names <= set(get_args(AlertRuleType))
    assert names <= set(schemas.topic_schema("alert.v3")["properties"]["rule_type"]["enum"])


def test_history_spans_merge_into_disjoint_periods() -> None:
    ends = [T0 + timedelta(minutes=m) for m in (5, 6, 7)]
    points = Points(dict.fromkeys(ends), 60)
    week = timedelta(days=7)
    spans = [(timedelta(minutes=5), timedelta(0)), (timedelta(minutes=10), timedelta(0)),
             (week + timedelta(minutes=5), week)]
    assert points.periods(spans) == [
        (ends[0] - week - timedelta(minutes=5), ends[-1] - week),
        (ends[0] - timedelta(minutes=10), ends[-1])]
    overlapping = [(timedelta(days=8), timedelta(0)), (week + timedelta(minutes=5), week)]
    assert points.periods(overlapping) == [(ends[0] - timedelta(days=8), ends[-1])], \
        "overlapping spans are read once, so no row is counted twice"
    assert Points({}, 60).periods(spans) == []


def test_each_touchpoint_is_evaluated_at_its_own_newest_end() -> None:
    points = Points.of({"a": T0, "b": T0 + timedelta(minutes=1), "c": T0}, 60)
    assert points.ends == {T0: ("a", "c"), T0 + timedelta(minutes=1): ("b",)}
    assert points.touchpoints() == ("a", "b", "c")
    assert Points({T0: None}, 60).touchpoints() is None


def test_no_rows_decide_nothing_for_every_window_kind() -> None:
    """Silence is not evidence of health: a kind with nothing to read neither fires nor
    clears (the lifecycle keeps its state)."""
    rules = RuleSet.model_validate({"rules": [
        {"id": f"r-{name}", "type": name, **fields} for name, fields in SAMPLES.items()]})
    for rule in rules.window_rules():
        kind = next(k for k in WINDOW_KINDS if isinstance(rule, k.model))
        assert kind.measure(rule, [], T0) is None, rule.type


# --- on both stores ---------------------------------------------------------------------------

@pytest.mark.parametrize("lookback_s", [300, 150, 97])
def test_topic_counts_are_exact_whatever_the_lookback(store_url: str, lookback_s: int) -> None:
    """A topic spike counts the events of each lookback exactly, live (one end: two buckets
    per touchpoint) and in a backtest (every window end at once), also when the lookback is
    not a whole number of windows: each count equals counting the events one by one."""
    moments = [T0 + timedelta(seconds=s) for s in range(0, 1800, 7)]
    events = [feedback(i, 0, refund=i % 3 == 0).model_copy(update={"occurred_at": at})
              for i, at in enumerate(moments)]
    rule = RuleSet.model_validate({"rules": [{
        "id": "t", "type": "topic_spike", "topic": "after_sales_returns", "factor": 2,
        "lookback_s": lookback_s}]}).rules[0]
    kind = next(k for k in WINDOW_KINDS if isinstance(rule, k.model))
    ends = window_ends(T0 + timedelta(minutes=10), T0 + timedelta(minutes=30), 60)

    def by_hand(end: datetime) -> tuple[int, int, int, int]:
        span = timedelta(seconds=lookback_s)
        now = [e for e in events if end - span <= e.occurred_at < end]
        before = [e for e in events if end - 2 * span <= e.occurred_at < end - span]
        return (sum(bool(e.topics) for e in now), len(now),
                sum(bool(e.topics) for e in before), len(before))

    async def main() -> None:
        store = await open_store(store_url)
        try:
            await migrate(store)
            await store.insert("feedback", [feedback_row(e, 1) for e in events])
            wanted = [Wanted(rule, tuple(kind.history(rule)))]
            replay = await kind.loader(store, wanted, Points(dict.fromkeys(ends), 60))
            for end in ends:
                single = await kind.loader(store, wanted, Points({end: ("hotline",)}, 60))
                for loaded in (replay, single):
                    counts = topic_counts(loaded["t"]["hotline"], end, lookback_s)
                    assert astuple(counts) == by_hand(end), end
        finally:
            await store.close()

    run(main())


# --- live worker and backtest agree, on the real broker and both stores -----------------------

def score_row(minute: int, negatives: int, volume: int = 20,
              touchpoint: str = "delivery") -> dict:
    """A ``cem_scores`` row of the all-channel, all-stage slice (other columns default)."""
    return {"touchpoint": touchpoint, "channel": "", "stage": "", "window_seconds": 60,
            "window_start": T0 + timedelta(minutes=minute), "volume": volume,
            "positive_count": volume - negatives, "neutral_count": 0,
            "negative_count": negatives, "mean_sentiment": 0.0,
            "negative_share": negatives / volume, "computed_ms": 1}


def feedback(n: int, minute: float, *, refund: bool = False, threat: bool = False,
             tokens: tuple[str, ...] = ("服务", "还行"), nps: int | None = None
             ) -> EnrichedFeedback:
    moment = T0 + timedelta(minutes=minute)
    tag = TopicTag(id="after_sales_returns", name="售后/退换",
                   sentiment=AspectSentiment(score=-0.5, label="negative"), evidence=[(0, 2)])
    return EnrichedFeedback(
        event_id=f"f{n}", source="t", channel="app", touchpoint="hotline", text="退款太慢了",
        occurred_at=moment, received_at=moment, customer_id=f"c{n % 3}",
        sentiment=Sentiment(score=-0.5, label="negative", model="t"),
        topics=[tag] if refund else [], intent="complaint",
        urgency=[UrgencyFlag(flag="escalation_threat", term="12315", evidence=[(0, 5)])]
        if threat else [], keywords=[], tokens=list(tokens), enriched_at=moment,
        ratings=Ratings(nps=nps))


def history() -> tuple[list[dict], list[EnrichedFeedback]]:
    negatives = [2] * 10 + [14] * 5 + [2] * 15
    scores = [score_row(m, n) for m, n in enumerate(negatives)]
    scores += [score_row(m, 0, volume=10, touchpoint="app") for m in range(20)]
    events = [feedback(i, 1 + i * 0.2) for i in range(20)]
    events += [feedback(100 + i, 6 + i * 0.4, refund=True) for i in range(2)]
    events += [feedback(200 + i, 11 + i * 0.2, refund=True, tokens=("蓝牙", "断连"))
               for i in range(12)]
    events += [feedback(300 + i, 20 + i, threat=True) for i in range(3)]
    events += [feedback(400, 25, nps=2)]
    return scores, events


def score_update(touchpoint: str, end: datetime) -> Score:
    """The score event that tells the alerting stage a touchpoint's window ending at ``end``
    changed (its figures are read from the store, not from the event)."""
    return factories.score(touchpoint=touchpoint, window_end=end)


def comparable(alert: dict) -> tuple:
    """What the rules decided (wall-clock stamps differ between a live run and a replay)."""
    return (alert["alert_id"], alert["rule_id"], alert["rule_type"], alert["touchpoint"],
            alert["status"], alert["metric"], round(alert["value"], 9),
            None if alert["baseline"] is None else round(alert["baseline"], 9),
            alert["volume"], alert["window_start"], alert["window_end"], alert["message"])


async def live(settings: Settings, store: Store, producer: Any, path: Path,
               scores: list[dict], events: list[EnrichedFeedback]) -> None:
    """The live evaluator, fed what the pipeline would feed it, one window end at a time:
    the events that arrived, and a score update of `delivery` and `hotline` at every end and
    of every other touchpoint only while it sends (a silent touchpoint updates nothing)."""
    evaluator = AlertEvaluator(settings, store, producer, RulesFile(path))
    await evaluator.load_state()
    for end in window_ends(T0, T0 + timedelta(minutes=MINUTES), 60):
        arrived = [e for e in events if end - timedelta(minutes=1) <= e.occurred_at < end]
        if arrived:
            await evaluator.handle_events(records(arrived))
        sending = {r["touchpoint"] for r in scores
                   if r["window_start"] == end - timedelta(minutes=1)}
        updated = sorted({"delivery", "hotline"} | sending)
        await evaluator.handle_scores(records(
            [score_update(tp, end) for tp in updated], topic=settings.topic("scores")))


def test_live_worker_and_backtest_decide_the_same_for_every_kind(
        broker: LocalBroker, store_url: str, settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(sample_rules(), encoding="utf-8")
    settings = settings.model_copy(update={"alert_rules_path": path, "window_seconds": 60})
    create_topics(settings, broker.bootstrap)
    scores, events = history()

    async def main() -> list[dict]:
        async with store_and_producer(store_url, broker.bootstrap) as (store, producer):
            await store.insert("cem_scores", scores)
            await store.insert("feedback", [feedback_row(e, 1) for e in events])
            await live(settings, store, producer, path, scores, events)
            replayed = await backtest(store, load_rules(path), T0,
                                      T0 + timedelta(minutes=MINUTES), 60)
            return [a.model_dump(mode="json", by_alias=True) for a in replayed]

    replayed = run(main())
    published = [v for _, v in read_topic(broker.bootstrap, settings.topic("alerts"))]
    assert sorted(map(comparable, published)) == sorted(map(comparable, replayed))
    fired = {a["rule_id"] for a in published if a["status"] == "firing"}
    assert fired == {f"sample-{name}" for name in SAMPLES}, "every sample fires, so the test "\
        "compares decisions of every kind"
    resolved = {a["rule_type"] for a in published if a["status"] == "resolved"}
    assert resolved >= {"threshold", "topic_spike"}
