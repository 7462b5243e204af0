"""Webhook delivery against a real local HTTP receiver: signatures, robot formats, retries with
backoff, and dead letters (topic record + ``alert_deliveries`` / ``case_deliveries`` row) on
final failure, for alerts and for case transitions paging the team that owns the case."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from services.alerting.cases import escalation, open_case, transition
from services.alerting.delivery import CaseNotifier, WebhookDispatcher
from services.alerting.rules import Sla, Webhook
from services.alerting.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    build_request,
    deliver,
    verify,
)
from services.alerting.worker import RulesFile
from services.core.broker import LocalBroker, free_port
from services.core.events import Alert, CaseEvent, utc_now
from services.core.kafka import create_topics
from services.core.settings import Settings
from tests.conftest import run
from tests.pipeline_harness import read_topic, store_and_producer

SECRET = "s3cr3t-签名"
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
ALERT = Alert(alert_id="a-1", dedupe_key="neg:delivery", rule_id="neg", rule_type="threshold",
              severity="critical", status="firing", touchpoint="delivery", channel=None,
              stage=None, topic=None, metric="negative_share", operator=">", threshold=0.4,
              value=0.8, baseline=None, volume=30, window_start=NOW, window_end=NOW,
              fired_at=NOW, resolved_at=None, emitted_at=NOW, team="ops", owner="王五",
              notify=["ops"], open_case=False, event_ids=[], latest_received_at=NOW,
              message="delivery: negative_share 0.800 > 0.4")


class Receiver:
    """A real HTTP server that records requests and answers from a scripted list of statuses
    (the last one repeats), with an optional JSON body."""

    def __init__(self, statuses: list[int], body: dict | None = None) -> None:
        self.statuses = statuses
        self.body = body or {}
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                data = self.rfile.read(int(self.headers["content-length"]))
                receiver.requests.append((self.path, dict(self.headers), data))
                index = min(len(receiver.requests), len(receiver.statuses)) - 1
                payload = json.dumps(receiver.body).encode()
                self.send_response(receiver.statuses[index])
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", SECRET)
    return "TEST_WEBHOOK_SECRET"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver([200]) as running:
        yield running


def send(hook: Webhook, attempts: int = 4):  # noqa: ANN201
    async def main():  # noqa: ANN202
        async with httpx.AsyncClient(timeout=2) as client:
            return await deliver(client, hook, ALERT, max_attempts=attempts, backoff_s=0.01)
    return run(main())


def test_generic_posts_the_alert_signed(receiver: Receiver, secret_env: str) -> None:
    outcome = send(Webhook(url=receiver.url, secret_env=secret_env))
    assert outcome.delivered and outcome.attempts == 1
    _, headers, body = receiver.requests[0]
    assert json.loads(body) == json.loads(ALERT.to_bytes())
    assert verify(SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    assert not verify("wrong", headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    assert not verify(SECRET, headers[TIMESTAMP_HEADER], body + b" ", headers[SIGNATURE_HEADER])


def test_unsigned_without_a_secret(receiver: Receiver) -> None:
    assert send(Webhook(url=receiver.url)).delivered
    assert SIGNATURE_HEADER not in receiver.requests[0][1]


def test_retries_with_backoff_until_the_receiver_recovers() -> None:
    with Receiver([503, 500, 429, 200]) as flaky:
        outcome = send(Webhook(url=flaky.url), attempts=5)
    assert outcome.delivered and outcome.attempts == 4 and len(flaky.requests) == 4


def test_gives_up_after_the_last_attempt() -> None:
    with Receiver([500]) as broken:
        outcome = send(Webhook(url=broken.url), attempts=3)
    assert not outcome.delivered and outcome.attempts == 3 and len(broken.requests) == 3
    assert outcome.status_code == 500 and "HTTP 500" in outcome.error


def test_a_rejected_request_is_not_retried() -> None:
    with Receiver([400]) as strict:
        outcome = send(Webhook(url=strict.url), attempts=5)
    assert not outcome.delivered and len(strict.requests) == 1


def test_unreachable_receiver_is_retried_then_dead() -> None:
    outcome = send(Webhook(url=f"http://127.0.0.1:{free_port()}/hook"), attempts=2)
    assert not outcome.delivered and outcome.attempts == 2 and "ConnectError" in outcome.error


def test_dingtalk_markdown_with_its_own_signature(secret_env: str) -> None:
    with Receiver([200], {"errcode": 0, "errmsg": "ok"}) as robot:
        assert send(Webhook(url=robot.url + "?access_token=t", format="dingtalk",
                            secret_env=secret_env)).delivered
    path, headers, body = robot.requests[0]
    query = parse_qs(urlsplit(path).query)
    timestamp = query["timestamp"][0]
    expected = base64.b64encode(hmac.new(SECRET.encode(), f"{timestamp}\n{SECRET}".encode(),
                                         hashlib.sha256).digest()).decode()
    assert query["sign"] == [expected] and query["access_token"] == ["t"]
    message = json.loads(body)
    assert message["msgtype"] == "markdown" and "delivery" in message["markdown"]["text"]
    assert verify(SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])


def test_robot_error_codes_count_as_failures() -> None:
    with Receiver([200], {"errcode": 310000, "errmsg": "sign not match"}) as robot:
        outcome = send(Webhook(url=robot.url, format="dingtalk"), attempts=2)
    assert not outcome.delivered and "310000" in outcome.error


def test_feishu_and_wecom_formats(secret_env: str) -> None:
    feishu = build_request(Webhook(url="http://x/f", format="feishu", secret_env=secret_env),
                           ALERT, now=1_700_000_000)
    body = json.loads(feishu.body)
    key = f"{body['timestamp']}\n{SECRET}".encode()
    assert body["sign"] == base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    assert body["msg_type"] == "text" and "王五" in body["content"]["text"]
    wecom = json.loads(build_request(Webhook(url="http://x/w", format="wecom"), ALERT).body)
    assert wecom["msgtype"] == "markdown" and "negative_share" in wecom["markdown"]["content"]


def test_dispatcher_records_outcomes_and_dead_letters(
        broker: LocalBroker, store_url: str, settings: Settings, tmp_path: Path,
        secret_env: str) -> None:
    """Through the alerts topic: one webhook delivers, one fails for good and is
    dead-lettered (topic record with the alert bytes + an ``alert_deliveries`` row)."""
    create_topics(settings, broker.bootstrap)
    with Receiver([200]) as good, Receiver([503]) as bad:
        rules_path = tmp_path / "rules.yaml"
        rules_path.write_text(
            "rules:\n  - {id: neg, type: event, match: {segments: [VIP]}, "
            "route: {notify: [good, bad]}}\nwebhooks:\n"
            f"  good: {{url: '{good.url}', secret_env: {secret_env}}}\n"
            f"  bad: {{url: '{bad.url}', format: wecom, statuses: [firing]}}\n")
        settings = settings.model_copy(update={"webhook_max_attempts": 3,
                                               "webhook_backoff_s": 0.01})
        alert = ALERT.model_copy(update={"notify": ["good", "bad"]})
        resolved = alert.model_copy(update={"status": "resolved", "resolved_at": NOW})

        async def main() -> tuple[list, list]:
            async with store_and_producer(store_url, broker.bootstrap) as (store, producer):
                await producer.send_many(settings.topic("alerts"),
                                         [(b"k", alert.to_bytes()), (b"k", resolved.to_bytes())])
                records = await _consume(broker.bootstrap, settings.topic("alerts"), 2)
                async with httpx.AsyncClient(timeout=2) as client:
                    dispatcher = WebhookDispatcher(settings, store, producer,
                                                   RulesFile(rules_path), client)
                    await dispatcher.handle(records)
                rows = await store.query("SELECT webhook, status, outcome, attempts, http_status "
                                         "FROM alert_deliveries FINAL ORDER BY webhook, status")
                letters = read_topic(broker.bootstrap, settings.topic("deadletter"))
                return rows, letters

        rows, letters = run(main())
    assert [(r["webhook"], r["status"], r["outcome"], r["attempts"], r["http_status"])
            for r in rows] == [("bad", "firing", "dead_letter", 3, 503),
                               ("good", "firing", "delivered", 1, 200),
                               ("good", "resolved", "delivered", 1, 200)]
    assert len(good.requests) == 2 and len(bad.requests) == 3
    assert len(letters) == 1
    letter = letters[0][1]
    assert letter["stage"] == "alerting" and "webhook bad failed after 3 attempts" in letter["reason"]
    assert base64.b64decode(letter["original_base64"]) == alert.to_bytes()


async def _consume(bootstrap: str, topic: str, count: int) -> list:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        records: list = []
        while len(records) < count:
            batches = await consumer.getmany(timeout_ms=1000)
            records += [r for part in batches.values() for r in part]
        return records
    finally:
        await consumer.stop()


# --- case transitions: the team owning the case is paged ---------------------------------------

def case_events(start: datetime = NOW, alert_id: str = "a-1") -> list[CaseEvent]:
    """A case an alert opened (team ops-l1), escalated twice by its SLA, then acknowledged."""
    sla = Sla(ack_minutes=10, resolve_hours=2, escalation=["ops-l2", "ops-lead"])
    opened = open_case(ALERT.model_copy(update={"team": "ops-l1", "rule_id": "neg",
                                                "alert_id": alert_id}), sla, start)
    first = escalation(opened, sla, start + timedelta(minutes=10))
    second = escalation(first, sla, start + timedelta(minutes=20))
    acked = transition(second, "acknowledged", "李四", start + timedelta(minutes=21))
    return [opened, first, second, acked]


def test_case_messages_in_every_format(secret_env: str) -> None:
    escalated = case_events()[1]
    generic = build_request(Webhook(url="http://x/g", secret_env=secret_env), escalated)
    assert json.loads(generic.body) == json.loads(escalated.to_bytes())
    assert json.loads(generic.body)["schema"] == "case.v1"
    assert verify(SECRET, generic.headers[TIMESTAMP_HEADER], generic.body,
                  generic.headers[SIGNATURE_HEADER])
    texts = {
        "dingtalk": lambda b: b["markdown"]["text"], "wecom": lambda b: b["markdown"]["content"],
        "feishu": lambda b: b["content"]["text"]}
    for format_, text in texts.items():
        body = json.loads(build_request(Webhook(url="http://x/r", format=format_),
                                        escalated).body)
        message = text(body)
        assert "案件升级 escalated" in message and "ops-l2" in message, format_
        assert "acknowledge SLA missed; escalated to level 1" in message
        assert "ack due: 2026-11-23 10:20 UTC" in message and escalated.case_id in message
    dingtalk = json.loads(build_request(Webhook(url="http://x/d", format="dingtalk"),
                                        escalated).body)
    assert dingtalk["markdown"]["title"] == "[escalated] case neg delivery"


def test_case_notifier_pages_the_team_owning_the_case(
        broker: LocalBroker, store_url: str, settings: Settings, tmp_path: Path,
        secret_env: str) -> None:
    """Through the cases topic: the opened case pages its team except where the alert already
    went; each escalation pages the next level (signed, retried); a level whose webhook keeps
    failing is dead-lettered (topic record + ``case_deliveries`` row); an acknowledgement pages
    nobody by default, and neither does last month's escalation of another case."""
    create_topics(settings, broker.bootstrap)
    events = case_events(utc_now() - timedelta(minutes=21))
    stale = case_events(utc_now() - timedelta(days=30), alert_id="a-old")[1]
    with Receiver([200]) as room, Receiver([200]) as l1, Receiver([503, 200]) as l2, \
            Receiver([500]) as lead:
        rules_path = tmp_path / "rules.yaml"
        rules_path.write_text(
            "rules:\n  - {id: neg, type: event, match: {segments: [VIP]}, "
            "route: {team: ops-l1, notify: [room], open_case: true}}\n"
            "webhooks:\n"
            f"  room: {{url: '{room.url}'}}\n"
            f"  l1: {{url: '{l1.url}', format: dingtalk}}\n"
            f"  l2: {{url: '{l2.url}', secret_env: {secret_env}}}\n"
            f"  lead: {{url: '{lead.url}', format: feishu}}\n"
            "sla:\n  critical: {ack_minutes: 10, resolve_hours: 2, escalation: [ops-l2, ops-lead]}\n"
            "teams:\n  ops-l1: {notify: [room, l1]}\n  ops-l2: {notify: [l2]}\n"
            "  ops-lead: {notify: [lead]}\n")
        settings = settings.model_copy(update={"webhook_max_attempts": 3,
                                               "webhook_backoff_s": 0.01,
                                               "case_page_max_age_s": 3600})

        async def main() -> tuple[list, list]:
            async with store_and_producer(store_url, broker.bootstrap) as (store, producer):
                await producer.send_many(settings.topic("cases"), [
                    (e.case_id.encode(), e.to_bytes()) for e in [stale, *events]])
                records = await _consume(broker.bootstrap, settings.topic("cases"),
                                         len(events) + 1)
                async with httpx.AsyncClient(timeout=2) as client:
                    notifier = CaseNotifier(settings, store, producer, RulesFile(rules_path),
                                            client)
                    await notifier.handle(records)
                rows = await store.query(
                    "SELECT event_id, seq, action, team, webhook, outcome, attempts, "
                    "http_status FROM case_deliveries FINAL ORDER BY seq, webhook")
                letters = read_topic(broker.bootstrap, settings.topic("deadletter"))
                return rows, letters

        rows, letters = run(main())
    assert {r["event_id"] for r in rows} == {e.event_id for e in events[:3]}
    assert [(r["seq"], r["action"], r["team"], r["webhook"], r["outcome"], r["attempts"],
             r["http_status"]) for r in rows] == [
        (1, "opened", "ops-l1", "l1", "delivered", 1, 200),
        (2, "escalated", "ops-l2", "l2", "delivered", 2, 200),
        (3, "escalated", "ops-lead", "lead", "dead_letter", 3, 500)]
    assert not room.requests, "the room already got the firing alert"
    assert "新案件" in json.loads(l1.requests[0][2])["markdown"]["text"]
    assert len(l2.requests) == 2
    for _, headers, body in l2.requests:
        assert verify(SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
        assert json.loads(body) == json.loads(events[1].to_bytes())
    assert len(lead.requests) == 3
    [(_, letter)] = letters
    assert letter["stage"] == "alerting" and letter["topic"] == settings.topic("cases")
    assert "webhook lead failed after 3 attempts" in letter["reason"]
    assert base64.b64decode(letter["original_base64"]) == events[2].to_bytes()


def test_logs_never_show_the_robot_token_in_the_url() -> None:
    from structlog.testing import capture_logs

    with Receiver([500]) as robot, capture_logs() as logs:
        outcome = send(Webhook(url=robot.url + "?access_token=TOKEN-123"), attempts=3)
    assert not outcome.delivered and len(logs) == 2
    assert all(entry["url"] == robot.url + "?access_token=***" for entry in logs)
    assert "TOKEN-123" not in repr(logs) and "TOKEN-123" not in outcome.error
