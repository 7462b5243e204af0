"""Backtest: stored history on a real store, replayed through a rules file (both backends),
and the ``voc alerting backtest`` command on chdb."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.alerting.backtest import backtest, report, window_ends
from services.alerting.rules import load_rules
from services.core.events import (
    AspectSentiment,
    EnrichedFeedback,
    Sentiment,
    TopicTag,
    UrgencyFlag,
)
from services.core.migrations import migrate
from services.core.store import Store, open_store
from services.scoring.sink import feedback_row
from tests.conftest import run

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
RULES = """
rules:
  - {id: neg, type: threshold, metric: negative_share, operator: ">", threshold: 0.4,
     clear_threshold: 0.3, resolve_after_s: 120, lookback_s: 300, min_volume: 20,
     cooldown_s: 1800, severity: critical}
  - {id: refunds, type: topic_spike, topic: after_sales_returns, factor: 3, min_count: 5,
     lookback_s: 300, cooldown_s: 3600}
  - {id: threat, type: event, match: {urgency: [escalation_threat]}}
"""


def score(minute: int, negatives: int, volume: int = 20) -> dict:
    """A ``cem_scores`` row of the all-channel, all-stage slice (other columns default)."""
    return {"touchpoint": "delivery", "channel": "", "stage": "", "window_seconds": 60,
            "window_start": T0 + timedelta(minutes=minute), "volume": volume,
            "positive_count": volume - negatives, "neutral_count": 0,
            "negative_count": negatives, "mean_sentiment": 0.0,
            "negative_share": negatives / volume, "computed_ms": 1}


def feedback(n: int, minute: float, *, refund: bool = False, threat: bool = False) -> EnrichedFeedback:
    moment = T0 + timedelta(minutes=minute)
    tag = TopicTag(id="after_sales_returns", name="售后/退换",
                   sentiment=AspectSentiment(score=-0.5, label="negative"), evidence=[(0, 2)])
    return EnrichedFeedback(
        event_id=f"f{n}", source="t", channel="app", touchpoint="hotline", text="退款太慢了",
        occurred_at=moment, received_at=moment, customer_id=f"c{n % 3}",
        sentiment=Sentiment(score=-0.5, label="negative", model="t"),
        topics=[tag] if refund else [], intent="complaint",
        urgency=[UrgencyFlag(flag="escalation_threat", term="12315", evidence=[(0, 5)])]
        if threat else [], keywords=[], tokens=[], enriched_at=moment)


async def seed(store: Store) -> None:
    await migrate(store)
    shares = [2] * 10 + [14] * 5 + [2] * 15
    await store.insert("cem_scores", [score(m, n) for m, n in enumerate(shares)])
    events = [feedback(i, 1 + i * 0.2) for i in range(20)]              # minutes 1-5: no topic
    events += [feedback(100 + i, 6 + i * 0.4, refund=True) for i in range(2)]
    events += [feedback(200 + i, 11 + i * 0.2, refund=True) for i in range(12)]
    events += [feedback(300 + i, 20 + i, threat=True) for i in range(3)]
    await store.insert("feedback", [feedback_row(e, 1) for e in events])


def test_window_ends_cover_the_period() -> None:
    ends = window_ends(T0 + timedelta(seconds=30), T0 + timedelta(minutes=3), 60)
    assert ends == [T0 + timedelta(minutes=m) for m in (1, 2, 3)]


def test_backtest_replays_what_would_have_fired(store_url: str, tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)

    async def main() -> list:
        store = await open_store(store_url)
        try:
            await seed(store)
            return await backtest(store, load_rules(path), T0, T0 + timedelta(minutes=30), 60)
        finally:
            await store.close()

    alerts = run(main())
    summary = [(a.rule_id, a.status, a.window_end - T0) for a in alerts]
    assert ("neg", "firing", timedelta(minutes=13)) in summary
    assert ("neg", "resolved", timedelta(minutes=21)) in summary, \
        "clear (22% < 30%) from minute 19, for resolve_after_s = 2 minutes"
    assert [s for s in summary if s[0] == "refunds"] == [
        ("refunds", "firing", timedelta(minutes=13)), ("refunds", "resolved", timedelta(minutes=17))]
    threats = [a for a in alerts if a.rule_id == "threat"]
    assert [a.event_ids for a in threats] == [["f300"], ["f301"], ["f302"]], \
        "three different customers: three alerts"
    assert len(alerts) == 7
    text = report(alerts)
    assert "neg: 1 fired, 1 resolved" in text and "refunds: 1 fired, 1 resolved" in text


def test_backtest_command(tmp_path: Path) -> None:
    data = tmp_path / "chdb"

    async def prepare() -> None:
        store = await open_store(f"chdb://{data}")
        try:
            await seed(store)
        finally:
            await store.close()

    run(prepare())
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    voc = Path(sys.executable).with_name("voc")
    env = {**os.environ, "VOC_CLICKHOUSE_URL": f"chdb://{data}"}
    args = [str(voc), "alerting", "backtest", "--rules", str(rules),
            "--from", "2026-11-20T16:00:00+0800", "--to", "2026-11-20T08:30:00"]
    done = subprocess.run([*args, "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(a["rule_id"], a["status"]) for a in lines][:2] == [("neg", "firing"),
                                                                ("refunds", "firing")]
    table = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert "neg: 1 fired, 1 resolved" in table.stdout
    bad = subprocess.run([*args[:5], "--from", "2026-11-20", "--to", "2026-11-19"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "must be after" in bad.stderr


TOPIC_RULES = """
rules:
  - {id: logistics-negative, type: threshold, metric: negative_share, operator: ">",
     threshold: 0.4, clear_threshold: 0.3, lookback_s: 300, min_volume: 20, cooldown_s: 1800,
     scope: {topics: [logistics_delivery]}}
  - {id: returns-negative, type: threshold, metric: negative_share, operator: ">",
     threshold: 0.4, lookback_s: 300, min_volume: 20, cooldown_s: 1800,
     scope: {topics: [after_sales_returns]}}
  - {id: returns-complaints-vs-last-week, type: rate_of_change, metric: complaint_rate,
     compare_to: last_week, operator: ">=", threshold: 2, lookback_s: 300, min_volume: 20,
     scope: {topics: [after_sales_returns]}}
  - {id: all-negative, type: threshold, metric: negative_share, operator: ">", threshold: 0.4,
     lookback_s: 300, min_volume: 20}
"""


def topic_score(topic: str, minute: int, negatives: int, mentions: int = 10,
                complaints: int = 0) -> dict:
    """A ``topic_scores`` row of the all-channel, all-stage slice (other columns default)."""
    return {"touchpoint": "delivery", "channel": "", "stage": "", "topic": topic,
            "window_seconds": 60, "window_start": T0 + timedelta(minutes=minute),
            "mentions": mentions, "negative_count": negatives,
            "positive_count": mentions - negatives, "sentiment_sum": -0.5 * negatives,
            "complaint_count": complaints, "computed_ms": 1}


def test_backtest_replays_topic_scoped_figure_rules(store_url: str, tmp_path: Path) -> None:
    """Logistics mentions turn negative from minute 10 to 14 while the touchpoint's overall
    share stays low: only the logistics rule fires (and resolves). The returns complaint rate
    doubles against the same minutes last week (the rule reads last week's topic rows)."""
    path = tmp_path / "rules.yaml"
    path.write_text(TOPIC_RULES)
    logistics = [1] * 10 + [8] * 5 + [1] * 15

    async def main() -> list:
        store = await open_store(store_url)
        try:
            await migrate(store)
            await store.insert("cem_scores", [score(m, 10, volume=100) for m in range(30)])
            rows = [topic_score("logistics_delivery", m, n) for m, n in enumerate(logistics)]
            rows += [topic_score("after_sales_returns", m, 1, complaints=4) for m in range(30)]
            last_week = [{**topic_score("after_sales_returns", m, 1, complaints=2),
                          "window_start": T0 + timedelta(minutes=m, days=-7)} for m in range(30)]
            await store.insert("topic_scores", rows + last_week)
            return await backtest(store, load_rules(path), T0, T0 + timedelta(minutes=30), 60)
        finally:
            await store.close()

    alerts = run(main())
    summary = [(a.rule_id, a.status, a.window_end - T0) for a in alerts]
    assert [s for s in summary if s[0] == "logistics-negative"] == [
        ("logistics-negative", "firing", timedelta(minutes=13)),
        ("logistics-negative", "resolved", timedelta(minutes=19))], \
        "5-minute share 26/50 > 0.4 at minute 13 (19/50 at 12); 12/50 < 0.3 at 19 (19/50 at 18)"
    fired = next(a for a in alerts if a.rule_id == "logistics-negative")
    assert fired.topic == "logistics_delivery" and fired.volume == 50
    assert "mentions of logistics_delivery" in fired.message
    assert [s[:2] for s in summary if s[0] == "returns-complaints-vs-last-week"] == [
        ("returns-complaints-vs-last-week", "firing")]
    assert not [s for s in summary if s[0] in ("returns-negative", "all-negative")]
