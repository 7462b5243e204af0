"""What each channel means to every stage: the text analysed and the facts it carries.

The wire contract of a channel is the ``channel`` enum and its facts object in
schemas/topics/feedback.raw.v2.json (and enriched), typed in services/core/events.py. What the
stages must do with them is declared here, once:

- ``ANALYSIS``: how a channel's text becomes the text analysis sees (simplified Chinese,
  without markup, quoted history or anyone but the customer). Channels not listed get plain
  simplification and tidying.
- ``FACTS``: for each facts object an event may carry (``call``, ``email``, ...), how its free
  text is redacted, and which ``external_id`` it vouches for.

``prepare_raw`` applies both. Ingest builds every event through it, and the NLP stage applies
it again to everything it reads, because direct producers write to the raw topic without
passing ingest: an event of any channel is redacted and normalised the same way whichever way
it came. How ingest takes a channel in (its input shape, route and builder) is the channel's
module in services/ingest/channels/; docs/extending.md walks through adding one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from services.core.events import (
    AnalysisText,
    EmailFacts,
    RawFeedback,
    ReviewFacts,
    SocialFacts,
    trusted,
)
from services.core.normalize import normalize_social, pseudonym, strip_history, tidy, to_simplified
from services.core.pii import redact, redact_optional


def plain(text: str) -> str:
    """The analysis text of a channel without its own rule: tidied, simplified."""
    return to_simplified(tidy(text))


# Labels a review export puts at the start of a line: the merchant answering (not the
# customer's voice, up to the next follow-up label), and the customer's later follow-up (追评).
REPLY_LABELS = frozenset({"商家回复", "掌柜回复", "卖家回复", "店家回复", "客服回复", "官方回复"})
FOLLOW_UP_LABELS = frozenset({"追评", "追加评论", "用户追评"})
_LABELS = REPLY_LABELS | FOLLOW_UP_LABELS


def _labelled(line: str) -> tuple[str, str]:
    """(label, the rest) of a line that starts with one of the labels and a colon, else
    ("", line). Two partitions of one line: linear."""
    for colon in ("：", ":"):
        label, found, rest = line.partition(colon)
        if found and label.strip() in _LABELS:
            return label.strip(), rest
    return "", line


def review_analysis(text: str) -> str:
    """A review in the customer's own words: the merchant's replies dropped, a follow-up's
    label dropped and its words kept; simplified Chinese, tidied."""
    kept: list[str] = []
    replying = False
    for line in to_simplified(text).splitlines():
        label, rest = _labelled(line.strip())
        if label in REPLY_LABELS:
            replying = True
        elif label in FOLLOW_UP_LABELS:
            replying = False
            kept.append(rest)
        elif not replying:
            kept.append(line)
    return tidy("\n".join(kept))


ANALYSIS: dict[str, Callable[[str], str]] = {
    "social": lambda text: normalize_social(text).analysis,
    "email": lambda text: plain(strip_history(text)),
    "review": review_analysis,
}
"""channel -> the analysis text of an event of that channel that came without one."""


@dataclass(frozen=True)
class Facts:
    """How ``prepare_raw`` treats one facts object of an event."""

    redacted: Callable[[Any], dict[str, object]] | None = None
    """The fields of the object to replace, with personal data redacted or pseudonymised."""
    own_id: Callable[[Any], str] | None = None
    """The ``external_id`` these facts vouch for: kept as sent, not redacted (a platform's
    numeric ids can look like card numbers; the same id travels in the facts anyway)."""


def _redacted_email(mail: EmailFacts) -> dict[str, object]:
    return {
        "message_id": _pseudonym_optional(mail.message_id),
        "in_reply_to": _pseudonym_optional(mail.in_reply_to),
        "references": [pseudonym(r) for r in mail.references],
        "thread_id": _pseudonym_optional(mail.thread_id),
        "subject": redact(mail.subject),
        "attachments": [redact(name) for name in mail.attachments],
    }


def _redacted_social(post: SocialFacts) -> dict[str, object]:
    return {
        "author": redact_optional(post.author), "url": redact_optional(post.url),
        "urls": [redact(u) for u in post.urls],
        "mentions": [redact(m) for m in post.mentions],
        "hashtags": [redact(h) for h in post.hashtags],
    }


def _post_id(post: SocialFacts) -> str:
    """What ingest sends as a post's ``external_id``: Weibo's 16-digit ids pass Luhn one time
    in ten, and threads need them as they are."""
    return f"{post.platform}:{post.post_id}"


def _redacted_review(review: ReviewFacts) -> dict[str, object]:
    return {"product_name": redact_optional(review.product_name)}


def review_key(review: ReviewFacts) -> str:
    """A review's ``external_id``: ``platform:review_id``, and ``:follow_up`` for its 追评, so
    a re-exported review that gained a follow-up adds the follow-up and not the review again.
    Kept as sent: JD's and Taobao's numeric review ids can pass Luhn."""
    key = f"{review.platform}:{review.review_id}"
    return f"{key}:follow_up" if review.follow_up else key


FACTS: dict[str, Facts] = {
    "call": Facts(),
    "email": Facts(redacted=_redacted_email),
    "social": Facts(redacted=_redacted_social, own_id=_post_id),
    "review": Facts(redacted=_redacted_review, own_id=review_key),
}
"""facts field of RawFeedback -> how its object is prepared. Every facts field is listed
(tests/integration/test_channel_registry.py checks it), with nothing to do where nothing needs doing."""


def analysis_text(text: str, channel: str) -> str:
    """The text the NLP stage analyses for an event of ``channel`` that came without one."""
    return ANALYSIS.get(channel, plain)(text)


def _pseudonym_optional(value: str | None) -> str | None:
    return None if value is None else pseudonym(value)


def _external_id(event: RawFeedback) -> str | None:
    """The sender's id, redacted (a producer may key feedback by phone number or email),
    unless the event's facts vouch for it."""
    if event.external_id is None:
        return None
    for name, facts in FACTS.items():
        value = getattr(event, name)
        if facts.own_id is not None and value is not None and \
                event.external_id == facts.own_id(value):
            return event.external_id
    return redact(event.external_id)


_ANALYSIS_TEXT: TypeAdapter[str] = TypeAdapter(AnalysisText)


def _fits(analysis_text: object) -> bool:
    """Whether a derived analysis text is one ``RawFeedback.analysis_text`` accepts."""
    try:
        _ANALYSIS_TEXT.validate_python(analysis_text)
    except ValidationError:
        return False
    return True


def prepare_raw(event: RawFeedback) -> RawFeedback:
    """The event as it may travel on: PII redacted everywhere, ``analysis_text`` filled.

    Ingest builds every event through this; the NLP stage applies it again to whatever it
    reads, because direct producers write to the raw topic without passing ingest. It is
    idempotent, so events from ingest come out unchanged. Raises ``ValidationError`` when the
    redacted event breaks a limit.
    """
    text = redact(event.text)
    update: dict[str, object] = {
        "text": text,
        "analysis_text": (redact(event.analysis_text) if event.analysis_text
                          else analysis_text(text, event.channel) or text),
        "customer_id": redact_optional(event.customer_id),
        "external_id": _external_id(event),
        "metadata": {key: redact(value) for key, value in event.metadata.items()},
    }
    for name, facts in FACTS.items():
        value = getattr(event, name)
        if value is not None and facts.redacted is not None:
            update[name] = value.model_copy(update=facts.redacted(value))
    changed = {name: value for name, value in update.items() if value != getattr(event, name)}
    if not changed:
        # Already prepared (every event from ingest): the validated event is the answer.
        return event
    if changed.keys() == {"analysis_text"} and _fits(changed["analysis_text"]):
        # Nothing to redact, only the analysis text derived (most events of a direct
        # producer): that one value is checked against its limit, and the validated event
        # keeps the rest, at a fifth of re-validating it whole. One that does not fit is
        # validated whole below, so the error names the field as it always did.
        return trusted(type(event), **{**event.__dict__, "analysis_text": changed["analysis_text"]})
    # Re-validated: a placeholder can be longer than what it replaced (a@b.cn -> <EMAIL>), and
    # nothing may leave this step that the next stage would refuse. Updated nested models are
    # validated from their dumps; the unchanged ones are instances pydantic keeps as they are.
    fields = {**event.__dict__, **{name: value.model_dump() if isinstance(value, BaseModel)
                                    else value for name, value in update.items()}}
    return type(event).model_validate(fields)
