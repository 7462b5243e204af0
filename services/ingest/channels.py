"""Each channel's native input shape and its normalisation into a ``feedback.raw`` event.

Every builder produces an event whose ``text`` is the original (PII redacted) and whose
``analysis_text`` is what the NLP stage should read: simplified Chinese, without social
markup, quoted email history or the agent's side of a call. The event id comes from the
channel's own message id, so a re-sent message keeps its id.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, model_validator

from services.core.bounds import clean_input, without_invisibles
from services.core.events import (
    MAX_LIST,
    CallFacts,
    EmailFacts,
    RawFeedback,
    Reach,
    SocialFacts,
    SocialPlatform,
    UtcTime,
    stable_event_id,
    utc_now,
)
from services.core.normalize import (
    normalize_social,
    prepare_raw,
    pseudonym,
    strip_history,
    tidy,
    to_simplified,
)
from services.core.pii import redact
from services.ingest.call_transcript import CallIn, call_facts, customer_text, transcript_text
from services.ingest.email_message import (
    ParsedEmail,
    UndecodableEmail,
    content_id,
    html_to_text,
)
from services.ingest.inputs import BATCH_LIMIT, Id, Input, Metadata, Segment, Stage, Text, Touchpoint



class Ratings(Input):
    """Survey scores; each is optional and range-checked."""

    model_config = ConfigDict(extra="forbid")

    nps: Annotated[int, Field(ge=0, le=10)] | None = Field(default=None, description="NPS 0-10")
    csat: Annotated[int, Field(ge=1, le=5)] | None = Field(default=None, description="CSAT 1-5")
    ces: Annotated[int, Field(ge=1, le=7)] | None = Field(default=None, description="CES 1-7")


class SurveyResponseIn(Input):
    """One web-form or survey answer."""

    model_config = ConfigDict(extra="forbid")

    response_id: Id
    survey_id: Id | None = Field(default=None, description="Form or questionnaire id; with "
                                 "response_id it is the message's identity.")
    channel: Literal["survey", "web"] = "survey"
    touchpoint: Touchpoint
    text: Text
    ratings: Ratings = Field(default_factory=Ratings)
    stage: Stage | None = None
    segment: Segment | None = None
    customer_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    submitted_at: UtcTime | None = Field(
        default=None, description="RFC 3339 with offset; default: time of receipt.")
    metadata: Metadata = Field(default_factory=dict)



class SurveyBatchIn(Input):
    """A batch of survey answers, as survey tools export them."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"responses": [{
        "response_id": "nps-2026w47-000912", "survey_id": "nps-post-delivery",
        "touchpoint": "delivery", "stage": "售后", "segment": "VIP", "customer_id": "c-10017",
        "ratings": {"nps": 2, "csat": 1, "ces": 6}, "text": "快递员没打电话就把东西放门口了",
        "submitted_at": "2026-11-23T09:12:00+08:00", "metadata": {"city": "杭州"}}]}]})

    responses: list[SurveyResponseIn] = Field(min_length=1, max_length=BATCH_LIMIT)


class SocialPostIn(Input):
    """One post or comment on a social platform."""

    model_config = ConfigDict(extra="forbid")

    platform: SocialPlatform
    post_id: Id
    text: Text
    touchpoint: Touchpoint = "social"
    author: Annotated[str, StringConstraints(max_length=256),
                      BeforeValidator(clean_input)] | None = None
    url: Annotated[str, StringConstraints(max_length=2048)] | None = None
    parent_id: Id | None = Field(default=None, description="The post or comment replied to.")
    root_id: Id | None = Field(default=None, description="The thread's first post.")
    followers: Reach | None = None
    likes: Reach | None = None
    reposts: Reach | None = None
    comments: Reach | None = None
    stage: Stage | None = None
    customer_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    posted_at: UtcTime | None = Field(
        default=None, description="RFC 3339 with offset; default: time of receipt.")
    metadata: Metadata = Field(default_factory=dict)



class SocialBatchIn(Input):
    """Posts and comments, e.g. one thread as a listening tool collected it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"posts": [{
        "platform": "weibo", "post_id": "5032117745603301", "author": "港島小吃貨",
        "url": "https://weibo.com/7781234567/P3x9kAbCd", "touchpoint": "delivery",
        "text": "@優選商城官方 物流太慢了😡 #優選商城配送延誤# https://t.cn/A6x9QwZk",
        "followers": 18342, "likes": 256, "reposts": 87,
        "posted_at": "2026-11-23T09:41:07+08:00"}]}]})

    posts: list[SocialPostIn] = Field(min_length=1, max_length=BATCH_LIMIT)


class EmailJsonIn(Input):
    """An email as JSON, for systems that already parsed it (a helpdesk, an IMAP bridge)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "message_id": "<6f1c2b7a.3e41@mail.example.cn>", "subject": "退货问题",
        "in_reply_to": "<20261120091200.5512@shop.example.cn>", "touchpoint": "returns",
        "text": "退货申请提交一周了还没人处理。\n\n在 2026年11月20日 客服 写道：\n> 您好",
        "attachments": ["发票.pdf"], "sent_at": "2026-11-23T10:14:51+08:00"}]})

    message_id: Annotated[str, StringConstraints(max_length=998)] | None = None
    in_reply_to: Annotated[str, StringConstraints(max_length=998)] | None = None
    references: Annotated[list[Annotated[str, StringConstraints(max_length=998)]],
                          Field(max_length=200)] = Field(default_factory=list)
    subject: Annotated[str, StringConstraints(max_length=998), BeforeValidator(clean_input)] = ""
    text: Annotated[str, StringConstraints(max_length=1_000_000),
                    BeforeValidator(clean_input)] | None = None
    html: Annotated[str, StringConstraints(max_length=1_000_000),
                    BeforeValidator(clean_input)] | None = None
    attachments: Annotated[list[Annotated[str, StringConstraints(max_length=512),
                                          BeforeValidator(clean_input)]],
                           Field(max_length=200)] = Field(default_factory=list)
    touchpoint: Touchpoint = "email"
    stage: Stage | None = None
    segment: Segment | None = None
    customer_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    sent_at: UtcTime | None = Field(
        default=None, description="RFC 3339 with offset; default: time of receipt.")
    metadata: Metadata = Field(default_factory=dict)


    @model_validator(mode="after")
    def _some_body(self) -> EmailJsonIn:
        if not (self.text or "").strip() and not (self.html or "").strip():
            raise ValueError("send the body as text or html")
        return self


def _strip_brackets(value: str | None) -> str | None:
    return value.strip().strip("<>").strip() or None if value else None


def survey_event(source: str, item: SurveyResponseIn) -> RawFeedback:
    """The raw event of one survey answer."""
    received = utc_now()
    external = f"{item.survey_id}:{item.response_id}" if item.survey_id else item.response_id
    return prepare_raw(RawFeedback(
        event_id=stable_event_id(source, external), source=source, external_id=external,
        channel=item.channel, touchpoint=item.touchpoint, text=item.text,
        occurred_at=item.submitted_at or received, received_at=received,
        customer_id=item.customer_id, metadata=item.metadata, stage=item.stage,
        segment=item.segment, ratings=item.ratings.model_dump(),
    ))


def social_event(source: str, item: SocialPostIn) -> RawFeedback:
    """The raw event of one social post; markup is listed and dropped from the analysed text."""
    received = utc_now()
    external = f"{item.platform}:{item.post_id}"
    text = redact(item.text)
    social = normalize_social(text)
    return prepare_raw(RawFeedback(
        event_id=stable_event_id(source, external), source=source, external_id=external,
        channel="social", touchpoint=item.touchpoint, text=text,
        analysis_text=social.analysis or to_simplified(text),
        occurred_at=item.posted_at or received, received_at=received,
        customer_id=item.customer_id, metadata=item.metadata, stage=item.stage,
        social=SocialFacts(
            platform=item.platform, post_id=item.post_id, author=item.author, url=item.url,
            parent_id=item.parent_id, root_id=item.root_id or item.parent_id,
            followers=item.followers, likes=item.likes, reposts=item.reposts,
            comments=item.comments, mentions=social.mentions[:MAX_LIST],
            hashtags=social.hashtags[:MAX_LIST], urls=social.urls[:MAX_LIST],
            emoji=social.emoji[:MAX_LIST]),
    ))


def call_event(source: str, call: CallIn) -> RawFeedback:
    """The raw event of one call: the labelled transcript, customer turns for analysis."""
    analysed, spans = customer_text(call.turns, lambda t: to_simplified(redact(t)))
    facts = call_facts(call)
    return prepare_raw(RawFeedback(
        event_id=stable_event_id(source, call.call_id), source=source,
        external_id=call.call_id, channel="call", touchpoint=call.touchpoint,
        text=redact(transcript_text(call.turns)), analysis_text=analysed,
        occurred_at=call.started_at, received_at=utc_now(), customer_id=call.customer_id,
        metadata=call.metadata, stage=call.stage, segment=call.segment,
        call=CallFacts(**facts, customer_spans=spans),
    ))


def email_event(source: str, parsed: ParsedEmail, raw: bytes, *, touchpoint: str,
                customer_id: str | None = None, stage: str | None = None,
                segment: str | None = None,
                metadata: dict[str, str] | None = None) -> RawFeedback:
    """The raw event of one email: the body kept, the new message analysed.

    Ids are pseudonymised because Message-IDs embed mail addresses; equal ids hash equally,
    so threads still link and a re-sent message still deduplicates.
    """
    received = utc_now()
    message_id = _strip_brackets(parsed.message_id)
    external = pseudonym(message_id) if message_id else content_id(raw)
    body = redact(without_invisibles(parsed.body))
    new_text = tidy(redact(without_invisibles(parsed.new_text))) or tidy(body)
    subject = redact(without_invisibles(parsed.subject))
    analysed = to_simplified(f"{subject}\n{new_text}" if subject else new_text)
    return prepare_raw(RawFeedback(
        event_id=stable_event_id(source, external), source=source, external_id=external,
        channel="email", touchpoint=touchpoint, text=body,
        analysis_text=analysed, occurred_at=parsed.sent_at or received, received_at=received,
        customer_id=customer_id, metadata=metadata or {}, stage=stage, segment=segment,
        email=EmailFacts(
            message_id=message_id, in_reply_to=_strip_brackets(parsed.in_reply_to),
            references=[r for r in (_strip_brackets(x) for x in parsed.references) if r],
            thread_id=_strip_brackets(parsed.thread_id), subject=subject,
            charset=parsed.charset, attachments=parsed.attachments),
    ))


def parsed_from_json(item: EmailJsonIn) -> ParsedEmail:
    """The JSON form of an email, in the shape the RFC 822 parser produces."""
    body = item.text if item.text and item.text.strip() else html_to_text(item.html or "")
    body = "\n".join(body.splitlines()).strip()
    if not body:
        raise UndecodableEmail("the email body has no text to analyse")
    return ParsedEmail(
        message_id=item.message_id, in_reply_to=item.in_reply_to, references=item.references,
        subject=item.subject, sent_at=item.sent_at, body=body, new_text=strip_history(body),
        charset=None, attachments=item.attachments,
    )
