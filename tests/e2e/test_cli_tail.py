"""``voc alerts tail`` / ``voc cases tail`` as a person runs them: a real ``voc`` process on the
real local broker, its stdout a pipe, stopped by Ctrl-C or by the reader going away."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from kafka import KafkaConsumer, TopicPartition

from services.cli_tail import Match, reader_gone
from services.core.broker import LocalBroker, free_port
from services.core.events import Alert, CaseEvent
from services.core.kafka import create_topics
from services.core.settings import Settings
from tests import factories
from tests.conftest import run
from tests.waiting import eventually_sync

VOC = str(Path(sys.executable).with_name("voc"))
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def alert(n: int, *, severity: str = "critical", touchpoint: str = "delivery",
          status: str = "firing", rule: str = "negative-share-high") -> Alert:
    return factories.alert(at=NOW, alert_id=f"a-{n}", dedupe_key=f"{rule}:{touchpoint}",
                           rule_id=rule, severity=severity, status=status, touchpoint=touchpoint,
                           resolved_at=NOW if status == "resolved" else None, team="cx-ops",
                           open_case=False, message=f"alert {n}")


def case(n: int, status: str) -> CaseEvent:
    return factories.case_event(at=NOW, event_id=f"ce-{n}", seq=n, status=status,
                                team="cx-ops")


def produce(bootstrap: str, topic: str, values: list[bytes], key: bytes = b"k") -> None:
    """The values in as few record batches as fit (one for a handful of alerts) on one
    partition, however busy the machine is: a producer's linger would split them when the
    event loop is slow."""
    async def go() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, client_id="test-tail",
                                    acks="all", enable_idempotence=False)
        await producer.start()
        try:
            partition = (await producer.partitions_for(topic)).pop()
            batch = producer.create_batch()
            for value in values:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    await (await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            await (await producer.send_batch(batch, topic, partition=partition))
        finally:
            await producer.stop()

    run(go())


def env_for(broker: LocalBroker, settings: Settings) -> dict[str, str]:
    return {**os.environ, "VOC_KAFKA_BOOTSTRAP": broker.bootstrap,
            "VOC_TOPIC_PREFIX": settings.topic_prefix}


def start_tail(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([VOC, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def wait_for_stderr(process: subprocess.Popen[bytes], text: str, timeout_s: float) -> str:
    """Stderr read until ``text`` shows up (the tail logs 'following' once it is positioned)."""
    seen = b""
    deadline = time.monotonic() + timeout_s
    while text.encode() not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"{text!r} not on stderr within {timeout_s}s: {seen.decode()[-2000:]}"
        ready, _, _ = select.select([process.stderr], [], [], left)
        if ready:
            chunk = os.read(process.stderr.fileno(), 65536)
            assert chunk, f"tail exited before {text!r}: {seen.decode()[-2000:]}"
            seen += chunk
    return seen.decode()


def stdout_lines(process: subprocess.Popen[bytes], count: int, timeout_s: float) -> list[dict]:
    buffer = b""
    deadline = time.monotonic() + timeout_s
    while buffer.count(b"\n") < count:
        left = deadline - time.monotonic()
        assert left > 0, f"only {len(buffer.splitlines())} of {count} lines within {timeout_s}s"
        ready, _, _ = select.select([process.stdout], [], [], left)
        if ready:
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                break
            buffer += chunk
    return [json.loads(line) for line in buffer.splitlines()]


def test_match_lets_through_only_the_asked_values() -> None:
    wanted = Match(severities=frozenset({"critical"}), touchpoints=frozenset({"delivery"}))
    assert wanted(alert(1))
    assert not wanted(alert(2, severity="warning"))
    assert not wanted(alert(3, touchpoint="hotline"))
    assert Match()(alert(4, severity="info", status="resolved"))
    assert not Match(statuses=frozenset({"resolved"}), rules=frozenset({"x"}))(
        alert(5, status="resolved"))


def test_reader_gone_sees_a_closed_pipe_and_ignores_files(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    try:
        assert not reader_gone(write_end)
        os.close(read_end)
        assert reader_gone(write_end)
    finally:
        os.close(write_end)
    with open(tmp_path / "out", "wb") as regular:
        assert not reader_gone(regular.fileno())


def test_from_latest_prints_only_new_alerts_although_the_broker_misreports_the_end(
        broker: LocalBroker, settings: Settings) -> None:
    create_topics(settings, broker.bootstrap)
    topic = settings.topic("alerts")
    produce(broker.bootstrap, topic, [alert(n).to_bytes() for n in range(5)])
    # The premise: this broker's ListOffsets(latest) lands inside the batch just written, so a
    # tail that trusted it would print old alerts as new.
    probe = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    try:
        ends = probe.end_offsets([TopicPartition(topic, p)
                                  for p in probe.partitions_for_topic(topic)])
        assert 0 < sum(ends.values()) < 5, ends
    finally:
        probe.close()
    tail = start_tail(env_for(broker, settings), "alerts", "tail")
    try:
        wait_for_stderr(tail, "following", 60)
        produce(broker.bootstrap, topic, [alert(n).to_bytes() for n in (100, 101)])
        lines = stdout_lines(tail, 2, 30)
        assert [line["alert_id"] for line in lines] == ["a-100", "a-101"]
        tail.send_signal(signal.SIGINT)
        assert tail.wait(timeout=15) == 0
        assert b"Traceback" not in tail.stderr.read()
    finally:
        if tail.poll() is None:
            tail.kill()


def test_from_beginning_filters_skips_poison_and_stops_at_the_end(
        broker: LocalBroker, settings: Settings) -> None:
    create_topics(settings, broker.bootstrap)
    topic = settings.topic("alerts")
    produce(broker.bootstrap, topic, [
        alert(1).to_bytes(), alert(2, severity="warning").to_bytes(), b"{not json",
        alert(3, touchpoint="hotline").to_bytes(), alert(4, status="resolved").to_bytes(),
        json.dumps({"schema": "alert.v2", "alert_id": "half"}).encode(),
        alert(5, rule="other").to_bytes()])
    done = subprocess.run(
        [VOC, "alerts", "tail", "--from-beginning", "--no-follow", "--severity", "critical",
         "--touchpoint", "delivery", "--status", "firing", "--status", "resolved"],
        env=env_for(broker, settings), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["alert_id"] for line in lines] == ["a-1", "a-4", "a-5"]
    assert all(Alert.model_validate(line) for line in lines)
    assert done.stderr.decode().count("not a valid payload") == 2
    only_rule = subprocess.run(
        [VOC, "alerts", "tail", "--from-beginning", "--no-follow", "--rule", "other", "-n", "1"],
        env=env_for(broker, settings), capture_output=True, timeout=60)
    assert [json.loads(line)["alert_id"] for line in only_rule.stdout.splitlines()] == ["a-5"]


def test_cases_tail_filters_by_status(broker: LocalBroker, settings: Settings) -> None:
    create_topics(settings, broker.bootstrap)
    produce(broker.bootstrap, settings.topic("cases"),
            [case(1, "open").to_bytes(), case(2, "acknowledged").to_bytes(),
             case(3, "resolved").to_bytes()])
    done = subprocess.run([VOC, "cases", "tail", "--from-beginning", "--no-follow",
                           "--status", "acknowledged"],
                          env=env_for(broker, settings), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert [json.loads(line)["seq"] for line in done.stdout.splitlines()] == [2]


def test_reader_closing_the_pipe_ends_the_tail_quietly(broker: LocalBroker,
                                                       settings: Settings) -> None:
    create_topics(settings, broker.bootstrap)
    produce(broker.bootstrap, settings.topic("alerts"),
            [alert(n).to_bytes() for n in range(200)])
    # Like `voc alerts tail --from-beginning | head -n 1`, with the shell's own pipe.
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"'{VOC}' alerts tail --from-beginning | head -n 1"],
        env=env_for(broker, settings), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout)["alert_id"] == "a-0"
    assert b"Traceback" not in done.stderr and b"BrokenPipe" not in done.stderr
    # A follower on a quiet topic notices the closed pipe without waiting for a record.
    tail = start_tail(env_for(broker, settings), "alerts", "tail")
    try:
        wait_for_stderr(tail, "following", 60)
        tail.stdout.close()
        assert tail.wait(timeout=15) == 0
        assert b"Traceback" not in tail.stderr.read()
    finally:
        if tail.poll() is None:
            tail.kill()


def test_a_missing_topic_is_waited_for_not_created(broker: LocalBroker,
                                                    settings: Settings) -> None:
    tail = start_tail(env_for(broker, settings), "alerts", "tail", "-n", "1")
    try:
        wait_for_stderr(tail, "topic does not exist yet", 60)
        probe = KafkaConsumer(bootstrap_servers=broker.bootstrap)
        try:
            assert settings.topic("alerts") not in probe.topics()
        finally:
            probe.close()
        create_topics(settings, broker.bootstrap)
        wait_for_stderr(tail, "following", 60)
        produce(broker.bootstrap, settings.topic("alerts"), [alert(7).to_bytes()])
        assert [line["alert_id"] for line in stdout_lines(tail, 1, 30)] == ["a-7"]
        assert tail.wait(timeout=15) == 0
    finally:
        if tail.poll() is None:
            tail.kill()


def test_no_broker_is_a_clear_error(settings: Settings) -> None:
    env = {**os.environ, "VOC_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}
    done = subprocess.run([VOC, "alerts", "tail"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    assert "no Kafka broker answers" in done.stderr and "VOC_KAFKA_BOOTSTRAP" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_tail_sees_the_alert_the_demo_feed_fires_on_voc_up(tmp_path: Path) -> None:
    """The way ops would do it: `make run` in one terminal, `voc alerts tail` in another with
    no settings at all, finding the local broker on its fixed port."""
    env = {**os.environ, "VOC_DATA_DIR": str(tmp_path / "data"), "VOC_DEMO_RATE": "10",
           "VOC_HTTP_PORT": str(free_port()), "VOC_LOCAL_BROKER_PORT": str(free_port())}
    for name in ("VOC_KAFKA_BOOTSTRAP", "VOC_CLICKHOUSE_URL", "VOC_TOPIC_PREFIX"):
        env.pop(name, None)
    log = tmp_path / "up.log"
    with open(log, "w") as out:
        up = subprocess.Popen([VOC, "up"], env=env, stdout=out, stderr=subprocess.STDOUT)
    tail = None
    try:
        def running() -> bool:
            assert up.poll() is None, log.read_text()[-3000:]
            return "Tingjian (听见) is running" in log.read_text()
        eventually_sync(running, 90, lambda: f"voc up to run:\n{log.read_text()[-3000:]}")
        assert f"Kafka:      127.0.0.1:{env['VOC_LOCAL_BROKER_PORT']}" in log.read_text()
        tail = start_tail(env, "alerts", "tail", "--touchpoint", "delivery",
                              "--rule", "negative-share-high", "-n", "1")
        wait_for_stderr(tail, "following", 60)
        (line,) = stdout_lines(tail, 1, 90)
        assert tail.wait(timeout=15) == 0
        assert (line["touchpoint"], line["rule_id"], line["status"]) == (
            "delivery", "negative-share-high", "firing")
        assert line["alert_id"] in log.read_text()  # the very alert `voc up` logged
    finally:
        for process in (tail, up):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGINT)
        up.wait(timeout=40)
        if tail is not None and tail.poll() is None:
            tail.kill()
