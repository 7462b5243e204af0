"""The failure policy (services/core/failures.py) as pure logic: how errors are classified, and
what the policy does with a batch whose handler fails (handlers here are our own test
doubles; tests/e2e/test_fault_injection.py runs the real stages on the real broker and stores)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from aiokafka import errors as kafka_errors
from chdb import ChdbError
from clickhouse_driver import errors as clickhouse_errors

from services.core.failures import FailurePolicy, Kind, Stopped, classify
from services.core.ops import READINESS, LabelBudget
from services.core.store import StoreError
from tests.conftest import run
from tests.waiting import eventually


def wrapped(cause: BaseException) -> StoreError:
    """A store error as Store raises it: the driver's error as its cause."""
    try:
        raise StoreError(f"chdb failed on 'INSERT INTO feedback ...': {cause}") from cause
    except StoreError as exc:
        return exc


@pytest.mark.parametrize(("error", "kind"), [
    (ConnectionRefusedError("refused"), Kind.TRANSIENT),
    (TimeoutError(), Kind.TRANSIENT),
    (kafka_errors.KafkaTimeoutError(), Kind.TRANSIENT),
    (kafka_errors.KafkaConnectionError("no broker"), Kind.TRANSIENT),
    (kafka_errors.NotLeaderForPartitionError(), Kind.TRANSIENT),
    (kafka_errors.TopicAuthorizationFailedError(), Kind.TRANSIENT),
    (kafka_errors.MessageSizeTooLargeError(), Kind.PERMANENT),
    (wrapped(clickhouse_errors.NetworkError("connection reset")), Kind.TRANSIENT),
    (wrapped(clickhouse_errors.ServerException("Table is in readonly mode", code=242)),
     Kind.TRANSIENT),
    (wrapped(clickhouse_errors.ServerException("Could not find enough connections to "
                                               "up-to-date replicas. Got: 0, needed: 1",
                                               code=369)), Kind.TRANSIENT),
    (wrapped(clickhouse_errors.ServerException("Too many parts (300). Merges are processing "
                                               "significantly slower than inserts", code=252)),
     Kind.TRANSIENT),
    (wrapped(clickhouse_errors.ServerException("Too many partitions for single INSERT block "
                                               "(more than 100)", code=252)), Kind.PERMANENT),
    (wrapped(ChdbError("Code: 242. DB::Exception: Table is in readonly mode. "
                       "(TABLE_IS_READ_ONLY)")), Kind.TRANSIENT),
    (wrapped(ChdbError("Code: 252. DB::Exception: Too many partitions for single INSERT block "
                       "(more than 100). (TOO_MANY_PARTS)")), Kind.PERMANENT),
    (wrapped(ChdbError("Code: 60. DB::Exception: Table voc.feedback_ids does not exist. "
                       "(UNKNOWN_TABLE)")), Kind.TRANSIENT),
    (wrapped(ChdbError("Code: 41. DB::Exception: Cannot parse datetime. "
                       "(CANNOT_PARSE_DATETIME)")), Kind.PERMANENT),
    (wrapped(ChdbError("Code: 48. DB::Exception: Not implemented. (NOT_IMPLEMENTED)")),
     Kind.UNKNOWN),
    (OverflowError("date value out of range"), Kind.PERMANENT),
    (ValueError("year 10000 is out of range"), Kind.PERMANENT),
    (TypeError("Integer exceeds 64-bit range"), Kind.PERMANENT),
    (RuntimeError("something else"), Kind.UNKNOWN),
    (RecursionError("maximum recursion depth exceeded"), Kind.UNKNOWN),
])
def test_errors_are_classified_by_what_they_are_about(error: BaseException, kind: Kind) -> None:
    failure = classify(error)
    assert failure.kind is kind
    assert type(error).__name__ in failure.reason


def test_customer_text_in_a_message_cannot_pose_as_an_error_code() -> None:
    """A statement or a validation error may quote the input: only the start of a chdb
    message, or the driver's code attribute, counts."""
    assert classify(ValueError("bad text 'Code: 210. DB::Exception: network'")).kind is \
        Kind.PERMANENT
    assert classify(wrapped(ChdbError("Code: 62. DB::Exception: Syntax error near "
                                      "'Code: 210.' (SYNTAX_ERROR)"))).kind is Kind.UNKNOWN


@dataclass
class Rig:
    """A handler that fails on some items, and what the policy did with each."""

    poison: set[int] = field(default_factory=set)
    transient_failures: int = 0
    unknown_failures: int = 0
    calls: int = 0
    handled: list[int] = field(default_factory=list)
    dead: list[tuple[int, str, bool]] = field(default_factory=list)
    refuse_dead_letters: int = 0

    async def handle(self, items: list[int]) -> None:
        self.calls += 1
        if self.transient_failures:
            self.transient_failures -= 1
            raise ConnectionResetError("store connection reset")
        if self.unknown_failures:
            self.unknown_failures -= 1
            raise RuntimeError("flaky")
        bad = self.poison & set(items)
        if bad:
            raise OverflowError(f"item {min(bad)} overflows")
        self.handled.extend(items)

    async def dead_letter(self, item: int, reason: str, keep_original: bool) -> None:
        if self.refuse_dead_letters:
            self.refuse_dead_letters -= 1
            raise kafka_errors.MessageSizeTooLargeError()
        self.dead.append((item, reason, keep_original))

    def policy(self, max_retries: int = 2, stop: asyncio.Event | None = None
               ) -> FailurePolicy[int]:
        return FailurePolicy("test-policy", self.handle, self.dead_letter,
                             max_retries=max_retries, backoff_s=0.001, stop=stop)


def test_one_poison_record_is_isolated_and_every_good_one_handled_once() -> None:
    rig = Rig(poison={37})
    run(rig.policy().run(list(range(100))))
    assert [item for item, _, _ in rig.dead] == [37]
    assert sorted(rig.handled) == [i for i in range(100) if i != 37], "each good one exactly once"
    assert "OverflowError: item 37 overflows" in rig.dead[0][1]
    assert rig.dead[0][1].startswith("test-policy: permanent error")
    # Bisection, not one call per record: about 2 log2(100) calls.
    assert rig.calls <= 2 * 7 + 1


def test_several_poison_records_among_good_ones() -> None:
    rig = Rig(poison={0, 5, 6, 99})
    run(rig.policy().run(list(range(100))))
    assert sorted(item for item, _, _ in rig.dead) == [0, 5, 6, 99]
    assert sorted(rig.handled) == [i for i in range(100) if i not in {0, 5, 6, 99}]


def test_a_single_record_that_always_fails_does_not_block() -> None:
    rig = Rig(poison={1})
    run(rig.policy().run([1]))
    assert [item for item, _, _ in rig.dead] == [1] and rig.handled == []
    assert rig.calls == 1, "a permanent error is not retried"


def test_unknown_errors_get_bounded_retries_then_isolation() -> None:
    flaky = Rig(unknown_failures=2)
    run(flaky.policy(max_retries=2).run([1, 2, 3]))
    assert flaky.handled == [1, 2, 3] and flaky.dead == [] and flaky.calls == 3

    broken = Rig(unknown_failures=10**6)
    run(broken.policy(max_retries=2).run([1]))
    assert broken.calls == 3, "one try and two retries"
    assert [(item, keep) for item, _, keep in broken.dead] == [(1, True)]
    assert "unknown error: RuntimeError: flaky" in broken.dead[0][1]


def test_transient_errors_are_retried_until_they_pass_and_nothing_is_dead_lettered() -> None:
    rig = Rig(transient_failures=5)
    seen: list[tuple[bool, dict]] = []

    async def scenario() -> None:
        original = rig.handle

        async def watching(items: list[int]) -> None:
            seen.append((READINESS.report()[1].get("test-policy", True), READINESS.reasons()))
            await original(items)
        rig.handle = watching  # type: ignore[method-assign]
        await rig.policy(max_retries=0).run([1, 2, 3])

    run(scenario())
    assert rig.handled == [1, 2, 3] and rig.dead == []
    assert rig.calls == 6, "more retries than max_retries: transient errors are not bounded"
    ready, reasons = seen[-1]
    assert ready is False and "ConnectionResetError" in reasons["test-policy"]
    assert READINESS.report()[1]["test-policy"] is True, "ready again once the batch passed"
    READINESS.forget("test-policy")


def test_a_stop_during_transient_retries_leaves_the_batch_unhandled() -> None:
    rig = Rig(transient_failures=10**6)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(rig.policy(stop=stop).run([1, 2]))
        await eventually(lambda: rig.calls > 0, 5, "the first transient failure",
                         interval_s=0.01)
        stop.set()
        with pytest.raises(Stopped):
            await asyncio.wait_for(task, 5)

    run(scenario())
    assert rig.handled == [] and rig.dead == []
    READINESS.forget("test-policy")


def test_a_refused_dead_letter_is_written_without_the_original() -> None:
    rig = Rig(poison={2}, refuse_dead_letters=1)
    run(rig.policy().run([1, 2, 3]))
    assert [(item, keep) for item, _, keep in rig.dead] == [(2, False)]
    assert "original not kept: MessageSizeTooLargeError" in rig.dead[0][1]
    assert sorted(rig.handled) == [1, 3]


def test_a_dead_letter_refused_twice_is_logged_and_the_stream_goes_on() -> None:
    rig = Rig(poison={2}, refuse_dead_letters=2)
    run(rig.policy().run([1, 2, 3]))
    assert rig.dead == [] and sorted(rig.handled) == [1, 3]


def test_label_budget_keeps_the_first_values_and_folds_the_rest() -> None:
    budget = LabelBudget(3)
    assert [budget(v) for v in ("a", "b", "a", "c", "d", "e", "b")] == \
        ["a", "b", "a", "c", "other", "other", "b"]
