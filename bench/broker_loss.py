"""What the embedded broker does not keep: acknowledged events lost when ``voc up`` dies.

``voc up`` runs a memory-only tansu broker as its child. Ingest answers 202 once that broker
acknowledged an event, but an event is durable only once scoring has stored it in chdb; the
broker dies with ``voc up`` (its parent-death signal), and whatever it held is gone. This
script posts feedback to ``voc up --no-demo`` at a fixed rate over HTTP, kill -9s it after
``--seconds``, then counts which acknowledged events reached the store.

    python bench/broker_loss.py --rate 1000 --seconds 20 --json build/bench/broker_loss.json
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from bench.common import REPO_ROOT, machine, write_json  # noqa: E402
from services.core.broker import die_with_parent, free_port, pid_alive  # noqa: E402
from services.core.local_cluster import voc_command  # noqa: E402
from services.core.store import open_store  # noqa: E402

TEXTS = ("配送太慢了，等了两个小时", "客服很耐心，问题解决了", "支付失败了三次", "包装完好，物流很快")


async def post_until_killed(api: str, rate: float, seconds: float, batch: int,
                            process: subprocess.Popen[bytes]) -> tuple[list[str], float]:
    """POST ``batch`` events every ``batch / rate`` s; kill -9 ``process`` after ``seconds``.
    Returns the external ids ingest acknowledged (202) and the kill time."""
    acknowledged: list[str] = []
    interval = batch / rate
    start = time.monotonic()
    n = 0
    async with httpx.AsyncClient(base_url=api, timeout=10) as client:
        while time.monotonic() - start < seconds:
            items = [{"source": "loss", "external_id": str(n + i), "channel": "app",
                      "touchpoint": f"tp{(n + i) % 4}", "text": TEXTS[(n + i) % len(TEXTS)],
                      "occurred_at": datetime.now(UTC).isoformat()} for i in range(batch)]
            n += batch
            try:
                answer = await client.post("/v1/feedback/batch", json={"events": items})
            except httpx.HTTPError:
                answer = None
            if answer is not None and answer.status_code == 202:
                acknowledged += [item["external_id"] for item in items]
            await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
    killed_at = time.time()
    process.send_signal(signal.SIGKILL)
    process.wait()
    return acknowledged, killed_at


async def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOC_")}
    env.update({"VOC_DATA_DIR": str(work), "VOC_HTTP_PORT": str(port), "VOC_LOG_FORMAT": "json",
                "VOC_API_RATE_LIMIT": "", "PYTHONPATH": str(REPO_ROOT)})
    with open(work / "voc-up.log", "ab") as out:
        process = subprocess.Popen(voc_command("up", "--no-demo"), env=env, stdout=out,
                                   stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    api = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(timeout=2) as client:
        deadline = time.monotonic() + 120
        while True:
            try:
                if (await client.get(f"{api}/readyz")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"voc up did not get ready; see {work / 'voc-up.log'}")
            await asyncio.sleep(0.5)
    children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True,
                              text=True).stdout.split()
    acknowledged, _ = await post_until_killed(api, args.rate, args.seconds, args.batch, process)
    time.sleep(2)
    orphans = [pid for pid in children if pid_alive(int(pid))]
    store = await open_store(f"chdb://{work / 'chdb'}")
    try:
        rows = await store.query("SELECT DISTINCT external_id FROM feedback "
                                 "WHERE source = 'loss'")
    finally:
        await store.close()
    stored = {row["external_id"] for row in rows}
    lost = [i for i in acknowledged if i not in stored]
    result = {"rate": args.rate, "seconds": args.seconds, "acknowledged": len(acknowledged),
              "stored": len(stored & set(acknowledged)), "lost": len(lost),
              "lost_share": round(len(lost) / len(acknowledged), 4) if acknowledged else None,
              "broker_left_running": orphans}
    result["markdown"] = (
        f"`voc up --no-demo` under {args.rate:g} events/s over HTTP, kill -9 after "
        f"{args.seconds:g} s: ingest had acknowledged {len(acknowledged):,} events, "
        f"{result['stored']:,} were stored, **{len(lost):,} acknowledged events were lost** "
        f"({result['lost_share']:.1%}): the ones the memory-only broker held that scoring had "
        "not stored yet. Broker processes left running: "
        f"{len(orphans)}. Command: `{args.command}`.")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000, help="events/s posted")
    parser.add_argument("--seconds", type=float, default=20, help="posting time before kill -9")
    parser.add_argument("--batch", type=int, default=50, help="events per POST")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    args.command = "python bench/broker_loss.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="voc-broker-loss-") as tmp:
        result = asyncio.run(measure(args, Path(tmp)))
    result.update(date=datetime.now(UTC).isoformat(), machine=machine())
    print(result["markdown"])
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
