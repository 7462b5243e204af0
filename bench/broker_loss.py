"""What the embedded broker does not keep: acknowledged events lost when ``voc up`` dies.

``voc up`` runs a memory-only tansu broker as its child. Ingest answers 202 once that broker
acknowledged an event, but an event is durable only once scoring has stored it in chdb; the
broker dies with ``voc up`` (its parent-death signal), and whatever it held is gone. This
script posts feedback to ``voc up --no-demo`` at a fixed rate over HTTP, kill -9s it after
``--seconds``, then counts which acknowledged events reached the store.

    python bench/broker_loss.py --rates 200,1000 --seconds 20 --json build/bench/broker_loss.json
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


async def measure(args: argparse.Namespace, rate: float, work: Path) -> dict[str, Any]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOC_")}
    env.update({"VOC_DATA_DIR": str(work), "VOC_HTTP_PORT": str(port), "VOC_LOG_FORMAT": "json",
                "VOC_LOCAL_BROKER_PORT": "0",
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
    children = [int(pid) for pid in subprocess.run(
        ["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()]
    names = {pid: Path(f"/proc/{pid}/comm").read_text().strip() for pid in children
             if pid_alive(pid)}
    acknowledged, _ = await post_until_killed(api, rate, args.seconds, args.batch, process)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(pid_alive(pid) for pid in children):
        await asyncio.sleep(0.2)
    orphans = [names.get(pid, str(pid)) for pid in children if pid_alive(pid)]
    store = await open_store(f"chdb://{work / 'chdb'}")
    try:
        rows = await store.query("SELECT DISTINCT external_id FROM feedback "
                                 "WHERE source = 'loss'")
    finally:
        await store.close()
    stored = {row["external_id"] for row in rows}
    lost = [i for i in acknowledged if i not in stored]
    return {"rate": rate, "seconds": args.seconds, "acknowledged": len(acknowledged),
            "stored": len(stored & set(acknowledged)), "lost": len(lost),
            "lost_share": round(len(lost) / len(acknowledged), 4) if acknowledged else None,
            "children_left_running_15s_after": orphans}


def markdown(runs: list[dict[str, Any]], command: str) -> str:
    lines = [f"`voc up --no-demo` posted to over HTTP for {runs[0]['seconds']:g} s, then kill -9; "
             "lost = events ingest acknowledged (202) that are not in the store afterwards: "
             f"what the memory-only broker held and scoring had not stored yet. `{command}`", "",
             "| offered events/s | acknowledged | stored | lost | lost share | children left "
             "running |", "|---:|---:|---:|---:|---:|---|"]
    for run in runs:
        lines.append(f"| {run['rate']:g} | {run['acknowledged']:,} | {run['stored']:,} | "
                     f"{run['lost']:,} | {run['lost_share']:.1%} | "
                     f"{', '.join(run['children_left_running_15s_after']) or 'none'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=lambda v: [float(x) for x in v.split(",") if x],
                        default=[200.0, 1000.0], help="events/s posted, one run each")
    parser.add_argument("--seconds", type=float, default=20, help="posting time before kill -9")
    parser.add_argument("--batch", type=int, default=50, help="events per POST")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    args.command = "python bench/broker_loss.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    runs = []
    for rate in args.rates:
        with tempfile.TemporaryDirectory(prefix="voc-broker-loss-") as tmp:
            runs.append(asyncio.run(measure(args, rate, Path(tmp))))
    result = {"runs": runs, "command": args.command, "date": datetime.now(UTC).isoformat(),
              "machine": machine(), "markdown": markdown(runs, args.command)}
    print(result["markdown"])
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
