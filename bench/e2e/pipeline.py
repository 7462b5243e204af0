"""The pipeline under test, all children of the bench: one ``voc`` process per service on
clickhouse-server (a fresh broker per run), or ``voc up --no-demo`` on chdb."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import BENCH_ALERT_CAP, REPO_ROOT, cpu_seconds, peak_rss_mb, reset_peak_rss
from bench.e2e.observe import TopicTap, scored_volume, wait_stored
from bench.e2e.plan import Plan, build_plan
from bench.e2e.run import Processes, run_one
from bench.e2e.senders import send_http
from services.core.broker import LocalBroker, die_with_parent, free_port, stop_child
from services.core.local_clickhouse import LocalClickHouse
from services.core.local_cluster import voc_command
from services.core.store import Store, open_store

SERVICES = ("ingest", "nlp", "scoring", "alerting")


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
        elif scored_volume(tap, f"{prefix}warmup.") >= plan.n:
            return time.time() - start
        await asyncio.sleep(0.5)
    raise RuntimeError(f"warm-up events were not processed within {timeout_s}s: the pipeline "
                       "is not flowing; see the service logs")


def env_for(bootstrap: str, prefix: str, port: int, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOC_")}
    env.update({"VOC_KAFKA_BOOTSTRAP": bootstrap, "VOC_TOPIC_PREFIX": prefix,
                "VOC_GROUP_PREFIX": prefix, "VOC_HTTP_PORT": str(port), "VOC_LOG_FORMAT": "json",
                "VOC_ALERT_MAX_PER_RULE": str(BENCH_ALERT_CAP), "PYTHONPATH": str(REPO_ROOT),
                **extra})
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
        while time.time() < deadline and scored_volume(tap, f"{plan.name}.") < plan.n:
            await asyncio.sleep(0.25)
        scored = scored_volume(tap, f"{plan.name}.")
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
