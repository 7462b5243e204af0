"""Open-loop senders: each event has a due time, and every latency is measured from it.

A sender fills ``due_abs`` (absolute due time) and ``ack`` (broker acknowledged) per event, so a
pipeline that stalls cannot hide the stall by slowing the senders down.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from bench.e2e.plan import Plan, iso
from services.core.events import RawFeedback, stable_event_id


@dataclass
class Sent:
    due_abs: list[float]
    ack: list[float]
    occurred: list[float]
    first_send: float = math.inf
    last_ack: float = 0.0
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def schedule(sent: Sent, plan: Plan) -> float:
    """Fill in each event's due (and event) time of a fixed-rate plan; returns t0."""
    t0 = time.time() + 0.5
    for i in range(plan.n):
        sent.due_abs[i] = sent.occurred[i] = t0 + plan.due[i]
    return t0


async def due_ticks(sent: Sent, t0: float,
                    tick_s: float) -> AsyncIterator[tuple[int, int, float]]:
    """Every ``tick_s`` from ``t0``, the events due by then as ``range(lo, hi)`` with the time
    it woke, until every event was yielded once."""
    n = len(sent.due_abs)
    lo = tick = 0
    while lo < n:
        tick += 1
        await asyncio.sleep(max(0.0, t0 + tick * tick_s - time.time()))
        now = time.time()
        hi = lo
        while hi < n and sent.due_abs[hi] <= now:
            hi += 1
        yield lo, hi, now
        lo = hi


def _http_item(plan: Plan, i: int, occurred: float) -> dict[str, Any]:
    return {"source": plan.source, "external_id": str(i), "channel": "app",
            "touchpoint": plan.touchpoint[i], "text": plan.text[i], "occurred_at": iso(occurred)}


async def send_http(api: str, plan: Plan, tick_s: float, batch_max: int, inflight: int) -> Sent:
    """Fixed rate: every ``tick_s`` POST everything that is due. All-out: ``inflight``
    concurrent POSTs of ``batch_max`` events, each event due when its POST starts."""
    n = plan.n
    sent = Sent([math.nan] * n, [math.nan] * n, [math.nan] * n)
    gate = asyncio.Semaphore(inflight)
    limits = httpx.Limits(max_connections=inflight, max_keepalive_connections=inflight)
    async with httpx.AsyncClient(base_url=api, timeout=120, limits=limits) as client:

        async def post(lo: int, hi: int) -> None:
            async with gate:
                now = time.time()
                sent.first_send = min(sent.first_send, now)
                if plan.rate is None:
                    for i in range(lo, hi):
                        sent.due_abs[i] = sent.occurred[i] = now
                body = json.dumps({"events": [_http_item(plan, i, sent.occurred[i])
                                              for i in range(lo, hi)]}, ensure_ascii=False)
                for _attempt in range(10):
                    try:
                        response = await client.post(
                            "/v1/feedback/batch", content=body.encode(),
                            headers={"content-type": "application/json"})
                    except httpx.HTTPError as exc:
                        sent.errors[type(exc).__name__] += 1
                        await asyncio.sleep(0.5)
                        continue
                    if response.status_code == 202:
                        done = time.time()
                        sent.last_ack = max(sent.last_ack, done)
                        for i in range(lo, hi):
                            sent.ack[i] = done
                        return
                    sent.errors[f"http {response.status_code}"] += 1
                    if response.status_code != 503:
                        return
                    await asyncio.sleep(0.5)

        tasks = []
        if plan.rate is None:
            tasks = [asyncio.create_task(post(lo, min(lo + batch_max, n)))
                     for lo in range(0, n, batch_max)]
        else:
            async for lo, hi, _ in due_ticks(sent, schedule(sent, plan), tick_s):
                for start in range(lo, hi, batch_max):
                    tasks.append(asyncio.create_task(post(start, min(start + batch_max, hi))))
        await asyncio.gather(*tasks)
    return sent


async def send_kafka(bootstrap: str, topic: str, plan: Plan, tick_s: float) -> Sent:
    """A direct producer to the raw topic (acks=all, keyed by touchpoint, as
    docs/architecture.md asks of producers)."""
    n = plan.n
    sent = Sent([math.nan] * n, [math.nan] * n, [math.nan] * n)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                enable_idempotence=False, max_batch_size=256 * 1024,
                                request_timeout_ms=60000)
    await producer.start()
    futures = []

    def acked(i: int, future: asyncio.Future[Any]) -> None:
        if future.exception() is None:
            now = time.time()
            sent.ack[i] = now
            sent.last_ack = max(sent.last_ack, now)
        else:
            sent.errors[type(future.exception()).__name__] += 1

    async def produce(i: int, now: float) -> None:
        event = RawFeedback(event_id=stable_event_id(plan.source, str(i)), source=plan.source,
                            external_id=str(i), channel="app", touchpoint=plan.touchpoint[i],
                            text=plan.text[i],
                            occurred_at=datetime.fromtimestamp(sent.occurred[i], UTC),
                            received_at=datetime.fromtimestamp(now, UTC))
        future = await producer.send(topic, value=event.to_bytes(),
                                     key=plan.touchpoint[i].encode())
        future.add_done_callback(lambda f, i=i: acked(i, f))
        futures.append(future)

    try:
        if plan.rate is None:
            sent.first_send = time.time()
            for i in range(n):
                now = time.time()
                sent.due_abs[i] = sent.occurred[i] = now
                await produce(i, now)
        else:
            sent.first_send = schedule(sent, plan)
            async for lo, hi, now in due_ticks(sent, sent.first_send, tick_s):
                for i in range(lo, hi):
                    await produce(i, now)
        await asyncio.gather(*futures, return_exceptions=True)
    finally:
        await producer.stop()
    return sent
