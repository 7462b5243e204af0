"""Webhook delivery against a real local HTTP receiver: signatures, robot formats, retries with
backoff, and dead letters (topic record + ``alert_deliveries`` row) on final failure."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from services.alerting.delivery import WebhookDispatcher
from services.alerting.rules import Webhook
from services.alerting.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    build_request,
    deliver,
    verify,
)
from services.alerting.worker import RulesFile
from services.core.broker import LocalBroker, free_port
from services.core.events import Alert
from services.core.kafka import Producer, create_topics
from services.core.migrations import migrate
from services.core.settings import Settings
from services.core.store import open_store
from tests.conftest import run
from tests.pipeline_harness import read_topic

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
            store = await open_store(store_url)
            await migrate(store)
            producer = Producer(broker.bootstrap, client_id="test")
            await producer.start()
            try:
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
            finally:
                await producer.stop()
                await store.close()

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
