"""Webhook delivery of alert and case events: message formats, signatures, retries.

Formats: ``generic`` posts the event document itself (alert.v3 or case.v1, told apart by its
``schema`` field); ``dingtalk``, ``wecom`` (企业微信) and ``feishu`` post the markdown/text
message their group robots accept. A firing figure alert's message adds its explanation in
three lines: the top three topics with their share, baseline share and lift, the channel and
stage the breach is in, and one redacted example comment (not under
``VOC_ALERT_CUSTOMER_TEXT=none``).

These receivers are third parties, and chat clients render what they get: customer text and
anything else a sender or operator typed (touchpoint, comments, assignee) goes out redacted,
on one line, and with every character the format would interpret (links, images, mentions,
emphasis, headings, HTML) replaced by its full-width look-alike, which no renderer
interprets. ``VOC_ALERT_CUSTOMER_TEXT=none`` leaves the customer's words out altogether.
Webhook URLs carry their robot's secret (in the query, or in the path for Feishu), so logs
and delivery rows only ever get :func:`redact_url`. Whenever a secret is set,
every request carries ``X-Tingjian-Timestamp`` and ``X-Tingjian-Signature: sha256=<hex>``, the
HMAC-SHA256 of ``<timestamp>.<body>``, so receivers can check origin and freshness; DingTalk
and Feishu robots additionally get their own "加签" signature, which they verify themselves.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, quote_plus, urlencode, urlsplit, urlunsplit

import httpx
import structlog

from services.alerting.kinds.event import CUSTOMER_TEXT
from services.alerting.rules import Webhook
from services.core.events import Alert, CaseEvent, Explanation, TopicDriver
from services.core.pii import snippet

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "X-Tingjian-Signature"
TIMESTAMP_HEADER = "X-Tingjian-Timestamp"
_ICON = {"critical": "🔴", "warning": "🟠", "info": "🔵"}
COMMENT_CHARS = 80
"""An explanation's example comment in a chat message: enough to recognise the complaint."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value receivers recompute to verify a request."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """Receiver side of :func:`sign` (constant-time comparison)."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


_CASE_ACTION = {"opened": "新案件", "escalated": "案件升级", "reopened": "案件重开",
                "acknowledged": "已确认", "assigned": "已分派", "started": "处理中",
                "commented": "新备注", "resolved": "已解决", "closed": "已关闭",
                "followed_up": "已回访"}


CustomerText = Literal["snippet", "none"]
Escape = Callable[[str], str]

# Characters markdown (DingTalk, WeCom) interprets, as full-width look-alikes no renderer does:
# links, images, HTML and mentions, emphasis, headings, code, tables, strikethrough. "_" only
# emphasises at a word's edge, so one inside a word (app_checkout) is kept.
_MARKDOWN = str.maketrans({"[": "［", "]": "］", "(": "（", ")": "）", "!": "！", "<": "＜",
                           ">": "＞", "*": "＊", "#": "＃", "`": "｀", "|": "｜", "~": "～",
                           "\\": "＼", "@": "＠", "&": "＆"})
_EDGE_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
# Feishu text messages are plain text, except for <at user_id="..."> mentions.
_FEISHU_TEXT = str.maketrans({"<": "＜", ">": "＞"})
# A scheme or www. that a chat client would turn into a link.
_LINK = re.compile(r"://|www\.", re.IGNORECASE)
# Comments people write on a case; the others are the pipeline's own words.
_SYSTEM_COMMENTS = frozenset({"opened", "escalated"})


def _one_line(value: str) -> str:
    return " ".join(value.split())


def _markdown_value(value: str) -> str:
    """A value from outside (sender, customer, operator) made inert in DingTalk/WeCom
    markdown: one line, full-width look-alikes for what markdown interprets, no link."""
    value = _EDGE_UNDERSCORE.sub("＿", _one_line(value).translate(_MARKDOWN))
    return _LINK.sub(lambda m: "：//" if m[0] == "://" else "www．", value)


def _feishu_value(value: str) -> str:
    """A value from outside made inert in a Feishu text message (no <at> mention, no link)."""
    value = _one_line(value).translate(_FEISHU_TEXT)
    return _LINK.sub(lambda m: "：//" if m[0] == "://" else "www．", value)


def _as_is(value: str) -> str:
    return value


def without_customer_text(message: str) -> str:
    """An alert message (or the comment of the case it opened) cut before the customer's
    words (see ``engine.CUSTOMER_TEXT``)."""
    return message.split(CUSTOMER_TEXT, 1)[0]


def _free_text(value: str, customer_text: CustomerText) -> str:
    """A message or comment as it may reach a third party: redacted, one line, bounded."""
    if customer_text == "none":
        value = without_customer_text(value)
    return snippet(value, 1000)


def _topic_figure(topic: TopicDriver, esc: Escape) -> str:
    """``billing 43% (基线 5%, ×8.6)``: a topic's share now, before, and the lift."""
    before = "-" if topic.baseline_share is None else f"{topic.baseline_share:.0%}"
    lift = "新 new" if topic.lift is None else f"×{topic.lift:.1f}"
    return f"{esc(topic.topic)} {topic.share:.0%} (基线 {before}, {lift})"


def _explanation_lines(explanation: Explanation, customer_text: CustomerText,
                       esc: Escape) -> list[str]:
    """The explanation as a chat window shows it: the top three topics, where the breach is,
    and one redacted comment when customer text may leave."""
    lines = []
    if explanation.topics:
        lines.append("主要话题 top topics: "
                     + "; ".join(_topic_figure(t, esc) for t in explanation.topics[:3]))
    where = [f"渠道 channel {esc(explanation.breaching_channel)}"
             if explanation.breaching_channel else "",
             f"阶段 stage {esc(explanation.breaching_stage)}"
             if explanation.breaching_stage else ""]
    if any(where):
        lines.append("集中在 breach in: " + ", ".join(w for w in where if w))
    if customer_text != "none" and explanation.comments:
        comment = explanation.comments[0]
        lines.append(f"例 example: 「{esc(snippet(comment.text, COMMENT_CHARS))}」")
    return lines


def _alert_lines(alert: Alert, customer_text: CustomerText, esc: Escape) -> list[str]:
    state = "告警" if alert.status == "firing" else "已恢复"
    explained = (_explanation_lines(alert.explanation, customer_text, esc)
                 if alert.explanation is not None and alert.status == "firing" else [])
    return [
        f"{_ICON[alert.severity]} [{state}] {esc(alert.rule_id)} ({alert.severity})",
        f"触点 touchpoint: {esc(alert.touchpoint)}"
        + (f" / {esc(alert.channel)}" if alert.channel else "")
        + (f" / {esc(alert.stage)}" if alert.stage else ""),
        f"{esc(alert.metric)} = {alert.value:.3f}"
        + (f" (threshold {esc(alert.operator or '')} {alert.threshold})"
           if alert.threshold is not None else ""),
        *explained,
        f"负责 owner: {esc(alert.team or '-')} / {esc(alert.owner or '-')}",
        esc(_free_text(alert.message, customer_text)),
        f"alert_id: {esc(alert.alert_id)}",
    ]


def _case_comment(case: CaseEvent, customer_text: CustomerText) -> str | None:
    """The case's comment as it may leave: people's comments and follow-up texts may quote
    the customer, so ``none`` drops them; the pipeline's own are kept."""
    if not case.comment or (customer_text == "none" and case.action not in _SYSTEM_COMMENTS):
        return None
    return _free_text(case.comment, customer_text)


def _case_lines(case: CaseEvent, customer_text: CustomerText, esc: Escape) -> list[str]:
    """What the paged team needs first: what happened, who owns it now, and by when."""
    lines = [
        f"{_ICON[case.severity]} [{_CASE_ACTION[case.action]} {case.action}] 案件 case "
        f"{esc(case.rule_id)} ({case.severity})",
        f"触点 touchpoint: {esc(case.touchpoint)}",
        f"状态 status: {case.status}, 升级 escalation level {case.escalation_level}",
        f"负责 owner: {esc(case.team or '-')} / {esc(snippet(case.assignee or '-', 128))}",
    ]
    if case.status == "open":
        lines.append(f"确认期限 ack due: {case.ack_due_at:%Y-%m-%d %H:%M} UTC")
    elif case.status in ("acknowledged", "in_progress"):
        lines.append(f"解决期限 resolve due: {case.resolve_due_at:%Y-%m-%d %H:%M} UTC")
    comment = _case_comment(case, customer_text)
    if comment:
        lines.append(esc(comment))
    lines.append(f"case_id: {esc(case.case_id)}")
    return lines


def _title_and_lines(event: Alert | CaseEvent, customer_text: CustomerText,
                     esc: Escape) -> tuple[str, list[str]]:
    if isinstance(event, Alert):
        return (f"[{event.status}] {esc(event.rule_id)} {esc(event.touchpoint)}",
                _alert_lines(event, customer_text, esc))
    return (f"[{event.action}] case {esc(event.rule_id)} {esc(event.touchpoint)}",
            _case_lines(event, customer_text, esc))


def _generic_payload(event: Alert | CaseEvent, customer_text: CustomerText) -> dict:
    """The event document, with the customer's words left out under ``none``: the message's
    quote, and an explanation's comment excerpts (their event ids stay) and keywords."""
    payload: dict = json.loads(event.to_bytes())
    if customer_text == "none":
        if isinstance(event, Alert):
            payload["message"] = without_customer_text(event.message)
            explanation = payload.get("explanation")
            if explanation:
                explanation["terms"] = []
                for comment in explanation["comments"]:
                    comment.update(text="", evidence=[])
        else:
            comment = _case_comment(event, customer_text)
            payload["comment"] = comment
    return payload


# The path of a Feishu/Lark robot's URL ends in its token; elsewhere a whole path segment of
# 16 or more letters, digits, "-" and "_" with both a letter and a digit is taken for a token.
_HOOK_TOKEN = re.compile(r"(/hook/)[^/]+")
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_-]{16,}")


def _path_segment(segment: str) -> str:
    tokenlike = (_TOKEN_CHARS.fullmatch(segment) is not None
                 and any(c.isdigit() for c in segment) and any(c.isalpha() for c in segment))
    return "***" if tokenlike else segment


def redact_url(url: str) -> str:
    """The URL as logs and tables may keep it: no userinfo, every query value and fragment
    replaced by ``***`` (DingTalk's ``access_token``, WeCom's ``key``, signatures), and the
    robot token in a path (Feishu's ``/open-apis/bot/v2/hook/<token>``) too.

    Every log line and delivery row that names a webhook goes through this one function.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unparsable URL)"
    path = "/".join(_path_segment(s) for s in _HOOK_TOKEN.sub(r"\1***", parts.path).split("/"))
    query = urlencode([(key, "***") for key, _ in parse_qsl(parts.query, keep_blank_values=True)],
                      safe="*")
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], path, query,
                       "***" if parts.fragment else ""))


def event_ref(event: Alert | CaseEvent) -> str:
    """The id receivers dedupe on (with the alert status), and logs name."""
    return event.alert_id if isinstance(event, Alert) else event.event_id


def _robot_sign(secret: str, timestamp: str) -> str:
    """DingTalk and Feishu 加签: base64 HMAC-SHA256 of "<timestamp>\\n<secret>"."""
    text = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(secret.encode(), text, hashlib.sha256).digest()).decode()


def _feishu_sign(secret: str, timestamp: str) -> str:
    """Feishu keys the HMAC with "<timestamp>\\n<secret>" over an empty message."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


@dataclass(frozen=True)
class Request:
    url: str
    body: bytes
    headers: dict[str, str]


def build_request(hook: Webhook, event: Alert | CaseEvent, now: float | None = None,
                  customer_text: CustomerText = "snippet") -> Request:
    """The HTTP request delivering ``event`` to ``hook`` (pure, so every format is testable)."""
    now = time.time() if now is None else now
    secret = hook.secret()
    url = hook.url
    esc = {"generic": _as_is, "feishu": _feishu_value}.get(hook.format, _markdown_value)
    title, lines = _title_and_lines(event, customer_text, esc)
    if hook.format == "generic":
        payload: dict = _generic_payload(event, customer_text)
    elif hook.format == "dingtalk":
        payload = {"msgtype": "markdown",
                   "markdown": {"title": title, "text": "\n\n".join(lines)}}
        if secret:
            millis = str(int(now * 1000))
            separator = "&" if "?" in url else "?"
            url += f"{separator}timestamp={millis}&sign={quote_plus(_robot_sign(secret, millis))}"
    elif hook.format == "wecom":
        payload = {"msgtype": "markdown", "markdown": {"content": "\n".join(lines)}}
    else:
        payload = {"msg_type": "text", "content": {"text": "\n".join(lines)}}
        if secret:
            seconds = str(int(now))
            payload = {"timestamp": seconds, "sign": _feishu_sign(secret, seconds), **payload}
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    headers = {"content-type": "application/json; charset=utf-8"}
    if secret:
        stamp = str(int(now))
        headers[TIMESTAMP_HEADER] = stamp
        headers[SIGNATURE_HEADER] = sign(secret, stamp, body)
    return Request(url, body, headers)


@dataclass(frozen=True)
class Outcome:
    """How a delivery ended; ``delivered`` False means it is dead-lettered."""

    delivered: bool
    attempts: int
    status_code: int | None
    error: str


def _without_url(error: str, *urls: str) -> str:
    for url in urls:
        error = error.replace(url, redact_url(url))
    return error


def _robot_error(hook: Webhook, response: httpx.Response) -> str:
    """Robots answer HTTP 200 with an error code in the body when they reject a message."""
    if hook.format == "generic":
        return ""
    try:
        body = response.json()
    except ValueError:
        return ""
    code = body.get("errcode", body.get("code", 0)) if isinstance(body, dict) else 0
    return f"robot error {code}: {body.get('errmsg') or body.get('msg')}" if code else ""


async def deliver(client: httpx.AsyncClient, hook: Webhook, event: Alert | CaseEvent, *,
                  max_attempts: int, backoff_s: float,
                  customer_text: CustomerText = "snippet") -> Outcome:
    """POST with retries and exponential backoff (base ``backoff_s``, doubling, at most 60 s).

    Connection errors, timeouts, 429 and 5xx are retried; other 4xx are final at once, since
    repeating a rejected request cannot succeed. Each attempt is re-signed (fresh timestamp).
    Errors may quote the URL (httpx does for some); they are returned with it redacted.
    """
    status: int | None = None
    error = ""
    for attempt in range(1, max_attempts + 1):
        request = build_request(hook, event, customer_text=customer_text)
        try:
            response = await client.post(request.url, content=request.body,
                                         headers=request.headers)
            status = response.status_code
            error = _without_url(_robot_error(hook, response) if response.is_success else
                                 f"HTTP {status}: {response.text[:200]}", request.url, hook.url)
            if not error:
                return Outcome(True, attempt, status, "")
            if 400 <= status < 500 and status != 429:
                return Outcome(False, attempt, status, error)
        except httpx.HTTPError as exc:
            error = _without_url(f"{type(exc).__name__}: {exc}", request.url, hook.url)
        if attempt < max_attempts:
            delay = min(backoff_s * 2 ** (attempt - 1), 60.0)
            log.info("webhook attempt failed, retrying", url=redact_url(hook.url),
                     attempt=attempt, error=error, retry_in_s=delay, ref=event_ref(event))
            await asyncio.sleep(delay)
    return Outcome(False, max_attempts, status, error)
