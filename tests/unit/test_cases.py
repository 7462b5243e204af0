"""Case lifecycle, SLA escalation and the follow-up feedback, without I/O."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from jsonschema import Draft202012Validator

import schemas
from services.alerting.cases import (
    CaseError,
    allowed_actions,
    case_id_for,
    case_row,
    escalation,
    event_from_row,
    followup_feedback,
    open_case,
    transition,
)
from services.alerting.rules import Sla
from services.core.events import Alert

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
SLA = Sla(ack_minutes=10, resolve_hours=2, escalation=["ops-l2", "ops-l3"])
ALERT = Alert(alert_id="a-1", dedupe_key="vip:hotline:customer=c1", rule_id="vip",
              rule_type="event", severity="critical", status="firing", touchpoint="hotline",
              channel="call", stage="售后", topic=None, metric="event_sentiment", operator=None,
              threshold=-0.6, value=-0.9, baseline=None, volume=1, window_start=T0,
              window_end=T0, fired_at=T0, resolved_at=None, emitted_at=T0, team="ops-l1",
              owner="张三", notify=[], open_case=True, event_ids=["e-1"],
              latest_received_at=T0, message="VIP 客户强烈不满")
CASE_SCHEMA = Draft202012Validator(schemas.topic_schema("case.v1"),
                                   format_checker=Draft202012Validator.FORMAT_CHECKER)
RAW_SCHEMA = Draft202012Validator(schemas.topic_schema("feedback.raw.v2"),
                                  format_checker=Draft202012Validator.FORMAT_CHECKER)


def later(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_an_alert_opens_one_case_with_its_links_and_deadlines() -> None:
    case = open_case(ALERT, SLA, T0)
    assert case.case_id == case_id_for("a-1") == open_case(ALERT, SLA, later(5)).case_id
    assert (case.status, case.seq, case.team, case.assignee) == ("open", 1, "ops-l1", "张三")
    assert case.alert_ids == ["a-1"] and case.feedback_event_ids == ["e-1"]
    assert case.ack_due_at == later(10) and case.resolve_due_at == later(120)
    CASE_SCHEMA.validate(json.loads(case.to_bytes()))


def test_full_lifecycle_with_reopen() -> None:
    case = open_case(ALERT, SLA, T0)
    acked = transition(case, "acknowledged", "李四", later(3))
    assert acked.status == "acknowledged" and acked.acknowledged_at == later(3)
    assigned = transition(acked, "assigned", "李四", later(4), assignee="王五")
    working = transition(assigned, "started", "王五", later(5))
    noted = transition(working, "commented", "王五", later(6), comment="已联系客户")
    resolved = transition(noted, "resolved", "王五", later(30))
    closed = transition(resolved, "closed", "李四", later(40))
    reopened = transition(closed, "reopened", "李四", later(50), comment="客户再次投诉")
    assert [e.status for e in (assigned, working, noted, resolved, closed, reopened)] == [
        "acknowledged", "in_progress", "in_progress", "resolved", "closed", "open"]
    assert [e.seq for e in (acked, reopened)] == [2, 8]
    assert noted.comment == "已联系客户" and working.comment is None
    assert reopened.resolved_at is None and reopened.closed_at is None
    assert reopened.acknowledged_at == later(3), "MTTA counts the first acknowledgement"
    for event in (acked, assigned, working, noted, resolved, closed, reopened):
        CASE_SCHEMA.validate(json.loads(event.to_bytes()))
    assert len({e.event_id for e in (case, acked, assigned, working, noted, resolved)}) == 6


def test_resolving_directly_counts_as_acknowledged() -> None:
    resolved = transition(open_case(ALERT, SLA, T0), "resolved", "x", later(7))
    assert resolved.acknowledged_at == later(7) and resolved.resolved_at == later(7)


@pytest.mark.parametrize(("path", "forbidden"), [
    ([], "closed"), ([], "reopened"), ([], "followed_up"),
    (["acknowledged"], "acknowledged"), (["resolved"], "started"),
    (["resolved", "closed"], "assigned"), (["resolved", "closed"], "escalated"),
])
def test_forbidden_transitions_name_what_is_allowed(path: list[str], forbidden: str) -> None:
    case = open_case(ALERT, SLA, T0)
    for action in path:
        case = transition(case, action, "x", later(1))  # type: ignore[arg-type]
    with pytest.raises(CaseError, match="allowed now") as info:
        transition(case, forbidden, "x", later(2))  # type: ignore[arg-type]
    assert all(a in str(info.value) for a in allowed_actions(case.status))


def test_unacknowledged_case_escalates_along_the_chain_and_stops_at_its_end() -> None:
    case = open_case(ALERT, SLA, T0)
    assert escalation(case, SLA, later(9)) is None
    first = escalation(case, SLA, later(10))
    assert (first.action, first.escalation_level, first.team) == ("escalated", 1, "ops-l2")
    assert first.status == "open" and first.actor == "sla" and "acknowledge SLA" in first.comment
    assert first.ack_due_at == later(20), "re-armed for the next level"
    assert escalation(first, SLA, later(15)) is None
    second = escalation(first, SLA, later(20))
    assert (second.escalation_level, second.team) == (2, "ops-l3")
    assert escalation(second, SLA, later(500)) is None, "end of the chain"


def test_acknowledged_case_escalates_only_on_the_resolve_deadline() -> None:
    acked = transition(open_case(ALERT, SLA, T0), "acknowledged", "x", later(1))
    assert escalation(acked, SLA, later(60)) is None
    late = escalation(acked, SLA, later(120))
    assert late.escalation_level == 1 and "resolve SLA" in late.comment
    assert late.resolve_due_at == later(240)
    resolved = transition(acked, "resolved", "x", later(2))
    assert escalation(resolved, SLA, later(1000)) is None


def test_without_a_chain_a_case_escalates_once_keeping_its_team() -> None:
    bare = Sla(ack_minutes=1, resolve_hours=1)
    once = escalation(open_case(ALERT, bare, T0), bare, later(2))
    assert once.escalation_level == 1 and once.team == "ops-l1"
    assert escalation(once, bare, later(10)) is None


def test_rows_round_trip_and_carry_time_to_ack_and_resolve() -> None:
    case = open_case(ALERT, SLA, T0)
    resolved = transition(transition(case, "acknowledged", "x", later(2)), "resolved", "x",
                          later(32))
    row = case_row(resolved, 1)
    assert (row["ack_seconds"], row["resolve_seconds"]) == (120.0, 1920.0)
    assert case_row(case, 1)["ack_seconds"] is None
    stored = {k: v for k, v in row.items() if k not in ("ack_seconds", "resolve_seconds")}
    assert event_from_row(stored) == resolved


def test_follow_up_becomes_survey_feedback_with_the_rating() -> None:
    resolved = transition(open_case(ALERT, SLA, T0), "resolved", "x", later(30))
    feedback = followup_feedback(resolved, "reached", 4, "客户表示满意", "c1", later(60))
    assert (feedback.channel, feedback.ratings.csat, feedback.touchpoint) == ("survey", 4, "hotline")
    assert feedback.metadata["case_id"] == resolved.case_id and feedback.customer_id == "c1"
    assert feedback.event_id == followup_feedback(resolved, "reached", 4, None, None,
                                                  later(61)).event_id, "re-sends deduplicate"
    RAW_SCHEMA.validate(json.loads(feedback.to_bytes()))
    followed = transition(resolved, "followed_up", "x", later(60), followup_outcome="reached",
                          followup_rating=4)
    assert followed.status == "resolved" and followed.followup_rating == 4
