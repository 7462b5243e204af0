"""Customer rules (issue 19): a detractor rating opens a callback, repeated negative contacts a
churn risk; their alerts carry the customer and open cases that do. Without I/O."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from jsonschema import Draft202012Validator

import schemas
from services.alerting.cases import open_case
from services.alerting.kinds.customer_history import (
    Contact,
    CustomerHistoryRule,
    history_alert,
)
from services.alerting.kinds.rating import RatingRule, rating_alert
from services.alerting.rules import RuleSet, Sla
from services.core.events import Ratings
from tests.factories import T0, enriched

SLA = Sla(ack_minutes=30, resolve_hours=24)
ALERT_SCHEMA = Draft202012Validator(schemas.topic_schema("alert.v3"),
                                    format_checker=Draft202012Validator.FORMAT_CHECKER)
CASE_SCHEMA = Draft202012Validator(schemas.topic_schema("case.v1"),
                                   format_checker=Draft202012Validator.FORMAT_CHECKER)


def rule(**fields: object) -> RatingRule | CustomerHistoryRule:
    doc = {"id": "r", "route": {"open_case": True}, **fields}
    loaded = RuleSet.model_validate({"rules": [doc]}).rules[0]
    assert isinstance(loaded, RatingRule | CustomerHistoryRule)
    return loaded


CALLBACK = rule(type="rating", nps_at_most=6, csat_at_most=2)
CHURN = rule(type="customer_history", min_contacts=2, within_days=7, sentiment_at_most=-0.3)


@pytest.mark.parametrize(("ratings", "fires", "metric"), [
    (Ratings(nps=6), True, "nps"), (Ratings(nps=7), False, None),
    (Ratings(csat=2), True, "csat"), (Ratings(csat=3), False, None),
    (Ratings(nps=9, csat=1), True, "csat"), (Ratings(), False, None)])
def test_a_rating_at_or_below_the_thresholds_fires(ratings: Ratings, fires: bool,
                                                   metric: str | None) -> None:
    event = enriched(ratings=ratings, customer_id="c-1", score=0.5)
    alert = rating_alert(CALLBACK, event, None, T0)
    assert (alert is not None) == fires
    if alert is not None:
        assert alert.metric == metric and alert.rule_type == "rating"
        assert alert.customer_id == "c-1" and alert.channels == ["app"]
        assert alert.dedupe_key == "r:customer=c-1"
        ALERT_SCHEMA.validate(json.loads(alert.to_bytes()))


def test_a_rating_rule_needs_a_threshold() -> None:
    with pytest.raises(ValueError, match="nps_at_most or csat_at_most"):
        rule(type="rating")


def test_one_callback_per_customer_within_the_cooldown_and_per_event_id() -> None:
    first = enriched(event_id="e1", ratings=Ratings(nps=2), customer_id="c-1")
    again = enriched(event_id="e2", ratings=Ratings(nps=3), customer_id="c-1",
                     occurred_at=T0 + timedelta(hours=2))
    alert = rating_alert(CALLBACK, first, None, T0)
    assert alert is not None
    assert rating_alert(CALLBACK, again, T0, T0) is None, "cooldown (one day by default)"
    assert rating_alert(CALLBACK, first, None, T0 + timedelta(minutes=5)).alert_id \
        == alert.alert_id, "a re-delivered event is the same alert, hence the same case"
    anonymous = enriched(event_id="e3", ratings=Ratings(nps=0))
    assert rating_alert(CALLBACK, anonymous, None, T0).dedupe_key == "r:event=e3"


def test_a_callback_case_carries_the_customer_the_feedback_and_its_channel() -> None:
    event = enriched(event_id="e9", channel="survey", ratings=Ratings(nps=1),
                     customer_id="c-77")
    alert = rating_alert(CALLBACK, event, None, T0)
    assert alert is not None
    case = open_case(alert, SLA, T0)
    assert (case.kind, case.customer_id, case.feedback_event_ids, case.channels) == \
        ("callback", "c-77", ["e9"], ["survey"])
    CASE_SCHEMA.validate(json.loads(case.to_bytes()))


def test_a_case_never_carries_a_raw_phone_number_as_the_customer() -> None:
    event = enriched(ratings=Ratings(nps=1), customer_id="13812345678")
    alert = rating_alert(CALLBACK, event, None, T0)
    assert alert is not None
    assert "13812345678" not in alert.to_bytes().decode()
    assert "13812345678" not in open_case(alert, SLA, T0).to_bytes().decode()


def contacts(*hours: float) -> list[Contact]:
    return [Contact(f"e{h}", T0 + timedelta(hours=h), "call" if h % 2 else "app")
            for h in hours]


def test_the_second_negative_contact_within_the_window_raises_a_churn_risk() -> None:
    event = enriched(event_id="e48.0", customer_id="c-1", score=-0.6,
                     occurred_at=T0 + timedelta(hours=48))
    recalled = {"r": {"c-1": contacts(1, 48.0)}}
    alert = history_alert(CHURN, event, None, event.occurred_at, recalled)
    assert alert is not None
    assert (alert.rule_type, alert.value, alert.event_ids, alert.channels) == \
        ("customer_history", 2, ["e1", "e48.0"], ["app", "call"])
    case = open_case(alert, SLA, T0)
    assert case.kind == "churn_risk" and case.customer_id == "c-1"
    CASE_SCHEMA.validate(json.loads(case.to_bytes()))


@pytest.mark.parametrize(("recalled_hours", "score", "customer"), [
    ((48.0,), -0.6, "c-1"),              # only this one contact
    ((-200, 48.0), -0.6, "c-1"),         # the other is older than within_days
    ((1, 48.0, 60), 0.4, "c-1"),         # this contact is not negative
    ((1, 48.0), -0.6, None),             # no customer id: no history
])
def test_no_churn_risk_without_two_negative_contacts_of_one_customer(
        recalled_hours: tuple[float, ...], score: float, customer: str | None) -> None:
    event = enriched(event_id="e48.0", customer_id=customer, score=score,
                     occurred_at=T0 + timedelta(hours=48))
    recalled = {"r": {"c-1": contacts(*recalled_hours)}}
    assert history_alert(CHURN, event, None, event.occurred_at, recalled) is None


def test_a_low_rating_counts_as_a_negative_contact_when_the_rule_says_so() -> None:
    by_rating = rule(type="customer_history", nps_at_most=6)
    event = enriched(event_id="e48.0", customer_id="c-1", score=0.5, ratings=Ratings(nps=3),
                     occurred_at=T0 + timedelta(hours=48))
    recalled = {"r": {"c-1": contacts(1, 48.0)}}
    assert history_alert(by_rating, event, None, event.occurred_at, recalled) is not None
    assert history_alert(CHURN, event, None, event.occurred_at, recalled) is None


def test_the_default_rules_call_back_detractors_and_watch_for_churn() -> None:
    from services.alerting.rules import load_rules
    rules = {r.id: r for r in load_rules().rules}
    callback, churn = rules["detractor-callback"], rules["churn-risk"]
    assert isinstance(callback, RatingRule) and callback.route.open_case
    assert (callback.nps_at_most, callback.csat_at_most) == (6, 2)
    assert isinstance(churn, CustomerHistoryRule) and churn.route.open_case
    assert (churn.min_contacts, churn.within_days) == (2, 7)


@pytest.mark.parametrize(("later", "opening", "expected"), [
    ({"nps": None, "csat": 5, "sentiment": -0.9}, {"nps": 3, "csat": None, "sentiment": 0.5},
     True),                                    # CSAT 5 (1.0) beats NPS 3 (0.3), whatever the tone
    ({"nps": 2, "csat": None, "sentiment": 0.9}, {"nps": 3, "csat": None, "sentiment": -0.5},
     False),
    ({"nps": None, "csat": None, "sentiment": 0.1}, {"nps": 3, "csat": None, "sentiment": -0.5},
     True),                                    # unrated: the sentiment decides
    ({"nps": None, "csat": None, "sentiment": -0.5}, {"nps": 3, "csat": None, "sentiment": -0.5},
     False)])
def test_a_customer_recovers_when_the_next_feedback_is_better(later: dict, opening: dict,
                                                              expected: bool) -> None:
    from services.alerting.customers import better
    assert better(later, opening) is expected


@pytest.mark.parametrize("cursor", ["!!", "", "bm9jb2xvbg", "OTk5OTk5OTk5OTk5OTk5OTk5OTk6eA"])
def test_a_cursor_the_route_did_not_return_is_refused(cursor: str) -> None:
    from services.alerting.customers import decode_cursor, encode_cursor
    with pytest.raises(ValueError, match="not a cursor"):
        decode_cursor(cursor)
    assert decode_cursor(encode_cursor(T0, "e:1")) == (T0, "e:1")


class NothingStored:
    """The store while the scoring stage lags: no contact stored yet."""

    async def query(self, sql: str, params: object = None) -> list:
        return []


def test_two_negative_contacts_in_different_batches_meet_while_the_store_lags() -> None:
    from services.alerting.kinds.customer_history import RecentContacts, recall
    from tests.conftest import run

    memory = RecentContacts(max_customers=100)
    first = enriched(event_id="a", customer_id="c-1", score=-0.6, channel="call")
    second = enriched(event_id="b", customer_id="c-1", score=-0.5,
                      occurred_at=T0 + timedelta(days=2))
    run(recall(NothingStored(), [CHURN], [first], memory))  # type: ignore[arg-type]
    recalled = run(recall(NothingStored(), [CHURN], [second], memory))  # type: ignore[arg-type]
    alert = history_alert(CHURN, second, None, second.occurred_at, recalled)
    assert alert is not None and alert.event_ids == ["a", "b"]
    again = run(recall(NothingStored(), [CHURN], [second], memory))  # type: ignore[arg-type]
    assert [c.event_id for c in again["r"]["c-1"]] == ["a", "b"], "deduplicated by event id"
    forgetful = run(recall(NothingStored(), [CHURN], [second]))  # type: ignore[arg-type]
    assert history_alert(CHURN, second, None, second.occurred_at, forgetful) is None


def test_the_memory_forgets_the_least_recently_seen_customers_and_old_contacts() -> None:
    from services.alerting.kinds.customer_history import EVICTED, RecentContacts

    memory = RecentContacts(max_customers=2)
    evicted_before = EVICTED._value.get()
    for i, customer in enumerate(("c-1", "c-2", "c-1", "c-3")):
        memory.remember(CHURN, [enriched(event_id=f"e{i}", customer_id=customer, score=-0.9,
                                         occurred_at=T0 + timedelta(hours=i))], T0)
    assert len(memory) == 2 and EVICTED._value.get() - evicted_before == 1
    everything = (T0 - timedelta(days=99), T0 + timedelta(days=99))
    assert memory.between(CHURN, "c-2", *everything) == [], "least recently seen: forgotten"
    assert [c.event_id for c in memory.between(CHURN, "c-1", *everything)] == ["e0", "e2"]
    later = T0 + timedelta(days=8)
    memory.remember(CHURN, [enriched(event_id="late", customer_id="c-3", score=-0.9,
                                     occurred_at=later)], later)
    assert [c.event_id for c in memory.between(CHURN, "c-1", *everything)] == [], \
        "older than within_days before the newest event time: dropped"
    assert len(memory) == 1, "a customer with nothing left is forgotten"
    future = T0 + timedelta(days=400)
    memory.remember(CHURN, [enriched(event_id="bogus", customer_id="c-3", score=-0.9,
                                     occurred_at=future)], later)
    assert [c.event_id for c in memory.between(CHURN, "c-3", *everything)] == ["late"], \
        "a made-up future event time does not wipe the memory"


def test_an_older_negative_contact_arriving_after_a_newer_one_raises_the_churn_risk() -> None:
    from services.alerting.kinds.customer_history import RecentContacts, recall
    from tests.conftest import run

    older = enriched(event_id="e0", customer_id="c-1", score=-0.6)
    assert history_alert(CHURN, older, None, T0, {"r": {"c-1": contacts(0, 48.0)}}) \
        is not None, "the newer contact two days later counts"
    assert history_alert(CHURN, older, None, T0, {"r": {"c-1": contacts(0, 200)}}) is None, \
        "more than within_days later: no"
    memory = RecentContacts(max_customers=100)
    newer = enriched(event_id="e-new", customer_id="c-1", score=-0.6,
                     occurred_at=T0 + timedelta(days=3))
    run(recall(NothingStored(), [CHURN], [newer], memory))  # type: ignore[arg-type]
    recalled = run(recall(NothingStored(), [CHURN], [older], memory))  # type: ignore[arg-type]
    alert = history_alert(CHURN, older, None, T0, recalled)
    assert alert is not None and alert.event_ids == ["e0", "e-new"], "the memory, either side"
    assert history_alert(CHURN, newer, older.occurred_at, T0, recalled) is None, \
        "one case per customer: the newer contact is within the cooldown of the firing"
