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
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DEV_REVIEWS, REPO_ROOT, machine, write_json  # noqa: E402
from bench.e2e.pipeline import embedded, separate_processes  # noqa: E402
from bench.e2e.plan import load_texts  # noqa: E402
from services.core.local_clickhouse import LocalClickHouse  # noqa: E402


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
                        default=DEV_REVIEWS,
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
