"""One plan sent, drained and measured, with the CPU and memory of the watched processes."""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from typing import Any

from bench.common import cpu_seconds, peak_rss_mb, percentiles, reset_peak_rss
from bench.e2e.figures import (
    alert_latencies,
    latency_breakdown,
    score_latencies,
    stage_rates,
)
from bench.e2e.observe import TopicTap, stored_rows, wait_stored
from bench.e2e.plan import Plan
from bench.e2e.senders import send_http, send_kafka
from services.core.store import Store


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
        "latency_breakdown_p50_p99_s": latency_breakdown(plan, sent, rows),
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
