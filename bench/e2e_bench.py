"""End-to-end figures: sustained events/s, latency percentiles, per-stage rates, CPU and memory.

The pipeline runs as deployed: a tansu broker, a clickhouse-server and one ``voc`` process per
service, all children of this script. Load is open-loop: event i of a fixed-rate run is due at
``t0 + i / rate`` and every latency is measured from that due time, so a pipeline (or a load
generator) that stalls cannot hide the stall by slowing the senders down (no coordinated
omission). Runs go through the public interfaces only: POST /v1/feedback/batch, the raw topic
(a direct aiokafka producer), the ``feedback`` table, and the ``scores`` and ``alerts`` topics.

Latency definitions (seconds from the event's due time):
- ingest:        the ``received_at`` the ingest API (or the direct producer) stamped;
- enriched row:  ``inserted_ms`` of the event's ``feedback`` row (the sink stamps it just before
                 the insert, so this is early by at most one insert, see the sink figures);
- score row:     receipt here of the first ``scores`` message for the event's window computed
                 after its row was inserted (scoring writes the score row before publishing it,
                 so this is late by at most one broker hop);
- alert:         receipt here of the alert for a burst touchpoint, measured from the due time of
                 the burst's breaching event (the first at which the stored labels satisfy the
                 negative-share rule).
An event never seen before the drain deadline counts as infinitely late.

    python bench/e2e_bench.py --rates 500,1000,2000 --duration 10 --allout-events 15000
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
from aiokafka import AIOKafkaProducer  # noqa: E402
from kafka import KafkaConsumer, TopicPartition  # noqa: E402

from bench.common import (  # noqa: E402
    REPO_ROOT,
    cpu_seconds,
    machine,
    peak_rss_mb,
    percentiles,
    reset_peak_rss,
    write_json,
)
from services.alerting.rules import load_rules  # noqa: E402
from services.core.broker import LocalBroker, die_with_parent, free_port, stop_child  # noqa: E402
from services.core.events import RawFeedback, stable_event_id  # noqa: E402
from services.core.local_clickhouse import LocalClickHouse  # noqa: E402
from services.core.store import Store, open_store  # noqa: E402

SERVICES = ("ingest", "nlp", "scoring", "alerting")
POSITIVE_SHARE = 0.85


# ---------------------------------------------------------------------------------------------
# Load plan


def load_texts(path: Path, limit: int, seed: int) -> tuple[list[str], list[str]]:
    """Positive and negative review texts (real length mix) from a labelled CSV."""
    positives: list[str] = []
    negatives: list[str] = []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            text = row["text"].strip()
            if text:
                (positives if row["label"] == "1" else negatives).append(text)
    rng = random.Random(seed)
    rng.shuffle(positives)
    rng.shuffle(negatives)
    if not positives or not negatives:
        raise SystemExit(f"{path}: need both labels (column `label` 1/0) to build the load")
    return positives[:limit], negatives[:limit]


@dataclass
class Plan:
    """One run: who sends what, and when each event is due (offset from t0, seconds)."""

    name: str
    path: str  # "http" or "kafka"
    rate: float | None  # None: all-out
    source: str
    touchpoint: list[str]
    text: list[str]
    due: list[float]
    bursts: dict[str, list[int]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.text)


def build_plan(name: str, path: str, rate: float | None, n: int, texts: tuple[list[str], list[str]],
               bursts: int, burst_len: int, seed: int, touchpoints: int = 8) -> Plan:
    """Mostly-positive traffic over ``touchpoints``, with ``bursts`` all-negative bursts of
    ``burst_len`` consecutive events on their own touchpoints, spread evenly over the run."""
    rng = random.Random(seed)
    positives, negatives = texts
    tps = [f"{name}.tp{j}" for j in range(touchpoints)]
    tp = [tps[i % touchpoints] for i in range(n)]
    text = [rng.choice(positives) if rng.random() < POSITIVE_SHARE else rng.choice(negatives)
            for _ in range(n)]
    plan = Plan(name, path, rate, f"bench.{name}", tp, text,
                [i / rate if rate else 0.0 for i in range(n)])
    bursts = min(bursts, n // (burst_len * 3))
    for k in range(bursts):
        start = int((k + 0.5) * n / bursts) - burst_len // 2
        alert_tp = f"{name}.alert{k}"
        plan.bursts[alert_tp] = list(range(start, start + burst_len))
        for i in plan.bursts[alert_tp]:
            tp[i] = alert_tp
            text[i] = negatives[(k * burst_len + i) % len(negatives)]
    return plan


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


# ---------------------------------------------------------------------------------------------
# Senders: they fill ``due_abs`` (absolute due time) and ``ack`` (broker acknowledged) per event


@dataclass
class Sent:
    due_abs: list[float]
    ack: list[float]
    occurred: list[float]
    first_send: float = math.inf
    last_ack: float = 0.0
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))


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
            t0 = time.time() + 0.5
            for i in range(n):
                sent.due_abs[i] = sent.occurred[i] = t0 + plan.due[i]
            lo = 0
            tick = 0
            while lo < n:
                tick += 1
                wake = t0 + tick * tick_s
                await asyncio.sleep(max(0.0, wake - time.time()))
                now = time.time()
                hi = lo
                while hi < n and sent.due_abs[hi] <= now:
                    hi += 1
                for start in range(lo, hi, batch_max):
                    tasks.append(asyncio.create_task(post(start, min(start + batch_max, hi))))
                lo = hi
        await asyncio.gather(*tasks)
    return sent


async def send_kafka(bootstrap: str, topic: str, plan: Plan, tick_s: float) -> Sent:
    """A direct producer to the raw topic (acks=all, keyed by touchpoint, as the README asks)."""
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
                            text=plan.text[i], occurred_at=datetime.fromtimestamp(
                                sent.occurred[i], UTC), received_at=datetime.fromtimestamp(now, UTC))
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
            t0 = time.time() + 0.5
            sent.first_send = t0
            for i in range(n):
                sent.due_abs[i] = sent.occurred[i] = t0 + plan.due[i]
            lo = 0
            tick = 0
            while lo < n:
                tick += 1
                await asyncio.sleep(max(0.0, t0 + tick * tick_s - time.time()))
                now = time.time()
                while lo < n and sent.due_abs[lo] <= now:
                    await produce(lo, now)
                    lo += 1
        await asyncio.gather(*futures, return_exceptions=True)
    finally:
        await producer.stop()
    return sent


# ---------------------------------------------------------------------------------------------
# Observation: a live reader of the scores and alerts topics, and the feedback table


class TopicTap:
    """Reads the scores and alerts topics from the start in a thread, stamping receipt time."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self.records: list[tuple[str, dict[str, Any], float]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                       auto_offset_reset="earliest", fetch_max_wait_ms=20)
        partitions = [TopicPartition(t, p) for t in topics
                      for p in self._consumer.partitions_for_topic(t) or []]
        if not partitions:
            raise RuntimeError(f"topics {topics} have no partitions: were they created?")
        self._consumer.assign(partitions)
        self._consumer.seek_to_beginning(*partitions)
        self._thread = threading.Thread(target=self._loop, name="topic-tap", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            polled = self._consumer.poll(timeout_ms=50)
            now = time.time()
            batch = [(r.topic, json.loads(r.value), now) for part in polled.values() for r in part]
            if batch:
                with self._lock:
                    self.records.extend(batch)

    def matching(self, topic_suffix: str, touchpoint_prefix: str) -> list[tuple[dict[str, Any], float]]:
        with self._lock:
            return [(value, at) for topic, value, at in self.records
                    if topic.endswith(topic_suffix)
                    and str(value.get("touchpoint", "")).startswith(touchpoint_prefix)]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._consumer.close()


async def wait_stored(store: Store, source: str, n: int, deadline: float) -> int:
    """Poll until ``n`` distinct events of ``source`` are stored or the deadline passes."""
    stored = 0
    while time.time() < deadline:
        rows = await store.query("SELECT uniqExact(external_id) AS n FROM feedback "
                                 "WHERE source = %(source)s", {"source": source})
        stored = int(rows[0]["n"])
        if stored >= n:
            return stored
        await asyncio.sleep(0.25)
    return stored


_ROWS_SQL = """
SELECT external_id, min(inserted_ms) AS inserted_ms,
       any(visitParamExtractString(enriched_json, 'received_at')) AS received_iso,
       any(visitParamExtractString(enriched_json, 'enriched_at')) AS enriched_iso,
       any(toUInt32(received_at)) AS received_s, any(toUInt32(enriched_at)) AS enriched_s,
       any(sentiment_label) AS label
FROM feedback WHERE source = %(source)s GROUP BY external_id
"""


def _epoch(iso_text: str, fallback: int) -> float:
    try:
        return datetime.fromisoformat(iso_text).timestamp()
    except ValueError:
        return float(fallback)


async def stored_rows(store: Store, source: str) -> dict[int, dict[str, Any]]:
    rows = await store.query(_ROWS_SQL, {"source": source})
    return {int(r["external_id"]): {
        "inserted": int(r["inserted_ms"]) / 1000,
        "received": _epoch(r["received_iso"], r["received_s"]),
        "enriched": _epoch(r["enriched_iso"], r["enriched_s"]),
        "label": r["label"]} for r in rows}


# ---------------------------------------------------------------------------------------------
# Figures of one run


def score_latencies(plan: Plan, sent: Sent, rows: dict[int, dict[str, Any]],
                    scores: list[tuple[dict[str, Any], float]]) -> list[float]:
    """Per event: receipt of the first score of its window computed after its row was stored."""
    by_window: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
    seconds = 60
    for value, received in scores:
        seconds = int(value["window_seconds"])
        start = int(datetime.fromisoformat(value["window_start"]).timestamp())
        computed = datetime.fromisoformat(value["computed_at"]).timestamp()
        by_window[(value["touchpoint"], start)].append((computed, received))
    for versions in by_window.values():
        versions.sort()
    out = []
    for i in range(plan.n):
        row = rows.get(i)
        if row is None:
            out.append(math.inf)
            continue
        epoch = int(sent.occurred[i])
        versions = by_window.get((plan.touchpoint[i], epoch - epoch % seconds), [])
        first = next((got for computed, got in versions
                      if computed * 1000 >= math.floor(row["inserted"] * 1000)), None)
        out.append(math.inf if first is None else first - sent.due_abs[i])
    return out


def alert_latencies(plan: Plan, sent: Sent, rows: dict[int, dict[str, Any]],
                    alerts: list[tuple[dict[str, Any], float]]) -> dict[str, Any]:
    """Alert receipt minus the due time of each burst's breaching event."""
    rule = next((r for r in load_rules(None).rules if r.metric == "negative_share"
                 and r.operator in (">", ">=")), None)
    if rule is None or not plan.bursts:
        return {"bursts": 0, **percentiles([])}
    first_alert: dict[str, float] = {}
    for value, received in alerts:
        first_alert.setdefault(value["touchpoint"], received)
    latencies = []
    mislabelled = 0
    for touchpoint, indices in plan.bursts.items():
        negatives = volume = 0
        breaching = None
        for i in indices:
            label = rows.get(i, {}).get("label")
            volume += 1
            negatives += label == "negative"
            mislabelled += label != "negative"
            share = negatives / volume
            if breaching is None and volume >= rule.min_volume and (
                    share > rule.threshold if rule.operator == ">" else share >= rule.threshold):
                breaching = i
        if breaching is None:
            continue
        got = first_alert.get(touchpoint)
        latencies.append(math.inf if got is None else got - sent.due_abs[breaching])
    return {"bursts": len(plan.bursts), "breaching_bursts": len(latencies),
            "burst_events_not_labelled_negative": mislabelled, "rule": rule.id,
            "latencies_s": [None if math.isinf(v) else round(v, 4) for v in latencies],
            **percentiles(latencies)}


def stage_rates(n: int, sent: Sent, rows: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Per stage: events/s between its first and last output, and how long it finished after
    the stage before it (a long tail means a queue built up in front of that stage). A stage
    that wrote everything at one instant (scoring fills batches for a second, so a small run
    can be one batch) is timed from the previous stage's first output instead."""
    def span(values: list[float]) -> tuple[float, float]:
        finite = [v for v in values if not math.isnan(v) and not math.isinf(v)]
        return (min(finite), max(finite)) if finite else (math.nan, math.nan)

    stages = {
        "ingest (broker ack)": (sent.first_send, span(sent.ack)[1]),
        "nlp (enriched_at)": span([r["enriched"] for r in rows.values()]),
        "scoring sink (inserted_ms)": span([r["inserted"] for r in rows.values()]),
    }
    out: dict[str, Any] = {}
    previous_start, previous_end = sent.first_send, span(sent.due_abs)[1]
    for name, (lo, hi) in stages.items():
        count = n if name.startswith("ingest") else len(rows)
        start = lo if hi > lo else previous_start
        out[name] = {
            "events_per_s": round(count / (hi - start), 1) if hi > start else None,
            "finished_after_previous_s": round(hi - previous_end, 3),
        }
        previous_start, previous_end = lo, hi
    return out


class Processes:
    """The pids this bench watches, for CPU time and peak RSS."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids

    def cpu(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def rss(self) -> dict[str, float]:
        return {name: round(peak_rss_mb(pid), 1) for name, pid in self.pids.items()}

    def reset_rss(self) -> bool:
        reset = [reset_peak_rss(pid) for pid in self.pids.values()]  # every one, not up to a failure
        return all(reset)


async def run_one(plan: Plan, *, api: str, bootstrap: str, raw_topic: str, store: Store,
                  tap: TopicTap, procs: Processes, args: argparse.Namespace) -> dict[str, Any]:
    """Send one plan, wait for it to drain, and compute its figures."""
    before = procs.cpu()
    wall = time.time()
    if plan.path == "http":
        sent = await send_http(api, plan, args.tick, args.http_batch if plan.rate else
                               args.allout_batch, args.inflight if plan.rate else
                               args.allout_inflight)
    else:
        sent = await send_kafka(bootstrap, raw_topic, plan, args.tick)
    last_due = max(v for v in sent.due_abs if not math.isnan(v))
    stored = await wait_stored(store, plan.source, plan.n, time.time() + args.drain_timeout)
    drained_at = time.time()
    # Score and alert messages follow the last insert within a batch; give them a moment.
    await asyncio.sleep(args.settle)
    deadline = time.time() + args.alert_wait
    while time.time() < deadline and len({v["touchpoint"] for v, _ in tap.matching(
            ".alerts", f"{plan.name}.alert")}) < len(plan.bursts):
        await asyncio.sleep(0.25)
    after = procs.cpu()
    rows = await stored_rows(store, plan.source)
    scores = tap.matching(".scores", f"{plan.name}.")
    alerts = tap.matching(".alerts", f"{plan.name}.")

    def lat(end_of: str) -> list[float]:
        return [rows[i][end_of] - sent.due_abs[i] if i in rows else math.inf
                for i in range(plan.n)]

    last_row = max((r["inserted"] for r in rows.values()), default=math.nan)
    sustained = len(rows) / (last_row - sent.first_send) if rows else 0.0
    cpu = {name: round(after[name] - before[name], 2) for name in after}
    result = {
        "name": plan.name, "path": plan.path,
        "offered_rate": plan.rate, "events": plan.n, "stored": stored,
        "send_s": round(sent.last_ack - sent.first_send, 3),
        "achieved_send_rate": round(plan.n / (last_due - sent.first_send), 1)
        if plan.rate is None and last_due > sent.first_send else plan.rate,
        "sustained_events_per_s": round(sustained, 1),
        "drain_after_last_due_s": round(drained_at - last_due, 3),
        "send_errors": dict(sent.errors),
        "latency_s": {
            "ingest_ack": percentiles([a - d if not math.isnan(a) else math.inf
                                       for a, d in zip(sent.ack, sent.due_abs)]),
            "to_enriched_row": percentiles(lat("inserted")),
            "to_score_row": percentiles(score_latencies(plan, sent, rows, scores)),
        },
        "latency_breakdown_p50_p99_s": _breakdown(plan, sent, rows),
        "alerts": alert_latencies(plan, sent, rows, alerts),
        "stages": stage_rates(plan.n, sent, rows),
        "cpu_s": cpu,
        "cpu_ms_per_event": {name: round(1000 * s / plan.n, 3) for name, s in cpu.items()},
        "wall_s": round(time.time() - wall, 1),
    }
    print(f"  {plan.name}: {plan.n} events, sustained {result['sustained_events_per_s']}/s, "
          f"score p99 {result['latency_s']['to_score_row']['p99']} s, "
          f"alert p95 {result['alerts']['p95']} s, cpu {cpu}", flush=True)
    return result


def _breakdown(plan: Plan, sent: Sent, rows: dict[int, dict[str, Any]]) -> dict[str, list[Any]]:
    """Where the time goes, per hop: due -> received -> enriched -> inserted."""
    hops: dict[str, list[float]] = {"due->received (client+ingest)": [],
                                    "received->enriched (broker+nlp)": [],
                                    "enriched->inserted (broker+scoring)": []}
    for i, row in rows.items():
        hops["due->received (client+ingest)"].append(row["received"] - sent.due_abs[i])
        hops["received->enriched (broker+nlp)"].append(row["enriched"] - row["received"])
        hops["enriched->inserted (broker+scoring)"].append(row["inserted"] - row["enriched"])
    return {name: [percentiles(v)["p50"], percentiles(v)["p99"]] for name, v in hops.items()}


# ---------------------------------------------------------------------------------------------
# The pipeline under test


def voc_command(*args: str) -> list[str]:
    """The ``voc`` CLI next to this interpreter (the venv's), or the same CLI via -c."""
    binary = Path(sys.executable).with_name("voc")
    if binary.exists():
        return [str(binary), *args]
    return [sys.executable, "-c", "from services.cli import main; main()", *args]


def _voc(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(voc_command(*args), env=env, stdout=out,
                                stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                preexec_fn=die_with_parent)


def _stop(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes.values():
        stop_child(process, timeout_s=30)


async def _healthy(api: str, timeout_s: float, processes: dict[str, subprocess.Popen[bytes]],
                   log: Path) -> None:
    deadline = time.time() + timeout_s
    async with httpx.AsyncClient(base_url=api) as client:
        while time.time() < deadline:
            dead = [name for name, p in processes.items() if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{dead} exited; see {log}:\n{log.read_text()[-3000:]}")
            try:
                if (await client.get("/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"ingest API {api} did not answer within {timeout_s}s; see {log}")


async def warm_up(api: str, store: Store | None, tap: TopicTap, texts: tuple[list[str], list[str]],
                  prefix: str, timeout_s: float) -> float:
    """Push 200 events and wait for them to be scored, so every consumer group has joined and
    every model is loaded before anything is measured. Returns seconds it took."""
    start = time.time()
    plan = build_plan(f"{prefix}warmup", "http", None, 200, texts, 0, 1, 0)
    await send_http(api, plan, 0.05, 100, 2)
    while time.time() - start < timeout_s:
        if store is not None:
            if await wait_stored(store, plan.source, plan.n, time.time() + 1) >= plan.n:
                return time.time() - start
        elif _scored_volume(tap, f"{prefix}warmup.") >= plan.n:
            return time.time() - start
        await asyncio.sleep(0.5)
    raise RuntimeError(f"warm-up events were not processed within {timeout_s}s: the pipeline "
                       "is not flowing; see the service logs")


def _scored_volume(tap: TopicTap, prefix: str) -> int:
    """Events stored for touchpoints with this prefix, from the newest score of each window."""
    newest: dict[tuple[str, str], int] = {}
    for value, _ in tap.matching(".scores", prefix):
        key = (value["touchpoint"], value["window_start"])
        newest[key] = max(newest.get(key, 0), int(value["volume"]))
    return sum(newest.values())


def env_for(bootstrap: str, prefix: str, port: int, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOC_")}
    env.update({"VOC_KAFKA_BOOTSTRAP": bootstrap, "VOC_TOPIC_PREFIX": prefix,
                "VOC_GROUP_PREFIX": prefix, "VOC_HTTP_PORT": str(port), "VOC_LOG_FORMAT": "json",
                "PYTHONPATH": str(REPO_ROOT), **extra})
    return env


async def separate_processes(args: argparse.Namespace, ch: LocalClickHouse,
                             texts: tuple[list[str], list[str]], work: Path) -> dict[str, Any]:
    """Every plan against one ``voc`` process per service on clickhouse-server.

    Each run gets a fresh broker, fresh topics and freshly started services (one shared
    ClickHouse database): the memory-only broker's cost grows with what it holds, and peak RSS
    should belong to one run, so runs must not inherit each other's state.
    """
    plans = []
    seed = 1
    for path in args.paths:
        for rate in args.rates:
            seed += 1
            plans.append(build_plan(f"{path}-{rate:g}", path, rate, int(rate * args.duration),
                                    texts, args.bursts, args.burst_len, seed))
    for path in args.paths:
        seed += 1
        plans.append(build_plan(f"{path}-allout", path, None, args.allout_events, texts,
                                args.bursts, args.burst_len, seed))
    store = await open_store(ch.url)
    try:
        runs = [await _isolated_run(plan, args, ch, store, texts, work) for plan in plans]
        version = await store.version()
    finally:
        await store.close()
    return {"mode": "one process per service, clickhouse-server",
            "clickhouse_server_version": version, "runs": runs}


async def _isolated_run(plan: Plan, args: argparse.Namespace, ch: LocalClickHouse, store: Store,
                        texts: tuple[list[str], list[str]], work: Path) -> dict[str, Any]:
    prefix = f"b{int(time.time())}{plan.name.replace('-', '')}"
    port = free_port()
    log = work / f"{plan.name}.log"
    with LocalBroker(log_path=work / f"{plan.name}.broker.log") as broker:
        env = env_for(broker.bootstrap, prefix, port, {
            "VOC_CLICKHOUSE_URL": ch.url, "VOC_DATA_DIR": str(work / plan.name)})
        for admin in (("topics", "create"), ("db", "migrate")):
            done = subprocess.run(voc_command(*admin), env=env, capture_output=True, text=True,
                                  timeout=120, cwd=REPO_ROOT)
            if done.returncode != 0:
                raise RuntimeError(f"voc {' '.join(admin)} failed: {done.stderr[-2000:]}")
        processes = {name: _voc(name, env=env, log=log) for name in SERVICES}
        tap = None
        try:
            api = f"http://127.0.0.1:{port}"
            await _healthy(api, 90, processes, log)
            tap = TopicTap(broker.bootstrap, [f"{prefix}.scores", f"{prefix}.alerts"])
            warm = await warm_up(api, store, tap, texts, f"{plan.name}.", args.warmup_timeout)
            procs = Processes({**{name: p.pid for name, p in processes.items()},
                               "clickhouse-server": ch._proc.pid,
                               "broker (tansu)": broker._proc.pid,
                               "load generator (this)": os.getpid()})
            rss_reset = procs.reset_rss()
            result = await run_one(plan, api=api, bootstrap=broker.bootstrap,
                                   raw_topic=f"{prefix}.feedback.raw", store=store, tap=tap,
                                   procs=procs, args=args)
            result["warm_up_s"] = round(warm, 1)
            result["peak_rss_mb"] = procs.rss()
            result["peak_rss_scope"] = ("this run (VmHWM reset after warm-up)" if rss_reset
                                        else "process lifetime (VmHWM reset refused)")
            return result
        finally:
            if tap is not None:
                tap.close()
            _stop(processes)


async def embedded(args: argparse.Namespace, texts: tuple[list[str], list[str]],
                   work: Path) -> dict[str, Any]:
    """``voc up --no-demo`` (one process, chdb) under the HTTP all-out run: its sustained rate
    (every event counted in a window score, which scoring publishes only after the insert) and
    its peak RSS. chdb locks its directory, so completion is read from the scores topic."""
    with LocalBroker(log_path=work / "embedded.broker.log") as broker:
        return await _embedded_on(broker, args, texts, work)


async def _embedded_on(broker: LocalBroker, args: argparse.Namespace,
                       texts: tuple[list[str], list[str]], work: Path) -> dict[str, Any]:
    prefix = f"emb{int(time.time())}"
    port = free_port()
    env = env_for(broker.bootstrap, prefix, port, {"VOC_DATA_DIR": str(work / "embedded")})
    log = work / "embedded.log"
    processes = {"voc up": _voc("up", "--no-demo", env=env, log=log)}
    tap = None
    try:
        api = f"http://127.0.0.1:{port}"
        await _healthy(api, 90, processes, log)
        tap = TopicTap(broker.bootstrap, [f"{prefix}.scores", f"{prefix}.alerts"])
        warm = await warm_up(api, None, tap, texts, "", args.warmup_timeout)
        pid = processes["voc up"].pid
        reset = reset_peak_rss(pid)
        plan = build_plan("embedded-http-allout", "http", None, args.allout_events, texts, 0, 1, 99)
        before = cpu_seconds(pid)
        sent = await send_http(api, plan, args.tick, args.allout_batch, args.allout_inflight)
        deadline = time.time() + args.drain_timeout
        while time.time() < deadline and _scored_volume(tap, f"{plan.name}.") < plan.n:
            await asyncio.sleep(0.25)
        scored = _scored_volume(tap, f"{plan.name}.")
        complete_at = max((at for _, at in tap.matching(".scores", f"{plan.name}.")),
                          default=math.nan)
        cpu = cpu_seconds(pid) - before
        return {"mode": "voc up --no-demo (one process, chdb)", "warm_up_s": round(warm, 1),
                "events": plan.n, "scored": scored,
                "sustained_events_per_s": round(scored / (complete_at - sent.first_send), 1)
                if scored else 0.0,
                "ingest_ack_events_per_s": round(plan.n / (sent.last_ack - sent.first_send), 1),
                "cpu_s": round(cpu, 2), "cpu_ms_per_event": round(1000 * cpu / plan.n, 3),
                "peak_rss_mb": round(peak_rss_mb(pid), 1),
                "peak_rss_scope": "all-out run only" if reset else "whole process lifetime"}
    finally:
        if tap is not None:
            tap.close()
        _stop(processes)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    texts = load_texts(args.data, 20000, args.seed)
    with tempfile.TemporaryDirectory(prefix="voc-bench-") as tmp:
        work = Path(tmp)
        with LocalClickHouse(work / "clickhouse") as ch:
            separate = await separate_processes(args, ch, texts, work)
        emb = await embedded(args, texts, work) if args.embedded else None
    return {"separate": separate, "embedded": emb}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        default=REPO_ROOT.parent / "shared/data/nlp/sentiment_dev.csv",
                        help="labelled CSV the feedback texts come from")
    parser.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",") if x],
                        default=[500.0, 1000.0, 2000.0], help="fixed offered rates, events/s")
    parser.add_argument("--duration", type=float, default=10, help="seconds per fixed-rate run")
    parser.add_argument("--allout-events", type=int, default=15000,
                        help="events in each all-out run")
    parser.add_argument("--paths", type=lambda s: [x for x in s.split(",") if x],
                        default=["http", "kafka"], help="http, kafka or both")
    parser.add_argument("--bursts", type=int, default=10,
                        help="all-negative bursts per run (alert latency samples)")
    parser.add_argument("--burst-len", type=int, default=30, help="events per burst")
    parser.add_argument("--tick", type=float, default=0.05,
                        help="seconds between sends of due events (client batching)")
    parser.add_argument("--http-batch", type=int, default=1000, help="most events per POST")
    parser.add_argument("--inflight", type=int, default=32, help="concurrent POSTs, fixed rate")
    parser.add_argument("--allout-batch", type=int, default=500, help="events per POST, all-out")
    parser.add_argument("--allout-inflight", type=int, default=4, help="concurrent POSTs, all-out")
    parser.add_argument("--drain-timeout", type=float, default=120,
                        help="longest wait for a run's rows after its last send")
    parser.add_argument("--settle", type=float, default=1.0,
                        help="wait after the last row for its score messages")
    parser.add_argument("--alert-wait", type=float, default=10,
                        help="longest wait for a run's alerts after its rows are stored")
    parser.add_argument("--warmup-timeout", type=float, default=120)
    parser.add_argument("--embedded", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure `voc up` (one process, chdb) under the all-out run")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "build/bench/e2e.json")
    args = parser.parse_args(argv)
    if not args.data.exists():
        args.data = REPO_ROOT / "tests/data/sentiment_sample.csv"
    started = time.time()
    print(f"e2e bench: rates {args.rates} x {args.duration}s, all-out {args.allout_events}, "
          f"paths {args.paths}", flush=True)
    result = asyncio.run(main_async(args))
    payload = {
        "command": "python bench/e2e_bench.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        **result,
        "elapsed_s": round(time.time() - started, 1),
    }
    write_json(args.json, payload)
    print(f"wrote {args.json} in {payload['elapsed_s']}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
