"""The channel objects of feedback.raw.v2/enriched.v2 against the schema files, the shared
prepare step (redaction, analysis text, pseudonymous mail ids), call tone, and the keys file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

import schemas
from services.core.access import KeyRing, key_hash
from services.core.channels import prepare_raw
from services.core.events import (
    CallFacts,
    CallTone,
    EmailFacts,
    EnrichedFeedback,
    RawFeedback,
    Sentiment,
    SocialFacts,
)
from services.core.normalize import pseudonym
from services.nlp.call_tone import call_tones

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
CALL = CallFacts(call_id="CALL-1", agent_id="A-1", queue="售后", started_at=NOW,
                 ended_at=NOW + timedelta(minutes=9), duration_s=540, turns=4, silence_s=40,
                 hold_count=1, hold_s=35, longest_gap_s=35, transfers=1,
                 customer_spans=[(0, 7, 10_000), (8, 14, 200_000), (15, 22, 500_000)])
CALL_EVENT = RawFeedback(event_id="e-call", source="cc", external_id="CALL-1", channel="call",
                         touchpoint="hotline", text="客户：太差劲了气死\n坐席：抱歉",
                         analysis_text="太差劲了气死了\n一般一般一般\n非常满意谢谢你", occurred_at=NOW,
                         received_at=NOW, call=CALL)


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(schemas.topic_schema(name),
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


def test_channel_objects_validate_against_the_schema_files() -> None:
    mail = RawFeedback(
        event_id="e-mail", source="mail", channel="email", touchpoint="email", text="退货",
        occurred_at=NOW, received_at=NOW, analysis_text="退货",
        email=EmailFacts(message_id="h:1", references=["h:0"], thread_id="h:0", subject="退货",
                         charset="gb18030", attachments=["a.jpg"]))
    post = RawFeedback(
        event_id="e-post", source="sl", channel="social", touchpoint="social", text="差评",
        occurred_at=NOW, received_at=NOW,
        social=SocialFacts(platform="douyin", post_id="9", followers=3, hashtags=["避雷"]))
    for event in (CALL_EVENT, mail, post):
        document = json.loads(event.to_bytes())
        validator("feedback.raw.v2").validate(document)
        assert RawFeedback.model_validate_json(event.to_bytes()) == event
    enriched = EnrichedFeedback(
        **CALL_EVENT.model_dump(exclude={"schema_"}),
        sentiment=Sentiment(score=0.1, label="neutral", model="m"), topics=[], intent="other",
        urgency=[], keywords=[], tokens=[], enriched_at=NOW,
        call_tone=CallTone(first=-0.8, last=0.7, change=1.5, trend="improved"))
    validator("feedback.enriched.v2").validate(json.loads(enriched.to_bytes()))


@pytest.mark.parametrize(("path", "value"), [
    (("call", "transfers"), -1), (("call", "customer_spans"), [[1, 2]]),
    (("social", "platform"), "facebook"), (("email", "attachments"), "a.jpg"),
    (("analysis_text",), 5),
])
def test_schema_and_model_reject_bad_channel_facts(path: tuple[str, ...], value: object) -> None:
    document = json.loads(CALL_EVENT.to_bytes())
    document["social"] = {"platform": "weibo", "post_id": "1"}
    document["email"] = {"attachments": []}
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert list(validator("feedback.raw.v2").iter_errors(document))
    with pytest.raises(ValueError):
        RawFeedback.model_validate(document)


def test_prepare_redacts_derives_analysis_text_and_is_idempotent() -> None:
    event = RawFeedback(
        event_id="e", source="direct", channel="social", touchpoint="t", occurred_at=NOW,
        received_at=NOW, customer_id="13812345678", metadata={"contact": "a.b@qq.com"},
        text="@客服小美 退款還沒到賬😡 電話13812345678 https://t.cn/x1",
        email=EmailFacts(message_id="abc@mail.qq.com", subject="卡号4111111111111111",
                         attachments=["身份证11010519491231002X.jpg"]))
    prepared = prepare_raw(event)
    assert prepared.text == "@客服小美 退款還沒到賬😡 電話<PHONE> https://t.cn/x1"
    assert prepared.analysis_text == "退款还没到账 愤怒 电话<PHONE>"
    assert prepared.customer_id == "<PHONE>" and prepared.metadata == {"contact": "<EMAIL>"}
    assert prepared.email is not None
    assert prepared.email.message_id == pseudonym("abc@mail.qq.com")
    assert prepared.email.subject == "卡号<BANK_CARD>"
    assert prepared.email.attachments == ["身份证<ID_CARD>.jpg"]
    assert prepare_raw(prepared) == prepared


def test_call_tone_compares_first_and_last_third() -> None:
    scores = {"太差劲了气死了": -0.9, "非常满意谢谢你": 0.8}
    asked: list[list[str]] = []

    def predict(texts: list[str]) -> list[float]:
        asked.append(texts)
        return [scores[t] for t in texts]

    plain = CALL_EVENT.model_copy(update={"call": None})
    tones = call_tones([CALL_EVENT, plain], predict)
    assert tones[0] is not None
    assert (tones[0].first, tones[0].last, tones[0].trend) == (-0.9, 0.8, "improved")
    assert tones[0].change == pytest.approx(1.7)
    assert tones[1] is None
    assert asked == [["太差劲了气死了", "非常满意谢谢你"]], "one batch, middle third left out"


def test_call_tone_needs_speech_in_both_thirds_and_sane_spans() -> None:
    early_only = CALL.model_copy(update={"customer_spans": [(0, 7, 10_000)]})
    broken = CALL.model_copy(update={"customer_spans": [(0, 6, 0), (10, 999, 500_000)]})
    events = [CALL_EVENT.model_copy(update={"call": c}) for c in (early_only, broken)]
    assert call_tones(events, lambda texts: [0.0] * len(texts)) == [None, None]


def load_sources(path: Path) -> KeyRing:
    ring = KeyRing()
    ring.load_sources(path)
    return ring


def test_keys_file_is_checked_when_loaded(tmp_path: Path) -> None:
    good = tmp_path / "keys.yaml"
    good.write_text(f"web-cn: {key_hash('k1')}\n")
    found = load_sources(good).lookup("k1")
    assert found is not None and (found.name, found.sources, found.roles) == (
        "web-cn", frozenset({"web-cn"}), frozenset({"ingest"}))
    assert load_sources(good).lookup("k2") is None
    plain = tmp_path / "plain.yaml"
    plain.write_text("web-cn: k1\n")
    with pytest.raises(ValueError, match="sha256"):
        load_sources(plain)
    with pytest.raises(ValueError, match="cannot read"):
        load_sources(tmp_path / "missing.yaml")


def test_prepare_refuses_an_event_that_redaction_pushes_past_a_limit() -> None:
    full = RawFeedback(event_id="e", source="s", channel="web", touchpoint="t", text="好",
                       occurred_at=NOW, received_at=NOW, metadata={"m": "x" * 1017 + " a@b.cn"})
    with pytest.raises(ValueError, match="1024"):
        prepare_raw(full)


def test_an_event_that_only_gains_its_analysis_text_is_what_validating_it_whole_gives() -> None:
    """prepare_raw checks the one new value when nothing else changed; the event it returns is
    the one re-validating every field gave, and an analysis text past its limit is refused."""
    event = RawFeedback(event_id="e", source="s", channel="social", touchpoint="t", occurred_at=NOW,
                        received_at=NOW, text="#双十一# 快递太慢了😡 @客服", metadata={"k": "v"})
    prepared = prepare_raw(event)
    whole = RawFeedback.model_validate({**event.__dict__, "analysis_text": prepared.analysis_text})
    assert prepared.analysis_text and prepared.analysis_text != event.text
    assert prepared == whole and prepared.to_bytes() == whole.to_bytes()
    assert prepared.model_fields_set == whole.model_fields_set
    long = event.model_copy(update={"text": "😡a" * 450_000})
    with pytest.raises(ValueError, match="analysis_text\n.*1000000"):
        prepare_raw(long)
