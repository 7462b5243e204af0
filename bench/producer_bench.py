"""CPU per message of the shared producer's ``send_many`` (one record batch per partition)
against one aiokafka ``send`` per message, on a local tansu broker.

Every stage writes through services/core/kafka.py's ``Producer``; docs/architecture.md ("One
stream framework per stage, one way to write") quotes these figures. Calls of ``--call-size``
messages of ``--value-bytes`` each, modes interleaved ``--repeat`` times (shared cores), CPU
time of this process (``time.process_time``).

    python bench/producer_bench.py --messages 8000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO_ROOT, machine, write_json  # noqa: E402
from services.core.broker import LocalBroker  # noqa: E402
from services.core.kafka import Producer, create_topics  # noqa: E402
from services.core.settings import load_settings  # noqa: E402

MODES = ("batches", "per-message")


async def one_send_each(producer: Producer, topic: str,
                        messages: Sequence[tuple[bytes | None, bytes]]) -> None:
    futures = [await producer._producer.send(topic, value=value, key=key)
               for key, value in messages]
    await asyncio.gather(*futures)


async def cpu_us_per_message(bootstrap: str, topic: str, mode: str,
                             messages: list[tuple[bytes | None, bytes]], call: int) -> float:
    producer = Producer(bootstrap, client_id="producer-bench")
    await producer.start()
    try:
        await producer.send_many(topic, messages[:50])  # metadata and connections first
        start = time.process_time()
        for i in range(0, len(messages), call):
            if mode == "batches":
                await producer.send_many(topic, messages[i:i + call])
            else:
                await one_send_each(producer, topic, messages[i:i + call])
        return 1e6 * (time.process_time() - start) / len(messages)
    finally:
        await producer.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=8000)
    parser.add_argument("--value-bytes", type=int, default=2500, help="an enriched event's size")
    parser.add_argument("--call-size", type=int, default=256, help="messages per send_many")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "build/bench/producer.json")
    args = parser.parse_args(argv)
    messages: list[tuple[bytes | None, bytes]] = [
        (f"tp{i % 8}".encode(), b"x" * args.value_bytes) for i in range(args.messages)]
    runs: dict[str, list[float]] = {mode: [] for mode in MODES}
    with LocalBroker() as broker:
        settings = load_settings(topic_prefix="pb", topic_partitions=3,
                                 kafka_bootstrap=broker.bootstrap)
        create_topics(settings, broker.bootstrap)
        topic = settings.topic("feedback.enriched")
        for _ in range(args.repeat):
            for mode in MODES:
                runs[mode].append(asyncio.run(cpu_us_per_message(
                    broker.bootstrap, topic, mode, messages, args.call_size)))
    table: dict[str, Any] = {mode: {"runs_us": [round(x, 1) for x in values],
                                    "median_us_per_message": round(statistics.median(values), 1)}
                             for mode, values in runs.items()}
    for mode, row in table.items():
        print(f"{mode:12} {row}")
    write_json(args.json, {"machine": machine(), "messages": args.messages,
                           "value_bytes": args.value_bytes, "call_size": args.call_size,
                           "modes": table})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
