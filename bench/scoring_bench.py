"""Scoring stage cost per batch: store, recompute all window levels, publish.

Feeds ``Scorer.handle`` batches of enriched events (4 touchpoints, 3 channels, 3 stages, 5
topics, ratings on half of them), an in-order stream over ``--minutes`` of event time (batch b
covers the b-th slice, so each batch touches a few base windows per touchpoint), on the real store
(chdb, or a ClickHouse server via ``--store``) and a real local broker, and prints events per
second and batch latency percentiles. A second pass re-delivers every batch, which is the
replay cost after a crash. The machine's cores are shared, so wall time moves with whatever else
runs; ``cpu_ms_per_event`` is the steadier figure: CPU of this process (the scorer, and chdb,
which runs inside it) plus its child processes (the local broker and, with ``--store
local-server``, the clickhouse-server).

    python bench/scoring_bench.py --batches 20 --batch-size 1000
    python bench/scoring_bench.py --store local-server   # starts a clickhouse-server here
    python bench/scoring_bench.py --store clickhouse://default@127.0.0.1:9000/bench
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from aiokafka import ConsumerRecord  # noqa: E402

from bench.common import percentile  # noqa: E402
from services.core.broker import LocalBroker  # noqa: E402
from services.core.events import (  # noqa: E402
    AspectSentiment,
    EnrichedFeedback,
    Ratings,
    Sentiment,
    TopicTag,
)
from services.core.kafka import Producer, create_topics  # noqa: E402
from services.core.local_clickhouse import LocalClickHouse  # noqa: E402
from services.core.migrations import migrate  # noqa: E402
from services.core.settings import load_settings  # noqa: E402
from services.core.store import open_store  # noqa: E402
from services.scoring.expectations import load_expectations  # noqa: E402
from services.scoring.worker import Scorer  # noqa: E402

TOPICS = ("logistics_delivery", "waiting_time", "service_attitude", "price_fees",
          "product_quality")


def make_batches(n_batches: int, size: int, minutes: int, seed: int) -> list[list[bytes]]:
    rng = random.Random(seed)
    start = datetime(2026, 11, 23, 10, tzinfo=UTC)
    batches = []
    for b in range(n_batches):
        batch = []
        for i in range(size):
            at = start + timedelta(seconds=(b + rng.random()) * minutes * 60 / n_batches)
            score = rng.uniform(-1, 1)
            label = "negative" if score <= -0.2 else "positive" if score >= 0.2 else "neutral"
            rated = rng.random() < 0.5
            event = EnrichedFeedback(
                event_id=f"b{b}-{i}", source="bench", channel=rng.choice(["app", "web", "call"]),
                touchpoint=rng.choice(["app_checkout", "delivery", "hotline", "store_pickup"]),
                text="配送很快", occurred_at=at, received_at=at,
                stage=rng.choice(["售前", "售中", "售后"]),
                ratings=Ratings(nps=rng.randint(0, 10) if rated else None,
                                csat=rng.randint(1, 5) if rated else None),
                sentiment=Sentiment(score=score, label=label, model="bench"),
                topics=[TopicTag(id=t, name=t, evidence=[(0, 1)],
                                 sentiment=AspectSentiment(score=score, label=label))
                        for t in rng.sample(TOPICS, rng.randint(0, 2))],
                intent="complaint" if label == "negative" else "praise", urgency=[],
                keywords=[], tokens=[], enriched_at=at)
            batch.append(event.to_bytes())
        batches.append(batch)
    return batches


def as_records(values: list[bytes]) -> list[ConsumerRecord]:
    return [ConsumerRecord(topic="bench", partition=0, offset=i, timestamp=0, timestamp_type=0,
                           key=None, value=v, checksum=None, serialized_key_size=0,
                           serialized_value_size=len(v), headers=())
            for i, v in enumerate(values)]


def cpu_seconds() -> float:
    """CPU time of this process and of its child processes still running (a local server)."""
    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path("/proc/self/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
    return total


async def bench(args: argparse.Namespace) -> dict:
    batches = make_batches(args.batches, args.batch_size, args.minutes, args.seed)
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        broker = stack.enter_context(LocalBroker(log_path=Path(tmp) / "b.log"))
        url = args.store or f"chdb://{tmp}/chdb"
        if args.store == "local-server":
            url = stack.enter_context(LocalClickHouse(Path(tmp) / "clickhouse")).url
        settings = load_settings(topic_prefix="bench", data_dir=Path(tmp))
        create_topics(settings, broker.bootstrap)
        store = await open_store(url)
        producer = Producer(broker.bootstrap, client_id="bench")
        await producer.start()
        try:
            await migrate(store)
            scorer = Scorer(settings, store, producer, load_expectations())
            result = {"store": store.backend, "batches": args.batches,
                      "batch_size": args.batch_size, "event_minutes": args.minutes}
            for name in ("first_delivery", "redelivery"):
                latencies = []
                cpu_before = cpu_seconds()
                for batch in batches:
                    began = time.perf_counter()
                    await scorer.handle(as_records(batch))
                    latencies.append(time.perf_counter() - began)
                cpu = cpu_seconds() - cpu_before
                events = len(batches) * args.batch_size
                result[name] = {
                    "events_per_s": round(events / sum(latencies)),
                    "cpu_ms_per_event": round(1000 * cpu / events, 3),
                    "events_per_cpu_s": round(events / cpu),
                    "batch_p50_s": round(percentile(latencies, 50) or 0.0, 4),
                    "batch_p95_s": round(percentile(latencies, 95) or 0.0, 4),
                    "batch_mean_s": round(statistics.mean(latencies), 4)}
            rows = await store.query("SELECT count() AS n FROM cem_scores FINAL")
            result["cem_score_rows"] = int(rows[0]["n"])
            return result
        finally:
            await producer.stop()
            await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--minutes", type=int, default=30, help="event-time span of the data")
    parser.add_argument("--store", default="", help="store URL, or local-server to start a "
                        "clickhouse-server (default: chdb in a temp dir)")
    parser.add_argument("--seed", type=int, default=7)
    print(json.dumps(asyncio.run(bench(parser.parse_args())), indent=2))


if __name__ == "__main__":
    main()
