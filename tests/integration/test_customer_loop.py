"""The customer-level closed loop (issue 19) on the real broker and both store backends:
customer rules -> alerts -> cases carrying the customer -> the customer's timeline -> the
callback KPIs.

The alerting stage's event consumer and case opener are driven with consumer records, as their
BatchConsumers would call them; what they publish is read back from the broker and what they
store from the store.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
from aiokafka import ConsumerRecord

from services.alerting import queries
from services.alerting.cases import CaseOpener, CaseService, transition
from services.alerting.worker import AlertEvaluator, RulesFile
from services.api import create_app
from services.core.broker import LocalBroker
from services.core.events import Alert, EnrichedFeedback, Ratings, utc_now
from services.core.kafka import Producer, create_topics
from services.core.settings import Settings
from services.core.store import Store
from services.scoring.sink import feedback_row
from tests.access_fixtures import principals_file
from tests.conftest import run
from tests.factories import T0, enriched
from tests.pipeline_harness import read_topic, store_and_producer
from tests.scoring_fixtures import records

RULES = """
rules:
  - id: callback
    type: rating
    nps_at_most: 6
    csat_at_most: 2
    route: {team: cx-callback, open_case: true}
  - id: churn
    type: customer_history
    min_contacts: 2
    within_days: 7
    sentiment_at_most: -0.3
    route: {team: cx-retention, open_case: true}
"""


def history() -> tuple[list[EnrichedFeedback], list[EnrichedFeedback]]:
    """What is stored already, and the batch that arrives: `c-1` rates NPS 3 in a survey
    (a detractor, not negative in tone); `c-9` called the hotline angry two days ago (and
    wrote an email nine days ago) and now complains in the app about delivery (a churn risk);
    `c-5` complains once (nothing)."""
    stored = [enriched(event_id="old-c9", customer_id="c-9", channel="call",
                       touchpoint="hotline", occurred_at=T0 - timedelta(days=2), score=-0.7),
              enriched(event_id="older-c9", customer_id="c-9", channel="email",
                       touchpoint="hotline", occurred_at=T0 - timedelta(days=9), score=-0.7)]
    batch = [enriched(event_id="rate-c1", customer_id="c-1", channel="survey", score=0.1,
                      ratings=Ratings(nps=3), text="一般吧"),
             enriched(event_id="new-c9", customer_id="c-9", channel="app",
                      occurred_at=T0 + timedelta(minutes=1), score=-0.6),
             enriched(event_id="once-c5", customer_id="c-5", score=-0.9)]
    return stored, batch


def loop_settings(settings: Settings, tmp_path: Path) -> Settings:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")
    return settings.model_copy(update={"alert_rules_path": path})


async def evaluate_and_open(settings: Settings, bootstrap: str, store: Store,
                            producer: Producer, batch: list[EnrichedFeedback]) -> list[Alert]:
    """One pass of the event consumer (a fresh evaluator: as after a restart that lost its
    memory) and of the case opener over what it published."""
    rules = RulesFile(settings.alert_rules_path)
    evaluator = AlertEvaluator(settings, store, producer, rules)
    await evaluator.handle_events(records(batch))
    published = [Alert.model_validate(v) for _, v in
                 read_topic(bootstrap, settings.topic("alerts"))]
    opener = CaseOpener(CaseService(settings, store, producer), rules)
    await opener.handle(alert_records(published, settings.topic("alerts")))
    return published


def alert_records(alerts: list[Alert], topic: str) -> list[ConsumerRecord]:
    return [ConsumerRecord(topic=topic, partition=0, offset=i, timestamp=0, timestamp_type=0,
                           key=a.dedupe_key.encode(), value=a.to_bytes(), checksum=None,
                           serialized_key_size=0, serialized_value_size=0, headers=())
            for i, a in enumerate(alerts)]


def test_customer_rules_open_cases_that_carry_the_customer_once(
        broker: LocalBroker, store_url: str, settings: Settings, tmp_path: Path) -> None:
    settings = loop_settings(settings, tmp_path)
    create_topics(settings, broker.bootstrap)
    stored, batch = history()

    async def main() -> tuple[list[Alert], list, int]:
        async with store_and_producer(store_url, broker.bootstrap) as (store, producer):
            await store.insert("feedback", [feedback_row(e, 1) for e in stored])
            first = await evaluate_and_open(settings, broker.bootstrap, store, producer, batch)
            # Re-delivered (the consumer died before committing): same alerts, no new case.
            await evaluate_and_open(settings, broker.bootstrap, store, producer, batch)
            cases = await queries.cases(store, status=None, team=None, touchpoint=None,
                                        touchpoints=None, teams=None, limit=100)
            rows = await store.query("SELECT count() AS n FROM case_events FINAL")
            return first, cases, int(rows[0]["n"])

    alerts, cases, case_rows = run(main())
    by_rule = {a.rule_id: a for a in alerts}
    assert set(by_rule) == {"callback", "churn"}, "c-5's single complaint raises nothing"
    assert by_rule["callback"].customer_id == "c-1"
    assert by_rule["churn"].event_ids == ["old-c9", "new-c9"], \
        "the contact nine days ago is outside within_days"
    assert len(cases) == 2 and case_rows == 2, "a re-delivered event opens no second case"
    by_kind = {c.kind: c for c in cases}
    callback, churn = by_kind["callback"], by_kind["churn_risk"]
    assert (callback.customer_id, callback.feedback_event_ids, callback.channels,
            callback.team) == ("c-1", ["rate-c1"], ["survey"], "cx-callback")
    assert (churn.customer_id, churn.feedback_event_ids, churn.channels) == \
        ("c-9", ["old-c9", "new-c9"], ["app", "call"])
    published = [v for _, v in read_topic(broker.bootstrap, settings.topic("cases"))]
    assert {(v["kind"], v["customer_id"]) for v in published} == \
        {("callback", "c-1"), ("churn_risk", "c-9")}


PRINCIPALS = {"viewer-all": {"roles": ["viewer"]},
              "viewer-delivery": {"roles": ["viewer"], "touchpoints": ["delivery"]},
              "viewer-callback": {"roles": ["viewer"], "teams": ["cx-callback"]}}


def test_the_timeline_shows_a_customers_feedback_across_channels_with_its_cases(
        broker: LocalBroker, store_url: str, settings: Settings, tmp_path: Path) -> None:
    """Newest first, a page at a time, with scores, topics and linked cases; a principal
    limited to touchpoints sees only their feedback, one limited to teams only their cases."""
    settings = loop_settings(settings, tmp_path)
    keys_file, keys = principals_file(tmp_path, PRINCIPALS)
    settings = settings.model_copy(update={"api_keys_file": keys_file})
    as_ = {name: {"X-API-Key": key} for name, key in keys.items()}
    create_topics(settings, broker.bootstrap)
    stored, batch = history()

    async def main() -> dict[str, object]:
        async with store_and_producer(store_url, broker.bootstrap) as (store, producer):
            await store.insert("feedback", [feedback_row(e, 1) for e in stored])
            await evaluate_and_open(settings, broker.bootstrap, store, producer, batch)
            await store.insert("feedback", [feedback_row(e, 1) for e in batch])
            app = create_app(settings, broker.bootstrap, store)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://127.0.0.1") as client:
                async def timeline(customer: str, who: str, **params: str) -> httpx.Response:
                    return await client.get(f"/v1/customers/{customer}/timeline",
                                            params=params, headers=as_[who])

                pages, cursor = [], None
                while True:
                    answer = (await timeline("c-9", "viewer-all", limit="2",
                                             **({"cursor": cursor} if cursor else {}))).json()
                    pages.append(answer)
                    cursor = answer["next_cursor"]
                    if cursor is None:
                        break
                return {
                    "pages": pages,
                    "delivery": (await timeline("c-9", "viewer-delivery")).json(),
                    "callback team": (await timeline("c-9", "viewer-callback")).json(),
                    "c-1": (await timeline("c-1", "viewer-callback")).json(),
                    "bad cursor": (await timeline("c-9", "viewer-all", cursor="!!")).status_code,
                    "anonymous": (await client.get("/v1/customers/c-9/timeline")).status_code,
                }

    got = run(main())
    pages = got["pages"]
    assert [[i["event_id"] for i in p["items"]] for p in pages] == \
        [["new-c9", "old-c9"], ["older-c9"]], "newest first, two per page, then the rest"
    first = pages[0]["items"][0]
    assert (first["channel"], first["touchpoint"], first["sentiment"], first["topics"]) == \
        ("app", "delivery", -0.6, ["logistics_delivery"])
    (churn,) = pages[0]["cases"]
    assert churn["kind"] == "churn_risk" and churn["team"] == "cx-retention"
    assert [i["case_ids"] for i in pages[0]["items"]] == [[churn["case_id"]]] * 2
    assert pages[1]["items"][0]["case_ids"] == [], "nine days ago: outside the churn window"
    assert [i["event_id"] for i in got["delivery"]["items"]] == ["new-c9"], \
        "the hotline contacts are outside the principal's touchpoints"
    assert got["callback team"]["cases"] == [], "the churn case belongs to another team"
    assert len(got["callback team"]["items"]) == 3
    c1 = got["c-1"]
    assert [(i["event_id"], i["nps"]) for i in c1["items"]] == [("rate-c1", 3)]
    assert [c["kind"] for c in c1["cases"]] == ["callback"]
    assert c1["items"][0]["case_ids"] == [c1["cases"][0]["case_id"]]
    assert (got["bad cursor"], got["anonymous"]) == (400, 401)


def test_callback_kpis_count_detractors_called_back_within_the_sla_and_recovered(
        broker: LocalBroker, store_url: str, settings: Settings, tmp_path: Path) -> None:
    """Three detractors: `c-1` called back at once and then rates the callback CSAT 5
    (recovered), `c-2` called back two days late and then rates NPS 1 (not recovered), `c-3`
    at another touchpoint not called back yet."""
    settings = loop_settings(settings, tmp_path)
    keys_file, keys = principals_file(tmp_path, PRINCIPALS)
    settings = settings.model_copy(update={"api_keys_file": keys_file})
    as_ = {name: {"X-API-Key": key} for name, key in keys.items()}
    create_topics(settings, broker.bootstrap)
    now = utc_now().replace(microsecond=0) - timedelta(minutes=5)
    detractors = [
        enriched(event_id="d1", customer_id="c-1", ratings=Ratings(nps=3), occurred_at=now),
        enriched(event_id="d2", customer_id="c-2", ratings=Ratings(nps=5), occurred_at=now),
        enriched(event_id="d3", customer_id="c-3", ratings=Ratings(csat=1), occurred_at=now,
                 touchpoint="hotline")]

    async def main() -> dict[str, object]:
        async with store_and_producer(store_url, broker.bootstrap) as (store, producer):
            await store.insert("feedback", [feedback_row(e, 1) for e in detractors])
            await evaluate_and_open(settings, broker.bootstrap, store, producer, detractors)
            service = CaseService(settings, store, producer)
            by_customer = {c.customer_id: c for c in await service.list()}
            first, late = by_customer["c-1"], by_customer["c-2"]
            await service.act(first.case_id, "resolved", "张三")
            _, answer = await service.follow_up(first.case_id, "张三", "reached", 5, None, None)
            resolved_late = first.opened_at + timedelta(days=2)
            await service.write([transition(late, "resolved", "李四", resolved_late)])
            stored_answer = enriched(**answer.model_dump(exclude={"schema_"}), score=0.6)
            worse = enriched(event_id="later-c2", customer_id="c-2", ratings=Ratings(nps=1),
                             occurred_at=resolved_late + timedelta(hours=1))
            await store.insert("feedback", [feedback_row(e, 1) for e in (stored_answer, worse)])
            app = create_app(settings, broker.bootstrap, store)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://127.0.0.1") as client:
                async def kpis(who: str, **params: str) -> httpx.Response:
                    return await client.get("/v1/customers/kpis", params=params,
                                            headers=as_[who])

                return {"answer": answer, "all": (await kpis("viewer-all")).json(),
                        "delivery": (await kpis("viewer-delivery")).json(),
                        "too long": (await kpis("viewer-all", days="100000")).status_code}

    got = run(main())
    assert got["answer"].customer_id == "c-1", "the follow-up carries the case's customer"
    figures = ("detractors", "called_back", "called_back_within_sla", "callback_sla_share",
               "followed", "recovered", "recovery_rate")
    total = got["all"]["total"]
    assert [total[f] for f in figures] == [3, 2, 1, 1 / 3, 2, 1, 0.5]
    assert {t["touchpoint"]: t["detractors"] for t in got["all"]["touchpoints"]} == \
        {"delivery": 2, "hotline": 1}
    assert got["all"]["capped"] is False
    delivery = got["delivery"]["total"]
    assert [delivery[f] for f in figures] == [2, 2, 1, 0.5, 2, 1, 0.5], \
        "a principal limited to delivery does not count the hotline detractor"
    assert got["too long"] == 400


def test_a_churn_risk_is_raised_while_scoring_lags(
        broker: LocalBroker, settings: Settings, tmp_path: Path) -> None:
    """The scoring stage has stored none of `c-4`'s contacts: two negative contacts in two
    batches of one worker still raise the churn risk (its memory), once. On chdb only: what
    is tested is the worker's memory, not SQL."""
    store_url = f"chdb://{tmp_path / 'chdb'}"
    settings = loop_settings(settings, tmp_path)
    create_topics(settings, broker.bootstrap)
    first = enriched(event_id="lag-1", customer_id="c-4", channel="call", score=-0.7)
    second = enriched(event_id="lag-2", customer_id="c-4", channel="app", score=-0.5,
                      occurred_at=T0 + timedelta(days=3))

    async def main() -> None:
        async with store_and_producer(store_url, broker.bootstrap) as (store, producer):
            evaluator = AlertEvaluator(settings, store, producer,
                                       RulesFile(settings.alert_rules_path))
            for batch in ([first], [second], [second]):
                await evaluator.handle_events(records(batch))

    run(main())
    alerts = [Alert.model_validate(v) for _, v in read_topic(broker.bootstrap,
                                                             settings.topic("alerts"))]
    assert [(a.rule_id, a.event_ids) for a in alerts if a.rule_id == "churn"] == \
        [("churn", ["lag-1", "lag-2"])], "raised once: the re-delivery is in the cooldown"


def test_an_older_negative_contact_arriving_late_raises_one_churn_risk(
        broker: LocalBroker, store_url: str, settings: Settings, tmp_path: Path) -> None:
    """`c-6`'s newer complaint is stored; the older one (three days before it) arrives after
    it, at a fresh worker: the store's contacts on either side count, and the newer
    complaint re-delivered raises nothing more."""
    settings = loop_settings(settings, tmp_path)
    create_topics(settings, broker.bootstrap)
    newer = enriched(event_id="late-new", customer_id="c-6", channel="app", score=-0.6,
                     occurred_at=T0 + timedelta(days=3))
    older = enriched(event_id="late-old", customer_id="c-6", channel="call", score=-0.8)

    async def main() -> None:
        async with store_and_producer(store_url, broker.bootstrap) as (store, producer):
            await store.insert("feedback", [feedback_row(newer, 1)])
            evaluator = AlertEvaluator(settings, store, producer,
                                       RulesFile(settings.alert_rules_path))
            for batch in ([older], [newer]):
                await evaluator.handle_events(records(batch))

    run(main())
    alerts = [Alert.model_validate(v) for _, v in read_topic(broker.bootstrap,
                                                             settings.topic("alerts"))]
    assert [(a.rule_id, a.event_ids, a.window_end) for a in alerts if a.rule_id == "churn"] \
        == [("churn", ["late-old", "late-new"], older.occurred_at)], \
        "raised by the older contact, as it arrives; the re-delivered newer one is in the cooldown"
