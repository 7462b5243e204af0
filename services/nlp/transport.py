"""faust's aiokafka transport without its two largest per-message costs.

Profiling the NLP worker showed faust itself, not the analysis, spending most of the CPU per
event. Two costs are per message and avoidable without touching faust's consumer-group,
stream, acknowledgement or offset-commit logic:

* The consumer hands each fetched message to the streams through
  ``wait_first(callback(message), suspend_flow.wait())``, which wraps both and the service's
  stopped/crashed events in four tasks and an ``asyncio.wait``, about 0.1 ms per message,
  although the callback (a put on the stream's queue) nearly always finishes without
  suspending. :class:`Consumer` runs the callback eagerly, as Python 3.12's eager tasks do:
  when it completes without suspending nothing else is created; when it suspends (a full
  stream buffer, flow control during a rebalance) it continues inside faust's own
  ``wait_first``, so a rebalance still interrupts it exactly as before.
* ``Topic.send`` builds a faust message, a future and an aiokafka future per record.
  :meth:`Producer.send_many` appends a whole batch to one aiokafka batch per partition, with
  the same partitioner, keys and values, so the records on the wire are unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Coroutine, Generator, Iterable, Sequence
from typing import Any, ClassVar

from aiokafka.structs import RecordMetadata
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import ConsumerT, ProducerT
from mode.services import WaitArgT, WaitResults
from mode.utils.times import Seconds


class _Resume:
    """Awaitable that drives a coroutine already stepped once by ``send(None)``.

    The first step's yield (the future the coroutine waits on) is handed to whichever task
    awaits this, and everything the task sends or throws afterwards is forwarded, so the
    coroutine cannot tell it was started outside that task.
    """

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self._coro = coro
        self._yielded = yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value = self._coro, self._yielded
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # noqa: BLE001 - forwarded to the coroutine as is
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _resumed(coro: Coroutine[Any, Any, Any], yielded: Any) -> Any:
    return await _Resume(coro, yielded)


def _close(waitables: Iterable[WaitArgT]) -> None:
    """Close coroutines that will never be awaited (Python warns about them otherwise)."""
    for waitable in waitables:
        if isinstance(waitable, Coroutine):
            waitable.close()


class Consumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer whose ``wait_first`` starts its first coroutine eagerly."""

    async def wait_first(self, *coros: WaitArgT, timeout: Seconds | None = None) -> WaitResults:
        first = coros[0] if coros else None
        if not isinstance(first, Coroutine) or self.should_stop:
            return await super().wait_first(*coros, timeout=timeout)
        try:
            yielded = first.send(None)
        except StopIteration as done:
            _close(coros[1:])
            return WaitResults([first], [done.value], False)
        except BaseException:
            _close(coros[1:])
            raise
        return await super().wait_first(_resumed(first, yielded), *coros[1:], timeout=timeout)


class Producer(faust_aiokafka.Producer):
    """faust's aiokafka producer with a batch send."""

    async def send_many(self, topic: str, records: Iterable[tuple[bytes | None, bytes]]
                        ) -> list[Awaitable[RecordMetadata]]:
        """Queue ``(key, value)`` records for ``topic``; returns one future per produce batch.

        Each future resolves when the broker acknowledged its batch (the producer's acks
        setting applies), so awaiting them all is what awaiting every single send was.
        Records go to the partition faust's partitioner picks for their key, in order.
        """
        producer = self._ensure_producer()
        await producer.partitions_for(topic)  # the partitioner needs the topic's metadata
        partition_of: dict[bytes | None, int] = {}
        by_partition: dict[int, list[tuple[bytes | None, bytes]]] = {}
        for key, value in records:
            partition = partition_of.get(key)
            if partition is None:
                partition = partition_of[key] = self.key_partition(topic, key).partition
            by_partition.setdefault(partition, []).append((key, value))
        futures: list[Awaitable[RecordMetadata]] = []
        for partition, items in by_partition.items():
            futures.extend(await self._send_partition(producer, topic, partition, items))
        return futures

    @staticmethod
    async def _send_partition(producer: Any, topic: str, partition: int,
                              items: Sequence[tuple[bytes | None, bytes]]) -> list[Awaitable[Any]]:
        futures = []
        batch = producer.create_batch()
        for key, value in items:
            if batch.append(key=key, value=value, timestamp=None) is None:
                # Full (the first record always fits, however large): send it, start anew.
                futures.append(await producer.send_batch(batch, topic, partition=partition))
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
        futures.append(await producer.send_batch(batch, topic, partition=partition))
        return futures


class Transport(faust_aiokafka.Transport):
    """The aiokafka transport with the consumer and producer above."""

    Consumer: ClassVar[type[ConsumerT]] = Consumer
    Producer: ClassVar[type[ProducerT]] = Producer


def install(app: Any) -> None:
    """Make ``app`` use :class:`Transport`; call before its topics or agents are declared."""
    app.transport = Transport(app.conf.broker_consumer, app)
