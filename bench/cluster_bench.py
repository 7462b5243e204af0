"""The pipeline's multi-process layout on a sharded, replicated ClickHouse cluster: figures
and CPU per event next to the single-server figures of the same ``make bench``.

Layout (as tests/e2e/test_cluster.py): ZooKeeper, 2 shards x 2 replicas of clickhouse-server,
one tansu broker, and ``voc ingest`` x2, ``voc nlp`` x2, ``voc scoring`` x2, ``voc alerting``
x1 as separate processes, all on this machine. Load goes over HTTP, half to each ingest
process, open-loop as in bench/e2e_bench.py (latency from each event's due time). On 2 cores
the point is the shape and the cost per event, not a bigger number: every process added
competes for the same cores.

    python bench/cluster_bench.py --data ../shared/data/nlp/sentiment_dev.csv \\
        --rate 500 --duration 10 --allout-events 10000 --json build/bench/cluster.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402

from bench.common import DEV_REVIEWS, REPO_ROOT, machine, peak_rss_mb, percentiles, write_json  # noqa: E402
from bench.e2e.observe import stored_rows, wait_stored  # noqa: E402
from bench.e2e.plan import Plan, build_plan, load_texts  # noqa: E402
from bench.e2e.run import Processes  # noqa: E402
from bench.e2e.senders import Sent, send_http  # noqa: E402
from services.core.broker import LocalBroker  # noqa: E402
from services.core.kafka import create_topics  # noqa: E402
from services.core.local_cluster import LocalCluster, StageProcesses, voc_command  # noqa: E402
from services.core.settings import load_settings  # noqa: E402
from services.core.store import Store, open_store  # noqa: E402

LAYOUT = {"ingest-1": (0, 1), "ingest-2": (1, 1), "nlp-1": (0, 1), "nlp-2": (1, 1),
          "scoring-1": (0, 0), "scoring-2": (1, 0), "alerting-1": (0, 0)}
"""Process -> (shard, replica) of the server its store URL names first: writers and the
readers of what they wrote on the first replicas (docs/operations.md), the API on the
second ones; NLP uses no store."""


class ClusterLayout:
    """The cluster, the broker and the seven processes, started and stopped together."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.cluster = LocalCluster(work / "cluster")
        self.broker = LocalBroker(log_path=work / "broker.log")
        self.processes = StageProcesses(work)
        self.database = f"bench_{uuid.uuid4().hex[:8]}"

    def url(self, shard: int, replica: int) -> str:
        server = self.cluster.servers[shard][replica]
        ordered = [s[r] for r in range(2) for s in self.cluster.servers]
        others = ",".join(f"127.0.0.1:{s.tcp_port}" for s in ordered if s is not server)
        return f"{self.cluster.url(server, self.database)}?alt_hosts={others}"

    def start(self) -> None:
        self.cluster.start()
        self.broker.start()
        prefix = f"cb{int(time.time())}"
        settings = load_settings(topic_prefix=prefix, group_prefix=prefix, topic_partitions=4)
        create_topics(settings, self.broker.bootstrap)
        env = {"VOC_KAFKA_BOOTSTRAP": self.broker.bootstrap, "VOC_TOPIC_PREFIX": prefix,
               "VOC_GROUP_PREFIX": prefix, "VOC_CLICKHOUSE_CLUSTER": self.cluster.name,
               "VOC_DATA_DIR": str(self.work), "VOC_LOG_FORMAT": "json",
               "VOC_API_RATE_LIMIT": "", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)}
        done = subprocess.run(voc_command("db", "migrate"), capture_output=True, text=True,
                              timeout=300, env={**env, "VOC_CLICKHOUSE_URL": self.url(0, 0)})
        if done.returncode != 0:
            raise RuntimeError(f"voc db migrate on the cluster failed: {done.stderr[-2000:]}")
        for name, (shard, replica) in LAYOUT.items():
            self.processes.add(name, name.split("-")[0],
                               {**env, "VOC_CLICKHOUSE_URL": self.url(shard, replica)})
        self.processes.start_all()

    def stop(self) -> None:
        self.processes.stop_all()
        self.broker.stop()
        self.cluster.stop()

    def apis(self) -> list[str]:
        return [self.processes.stages[n].base_url for n in ("ingest-1", "ingest-2")]

    def pids(self) -> dict[str, int]:
        pids = {name: stage.proc.pid for name, stage in self.processes.stages.items()
                if stage.proc is not None}
        for server in self.cluster.members:
            if server.pid is not None:
                pids[f"clickhouse {server.root.name}"] = server.pid
        if self.cluster.zookeeper.pid is not None:
            pids["zookeeper"] = self.cluster.zookeeper.pid
        if self.broker._proc is not None:
            pids["broker (tansu)"] = self.broker._proc.pid
        return pids

    async def ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=3) as client:
            while time.monotonic() < deadline:
                exited = self.processes.exited()
                if exited:
                    raise RuntimeError(f"{exited} exited:\n{self.processes.logs()}")
                try:
                    answers = [await client.get(f"{s.base_url}/readyz")
                               for s in self.processes.stages.values()]
                    if all(a.status_code == 200 for a in answers):
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.5)
        raise RuntimeError(f"not every process was ready within {timeout_s}s:\n"
                           f"{self.processes.logs()}")


def halves(name: str, rate: float | None, n: int, texts: tuple[list[str], list[str]],
           seed: int) -> list[Plan]:
    """One plan per ingest process, each with half the events (and half the rate)."""
    return [build_plan(f"{name}-{part}", "http", rate / 2 if rate else None, n // 2, texts,
                       0, 1, seed + k) for k, part in enumerate("ab")]


async def run_plans(layout: ClusterLayout, store: Store, name: str, plans: list[Plan],
                    procs: Processes, args: argparse.Namespace) -> dict[str, Any]:
    before = procs.cpu()
    inflight = 2 if plans[0].rate is None else args.inflight
    batch = args.allout_batch if plans[0].rate is None else 1000
    sent: list[Sent] = await asyncio.gather(*[
        send_http(api, plan, args.tick, batch, inflight)
        for api, plan in zip(layout.apis(), plans)])
    total = sum(plan.n for plan in plans)
    deadline = time.time() + args.drain_timeout
    counts = [await wait_stored(store, plan.source, plan.n, deadline) for plan in plans]
    after = procs.cpu()
    first_send = min(s.first_send for s in sent)
    latencies: list[float] = []
    last_row = -math.inf
    for plan, sent_plan in zip(plans, sent):
        rows = await stored_rows(store, plan.source)
        latencies += [rows[i]["inserted"] - sent_plan.due_abs[i] if i in rows else math.inf
                      for i in range(plan.n)]
        last_row = max([last_row, *(r["inserted"] for r in rows.values())])
    cpu = {key: round(after[key] - before[key], 2) for key in after}
    stored = sum(counts)
    result = {
        "name": name, "offered_rate": plans[0].rate * 2 if plans[0].rate else None,
        "events": total, "stored": stored,
        "sustained_events_per_s": round(stored / (last_row - first_send), 1) if stored else 0.0,
        "send_errors": {k: v for s in sent for k, v in s.errors.items()},
        "latency_to_enriched_row_s": percentiles(latencies),
        "cpu_s": cpu,
        "cpu_ms_per_event": {key: round(1000 * s / total, 3) for key, s in cpu.items()},
    }
    print(f"  {name}: {total} events, stored {stored}, sustained "
          f"{result['sustained_events_per_s']}/s, enriched-row p99 "
          f"{result['latency_to_enriched_row_s']['p99']} s", flush=True)
    return result


def kind(process: str) -> str | None:
    """What a measured process is (``nlp-2`` and ``nlp`` are both ``voc nlp``); None for the
    load generator, which is not part of the pipeline."""
    stage = process.split("-")[0]
    if stage in {"ingest", "nlp", "scoring", "alerting"}:
        return f"voc {stage}"
    if process.startswith("clickhouse"):
        return "clickhouse-server"
    if process.startswith("load generator"):
        return None
    return process


def groups(cpu_ms: dict[str, float]) -> dict[str, float]:
    """CPU ms per event summed by kind of process, then the pipeline's and everything's."""
    out: dict[str, float] = {}
    for process, value in cpu_ms.items():
        name = kind(process)
        if name is not None:
            out[name] = round(out.get(name, 0.0) + value, 3)
    out.setdefault("zookeeper", 0.0)
    out["voc processes together"] = round(sum(v for k, v in out.items()
                                              if k.startswith("voc ")), 3)
    out["everything but the load generator"] = round(
        sum(v for k, v in out.items() if k != "voc processes together"), 3)
    return out


def single_process_figures(e2e_path: Path) -> dict[str, Any] | None:
    """The one-server, one-process-per-service figures of the same bench (e2e.json)."""
    if not e2e_path.exists():
        return None
    e2e = json.loads(e2e_path.read_text(encoding="utf-8"))
    runs = {r["name"]: r for r in e2e["separate"]["runs"]}
    out = {}
    for key, run_name in (("allout", "http-allout"), ("fixed", "http-500")):
        if run_name not in runs:
            continue
        run = runs[run_name]
        out[key] = {"name": run_name, "sustained_events_per_s": run["sustained_events_per_s"],
                    "latency_to_enriched_row_s": run["latency_s"]["to_enriched_row"],
                    "cpu_ms_per_event": groups(run["cpu_ms_per_event"])}
    return out


def markdown(result: dict[str, Any]) -> str:
    runs = {r["name"]: r for r in result["runs"]}
    single = result.get("single_process") or {}
    lines = [f"Layout: {result['layout']}. Command: `{result['command']}`.", ""]
    rows = [("allout", "cluster-allout", "HTTP all-out"),
            ("fixed", f"cluster-{result['config']['rate']:g}",
             f"HTTP {result['config']['rate']:g} events/s")]
    lines += ["| run | figure | one server, one process per service | cluster layout |",
              "|---|---|---:|---:|"]
    for key, name, label in rows:
        cluster = runs.get(name)
        if cluster is None:
            continue
        base = single.get(key, {})
        p = cluster["latency_to_enriched_row_s"]
        q = base.get("latency_to_enriched_row_s", {})
        lines.append(f"| {label} | sustained events/s | {base.get('sustained_events_per_s', '—')} "
                     f"| {cluster['sustained_events_per_s']} |")
        lines.append(f"| {label} | to enriched row p50 / p99 s | "
                     f"{q.get('p50', '—')} / {q.get('p99', '—')} | {p['p50']} / {p['p99']} |")
        mine = groups(cluster["cpu_ms_per_event"])
        theirs = base.get("cpu_ms_per_event", {})
        for kind in mine:
            lines.append(f"| {label} | CPU ms per event: {kind} | {theirs.get(kind, '—')} "
                         f"| {mine[kind]} |")
    allout = runs.get("cluster-allout")
    if allout:
        lines += ["", "CPU ms per event of each process, cluster all-out run:", "",
                  "| process | CPU ms per event | peak RSS MiB |", "|---|---:|---:|"]
        for key, value in allout["cpu_ms_per_event"].items():
            lines.append(f"| {key} | {value} | {result['peak_rss_mb'].get(key, '—')} |")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    texts = load_texts(args.data, 20000, args.seed)
    layout = ClusterLayout(work)
    layout.start()
    try:
        await layout.ready(180)
        store = await open_store(layout.url(1, 0), retries=10)
        try:
            procs = Processes(layout.pids())
            warm = halves("cluster-warmup", None, 400, texts, 1)
            await run_plans(layout, store, "cluster-warmup", warm, procs, args)
            procs.reset_rss()
            runs = [await run_plans(layout, store, f"cluster-{args.rate:g}",
                                    halves(f"cluster-{args.rate:g}", args.rate,
                                           int(args.rate * args.duration), texts, 10),
                                    procs, args),
                    await run_plans(layout, store, "cluster-allout",
                                    halves("cluster-allout", None, args.allout_events, texts, 20),
                                    procs, args)]
            version = await store.version()
        finally:
            await store.close()
        rss = {name: round(peak_rss_mb(pid), 1) for name, pid in layout.pids().items()}
    finally:
        layout.stop()
    return {"runs": runs, "peak_rss_mb": rss, "clickhouse_server_version": version}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        default=DEV_REVIEWS,
                        help="labelled CSV the feedback texts come from")
    parser.add_argument("--rate", type=float, default=500, help="fixed offered rate, events/s")
    parser.add_argument("--duration", type=float, default=10, help="seconds of the fixed run")
    parser.add_argument("--allout-events", type=int, default=10000,
                        help="events in the all-out run")
    parser.add_argument("--allout-batch", type=int, default=500, help="events per POST, all-out")
    parser.add_argument("--inflight", type=int, default=16, help="concurrent POSTs, fixed rate")
    parser.add_argument("--tick", type=float, default=0.05, help="seconds between sends")
    parser.add_argument("--drain-timeout", type=float, default=300,
                        help="longest wait for a run's events to be stored")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--e2e-json", type=Path, default=REPO_ROOT / "build/bench/e2e.json",
                        help="single-server figures of the same bench to compare with")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    given = argv if argv is not None else sys.argv[1:]
    command = "python bench/cluster_bench.py " + " ".join(given)
    with tempfile.TemporaryDirectory(prefix="voc-cluster-bench-") as tmp:
        measured = asyncio.run(main_async(args, Path(tmp)))
    result = {
        "date": datetime.now(UTC).isoformat(), "command": command, "machine": machine(),
        "layout": "ZooKeeper + 2 shards x 2 replicas of clickhouse-server "
                  f"{measured['clickhouse_server_version']}, one tansu broker, voc ingest x2, "
                  "voc nlp x2, voc scoring x2, voc alerting x1, all on this machine",
        "config": {"rate": args.rate, "duration": args.duration,
                   "allout_events": args.allout_events},
        **measured,
        "single_process": single_process_figures(args.e2e_json),
    }
    result["markdown"] = markdown(result)
    print(result["markdown"])
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
