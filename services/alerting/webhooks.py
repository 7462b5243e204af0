"""Webhook delivery of alert and case events: message formats, signatures, retries.

Formats: ``generic`` posts the event document itself (alert.v2 or case.v1, told apart by its
``schema`` field); ``dingtalk``, ``wecom`` (企业微信) and ``feishu`` post the markdown/text
message their group robots accept. Whenever a secret is set,
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
import time
from dataclasses import dataclass
from urllib.parse import quote_plus

import httpx
import structlog

from services.alerting.rules import Webhook
from services.core.events import Alert, CaseEvent

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "X-Tingjian-Signature"
TIMESTAMP_HEADER = "X-Tingjian-Timestamp"
_ICON = {"critical": "🔴", "warning": "🟠", "info": "🔵"}


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


def _alert_lines(alert: Alert) -> list[str]:
    state = "告警" if alert.status == "firing" else "已恢复"
    return [
        f"{_ICON[alert.severity]} [{state}] {alert.rule_id} ({alert.severity})",
        f"触点 touchpoint: {alert.touchpoint}"
        + (f" / {alert.channel}" if alert.channel else "") + (f" / {alert.stage}" if alert.stage else ""),
        f"{alert.metric} = {alert.value:.3f}"
        + (f" (threshold {alert.operator or ''} {alert.threshold})" if alert.threshold is not None else ""),
        f"负责 owner: {alert.team or '-'} / {alert.owner or '-'}",
        alert.message,
        f"alert_id: {alert.alert_id}",
    ]


def _case_lines(case: CaseEvent) -> list[str]:
    """What the paged team needs first: what happened, who owns it now, and by when."""
    lines = [
        f"{_ICON[case.severity]} [{_CASE_ACTION[case.action]} {case.action}] 案件 case "
        f"{case.rule_id} ({case.severity})",
        f"触点 touchpoint: {case.touchpoint}",
        f"状态 status: {case.status}, 升级 escalation level {case.escalation_level}",
        f"负责 owner: {case.team or '-'} / {case.assignee or '-'}",
    ]
    if case.status == "open":
        lines.append(f"确认期限 ack due: {case.ack_due_at:%Y-%m-%d %H:%M} UTC")
    elif case.status in ("acknowledged", "in_progress"):
        lines.append(f"解决期限 resolve due: {case.resolve_due_at:%Y-%m-%d %H:%M} UTC")
    if case.comment:
        lines.append(case.comment)
    lines.append(f"case_id: {case.case_id}")
    return lines


def _title_and_lines(event: Alert | CaseEvent) -> tuple[str, list[str]]:
    if isinstance(event, Alert):
        return f"[{event.status}] {event.rule_id} {event.touchpoint}", _alert_lines(event)
    return f"[{event.action}] case {event.rule_id} {event.touchpoint}", _case_lines(event)


def public_url(url: str) -> str:
    """The URL without its query, for logs and tables: robots put their token there."""
    return url.split("?", 1)[0]


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


def build_request(hook: Webhook, event: Alert | CaseEvent, now: float | None = None) -> Request:
    """The HTTP request delivering ``event`` to ``hook`` (pure, so every format is testable)."""
    now = time.time() if now is None else now
    secret = hook.secret()
    url = hook.url
    title, lines = _title_and_lines(event)
    if hook.format == "generic":
        payload: dict = json.loads(event.to_bytes())
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
                  max_attempts: int, backoff_s: float) -> Outcome:
    """POST with retries and exponential backoff (base ``backoff_s``, doubling, at most 60 s).

    Connection errors, timeouts, 429 and 5xx are retried; other 4xx are final at once, since
    repeating a rejected request cannot succeed. Each attempt is re-signed (fresh timestamp).
    """
    status: int | None = None
    error = ""
    for attempt in range(1, max_attempts + 1):
        request = build_request(hook, event)
        try:
            response = await client.post(request.url, content=request.body,
                                         headers=request.headers)
            status = response.status_code
            error = _robot_error(hook, response) if response.is_success else \
                f"HTTP {status}: {response.text[:200]}"
            if not error:
                return Outcome(True, attempt, status, "")
            if 400 <= status < 500 and status != 429:
                return Outcome(False, attempt, status, error)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        if attempt < max_attempts:
            delay = min(backoff_s * 2 ** (attempt - 1), 60.0)
            log.info("webhook attempt failed, retrying", url=public_url(hook.url),
                     attempt=attempt, error=error, retry_in_s=delay, ref=event_ref(event))
            await asyncio.sleep(delay)
    return Outcome(False, max_attempts, status, error)
