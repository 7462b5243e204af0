"""How fast the dashboard's push stream reports a new score row (target: within 2 s).

Runs the whole pipeline in this process (a local broker, chdb in a temp dir, all four
services, as ``voc up`` does), listens to ``/v1/stream`` like a page does, and posts one
feedback item per round. Per round it prints two figures:

- push: score row computed (its ``computed_ms``) -> the stream delivered it; the dashboard's
  own share of the delay (poll interval + store read + send);
- end to end: POST answered -> the stream delivered the row (adds NLP and scoring).

    python bench/dashboard_push.py --rounds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.common import percentile  # noqa: E402
from services.core.broker import LocalBroker  # noqa: E402
from services.core.kafka import create_topics  # noqa: E402
from services.core.logs import configure_logging  # noqa: E402
from services.core.settings import load_settings  # noqa: E402
from services.core.store import open_store  # noqa: E402
from services.pipeline import SERVICES, run_services  # noqa: E402


async def listen(api: str, arrivals: asyncio.Queue[tuple[float, dict]]) -> None:
    async with httpx.AsyncClient(base_url=api, timeout=None) as client:
        async with client.stream("GET", "/v1/stream") as response:
            event = ""
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: ") and event == "scores":
                    now = time.time()
                    for row in json.loads(line.removeprefix("data: "))["rows"]:
                        arrivals.put_nowait((now, row))


async def bench(rounds: int, data_dir: Path) -> dict[str, list[float]]:
    settings = load_settings(data_dir=data_dir, http_port=0, topic_partitions=1)
    with LocalBroker(log_path=data_dir / "broker.log") as broker:
        create_topics(settings, broker.bootstrap)
        store = await open_store(settings.store_url)
        stop = asyncio.Event()
        url: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        pipeline = asyncio.create_task(run_services(settings, SERVICES, broker.bootstrap, stop,
                                                    store=store, on_listening=url.set_result))
        api = await url
        arrivals: asyncio.Queue[tuple[float, dict]] = asyncio.Queue()
        listener = asyncio.create_task(listen(api, arrivals))
        figures: dict[str, list[float]] = {"push_ms": [], "end_to_end_ms": []}
        try:
            async with httpx.AsyncClient(base_url=api, timeout=30) as client:
                for i in range(rounds + 1):
                    sent = time.time()
                    response = await client.post("/v1/feedback", json={
                        "source": "bench", "external_id": f"push-{i}", "channel": "app",
                        "touchpoint": "delivery", "text": "配送太慢了，等了两个小时"})
                    response.raise_for_status()
                    while True:
                        arrived, row = await asyncio.wait_for(arrivals.get(), 120)
                        if row["computed_ms"] / 1000 >= sent:
                            break
                    if i:  # the first round includes consumer start-up
                        figures["push_ms"].append(1000 * arrived - row["computed_ms"])
                        figures["end_to_end_ms"].append(1000 * (arrived - sent))
                    await asyncio.sleep(1.0)
        finally:
            listener.cancel()
            stop.set()
            await asyncio.gather(listener, pipeline, return_exceptions=True)
            await store.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    configure_logging("WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        figures = asyncio.run(bench(args.rounds, Path(tmp)))
    for name, values in figures.items():
        print(f"{name:14s} n={len(values)} p50={percentile(values, 50):.0f} "
              f"p95={percentile(values, 95):.0f} max={max(values):.0f}")


if __name__ == "__main__":
    main()
