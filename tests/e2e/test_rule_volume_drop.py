"""The ``volume_drop`` rule kind: a touchpoint whose volume falls to a share of its baseline,
or to nothing (a broken integration).

Without I/O: validation, the measured share against a preceding or last-week baseline and on a
slice of the score cube, no decision on a thin baseline, hysteresis, and the lifecycle
(fires once, cooldown, resolves once the feed is back); the documented rules load and document
every option.

On the real broker and both store backends, scoring and alerting running as in ``voc up``: a
touchpoint that stops sending, while another keeps sending, pages once and resolves when it is
back; the one that keeps sending never pages.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

import schemas
from services.alerting.engine import KeyState, step
from services.alerting.evaluation import lifecycle_alert
from services.alerting.kinds.volume_drop import VolumeDropRule, measure_drop
from services.alerting.rules import RuleSet, load_rules
from services.core.broker import LocalBroker
from services.core.cem_metrics import window_start
from services.core.kafka import create_topics
from services.core.settings import Settings
from tests.conftest import run
from tests.e2e.test_alert_e2e import alerts_on_topic, event, produce, tuned
from tests.pipeline_harness import running, store_and_producer
from tests.waiting import eventually

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
ALERT_SCHEMA = Draft202012Validator(schemas.topic_schema("alert.v3"),
                                    format_checker=Draft202012Validator.FORMAT_CHECKER)


def rule(**fields: Any) -> VolumeDropRule:
    """One rule validated exactly as the rules file validates it."""
    base = {"id": "quiet", "type": "volume_drop", "lookback_s": 300, "baseline_s": 1800,
            "min_baseline": 10}
    [loaded] = RuleSet.model_validate({"rules": [{**base, **fields}]}).rules
    assert isinstance(loaded, VolumeDropRule)
    return loaded


def window(minute: float, volume: int, channel: str = "", stage: str = "") -> dict:
    return {"window_start": T0 + timedelta(minutes=minute), "window_seconds": 60,
            "channel": channel, "stage": stage, "volume": volume, "negative_count": 0,
            "positive_count": volume, "neutral_count": 0, "mean_sentiment": 0.5,
            "negative_share": 0.0}


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


def steady(first: int, last: int, per_minute: int = 10, **slice_: str) -> list[dict]:
    """Windows of minutes ``first`` to ``last - 1``, ``per_minute`` events each."""
    return [window(m, per_minute, **slice_) for m in range(first, last)]


# --- the rules file ---------------------------------------------------------------------------

@pytest.mark.parametrize(("fields", "message"), [
    ({"share": 0.5, "clear_share": 0.2}, "clear_share 0.2 must not be below share 0.5"),
    ({"share": 1}, "less than 1"),
    ({"scope": {"topics": ["logistics_delivery"]}}, "drop scope.topics"),
    ({"min_baseline": 0}, "greater than 0"),
    ({"lookback": 300}, "lookback"),
    ({"compare_to": "yesterday"}, "preceding"),
])
def test_invalid_rules_are_load_errors_naming_the_field(tmp_path: Path, fields: dict,
                                                        message: str) -> None:
    path = tmp_path / "rules.yaml"
    body = {"id": "quiet", "type": "volume_drop", "lookback_s": 300, **fields}
    path.write_text(yaml.safe_dump({"rules": [body]}), encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        load_rules(path)
    assert f"{path}:" in str(info.value) and "rule 'quiet' (rules[0])" in str(info.value)


def test_the_documented_rules_load_and_document_every_option(tmp_path: Path) -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "alerting.md").read_text("utf-8")
    block = re.search(r"### Volume drop: .*?\n```yaml\n(.*?)```", docs, re.DOTALL)[1]
    path = tmp_path / "rules.yaml"
    path.write_text(block.replace("notify: [ops-wecom], ", ""), encoding="utf-8")
    loaded = load_rules(path)
    assert {r.type for r in loaded.rules} == {"volume_drop"}
    assert {r.compare_to for r in loaded.rules} == {"preceding", "last_week"}
    documented = set(re.findall(r"^\s*-?\s*([a-z_]+):", block, re.MULTILINE))
    missing = set(VolumeDropRule.model_fields) - documented
    assert not missing, f"volume_drop options missing from docs/alerting.md: {missing}"


# --- the measure ------------------------------------------------------------------------------

def test_silence_after_a_steady_feed_breaches() -> None:
    rows = steady(0, 30)
    m = measure_drop(rule(), rows, at(35))
    assert m is not None and m.breached and not m.cleared
    assert (m.value, m.volume) == (0.0, 0)
    assert m.baseline == pytest.approx(50.0), "30 min of 10/min before the lookback: 50 per 5 min"
    assert (m.start, m.end) == (at(30), at(35))


def test_a_partial_drop_against_share_and_clear_share() -> None:
    rows = steady(0, 30) + steady(30, 35, per_minute=2)
    assert measure_drop(rule(), rows, at(35)).breached is False, "share 0: only silence"
    dropped = measure_drop(rule(share=0.2, clear_share=0.5), rows, at(35))
    assert dropped.value == pytest.approx(0.2) and dropped.breached, "at most the share fires"
    between = measure_drop(rule(share=0.1, clear_share=0.5), rows, at(35))
    assert not between.breached and not between.cleared, "between the shares nothing changes"
    back = measure_drop(rule(share=0.1, clear_share=0.5), steady(0, 35), at(35))
    assert back.value == pytest.approx(1.0) and back.cleared and not back.breached


def test_a_thin_baseline_or_no_history_decides_nothing() -> None:
    assert measure_drop(rule(), steady(0, 30, per_minute=1), at(35)) is None, \
        "5 events per lookback is below min_baseline 10: a quiet touchpoint is no drop"
    assert measure_drop(rule(), [], at(35)) is None
    assert measure_drop(rule(), steady(0, 2), at(60)) is None, \
        "silent for longer than baseline_s: no baseline left"


def test_last_week_is_the_same_lookback_a_week_earlier() -> None:
    week = 7 * 24 * 60
    last_week = steady(30 - week, 35 - week, per_minute=20)
    now = steady(0, 30) + steady(30, 35, per_minute=8)
    m = measure_drop(rule(compare_to="last_week", share=0.5), last_week + now, at(35))
    assert m.baseline == 100 and m.volume == 40 and m.value == pytest.approx(0.4)
    assert m.breached, "40 events now against 100 a week ago, though the last half hour had 50"


def test_a_channel_scope_watches_its_slice_of_the_cube() -> None:
    totals = steady(0, 35, per_minute=30)
    app = steady(0, 30, channel="app")
    m = measure_drop(rule(scope={"channels": ["app"]}), totals + app, at(35))
    assert m.breached and m.volume == 0, "the app feed stopped while the total kept coming"
    assert not measure_drop(rule(), totals + app, at(35)).breached


# --- the lifecycle ----------------------------------------------------------------------------

def test_a_silence_pages_once_and_resolves_once_the_feed_is_back() -> None:
    r = rule(share=0, clear_share=0.5, resolve_after_s=120, cooldown_s=3600)
    rows = steady(0, 30) + steady(45, 60)
    state, transitions = KeyState(), []
    for minute in range(30, 61):
        m = measure_drop(r, rows, at(minute))
        before = state
        state, transition = step(state, m, at(minute), cooldown_s=r.cooldown_s,
                                 resolve_after_s=r.resolve_after_s, key="quiet:app", now=at(minute))
        if transition:
            alert = lifecycle_alert(r, "app", state if transition == "fire" else before,
                                    transition, m, at(minute))
            ALERT_SCHEMA.validate(alert.model_dump(mode="json", by_alias=True))
            transitions.append((minute, alert.status, alert.value, alert.alert_id))
    (fired_at, fired, value, alert_id), (resolved_at, resolved, _, same_id) = transitions
    assert (fired_at, fired, value) == (35, "firing", 0.0), "the whole lookback silent"
    assert (resolved_at, resolved) == (49, "resolved"), \
        "back at 45: above half the baseline from 47 (20 events of 30), then clear for 2 minutes"
    assert alert_id == same_id


def test_the_alert_names_what_was_measured() -> None:
    m = measure_drop(rule(), steady(0, 30), at(35))
    alert = lifecycle_alert(rule(description="检查集成"), "app", KeyState(alert_id="a"),
                            "fire", m, at(35))
    assert (alert.rule_type, alert.metric, alert.operator, alert.threshold) == (
        "volume_drop", "volume_share", "<=", 0.0)
    assert (alert.baseline, alert.volume, alert.dedupe_key) == (50.0, 0, "quiet:app")
    assert alert.message == ("[firing] app: volume_share 0.000 <= 0.0 (baseline 50.0 events "
                             "per 300s, preceding 1800s) over 0 events. 检查集成")


# --- live, on the real broker and both stores -------------------------------------------------

QUIET_RULES = """
rules:
  - {id: app-feed-silent, type: volume_drop, lookback_s: 180, baseline_s: 1200, share: 0,
     clear_share: 0.5, min_baseline: 5, cooldown_s: 3600, severity: critical,
     route: {team: app-integration}}
"""


@pytest.mark.slow
def test_a_touchpoint_that_goes_quiet_pages_once_and_resolves_when_it_is_back(
        broker: LocalBroker, store_url: str, settings: Settings, tmp_path: Path) -> None:
    """`app` and `web` send ten events a minute; `app` stops for minutes 20-27. Its alert can
    only come from evaluating a touchpoint that sends nothing (web's events move event time
    on); it resolves once app is back above half its baseline."""
    settings = tuned(settings, tmp_path, QUIET_RULES)
    create_topics(settings, broker.bootstrap)
    start = window_start(datetime.now(UTC), 60) - timedelta(minutes=40)

    def minutes(first: int, last: int) -> list:
        return [event(f"{tp}-{m}-{i}", tp, False, start + timedelta(minutes=m, seconds=5 * i))
                for m in range(first, last) for tp in ("app", "web")
                if tp == "web" or not 20 <= m < 28 for i in range(10)]

    async def main() -> list[dict]:
        async with store_and_producer(store_url, broker.bootstrap) as (store, producer):
            async with running(settings, ("scoring", "alerting"), broker.bootstrap, store=store):

                async def status() -> list[str]:
                    rows = await store.query("SELECT touchpoint, status FROM alerts FINAL")
                    return [f"{r['touchpoint']}:{r['status']}" for r in rows]

                await produce(producer, settings, minutes(0, 28))

                async def fired() -> bool:
                    return await status() == ["app:firing"]

                await eventually(fired, 90, "the app feed's silence to page")
                await produce(producer, settings, minutes(28, 34))

                async def resolved() -> bool:
                    return await status() == ["app:resolved"]

                await eventually(resolved, 90, "the app feed's return to resolve the alert")
            return await asyncio.to_thread(alerts_on_topic, settings, broker.bootstrap)

    alerts = run(main())
    assert [(a["rule_id"], a["touchpoint"], a["status"]) for a in alerts] == [
        ("app-feed-silent", "app", "firing"), ("app-feed-silent", "app", "resolved")]
    for alert in alerts:
        ALERT_SCHEMA.validate(alert)
    firing, resolution = alerts
    assert firing["alert_id"] == resolution["alert_id"]
    assert (firing["value"], firing["volume"], firing["team"]) == (0.0, 0, "app-integration")
    assert resolution["value"] > 0.5
