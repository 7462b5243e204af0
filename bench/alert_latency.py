"""Alert latency under load: enriched events at a steady rate through scoring and alerting
(in one process on chdb and the local broker, as ``voc up`` runs them), with a negative surge
on a fresh touchpoint every few seconds.

Latency per alert = emitted_at - latest_received_at, both carried by the alert event:
ingest time of the newest breaching event to the alert being produced. The stored received_at
has whole-second precision (floored), so the figure overstates latency by up to one second.
The NLP stage is not in the path (events enter on the enriched topic): its throughput is
measured by bench/nlp_bench.py and it scales by adding workers.

    python bench/alert_latency.py --rate 1000 --seconds 60 --json build/bench/alert_latency.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.common import percentile  # noqa: E402
from bench.scoring_alerting import scoring_and_alerting  # noqa: E402
from services.core.events import EnrichedFeedback, Sentiment, utc_now  # noqa: E402
from services.core.kafka import Producer  # noqa: E402

RULES = """
rules:
  - {id: surge, type: threshold, metric: negative_share, operator: ">", threshold: 0.4,
     clear_threshold: 0.3, resolve_after_s: 120, lookback_s: 60, min_volume: 20,
     cooldown_s: 1800, severity: critical}
"""


def event(n: int, touchpoint: str, negative: bool) -> bytes:
    now = utc_now()
    return EnrichedFeedback(
        event_id=f"b{n}", source="bench", channel="app", touchpoint=touchpoint,
        text="配送太慢了" if negative else "配送很快", occurred_at=now, received_at=now,
        sentiment=Sentiment(score=-0.8 if negative else 0.7,
                            label="negative" if negative else "positive", model="bench"),
        topics=[], intent="complaint" if negative else "praise", urgency=[], keywords=[],
        tokens=[], enriched_at=now).to_bytes()


async def load(producer: Producer, topic: str, rate: int, seconds: float, surge_every_s: float,
               surge_size: int, sent_at: dict[str, float]) -> tuple[int, list[str]]:
    """Send ``rate`` events/s in 100 ms ticks; returns (events sent, surge touchpoints) and
    records when each surge was acknowledged by the broker in ``sent_at``."""
    per_tick = max(1, rate // 10)
    sent = 0
    surges: list[str] = []
    started = time.monotonic()
    next_surge = started + 5.0
    tick = 0
    while time.monotonic() - started < seconds:
        messages = []
        surge_left = 0
        if time.monotonic() >= next_surge:
            surges.append(f"surge-{len(surges)}")
            surge_left = surge_size
            next_surge += surge_every_s
        for _ in range(per_tick):
            if surge_left:
                touchpoint, negative = surges[-1], True
                surge_left -= 1
            else:
                touchpoint, negative = f"tp-{sent % 50}", (sent // 50) % 10 == 0
            messages.append((touchpoint.encode(), event(sent, touchpoint, negative)))
            sent += 1
        await producer.send_many(topic, messages)
        if surge_left == 0 and surges and surges[-1] not in sent_at:
            sent_at[surges[-1]] = time.time()
        tick += 1
        await asyncio.sleep(max(0.0, started + tick * 0.1 - time.monotonic()))
    return sent, surges


async def main(args: argparse.Namespace) -> dict:
    async with scoring_and_alerting(RULES, "alert-bench") as rig:
        await asyncio.sleep(3)
        began = time.monotonic()
        sent_at: dict[str, float] = {}
        sent, surges = await load(rig.producer, rig.enriched_topic, args.rate,
                                  args.seconds, args.surge_every_s, args.surge_size, sent_at)
        achieved = sent / (time.monotonic() - began)
        await asyncio.sleep(args.drain_s)
        scored = {r["touchpoint"]: r["ms"] / 1000 for r in await rig.store.query(
            "SELECT touchpoint, min(computed_ms) AS ms FROM cem_scores WHERE volume >= 20 "
            "AND touchpoint IN %(surges)s GROUP BY touchpoint", {"surges": tuple(surges)})}
    alerts = rig.firing
    latencies = [
        (datetime.fromisoformat(a["emitted_at"])
         - datetime.fromisoformat(a["latest_received_at"])).total_seconds() for a in alerts]
    per_surge = {s: sum(1 for a in alerts if a["touchpoint"] == s) for s in surges}
    emitted = {a["touchpoint"]: datetime.fromisoformat(a["emitted_at"]).timestamp()
               for a in alerts}
    to_score = [scored[s] - sent_at[s] for s in surges if s in scored and s in sent_at]
    to_alert = [emitted[s] - scored[s] for s in surges if s in scored and s in emitted]
    result = {
        "target_rate_per_s": args.rate, "achieved_rate_per_s": round(achieved, 1),
        "events": sent, "surges": len(surges),
        "surges_with_exactly_one_alert": sum(1 for n in per_surge.values() if n == 1),
        "false_alerts": sum(1 for a in alerts if not a["touchpoint"].startswith("surge-")),
        "latency_p50_s": _rounded(percentile(latencies, 50)),
        "latency_p95_s": _rounded(percentile(latencies, 95)),
        "latency_max_s": _rounded(percentile(latencies, 100)),
        "surge_sent_to_scored_median_s": _rounded(percentile(to_score, 50)),
        "surge_scored_to_alert_median_s": _rounded(percentile(to_alert, 50)),
    }
    return result


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=1000, help="events per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="load duration")
    parser.add_argument("--surge-every-s", type=float, default=4.0)
    parser.add_argument("--surge-size", type=int, default=40, help="negative events per surge")
    parser.add_argument("--drain-s", type=float, default=10.0, help="wait after the load")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    arguments = parser.parse_args()
    figures = asyncio.run(main(arguments))
    print(json.dumps(figures, indent=2))
    if arguments.json:
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        arguments.json.write_text(json.dumps(figures, indent=2))
