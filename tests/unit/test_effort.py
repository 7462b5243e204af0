"""Effort read from the text (services/nlp/effort.py): which phrasings flag an event, what it
scores, and that the evidence spans point at the cue in the analysed text."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from jsonschema import Draft202012Validator

import schemas
from services.core.channels import prepare_raw
from services.core.events import Effort, EnrichedFeedback, RawFeedback
from services.nlp.analyzer import Analyzer, load_sentiment
from services.nlp.cues import load_urgency
from services.nlp.effort import count_of, read_effort
from services.nlp.taxonomy import load_taxonomy

NOW = datetime(2026, 12, 2, tzinfo=UTC)

FLAGGED = [
    # (text, kind, the cue's words, its count)
    ("为了办这个卡我跑了好几趟营业厅", "visits", "跑了好几趟", 3),
    ("前前后后跑了3趟", "visits", "跑了3趟", 3),
    ("白跑一趟，系统又坏了", "visits", "白跑", None),
    ("打了三次电话都没人管", "calls", "打了三次电话", 3),
    ("我打了２０个电话", "calls", "打了２０个电话", 20),
    ("电话打了好多次也没用", "calls", "电话打了好多次", 3),
    ("转了好几个人也没解决", "transfers", "转了好几个人", 3),
    ("被转来转去，没人负责", "transfers", "转来转去", None),
    ("转接了两次还在等", "transfers", "转接了两次", 2),
    ("材料交了又交，还说不齐", "resubmission", "交了又交", None),
    ("资料提交了四次才通过", "resubmission", "资料提交了四次", 4),
    ("又让我重新提交材料", "resubmission", "重新提交材料", None),
    ("来回折腾了一个月", "runaround", "来回折腾", None),
    ("手续太繁琐了", "runaround", "手续太繁琐", None),
    ("同样的问题问了5遍", "repetition", "问了5遍", 5),
    ("我已经说了十几遍了", "repetition", "说了十几遍", 10),
    ("解释了两遍还是不懂", "repetition", "解释了两遍", 2),
    ("排了两个小时队才办完", "waiting", "排了两个小时队", 2),
    ("排了一个多小时的队", "waiting", "排了一个多小时的队", 1),
    ("排队排了三个小时", "waiting", "排队排了三个小时", 3),
    ("客服电话在线等了一个多小时", "waiting", "在线等了一个多小时", 1),
]


@pytest.mark.parametrize(("text", "kind", "term", "count"), FLAGGED, ids=[f[0] for f in FLAGGED])
def test_effort_phrasings_are_flagged_with_their_span(text: str, kind: str, term: str,
                                                      count: int | None) -> None:
    effort = read_effort(text)
    assert effort is not None
    [cue] = [c for c in effort.cues if c.kind == kind]
    assert cue.term == term and cue.count == count
    [(start, end)] = cue.evidence
    assert text[start:end] == term


@pytest.mark.parametrize("text", [
    "菜很好吃，配送也快", "想问一次性付款可以吗", "打一次电话就解决了，客服很专业", "麻烦您帮我查一下",
    "跑步机很好用", "我去了一趟超市", "转账成功", "他说了一句谢谢", "等了三天快递", "打了0次电话",
    "外卖等了两个小时，饭都凉了", "重要的事情说三遍", "给孩子讲四五遍都听不烦"])
def test_texts_without_effort_are_not_flagged(text: str) -> None:
    assert read_effort(text) is None


def test_score_adds_the_kinds_and_weighs_counts_of_three_or_more() -> None:
    assert read_effort("打了两次电话").score == 0.5
    assert read_effort("打了三次电话").score == 0.75
    assert read_effort("打了两次电话，还被转来转去").score == 1.0
    assert read_effort("打了八次电话，转了五个人，跑了三趟").score == 1.0
    # the same kind twice is still one kind
    assert read_effort("打了两次电话，电话打了两次").score == 0.5


@pytest.mark.parametrize(("spelled", "value"), [
    ("三", 3), ("两", 2), ("兩", 2), ("十", 10), ("十二", 12), ("二十", 20), ("二十五", 25),
    ("两百", 200), ("一百零五", 105), ("20", 20), ("２０", 20), ("好几", 3), ("几", 3),
    ("十几", 10), ("无数", 3),
    ("多", 3)])
def test_counts_in_hanzi_and_digits(spelled: str, value: int) -> None:
    assert count_of(f"打了{spelled}次电话") == value


def test_no_count_reads_none() -> None:
    assert count_of("踢皮球") is None


def test_spans_are_shifted_into_the_analysed_text() -> None:
    effort = read_effort("问了三遍", shift=10)
    assert effort is not None and effort.cues[0].evidence == [(10, 14)]


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer(load_sentiment("default"), load_taxonomy(), load_urgency(), neutral_band=0.2)


def _raw(i: int, text: str, channel: str = "app") -> RawFeedback:
    return prepare_raw(RawFeedback(event_id=f"e{i}", source="t", external_id=str(i),
                                   channel=channel, touchpoint="tp", text=text,
                                   occurred_at=NOW, received_at=NOW))


def test_the_enriched_event_carries_effort_with_spans_into_analysis_text(
        analyzer: Analyzer) -> None:
    """Traditional Chinese is read through the analysed (simplified) text, and the spans index
    that text, as topic and urgency evidence do; an event without effort carries null."""
    validator = Draft202012Validator(schemas.topic_schema("feedback.enriched.v2"),
                                     format_checker=Draft202012Validator.FORMAT_CHECKER)
    raw = [_raw(0, "爲了改個地址，我打了三次電話，轉了好幾個人，材料交了又交"),
           _raw(1, "快递很快，包装完好")]
    flagged, plain = analyzer.analyze(raw)
    assert plain.effort is None
    assert flagged.effort is not None and flagged.effort.score == 1.0
    analysed = raw[0].analysis_text or raw[0].text
    kinds = {c.kind: [analysed[a:b] for a, b in c.evidence] for c in flagged.effort.cues}
    assert kinds == {"calls": ["打了三次电话"], "transfers": ["转了好几个人"],
                     "resubmission": ["交了又交"]}
    for event in (flagged, plain):
        validator.validate(json.loads(event.to_bytes()))
        assert EnrichedFeedback.model_validate_json(event.to_bytes()) == event


def test_an_email_reply_keeps_spans_on_the_whole_analysed_text(analyzer: Analyzer) -> None:
    """A reply is analysed without its subject line (analyzer.own_start); the effort spans
    still count from the start of the analysed text."""
    raw = prepare_raw(RawFeedback.model_validate({
        "event_id": "m1", "source": "t", "channel": "email", "touchpoint": "tp",
        "text": "回复：问了三遍\n我已经问了三遍了", "occurred_at": NOW, "received_at": NOW,
        "email": {"subject": "回复：问了三遍"}}))
    [event] = analyzer.analyze([raw])
    analysed = raw.analysis_text or raw.text
    assert event.effort is not None
    [(start, end)] = event.effort.cues[0].evidence
    assert analysed[start:end] == "问了三遍" and start > analysed.index("\n")


def test_a_text_repeating_cues_stays_within_the_bounds() -> None:
    effort = read_effort("".join(f"打了{n}次电话，" for n in range(2, 3000)) + "跑了三趟，" * 500)
    assert effort is not None
    assert len(effort.cues) <= 32
    assert all(len(c.evidence) <= 100 for c in effort.cues)
    assert Effort.model_validate_json(effort.to_bytes()) == effort
