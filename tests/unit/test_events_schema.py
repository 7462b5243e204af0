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
    AlertV2,
    AspectSentiment,
    CaseEvent,
    DeadLetter,
    Effort,
    EffortCue,
    EnrichedFeedback,
    ExampleComment,
    ExpectationGap,
    Explanation,
    Ratings,
    RawFeedback,
    Score,
    Sentiment,
    SplitFigure,
    TermLift,
    TopicDriver,
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
    keywords=["配送", "太慢"], tokens=["配送", "太慢", "了"], enriched_at=NOW,
    effort=Effort(score=0.75, cues=[EffortCue(kind="calls", term="打了三次电话", count=3,
                                              evidence=[(0, 6)])]))
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
V3_ONLY = {"schema_", "explanation", "customer_id", "channels"}
ALERT_V2 = AlertV2(**ALERT.model_dump(exclude=V3_ONLY))
EXPLANATION = Explanation(
    metric="negative_share", direction="up", value=0.8, baseline_value=0.2, volume=30,
    baseline_volume=25, baseline_start=NOW, baseline_end=NOW,
    topics=[TopicDriver(topic="logistics_delivery", mentions=12, share=0.4, baseline_share=0.1,
                        lift=4.0, sentiment=-0.7, impact=0.3, contribution=0.25)],
    channels=[SplitFigure(value="app", volume=20, baseline_volume=15, metric_value=0.9,
                          baseline_value=0.2, contribution=0.4)],
    stages=[SplitFigure(value="售后", volume=30, baseline_volume=25, metric_value=0.8,
                        baseline_value=0.2, contribution=0.6)],
    breaching_channel="app", breaching_stage="售后",
    terms=[TermLift(term="太慢", count=9, share=0.3, baseline_share=0.04, lift=6.5)],
    comments=[ExampleComment(event_id="e1", channel="app", stage="售后", sentiment=-0.9,
                             topics=["logistics_delivery"], text="配送太慢了",
                             evidence=[(0, 2)])],
    computed_ms=12.5)
ALERT_V3 = ALERT.model_copy(update={"explanation": EXPLANATION})
CASE = CaseEvent(event_id="ce", case_id="c", seq=1, action="opened", status="open", at=NOW,
                 actor="alerting", comment=None, severity="critical", team="ops", assignee=None,
                 escalation_level=0, touchpoint="delivery", rule_id="r", alert_ids=["a"],
                 feedback_event_ids=[], opened_at=NOW, acknowledged_at=None, resolved_at=None,
                 closed_at=None, ack_due_at=NOW, resolve_due_at=NOW, followup_outcome=None,
                 followup_rating=None)
LETTER = DeadLetter(stage="nlp", topic="t", partition=0, offset=5, reason="bad",
                    original_base64="", failed_at=NOW)

CASES = [("feedback.raw.v2", RawFeedback, RAW), ("feedback.enriched.v2", EnrichedFeedback, ENRICHED),
         ("score.v2", Score, SCORE), ("alert.v2", AlertV2, ALERT_V2), ("alert.v3", Alert, ALERT_V3),
         ("case.v1", CaseEvent, CASE),
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


def test_alert_v2_messages_are_read_as_v3_without_an_explanation() -> None:
    """Every consumer of the alerts topic (cases, webhooks, CLI tail, dashboard) parses with
    ``Alert``: a message written before alert.v3 must still be read, and written back as a
    valid alert.v3 document."""
    old = ALERT_V2.to_bytes()
    validator("alert.v2").validate(json.loads(old))
    read = Alert.model_validate_json(old)
    assert read.explanation is None and read.schema_ == "alert.v3"
    assert read.model_dump(exclude=V3_ONLY) == ALERT_V2.model_dump(exclude={"schema_"})
    validator("alert.v3").validate(json.loads(read.to_bytes()))


def test_alert_v2_messages_are_held_to_their_own_contract() -> None:
    """An alert.v2 document with a v3 field is refused, as its schema refuses it."""
    document = {**json.loads(ALERT_V2.to_bytes()), "explanation": None}
    assert list(validator("alert.v2").iter_errors(document))
    with pytest.raises(ValidationError):
        Alert.model_validate(document)


def test_explanation_bounds_match_the_schema() -> None:
    document = json.loads(ALERT_V3.to_bytes())
    too_many = {**document, "explanation": {**document["explanation"],
                                            "comments": document["explanation"]["comments"] * 4}}
    too_long = _set(document, "explanation.comments.0.text", "长" * 161)
    for broken in (too_many, too_long):
        assert list(validator("alert.v3").iter_errors(broken))
        with pytest.raises(ValidationError):
            Alert.model_validate(broken)


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


# --- Bounds: the models and the schema files refuse the same out-of-bounds values ---------

CALL = {"call_id": "c-1", "agent_id": None, "queue": None, "started_at": "2026-11-23T10:00:00Z",
        "ended_at": "2026-11-23T10:20:00Z", "duration_s": 1200.0, "turns": 6, "silence_s": 0.0,
        "hold_count": 1, "hold_s": 40.0, "longest_gap_s": 40.0, "transfers": 1,
        "customer_spans": [[0, 4, 12500]]}
SOCIAL = {"platform": "weibo", "post_id": "p1", "followers": 18342, "likes": 1, "reposts": 2,
          "comments": 3, "mentions": ["a"], "hashtags": ["b"], "urls": [], "emoji": []}


def _set(document: dict, path: str, value: object) -> dict:
    """A deep copy of ``document`` with the value at a dotted path (numbers index lists)."""
    copy = json.loads(json.dumps(document))
    *parents, last = path.split(".")
    node: object = copy
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]  # type: ignore[index]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value  # type: ignore[index]
    return copy


NAME_CASES = [("配送", True), ("app checkout", True), ("售后·退换", True), ("a/b:c.d-e_1", True),
              ("App (iOS)", True), ("门店（北京）", True), ("a<b", False), ("a`b", False),
              ("x" * 128, True), ("x" * 129, False), ("<img src=x onerror=alert(1)>", False),
              ("a\"b", False), ("a'b", False), ("a&b", False), (" lead", False),
              ("trail ", False), ("a\u200bb", False), ("a\x00b", False), ("a\tb", False),
              ("", False)]


@pytest.mark.parametrize(("name", "ok"), NAME_CASES, ids=[repr(n)[:20] for n, _ in NAME_CASES])
@pytest.mark.parametrize("path", ["touchpoint", "segment"])
def test_names_have_one_character_set_in_model_and_schema(path: str, name: str, ok: bool) -> None:
    if path == "segment" and len(name) > 64:
        ok = False
    for schema_name, model, sample in CASES[:2]:
        document = _set(json.loads(sample.to_bytes()), path, name)
        _agree(schema_name, model, document, ok)


def _agree(schema_name: str, model: type, document: dict, ok: bool) -> None:
    schema_ok = not list(validator(schema_name).iter_errors(document))
    try:
        model.model_validate_json(json.dumps(document))
        model_ok = True
    except ValidationError:
        model_ok = False
    assert (schema_ok, model_ok) == (ok, ok), (schema_name, str(document)[:300])


BOUND_CASES = [
    ("social.followers", 2**53 - 1, True), ("social.followers", 2**53, False),
    ("social.followers", 10**20, False), ("social.likes", -1, False),
    ("social.reposts", 2**64, False), ("social.comments", 2**53, False),
    ("social.mentions", ["m"] * 1000, True), ("social.mentions", ["m"] * 1001, False),
    ("social.hashtags", ["h"] * 1001, False), ("social.urls", ["u"] * 1001, False),
    ("social.emoji", ["😡"] * 1001, False), ("social.mentions", ["m" * 1025], False),
    ("call.hold_count", 65535, True), ("call.hold_count", 65536, False),
    ("call.transfers", 65536, False), ("call.turns", 2**32, False),
    ("call.duration_s", 366 * 86400, True), ("call.duration_s", 366 * 86400 + 1, False),
    ("call.silence_s", 1e300, False), ("call.customer_spans", [[0, 1, 2]] * 20001, False),
    ("call.customer_spans", [[0, 1_000_001, 0]], False),
    ("call.customer_spans", [[0, 1, 2**32]], False),
    ("metadata", {"<b>": "v"}, False), ("metadata", {"k" * 65: "v"}, False),
    ("metadata", {"城市": "上海"}, True), ("metadata", {"": "v"}, False),
    ("occurred_at", "9999-12-31T23:59:59-01:00", False),
]


@pytest.mark.parametrize(("path", "value", "ok"), BOUND_CASES,
                         ids=[f"{p}={str(v)[:20]}" for p, v, _ in BOUND_CASES])
def test_raw_bounds_agree(path: str, value: object, ok: bool) -> None:
    document = {**json.loads(RAW.to_bytes()), "call": CALL, "social": SOCIAL}
    assert not list(validator("feedback.raw.v2").iter_errors(document))
    broken = _set(document, path, value)
    if path == "occurred_at":  # format checks in the schema stop at RFC 3339 syntax
        with pytest.raises(ValidationError, match="outside the years"):
            RawFeedback.model_validate_json(json.dumps(broken))
        return
    _agree("feedback.raw.v2", RawFeedback, broken, ok)
    _agree("feedback.enriched.v2", EnrichedFeedback,
           _set({**json.loads(ENRICHED.to_bytes()), "call": CALL, "social": SOCIAL}, path, value),
           ok)


ENRICHED_CASES = [
    ("tokens", ["t"] * 10000, True), ("tokens", ["t"] * 10001, False),
    ("tokens", ["t" * 64], True), ("tokens", ["t" * 65], False),
    ("keywords", ["k" * 65], False), ("keywords", ["k"] * 21, False),
    ("topics.0.name", "<script>", False), ("topics.0.id", "x" * 129, False),
    ("topics.0.evidence", [[0, 1]] * 100, True), ("topics.0.evidence", [[0, 1]] * 101, False),
    ("topics.0.evidence", [[0, 1_000_001]], False),
    ("urgency.0.term", "t" * 129, False), ("urgency.0.evidence", [[5, 10]] * 101, False),
    ("sentiment.model", "m" * 129, False),
]


@pytest.mark.parametrize(("path", "value", "ok"), ENRICHED_CASES,
                         ids=[f"{p}={str(v)[:20]}" for p, v, _ in ENRICHED_CASES])
def test_enriched_bounds_agree(path: str, value: object, ok: bool) -> None:
    _agree("feedback.enriched.v2", EnrichedFeedback,
           _set(json.loads(ENRICHED.to_bytes()), path, value), ok)


def test_topic_lists_are_bounded_in_model_and_schema() -> None:
    document = json.loads(ENRICHED.to_bytes())
    _agree("feedback.enriched.v2", EnrichedFeedback,
           {**document, "topics": document["topics"] * 257}, False)
    _agree("feedback.enriched.v2", EnrichedFeedback,
           {**document, "urgency": document["urgency"] * 65}, False)


def test_feedback_touchpoints_are_names_and_derived_ones_keep_what_was_stored() -> None:
    """Names are checked where feedback enters; scores, alerts and cases carry the stored name
    (bounded in length), so rows stored before the check are still scored and paged."""
    from services.core.events import MAX_NAME, NAME_PATTERN

    seen = set()
    for name in schemas.topic_schema_names():
        touchpoint = schemas.topic_schema(name)["properties"].get("touchpoint")
        if touchpoint is None:
            continue
        seen.add(name.rsplit(".", 1)[0])
        assert touchpoint["maxLength"] == MAX_NAME, name
        if name.startswith("feedback."):
            assert touchpoint["pattern"] == NAME_PATTERN, name
        else:
            assert "pattern" not in touchpoint, name
    assert {"feedback.raw", "feedback.enriched", "score", "alert", "case"} <= seen


def test_a_stored_name_from_before_the_check_still_makes_scores_alerts_and_cases() -> None:
    legacy = "门店<旧>"
    for schema_name, model, sample in CASES[2:5]:
        _agree(schema_name, model, _set(json.loads(sample.to_bytes()), "touchpoint", legacy), True)


def test_customer_fields_are_optional_on_alert_v3_and_case_v1() -> None:
    """Customer rules' alerts and the cases they open carry the customer and the channels
    (issue 19); a document written before them still validates and reads."""
    alert = ALERT.model_copy(update={"rule_type": "rating", "customer_id": "c-1",
                                     "channels": ["survey"]})
    case = CASE.model_copy(update={"kind": "callback", "customer_id": "c-1",
                                   "channels": ["survey"]})
    for name, model, sample in (("alert.v3", Alert, alert), ("case.v1", CaseEvent, case)):
        document = json.loads(sample.to_bytes())
        validator(name).validate(document)
        assert model.model_validate(document) == sample
        older = {k: v for k, v in document.items()
                 if k not in ("customer_id", "channels", "kind")}
        validator(name).validate(older)
        assert model.model_validate(older).customer_id is None
    assert list(validator("alert.v2").iter_errors(
        {**json.loads(ALERT_V2.to_bytes()), "rule_type": "rating"})), \
        "alert.v2 keeps its own rule types"
