"""``voc alerts tail`` and ``voc cases tail``: follow the alerts or cases topic as JSON lines.

Ops teams pipe alerts into ``jq``, a pager or their own tooling; this is the shell way in that
works with every broker the services work with, including the local one that librdkafka tools
(kcat, confluent-kafka) cannot fully use (docs/cli.md has the measured client table).

The tail reads without a consumer group: it assigns every partition itself and commits
nothing, so any number of people can follow the same topic without taking partitions from
the services or from each other.

"From the latest" has to be measured, not asked for: the local tansu broker answers
ListOffsets(latest) with an offset inside the last record batch, so ``seek_to_end`` alone
would replay part of that batch as if it were new. Every Fetch response carries the
partition's real high watermark, so the tail seeks to the end, fetches once, and starts each
partition at the high watermark that fetch reported. On a real Kafka cluster both answers
agree and the extra fetch costs one round trip.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import stat
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO, Any

import click
import structlog

log = structlog.get_logger("voc.tail")

ALERT_STATUSES = ("firing", "resolved")
CASE_STATUSES = ("open", "acknowledged", "in_progress", "resolved", "closed")
SEVERITIES = ("info", "warning", "critical")

POLL_MS = 500
END_PROBE_TIMEOUT_S = 30.0


class Stop:
    """Set by SIGINT or SIGTERM; the loop checks it between polls (at most ``POLL_MS`` apart),
    so the consumer is closed in an orderly way instead of being torn down mid-request."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: object) -> None:
        self.requested = True
        # A second Ctrl-C must still get out of a hung broker call.
        signal.signal(signum, signal.SIG_DFL if signum == signal.SIGTERM
                      else signal.default_int_handler)


@dataclass(frozen=True)
class Match:
    """Which records to print; an empty set lets every value through."""

    severities: frozenset[str] = frozenset()
    touchpoints: frozenset[str] = frozenset()
    rules: frozenset[str] = frozenset()
    statuses: frozenset[str] = frozenset()

    def __call__(self, record: Any) -> bool:
        return all(not wanted or value in wanted for wanted, value in (
            (self.severities, record.severity), (self.touchpoints, record.touchpoint),
            (self.rules, record.rule_id), (self.statuses, record.status)))


def reader_gone(fd: int) -> bool:
    """Whether ``fd`` is a pipe whose reader has closed it (``| head`` is done).

    A follower on a quiet topic writes nothing for a long time, so it would only notice the
    broken pipe at the next record; polling the pipe for POLLERR lets it stop right away.
    """
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return True
    if not stat.S_ISFIFO(mode):
        return False
    poller = select.poll()
    poller.register(fd, 0)  # no events asked for: POLLERR/POLLHUP are reported regardless
    return any(events & (select.POLLERR | select.POLLHUP | select.POLLNVAL)
               for _, events in poller.poll(0))


def _true_ends(consumer: Any, partitions: list[Any], stop: Stop) -> dict[Any, int]:
    """The log end of each partition, as the high watermark of a Fetch response reports it.

    Records fetched on the way are dropped: they lie before the end, which is the point.
    """
    consumer.seek_to_end(*partitions)
    ends: dict[Any, int] = {}
    deadline = time.monotonic() + END_PROBE_TIMEOUT_S
    while len(ends) < len(partitions) and not stop.requested:
        if time.monotonic() > deadline:
            missing = sorted(tp.partition for tp in partitions if tp not in ends)
            raise click.ClickException(
                f"the broker reported no log end for partitions {missing} of "
                f"{partitions[0].topic} within {END_PROBE_TIMEOUT_S:.0f} s; is it overloaded?")
        consumer.poll(timeout_ms=POLL_MS)
        for tp in partitions:
            highwater = consumer.highwater(tp)
            if highwater is not None and tp not in ends:
                ends[tp] = highwater
    return ends


def _partitions(consumer: Any, topic: str, stop: Stop) -> list[Any]:
    """Every partition of ``topic``, waiting (with one notice) until the topic exists."""
    from kafka import TopicPartition

    noticed = False
    while not stop.requested:
        # Listing all topics never creates one; asking for one missing topic's metadata would
        # make a broker with auto.create.topics.enable (Kafka's default) create it, with the
        # broker's default partitions, before `voc topics create` could.
        numbers = consumer.partitions_for_topic(topic) if topic in consumer.topics() else None
        if numbers:
            return [TopicPartition(topic, p) for p in sorted(numbers)]
        if not noticed:
            log.warning("topic does not exist yet, waiting for it", topic=topic,
                        advice="start the pipeline (voc up) or check VOC_TOPIC_PREFIX")
            noticed = True
        _sleep(1.0, stop)
    return []


def _sleep(seconds: float, stop: Stop) -> None:
    deadline = time.monotonic() + seconds
    while not stop.requested and time.monotonic() < deadline:
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))


def follow(bootstrap: str, topic: str, parse: Callable[[bytes], Any], match: Match,
           out: IO[bytes], *, from_beginning: bool, follow_on: bool, limit: int | None,
           stop: Stop) -> int:
    """Write each matching record of ``topic`` to ``out`` as one JSON line; returns how many.

    Ends on ``stop``, after ``limit`` records, at the end of the topic when not
    ``follow_on``, or when the reader of ``out`` went away (``BrokenPipeError`` escapes, for
    the caller to end quietly).
    """
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    from services.core.kafka import MAX_MESSAGE_BYTES

    # kafka-python 3 waits 30 s for a first broker by default: too long to tell a person at a
    # shell that nothing listens. (Version 2 has no such setting and gives up within seconds.)
    patience = ({"bootstrap_timeout_ms": 10000}
                if "bootstrap_timeout_ms" in KafkaConsumer.DEFAULT_CONFIG else {})
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap.split(","), client_id="voc-tail", group_id=None,
            enable_auto_commit=False, max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
            fetch_max_bytes=max(MAX_MESSAGE_BYTES, 52428800), **patience)
    except KafkaError as exc:  # kafka-python 2 says NoBrokersAvailable, 3 a bootstrap timeout
        raise click.ClickException(
            f"no Kafka broker answers at {bootstrap} ({exc}): start the pipeline (`voc up`, "
            "`make run`) or set VOC_KAFKA_BOOTSTRAP to your brokers") from exc
    printed = skipped = 0
    try:
        partitions = _partitions(consumer, topic, stop)
        if not partitions:
            return 0
        consumer.assign(partitions)
        ends = _true_ends(consumer, partitions, stop)
        if from_beginning:
            consumer.seek_to_beginning(*partitions)
        else:
            for tp, end in ends.items():
                consumer.seek(tp, end)
        log.info("following" if follow_on else "reading", topic=topic,
                 start="beginning" if from_beginning else "latest")
        fd = out.fileno()
        while not stop.requested:
            batches = consumer.poll(timeout_ms=POLL_MS)
            for records in batches.values():
                for record in records:
                    try:
                        value = parse(record.value)
                    except ValueError as exc:
                        skipped += 1
                        log.warning("skipped a record that is not a valid payload",
                                    topic=topic, partition=record.partition,
                                    offset=record.offset, reason=str(exc)[:300])
                        continue
                    if not match(value):
                        continue
                    out.write(value.to_bytes() + b"\n")
                    printed += 1
                    if limit is not None and printed >= limit:
                        out.flush()
                        return printed
            out.flush()
            if not follow_on and all(consumer.position(tp) >= end for tp, end in ends.items()):
                break
            if not batches and reader_gone(fd):
                raise BrokenPipeError(f"the reader of {topic}'s lines closed the pipe")
        return printed
    finally:
        if skipped:
            log.warning("records skipped", topic=topic, skipped=skipped)
        # Closing cuts a fetch or metadata request in flight, which kafka-python reports as an
        # error with a traceback; the tail is leaving on purpose, so that is not news.
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
        consumer.close(autocommit=False)


def _tail(kind: str, from_beginning: bool, no_follow: bool, limit: int | None,
          severity: Iterable[str], touchpoint: Iterable[str], rule: Iterable[str],
          status: Iterable[str]) -> None:
    from services.cli import _settings
    from services.core.events import Alert, CaseEvent

    settings = _settings()
    model = Alert if kind == "alerts" else CaseEvent
    stop = Stop()
    stop.install()
    match = Match(frozenset(severity), frozenset(touchpoint), frozenset(rule), frozenset(status))
    out = sys.stdout.buffer
    try:
        follow(settings.bootstrap, settings.topic(kind),
               lambda value: model.model_validate_json(value or b""), match, out,
               from_beginning=from_beginning, follow_on=not no_follow, limit=limit, stop=stop)
    except BrokenPipeError:
        # The reader has what it wanted (`| head`). Point stdout at /dev/null so the
        # interpreter's final flush does not report the same broken pipe again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


Command = Callable[..., None]


def _tail_options(statuses: tuple[str, ...]) -> Callable[[Command], Command]:
    def decorate(command: Command) -> Command:
        for option in reversed([
            click.option("--from-beginning", is_flag=True,
                         help="Start at the oldest record the topic keeps (default: only "
                              "new ones)."),
            click.option("--no-follow", is_flag=True,
                         help="Stop at the end of the topic instead of waiting for more."),
            click.option("-n", "--max", "limit", type=click.IntRange(min=1), default=None,
                         help="Stop after printing this many records."),
            click.option("--severity", multiple=True, type=click.Choice(SEVERITIES),
                         help="Only this severity (repeat for several)."),
            click.option("--touchpoint", multiple=True, help="Only this touchpoint (repeatable)."),
            click.option("--rule", multiple=True, help="Only this rule id (repeatable)."),
            click.option("--status", multiple=True, type=click.Choice(statuses),
                         help="Only this status (repeatable)."),
        ]):
            command = option(command)
        return command
    return decorate


@click.group()
def alerts() -> None:
    """Follow the alerts the pipeline raises."""


@alerts.command("tail")
@_tail_options(ALERT_STATUSES)
def alerts_tail(**options: Any) -> None:
    """Print alerts (alert.v3) from <prefix>.alerts as JSON lines, following new ones.

    Alerts written as alert.v2 (before explanations) are printed as alert.v3 without one.

    Reads VOC_KAFKA_BOOTSTRAP (default: `voc up`'s local broker) and VOC_TOPIC_PREFIX, like
    the services. Ctrl-C stops it; so does the reader closing the pipe (`| head`).

    \b
    voc alerts tail --severity critical | jq -r '.touchpoint + " " + .message'
    """
    _tail("alerts", **options)


@click.group()
def cases() -> None:
    """Follow the cases that alerts open."""


@cases.command("tail")
@_tail_options(CASE_STATUSES)
def cases_tail(**options: Any) -> None:
    """Print case transitions (case.v1) from <prefix>.cases as JSON lines, following new ones.

    Each line is one transition (opened, acknowledged, escalated, ...) with the whole case
    after it. Settings and stopping as for `voc alerts tail`.
    """
    _tail("cases", **options)
