"""The one failure policy of every consumer: what an exception means, and what happens next.

Every consumer (the scoring, alerting, cases and webhook batch consumers, and the NLP agent)
hands its batches to a :class:`FailurePolicy`, so they all fail the same way:

- **Transient** errors are about a dependency, not a record: the broker or the store is
  unreachable or timed out, a ClickHouse replica is read-only or has too many parts, a table
  or a permission is missing. The same batch is retried with exponential backoff for as long
  as it takes, nothing is committed, and the consumer reports not-ready with the error as its
  reason. Dead-lettering instead would empty the stream into the dead-letter topic during an
  outage (and writing a dead letter needs the broker too).
- **Permanent** errors are about the data: a value the code cannot handle (``ValueError``,
  ``OverflowError`` of a date beyond year 9999, an integer beyond 64 bits, ...), a record the
  broker refuses as too large, a ClickHouse parse or range error, too many partitions in one
  insert. Retrying the same batch cannot help, so the batch is split in two and each half
  handled on its own, recursively (bisection), until the records that fail are alone; each of
  those is dead-lettered with the stage and the reason, and every other record is handled.
  One poison record among n costs about 2 log2(n) extra handler calls.
- **Unknown** errors (anything else) get ``VOC_CONSUMER_MAX_RETRIES`` retries of the whole
  batch, since they may pass, and are then isolated like permanent ones.

Handlers must therefore be safe to call again on the same records and on any part of a batch:
every stage's sinks are idempotent by id and its in-memory state changes only after the
output it depends on was acknowledged, so a retried or split batch neither loses nor doubles
anything. Dead letters are at-least-once too (a split may write one again); their key,
``topic:partition:offset``, identifies the record.
"""

from __future__ import annotations

import asyncio
import re
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

import structlog
from aiokafka import errors as kafka_errors
from clickhouse_driver import errors as clickhouse_errors

from services.core.ops import BATCH_OUTCOMES, BATCH_RETRIES, READINESS

log = structlog.get_logger(__name__)

T = TypeVar("T")

MAX_BACKOFF_S = 10.0


class Kind(StrEnum):
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Failure:
    """A classified exception: its kind and a one-line reason naming it."""

    kind: Kind
    reason: str


# ClickHouse error codes (src/Common/ErrorCodes.cpp) that say the server or the cluster
# cannot take work now, or is missing something an operator must fix; no record can succeed
# then, so these are retried rather than isolated.
_CLICKHOUSE_TRANSIENT = frozenset({
    16,   # NO_SUCH_COLUMN_IN_TABLE (a migration not applied yet)
    47,   # UNKNOWN_IDENTIFIER (likewise)
    60,   # UNKNOWN_TABLE
    81,   # UNKNOWN_DATABASE
    164,  # READONLY (the user or profile is read-only)
    192,  # UNKNOWN_USER
    202,  # TOO_MANY_SIMULTANEOUS_QUERIES
    203,  # NO_FREE_CONNECTION
    209,  # SOCKET_TIMEOUT
    210,  # NETWORK_ERROR
    225,  # NO_ZOOKEEPER
    236,  # ABORTED
    242,  # TABLE_IS_READ_ONLY (a replica lost its Keeper session)
    252,  # TOO_MANY_PARTS (merges behind inserts; but see _TOO_MANY_PARTITIONS)
    279,  # ALL_CONNECTION_TRIES_FAILED
    319,  # UNKNOWN_STATUS_OF_INSERT
    369,  # ALL_REPLICAS_ARE_STALE (fresh reads: the replica holding a shard's rows is away)
    425,  # SYSTEM_ERROR
    497,  # ACCESS_DENIED
    516,  # AUTHENTICATION_FAILED
    999,  # KEEPER_EXCEPTION
    1000,  # POCO_EXCEPTION (network)
})
# Codes that say a value in the statement or the rows is wrong: the data, not the server.
_CLICKHOUSE_PERMANENT = frozenset({
    6, 26, 27, 32, 38, 41, 72,  # CANNOT_PARSE_* / ATTEMPT_TO_READ_AFTER_EOF
    53,   # TYPE_MISMATCH
    69,   # ARGUMENT_OUT_OF_BOUND
    70,   # CANNOT_CONVERT_TYPE
    117,  # INCORRECT_DATA
    131,  # TOO_LARGE_STRING_SIZE
    321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    407,  # DECIMAL_OVERFLOW
})
# Code 252 also means "one insert block spans more than max_partitions_per_insert_block
# partitions": a property of the batch, which splitting it fixes.
_TOO_MANY_PARTITIONS = "Too many partitions for single INSERT block"
_CODE = re.compile(r"Code: (\d{1,5})\.")

_KAFKA_TRANSIENT: tuple[type[BaseException], ...] = (
    kafka_errors.KafkaTimeoutError, kafka_errors.KafkaConnectionError,
    kafka_errors.KafkaUnavailableError, kafka_errors.NoBrokersAvailable,
    kafka_errors.BrokerNotAvailableError, kafka_errors.ReplicaNotAvailableError,
    kafka_errors.ProducerClosed, kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.ClusterAuthorizationFailedError, kafka_errors.AuthenticationFailedError,
    kafka_errors.SaslAuthenticationFailed,
)
_KAFKA_PERMANENT: tuple[type[BaseException], ...] = (
    kafka_errors.MessageSizeTooLargeError, kafka_errors.RecordTooLargeError,
    kafka_errors.RecordListTooLargeError, kafka_errors.InvalidTimestampError,
    kafka_errors.CorruptRecordException,
)
_NETWORK: tuple[type[BaseException], ...] = (
    ConnectionError, TimeoutError, socket.gaierror, EOFError,
    clickhouse_errors.NetworkError, clickhouse_errors.SocketTimeoutError,
)
_DATA: tuple[type[BaseException], ...] = (
    ValueError, TypeError, ArithmeticError, LookupError, UnicodeError,
    clickhouse_errors.TypeMismatchError, clickhouse_errors.TooLargeStringSize,
)


def _is_chdb_error(exc: BaseException) -> bool:
    """Whether ``exc`` is chdb's error. chdb is looked up, not imported: importing it maps about
    200 MiB into a process, and a stage on a ClickHouse server, which never imports it, can
    meet none of its errors."""
    chdb = sys.modules.get("chdb")
    return chdb is not None and isinstance(exc, chdb.ChdbError)


def _clickhouse_code(exc: BaseException) -> int | None:
    """The ClickHouse error code of a driver or chdb exception.

    Only the start of a chdb message is read: the rest may quote a statement, and so a
    customer's text, which must not be able to pose as an error code.
    """
    if isinstance(exc, clickhouse_errors.Error):
        return exc.code if isinstance(exc.code, int) else None
    if _is_chdb_error(exc):
        match = _CODE.match(str(exc))
        return int(match[1]) if match else None
    return None


def _one(exc: BaseException) -> Kind | None:
    """The kind one exception in a cause chain proves, if it proves one."""
    if isinstance(exc, kafka_errors.KafkaError):
        if isinstance(exc, _KAFKA_PERMANENT):
            return Kind.PERMANENT
        if exc.retriable or isinstance(exc, _KAFKA_TRANSIENT):
            return Kind.TRANSIENT
        return None
    if isinstance(exc, _NETWORK):
        return Kind.TRANSIENT
    code = _clickhouse_code(exc)
    if code is not None:
        if code == 252 and _TOO_MANY_PARTITIONS in str(exc):
            return Kind.PERMANENT
        if code in _CLICKHOUSE_TRANSIENT:
            return Kind.TRANSIENT
        if code in _CLICKHOUSE_PERMANENT:
            return Kind.PERMANENT
        return None
    if isinstance(exc, _DATA):
        return Kind.PERMANENT
    return None


def classify(exc: BaseException) -> Failure:
    """Transient, permanent or unknown, from the exception and the causes it wraps.

    Wrappers (``StoreError`` around a driver error, a faust error around an aiokafka one)
    carry the telling error as ``__cause__``; the outermost exception that proves a kind wins.
    """
    reason = f"{type(exc).__name__}: {exc}"[:1000]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        kind = _one(current)
        if kind is not None:
            return Failure(kind, reason)
        current = current.__cause__ or current.__context__
    return Failure(Kind.UNKNOWN, reason)


class Stopped(Exception):
    """The process is stopping: the batch in hand is left uncommitted, to be read again."""


Handle = Callable[[list[T]], Awaitable[None]]
DeadLetterSink = Callable[[T, str, bool], Awaitable[None]]
"""Writes one record's dead letter: (record, reason, keep the original bytes) -> acknowledged."""


class FailurePolicy(Generic[T]):
    """Runs a consumer's handler on batches under the policy in the module docstring.

    ``run`` returns once every record of the batch was handled or dead-lettered, so the caller
    may commit; it raises :class:`Stopped` (or lets cancellation through) when the process
    stops first, and then the caller must not commit.
    """

    def __init__(self, component: str, handle: Handle[T], dead_letter: DeadLetterSink[T], *,
                 max_retries: int, backoff_s: float, stop: asyncio.Event | None = None) -> None:
        self.component = component
        self._handle = handle
        self._dead_letter = dead_letter
        self._max_retries = max_retries
        self._backoff_s = backoff_s
        self._stop = stop

    async def run(self, items: Sequence[T]) -> None:
        failure = await self._attempt(list(items), self._max_retries)
        if failure is not None:
            await self._isolate(list(items), failure)

    async def _attempt(self, items: list[T], unknown_retries: int) -> Failure | None:
        """Handle ``items``; transient errors are retried until they pass, unknown ones
        ``unknown_retries`` times. Returns the failure left for isolation, or None."""
        delay = self._backoff_s
        while True:
            try:
                await self._handle(items)
            except Exception as exc:
                if self._stop is not None and self._stop.is_set():
                    raise Stopped(self.component) from exc
                failure = classify(exc)
                if failure.kind is Kind.PERMANENT or (failure.kind is Kind.UNKNOWN
                                                      and unknown_retries <= 0):
                    log.warning("records failed; isolating them", component=self.component,
                                records=len(items), kind=failure.kind.value,
                                error=failure.reason[:300])
                    return failure
                if failure.kind is Kind.UNKNOWN:
                    unknown_retries -= 1
                await self._wait(failure, delay, len(items))
                delay = min(delay * 2, MAX_BACKOFF_S)
            else:
                READINESS.set(self.component, True)
                BATCH_OUTCOMES.labels(self.component, "ok").inc()
                return None

    async def _wait(self, failure: Failure, delay: float, records: int) -> None:
        outcome = "transient_retry" if failure.kind is Kind.TRANSIENT else "unknown_retry"
        BATCH_OUTCOMES.labels(self.component, outcome).inc()
        BATCH_RETRIES.labels(self.component).inc()
        READINESS.set(self.component, False, f"{failure.kind.value} error, retrying: "
                                             f"{failure.reason}")
        log.warning("batch failed, retrying", component=self.component, records=records,
                    kind=failure.kind.value, error=failure.reason[:300], retry_in_s=delay)
        if self._stop is None:
            await asyncio.sleep(delay)
            return
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=delay)
        except TimeoutError:
            return
        raise Stopped(self.component)

    async def _isolate(self, items: list[T], failure: Failure) -> None:
        """Handle what can be handled of ``items`` and dead-letter the records that fail."""
        if len(items) == 1:
            await self._write_dead_letter(items[0], failure)
            return
        BATCH_OUTCOMES.labels(self.component, "split").inc()
        middle = len(items) // 2
        for half in (items[:middle], items[middle:]):
            left = await self._attempt(half, 0)
            if left is not None:
                await self._isolate(half, left)

    async def _write_dead_letter(self, item: T, failure: Failure) -> None:
        """The record's dead letter, retried while the broker is away; when the broker refuses
        it (too large even truncated), once more without the original bytes; when that is
        refused too, an error log names the record (the last way out: the stream goes on)."""
        reason = f"{self.component}: {failure.kind.value} error: {failure.reason}"
        keep_original = True
        delay = self._backoff_s
        while True:
            try:
                await self._dead_letter(item, reason, keep_original)
            except Exception as exc:
                if self._stop is not None and self._stop.is_set():
                    raise Stopped(self.component) from exc
                written = classify(exc)
                if written.kind is Kind.TRANSIENT:
                    await self._wait(written, delay, 1)
                    delay = min(delay * 2, MAX_BACKOFF_S)
                    continue
                if keep_original:
                    keep_original = False
                    reason = f"{reason} (original not kept: {written.reason})"
                    continue
                BATCH_OUTCOMES.labels(self.component, "unrecorded").inc()
                log.error("record could not be handled nor dead-lettered; skipped",
                          component=self.component, record=repr(item)[:300],
                          error=failure.reason[:300], dead_letter_error=written.reason[:300])
                return
            BATCH_OUTCOMES.labels(self.component, "dead_lettered").inc()
            READINESS.set(self.component, True)
            return
