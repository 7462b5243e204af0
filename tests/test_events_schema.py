"""The Python wire models must say exactly what the JSON Schema files in schemas/ say."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

import schemas
from services.core.events import (
    Alert,
    CaseEvent,
    DeadLetter,
    EnrichedFeedback,
    RawFeedback,
    Score,
    Sentiment,
    AspectSentiment,
    Ratings,
    ExpectationGap,
    TopicFigure,
    TopicTag,
    UrgencyFlag,
    UrgentCounts,
    stable_event_id,
)

NOW = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)

RAW = RawFeedback(event_id="e1", source="app-cn", external_id="x1", channel="app",
                  touchpoint="delivery", text="配送太慢了", occurred_at=NOW, received_at=NOW,
                  customer_id="c1", stage="售后", segment="VIP", ratings=Ratings(nps=3, csat=None, ces=6),
                  metadata={"city": "上海"})
ENRICHED = EnrichedFeedback(
    **RAW.model_dump(exclude={"schema_"}),
    sentiment=Sentiment(score=-0.9, label="negative", model="m-1"),
    topics=[TopicTag(id="logistics_delivery", name="物流/配送",
                     sentiment=AspectSentiment(score=-0.8, label="negative"), evidence=[(0, 2)])],
    intent="complaint",
    urgency=[UrgencyFlag(flag="escalation_threat", term="12315", evidence=[(5, 10)])],
    keywords=["配送", "太慢"], tokens=["配送", "太慢", "了"], enriched_at=NOW)
SCORE = Score(touchpoint="delivery", channel="", stage="", window="1m", window_start=NOW,
              window_end=NOW, window_seconds=60, volume=3, positive_count=1, neutral_count=0,
              negative_count=2, mean_sentiment=-0.2, net_sentiment=-100 / 3,
              negative_share=2 / 3, nps=-50.0, nps_responses=2, nps_promoters=0,
              nps_detractors=1, csat=None, csat_responses=0, csat_satisfied=0, ces=4.0,
              ces_responses=1, complaint_count=2, complaint_rate=2 / 3, urgent_count=1,
              urgent_flags=UrgentCounts(escalation_threat=1, churn_intent=0, repeat_contact=0,
                                        safety=0),
              topics=[TopicFigure(topic="logistics_delivery", mentions=2, mean_sentiment=-0.5)],
              expectations=[ExpectationGap(metric="nps", value=-50.0, target=30.0, gap=-80.0)],
              computed_at=NOW)
ALERT = Alert(alert_id="a", dedupe_key="r:delivery", rule_id="r", rule_type="threshold",
              severity="critical", status="firing", touchpoint="delivery", channel=None,
              stage=None, topic=None, metric="negative_share", operator=">", threshold=0.4,
              value=0.8, baseline=None, volume=30, window_start=NOW, window_end=NOW,
              fired_at=NOW, resolved_at=None, emitted_at=NOW, team="ops", owner=None,
              notify=["dingtalk"], open_case=True, event_ids=[], latest_received_at=NOW,
              message="m")
CASE = CaseEvent(event_id="ce", case_id="c", seq=1, action="opened", status="open", at=NOW,
                 actor="alerting", comment=None, severity="critical", team="ops", assignee=None,
                 escalation_level=0, touchpoint="delivery", rule_id="r", alert_ids=["a"],
                 feedback_event_ids=[], opened_at=NOW, acknowledged_at=None, resolved_at=None,
                 closed_at=None, ack_due_at=NOW, resolve_due_at=NOW, followup_outcome=None,
                 followup_rating=None)
LETTER = DeadLetter(stage="nlp", topic="t", partition=0, offset=5, reason="bad",
                    original_base64="", failed_at=NOW)

CASES = [("feedback.raw.v2", RawFeedback, RAW), ("feedback.enriched.v2", EnrichedFeedback, ENRICHED),
         ("score.v2", Score, SCORE), ("alert.v2", Alert, ALERT), ("case.v1", CaseEvent, CASE),
         ("deadletter.v1", DeadLetter, LETTER)]


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(schemas.topic_schema(name),
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


def test_every_schema_file_has_a_model() -> None:
    assert sorted(name for name, _, _ in CASES) == schemas.topic_schema_names()


@pytest.mark.parametrize(("name", "model", "sample"), CASES, ids=[c[0] for c in CASES])
def test_model_fields_match_schema(name: str, model: type, sample: object) -> None:
    schema = schemas.topic_schema(name)
    generated = model.model_json_schema(by_alias=True)
    assert set(generated["properties"]) == set(schema["properties"])
    model_required = {field.alias or key for key, field in model.model_fields.items()
                      if field.is_required()}
    assert model_required <= set(schema["required"]), "model requires what the schema does not"
    assert set(json.loads(sample.to_bytes())) == set(schema["properties"]), \
        "the model must always write every field, so required-with-default fields are present"
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize(("name", "model", "sample"), CASES, ids=[c[0] for c in CASES])
def test_model_output_validates_against_schema(name: str, model: type, sample: object) -> None:
    document = json.loads(sample.to_bytes())
    validator(name).validate(document)
    assert model.model_validate_json(sample.to_bytes()) == sample


@pytest.mark.parametrize(("name", "model", "sample"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("breakage", ["extra_field", "wrong_schema", "missing_required"])
def test_model_and_schema_reject_the_same_bad_input(name: str, model: type, sample: object,
                                                    breakage: str) -> None:
    document = json.loads(sample.to_bytes())
    if breakage == "extra_field":
        document["unexpected"] = 1
    elif breakage == "wrong_schema":
        document["schema"] = name.rsplit(".", 1)[0] + ".v9"
    else:
        document.pop(sorted(schemas.topic_schema(name)["required"])[-1])
    assert list(validator(name).iter_errors(document))
    with pytest.raises(ValidationError):
        model.model_validate(document)


def test_raw_rejects_out_of_range_values_like_the_schema() -> None:
    document = json.loads(RAW.to_bytes())
    for field, value in [("channel", "fax"), ("text", ""), ("source", "has space"),
                         ("occurred_at", "yesterday")]:
        broken = {**document, field: value}
        assert list(validator("feedback.raw.v2").iter_errors(broken)), field
        with pytest.raises(ValidationError):
            RawFeedback.model_validate(broken)


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        RawFeedback(event_id="e", source="s", channel="web", touchpoint="t", text="x",
                    occurred_at=datetime(2026, 1, 1), received_at=NOW)


def test_event_ids_are_stable_per_source_and_external_id() -> None:
    assert stable_event_id("a", "1") == stable_event_id("a", "1")
    assert stable_event_id("a", "1") != stable_event_id("b", "1")
    assert stable_event_id("a", None) != stable_event_id("a", None)


def test_migrations_are_ordered_and_idempotent_statements() -> None:
    found = schemas.migrations()
    assert [m.version for m in found] == sorted(m.version for m in found)
    for migration in found:
        for statement in migration.statements:
            # A backfill inserts only the keys its target lacks, so running it again adds none.
            backfill = re.match(r"INSERT INTO (\w+) .* NOT IN \(SELECT \w+ FROM (\w+)\)",
                                statement, re.DOTALL)
            idempotent = ("IF NOT EXISTS" in statement.upper()
                          or re.match(r"ALTER TABLE \w+ ADD COLUMN \w+ ", statement)
                          or (backfill and backfill[1] == backfill[2]))
            assert idempotent, (migration.name, statement[:60])
