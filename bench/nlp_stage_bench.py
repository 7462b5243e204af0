"""What the NLP stage costs around its analysis: the measurement behind "One way to write" in
docs/architecture.md.

The NLP stage consumes with faust-streaming (its own transport, unpatched) and writes through
the producer every stage uses (services/core/kafka.py), which sends a batch of events as one
record batch per partition. This bench runs the real stage (the faust agent, the failure
policy, the analyzer) against a real tansu broker in a child process per run, two ways:

* ``batches``: as shipped;
* ``per-message``: the same stage with one aiokafka ``send`` (and future) per message, as the
  producer sent before.

Each run gets a fresh consumer group and the same ``--events`` raw events; the child reports
its CPU seconds (``time.process_time``, all threads) from the moment it is ready until it has
enriched them all, and then the CPU of analysing the same events alone (``prepare_raw`` +
``analyze``, same batch size), so framework = total - analysis is what faust and the writes
cost per event. Modes run interleaved ``--repeat`` times because the machine's cores are
shared; the figures are medians over runs of each run's own difference.

    python bench/nlp_stage_bench.py --data ../shared/data/nlp/sentiment_dev.csv --events 4000
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO_ROOT, machine, write_json  # noqa: E402
from bench.e2e.plan import load_texts  # noqa: E402
from bench.producer_bench import one_send_each  # noqa: E402
from services.core.events import RawFeedback, stable_event_id  # noqa: E402
from services.core.ops import EVENTS_OUT  # noqa: E402
from services.core.settings import Settings, load_settings  # noqa: E402

MODES = ("batches", "per-message")


def raw_events(texts: list[str], count: int) -> list[RawFeedback]:
    """``count`` survey events over the texts (cycled), dated now so the entrance bounds pass."""
    now = datetime.now(UTC)
    return [RawFeedback(event_id=stable_event_id("bench-nlp-stage", str(i)), source="bench",
                        channel="survey", touchpoint=f"tp{i % 8}", text=texts[i % len(texts)],
                        occurred_at=now, received_at=now)
            for i in range(count)]


def settings_for(prefix: str, group: str, work: Path, bootstrap: str) -> Settings:
    return load_settings(topic_prefix=prefix, group_prefix=group, data_dir=work,
                         kafka_bootstrap=bootstrap, topic_partitions=3, http_port=0)


def use_mode(mode: str) -> None:
    """Make the shared producer behave as ``mode`` before the stage starts."""
    from services.core.kafka import Producer

    if mode == "per-message":
        async def per_message(self: Producer, topic: str,
                              messages: Sequence[tuple[bytes | None, bytes]]) -> None:
            await one_send_each(self, topic, messages)
            EVENTS_OUT.labels(topic).inc(len(messages))

        Producer.send_many = per_message  # type: ignore[method-assign]


async def child(args: argparse.Namespace) -> dict[str, Any]:
    """One run: the NLP stage until ``--events`` enriched events went out, then the analysis
    alone over the same events."""
    from services.core.channels import prepare_raw
    from services.core.ops import READINESS
    from services.nlp import worker

    use_mode(args.mode)
    settings = settings_for(args.prefix, args.group, Path(args.work), args.bootstrap)
    stop = asyncio.Event()
    counter = EVENTS_OUT.labels(settings.topic("feedback.enriched"))
    task = asyncio.create_task(worker.run(settings, args.bootstrap, stop))
    while not READINESS.report()[0]:
        await asyncio.sleep(0.05)
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    print("ready", flush=True)
    while counter._value.get() < args.events:
        if task.done():
            task.result()
            raise RuntimeError("the NLP stage stopped before enriching every event")
        await asyncio.sleep(0.02)
    total_cpu, wall = time.process_time() - start_cpu, time.perf_counter() - start_wall
    stop.set()
    await task
    events = raw_events(load_texts(Path(args.data), 20000, 7)[0], args.events)
    analyzer = worker.build_analyzer(settings)
    size = settings.nlp_batch_size
    start = time.process_time()
    for i in range(0, len(events), size):
        analyzer.analyze([prepare_raw(e) for e in events[i:i + size]])
    analysis_cpu = time.process_time() - start
    return {"mode": args.mode, "events": args.events, "cpu_s": round(total_cpu, 3),
            "wall_s": round(wall, 3), "analysis_cpu_s": round(analysis_cpu, 3)}


async def produce(bootstrap: str, topic: str, events: list[RawFeedback]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5,
                                max_batch_size=1024 * 1024, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(topic, e.to_bytes(), key=e.touchpoint.encode())
                   for e in events]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def run_child(args: argparse.Namespace, mode: str, run: int, bootstrap: str, prefix: str,
              work: Path, events: list[RawFeedback]) -> dict[str, Any]:
    """Start a child for ``mode``, feed it the events once it is ready, read its figures."""
    cmd = [sys.executable, __file__, "--child", "--mode", mode, "--events", str(len(events)),
           "--data", str(args.data), "--bootstrap", bootstrap, "--prefix", prefix,
           "--group", f"bench-{mode}-{run}", "--work", str(work / f"{mode}-{run}")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == "ready":
            break
    else:
        raise RuntimeError(f"the {mode} child exited before it was ready (code {proc.wait()})")
    if run == 0 and mode == MODES[0]:
        asyncio.run(produce(bootstrap, f"{prefix}.feedback.raw", events))
    out = proc.stdout.read()
    if proc.wait() != 0:
        raise RuntimeError(f"the {mode} child failed (code {proc.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def summarise(results: list[dict[str, Any]], events: int) -> dict[str, Any]:
    """Per mode: medians over runs of CPU per event, analysis per event and their difference."""
    table = {}
    for mode in MODES:
        runs = [r for r in results if r["mode"] == mode]
        table[mode] = {
            "runs": len(runs),
            "cpu_us_per_event": round(statistics.median(
                1e6 * r["cpu_s"] / events for r in runs), 1),
            "analysis_us_per_event": round(statistics.median(
                1e6 * r["analysis_cpu_s"] / events for r in runs), 1),
            "framework_us_per_event": round(statistics.median(
                1e6 * (r["cpu_s"] - r["analysis_cpu_s"]) / events for r in runs), 1),
            "wall_s_median": round(statistics.median(r["wall_s"] for r in runs), 2)}
    base = table[MODES[0]]["framework_us_per_event"]
    for mode in MODES:
        table[mode]["framework_ratio_to_batches"] = (
            round(table[mode]["framework_us_per_event"] / base, 2) if base > 0 else None)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="labelled review CSV (texts)")
    parser.add_argument("--events", type=int, default=4000, help="raw events per run")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs per mode")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "build/bench/nlp_stage.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    for hidden in ("--bootstrap", "--prefix", "--group", "--work"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(asyncio.run(child(args))), flush=True)
        return 0
    from services.core.broker import LocalBroker
    from services.core.kafka import create_topics

    texts = load_texts(args.data, 20000, 7)[0]
    events = raw_events(texts, args.events)
    results = []
    with tempfile.TemporaryDirectory(prefix="voc-bench-nlp-stage-") as tmp, \
            LocalBroker() as broker:
        work, prefix = Path(tmp), "bt"
        create_topics(settings_for(prefix, "bench", work, broker.bootstrap), broker.bootstrap)
        for run in range(args.repeat):
            for mode in MODES:
                result = run_child(args, mode, run, broker.bootstrap, prefix, work, events)
                print(json.dumps(result), flush=True)
                results.append(result)
    table = summarise(results, args.events)
    for mode, row in table.items():
        print(f"{mode:12} {row}")
    write_json(args.json, {"machine": machine(), "events": args.events, "repeat": args.repeat,
                           "modes": table, "runs": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
