"""The figures of one run, computed from what was sent and what the pipeline produced.

An event never seen before the drain deadline counts as infinitely late (see
bench.common.percentiles).
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime
from typing import Any

from bench.common import percentiles
from bench.e2e.plan import Plan
from bench.e2e.senders import Sent
from services.alerting.rules import load_rules


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


def latency_breakdown(plan: Plan, sent: Sent,
                      rows: dict[int, dict[str, Any]]) -> dict[str, list[Any]]:
    """Where the time goes, per hop: due -> received -> enriched -> inserted."""
    hops: dict[str, list[float]] = {"due->received (client+ingest)": [],
                                    "received->enriched (broker+nlp)": [],
                                    "enriched->inserted (broker+scoring)": []}
    for i, row in rows.items():
        hops["due->received (client+ingest)"].append(row["received"] - sent.due_abs[i])
        hops["received->enriched (broker+nlp)"].append(row["enriched"] - row["received"])
        hops["enriched->inserted (broker+scoring)"].append(row["inserted"] - row["enriched"])
    return {name: [percentiles(v)["p50"], percentiles(v)["p99"]] for name, v in hops.items()}
