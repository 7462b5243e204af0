"""The ``emerging_topic`` rule kind: a phrase no topic names, rising at a touchpoint.

Without I/O: validation, the measure (the top phrase's G², breached only past ``min_llr``,
cleared only when nothing passes ``clear_llr``: hysteresis), the alert's words, and the
documented rules load and document every option.

On the real broker and both store backends, scoring and alerting running as in ``voc up``: a
phrase injected into one touchpoint's stream pages once, at that touchpoint, with the phrase
as the explanation's first term (counts now and before, customers) and example comments
carrying it; the touchpoint that talks as usual never pages.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

import schemas
from services.alerting.emerging import Rising
from services.alerting.engine import KeyState, step
from services.alerting.evaluation import lifecycle_alert
from services.alerting.kinds.emerging_topic import EmergingTopicRule, Found, measure_emerging
from services.alerting.rules import RuleSet, load_rules
from services.core.broker import LocalBroker
from services.core.cem_metrics import window_start
from services.core.events import EnrichedFeedback, Sentiment, utc_now
from services.core.kafka import create_topics
from services.core.settings import Settings
from tests.conftest import run
from tests.e2e.test_alert_e2e import alerts_on_topic, produce, tuned
from tests.pipeline_harness import running, store_and_producer
from tests.waiting import eventually

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
ALERT_SCHEMA = Draft202012Validator(schemas.topic_schema("alert.v3"),
                                    format_checker=Draft202012Validator.FORMAT_CHECKER)


def rule(**fields: Any) -> EmergingTopicRule:
    """A rule firing at G² 20 and clearing below 10 (the figures below are set around those;
    the shipped min_llr is higher)."""
    [loaded] = RuleSet.model_validate({"rules": [
        {"id": "new-words", "type": "emerging_topic", "min_llr": 20, **fields}]}).rules
    assert isinstance(loaded, EmergingTopicRule)
    return loaded


def rising(llr: float, phrase: str = "蓝牙 断连", baseline: int = 0) -> Rising:
    return Rising(phrase, phrase.replace(" ", ""), 12, 8, baseline, 60, 600, llr, 20.0,
                  baseline == 0)


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


@pytest.mark.parametrize(("fields", "message"), [
    ({"clear_llr": 40}, "clear_llr 40.0 must not exceed min_llr 30.0"),
    ({"scope": {"channels": ["app"]}}, "drop scope.topics, scope.channels"),
    ({"window_s": 10}, "greater than or equal to 60"),
    ({"min_lift": 0.5}, "greater than or equal to 1"),
])
def test_invalid_rules_are_load_errors_naming_the_field(tmp_path: Path, fields: dict,
                                                        message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"rules": [{"id": "new-words", "type": "emerging_topic",
                                               **fields}]}), encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        load_rules(path)
    assert f"{path}:" in str(info.value) and "rule 'new-words' (rules[0])" in str(info.value)


def test_the_documented_rules_load_and_document_every_option(tmp_path: Path) -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "alerting.md").read_text("utf-8")
    block = re.search(r"### Emerging topic: .*?\n```yaml\n(.*?)```", docs, re.DOTALL)[1]
    path = tmp_path / "rules.yaml"
    path.write_text(block.replace("notify: [ops-wecom], ", ""), encoding="utf-8")
    loaded = load_rules(path)
    assert {r.type for r in loaded.rules} == {"emerging_topic"}
    documented = set(re.findall(r"^\s*-?\s*([a-z_]+):", block, re.MULTILINE))
    missing = set(EmergingTopicRule.model_fields) - documented
    assert not missing, f"emerging_topic options missing from docs/alerting.md: {missing}"


def test_the_measure_fires_past_min_llr_and_clears_below_clear_llr() -> None:
    r = rule()
    found = [Found(at(5), 60, (rising(35.0), rising(12.0, "二维码"))),
             Found(at(6), 60, (rising(15.0),)), Found(at(7), 60, ())]
    fired = measure_emerging(r, found, at(5))
    assert (fired.value, fired.breached, fired.cleared, fired.volume) == (35.0, True, False, 60)
    assert [x.phrase for x in fired.evidence] == ["蓝牙 断连"], "only what passes min_llr fires"
    assert (fired.start, fired.end) == (at(0), at(5))
    between = measure_emerging(r, found, at(6))
    assert not between.breached and not between.cleared, "15 is between clear_llr 10 and 20"
    quiet = measure_emerging(r, found, at(7))
    assert (quiet.value, quiet.breached, quiet.cleared) == (0.0, False, True)
    assert measure_emerging(r, found, at(8)) is None, "not evaluated there: nothing decided"


def test_both_bars_are_corrected_for_the_phrases_tested() -> None:
    """Among 500 phrases tested, min_llr 20 becomes 32.0 and clear_llr 10 becomes 21.7."""
    r = rule()
    crowd = [Found(at(5), 60, (replace(rising(35.0), tested=500),)),
             Found(at(6), 60, (replace(rising(25.0), tested=500),)),
             Found(at(7), 60, (replace(rising(21.0), tested=500),))]
    fired = measure_emerging(r, crowd, at(5))
    assert fired.breached and not fired.cleared
    held = measure_emerging(r, crowd, at(6))
    assert not held.breached and not held.cleared, "25 would fire alone; here it only holds"
    assert measure_emerging(r, crowd, at(7)).cleared, "21 is under the corrected clear_llr"
    alert = lifecycle_alert(r, "app", KeyState(alert_id="a"), "fire", fired, at(5))
    assert alert.threshold == pytest.approx(31.991)
    assert "(G² 35.0 against 32.0, min_llr 20 corrected for 500 phrases tested, lift x20.0)" \
        in alert.message


def test_one_alert_per_episode_with_hysteresis() -> None:
    r = rule(resolve_after_s=120)
    llrs = [0, 0, 40, 25, 15, 22, 12, 8, 5, 3, 0, 0]
    found = [Found(at(m), 60, (rising(v),) if v else ()) for m, v in enumerate(llrs)]
    state, transitions = KeyState(), []
    for minute in range(len(llrs)):
        m = measure_emerging(r, found, at(minute))
        before = state
        state, transition = step(state, m, at(minute), cooldown_s=r.cooldown_s,
                                 resolve_after_s=r.resolve_after_s, key="new-words:app",
                                 now=at(minute))
        if transition:
            alert = lifecycle_alert(r, "app", state if transition == "fire" else before,
                                    transition, m, at(minute))
            ALERT_SCHEMA.validate(alert.model_dump(mode="json", by_alias=True))
            transitions.append((minute, alert.status))
    assert transitions == [(2, "firing"), (9, "resolved")], \
        "fires once at 40; 15 and 12 hold it; below clear_llr from minute 7, 2 minutes later"


def test_the_alert_names_the_phrase_and_its_counts() -> None:
    m = measure_emerging(rule(), [Found(at(5), 60, (rising(35.0),))], at(5))
    alert = lifecycle_alert(rule(description="新问题？"), "app", KeyState(alert_id="a"),
                            "fire", m, at(5))
    assert (alert.rule_type, alert.metric, alert.operator, alert.threshold, alert.value) == (
        "emerging_topic", "phrase_llr", ">=", 20.0, 35.0)
    assert alert.message == (
        "[firing] app: emerging phrase 「蓝牙断连」: 12 mentions from 8 customers in 300s, "
        "never seen before (G² 35.0, lift x20.0) over 60 events. 新问题？")


# --- live, on the real broker and both stores -------------------------------------------------

EMERGING_RULES = """
rules:
  - {id: new-words, type: emerging_topic, window_s: 120, baseline_s: 1200,
     min_baseline_volume: 100, cooldown_s: 3600, severity: warning,
     route: {team: product-quality}}
"""

USUAL = [["服务", "还行"], ["客服", "态度", "不错"], ["价格", "便宜"], ["包装", "完好"],
         ["质量", "一般"]]


def said(n: str, touchpoint: str, at_: datetime, tokens: list[str],
         customer: str) -> EnrichedFeedback:
    now = utc_now()
    text = "".join(tokens)
    return EnrichedFeedback(
        event_id=f"{touchpoint}-{n}", source="test", channel="app", touchpoint=touchpoint,
        text=text, occurred_at=at_, received_at=now, customer_id=customer,
        sentiment=Sentiment(score=-0.6, label="negative", model="test"), topics=[],
        intent="complaint", urgency=[], keywords=[], tokens=tokens, enriched_at=now)


@pytest.mark.slow
def test_an_injected_phrase_pages_once_with_its_explanation(
        broker: LocalBroker, store_url: str, settings: Settings, tmp_path: Path) -> None:
    """`watch` and `app` send twenty events a minute; in minutes 22 and 23 one in five of
    watch's events says 蓝牙断连, from eight customers."""
    settings = tuned(settings, tmp_path, EMERGING_RULES)
    create_topics(settings, broker.bootstrap)
    start = window_start(datetime.now(UTC), 60) - timedelta(minutes=40)

    def minutes(first: int, last: int) -> list[EnrichedFeedback]:
        out = []
        for m in range(first, last):
            for i in range(20):
                moment = start + timedelta(minutes=m, seconds=3 * i)
                for tp in ("watch", "app"):
                    injected = tp == "watch" and m >= 22 and i % 5 == 0
                    tokens = ["蓝牙", "断连", "了"] if injected else USUAL[(m + i) % 5]
                    customer = f"k{(m * 4 + i // 5) % 8}" if injected else f"c{m}-{i}"
                    out.append(said(f"{m}-{i}", tp, moment, tokens, customer))
        return out

    async def main() -> list[dict]:
        async with store_and_producer(store_url, broker.bootstrap) as (store, producer):
            async with running(settings, ("scoring", "alerting"), broker.bootstrap, store=store):
                await produce(producer, settings, minutes(0, 22))

                async def stored() -> bool:
                    rows = await store.query("SELECT count() AS n FROM feedback")
                    return int(rows[0]["n"]) == 22 * 40

                await eventually(stored, 60, "the usual feedback stored")
                await produce(producer, settings, minutes(22, 24))

                async def fired() -> bool:
                    rows = await store.query("SELECT touchpoint, status FROM alerts FINAL")
                    return [(r["touchpoint"], r["status"]) for r in rows] == [
                        ("watch", "firing")]

                await eventually(fired, 120, "the injected phrase to page")
            return await asyncio.to_thread(alerts_on_topic, settings, broker.bootstrap)

    alerts = run(main())
    assert [(a["rule_id"], a["touchpoint"], a["status"]) for a in alerts] == [
        ("new-words", "watch", "firing")]
    [alert] = alerts
    ALERT_SCHEMA.validate(alert)
    assert alert["team"] == "product-quality" and alert["metric"] == "phrase_llr"
    assert "「蓝牙断连」" in alert["message"]
    assert "against 35.0, min_llr 30 corrected for 13 phrases tested" in alert["message"], \
        "the window lists 13 phrases of at least 5 mentions: the bar is 30 corrected for 13"
    window_end = datetime.fromisoformat(alert["window_end"].replace("Z", "+00:00"))
    assert window_end == start + timedelta(minutes=24), \
        "the first window end holding eight mentions from eight customers"
    explanation = alert["explanation"]
    top = explanation["terms"][0]
    assert top["term"] == "蓝牙断连" and top["baseline_share"] == 0
    assert top["customers"] >= 5 and top["count"] >= 8
    assert explanation["comments"], "example comments carry the phrase"
    for comment in explanation["comments"]:
        start_, end_ = comment["evidence"][0]
        assert comment["text"][start_:end_] == "蓝牙断连"
