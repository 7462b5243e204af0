"""Email: a raw RFC 822 message (``message/rfc822``) or its JSON form, one per request.

The body is kept, the new message (without quoted history and signature) and the subject are
analysed. Message-IDs embed mail addresses, so every id on the event is pseudonymised; equal
ids hash equally, so threads still link and a re-sent message still deduplicates. The parsing
is ``services/ingest/email_message.py``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from services.core.bounds import clean_input, without_invisibles
from services.core.channels import prepare_raw
from services.core.events import (
    MAX_NAME,
    NAME_PATTERN,
    EmailFacts,
    RawFeedback,
    UtcTime,
    stable_event_id,
    utc_now,
)
from services.core.normalize import pseudonym, strip_history, tidy, to_simplified
from services.core.pii import redact
from services.ingest.deps import PublisherDep, Source
from services.ingest.email_message import (
    EmailTooComplex,
    ParsedEmail,
    UndecodableEmail,
    content_id,
    html_to_text,
    parse_rfc822,
)
from services.ingest.guards import validation_error
from services.ingest.inputs import CustomerId, Input, Metadata, Segment, Stage, Touchpoint
from services.ingest.publish import Accepted

router = APIRouter()


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
    customer_id: CustomerId | None = None
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


def email_event(source: str, parsed: ParsedEmail, raw: bytes, *, touchpoint: str,
                customer_id: str | None = None, stage: Stage | None = None,
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


EMAIL_BODY = {"requestBody": {"required": True, "content": {
    "message/rfc822": {"schema": {"type": "string", "format": "binary"}},
    "application/json": {"schema": EmailJsonIn.model_json_schema()},
}}}
"""The body as OpenAPI shows it: the route reads it by hand, as either content type."""


@router.post("/v1/sources/{source}/emails", status_code=202, response_model=Accepted,
             summary="One email: raw RFC 822 (message/rfc822) or its JSON form",
             openapi_extra=EMAIL_BODY)
async def post_email(
    request: Request, source: Source, publisher: PublisherDep,
    touchpoint: Annotated[str, Query(min_length=1, max_length=MAX_NAME,
                                     pattern=NAME_PATTERN)] = "email",
    customer_id: Annotated[str | None, Query(max_length=128)] = None,
) -> Accepted:
    raw = await request.body()
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("message/rfc822", "application/json"):
        raise HTTPException(status_code=415, detail=(
            f"content-type {kind or '(none)'} is not accepted here: send message/rfc822 "
            "or application/json"))

    def from_rfc822() -> RawFeedback:
        return email_event(source, parse_rfc822(raw), raw, touchpoint=touchpoint,
                           customer_id=customer_id)

    def from_json() -> RawFeedback:
        item = EmailJsonIn.model_validate_json(raw)
        return email_event(source, parsed_from_json(item), raw, touchpoint=item.touchpoint,
                           customer_id=item.customer_id or customer_id, stage=item.stage,
                           segment=item.segment, metadata=item.metadata)

    try:
        event = await publisher.off_loop(from_rfc822 if kind == "message/rfc822" else from_json)
    except ValidationError as exc:
        raise validation_error(exc, ("body",)) from exc
    except EmailTooComplex as exc:
        raise HTTPException(status_code=422, detail=[{
            "loc": ["body"], "type": f"email_{exc.limit}", "msg": str(exc)}]) from exc
    except UndecodableEmail as exc:
        raise HTTPException(status_code=422, detail=[{
            "loc": ["body"], "type": "undecodable", "msg": str(exc)}]) from exc
    if kind == "message/rfc822":
        return await publisher.accept([event], [("body",)], "Date", ("query", "touchpoint"))
    return await publisher.accept([event], [("body",)], "sent_at")
