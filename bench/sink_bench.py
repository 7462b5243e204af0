"""ClickHouse insert rows/s of the ``feedback`` table on both store backends (chdb and
clickhouse-server), at the batch sizes the scoring sink uses, through the same Store API.

Rows are real: feedback texts run through the NLP analyzer and the scoring stage's row mapping,
so row width (enriched JSON, tokens, topics) is what production inserts. Every batch has fresh
event ids, so the figures include ReplacingMergeTree's work on new keys, not on duplicates.

    python bench/sink_bench.py --batch-sizes 1000,10000 --rows 50000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DEV_REVIEWS, REPO_ROOT, machine, write_json  # noqa: E402
from bench.e2e.plan import load_texts  # noqa: E402
from services.core.events import RawFeedback, stable_event_id  # noqa: E402
from services.core.local_clickhouse import LocalClickHouse  # noqa: E402
from services.core.migrations import migrate  # noqa: E402
from services.core.settings import load_settings  # noqa: E402
from services.core.store import open_store  # noqa: E402


def template_rows(texts: list[str], count: int) -> list[dict[str, Any]]:
    """``count`` feedback rows shaped exactly as the scoring sink writes them."""
    from services.nlp.worker import build_analyzer
    from services.scoring.sink import feedback_row

    analyzer = build_analyzer(load_settings())
    now = datetime.now(UTC)
    raw = [RawFeedback(event_id=stable_event_id("sink-bench", str(i)), source="sink-bench",
                       external_id=str(i), channel="app", touchpoint=f"tp{i % 8}",
                       text=texts[i % len(texts)], occurred_at=now - timedelta(seconds=i % 600),
                       received_at=now) for i in range(count)]
    return [feedback_row(e, 0) for e in analyzer.analyze(raw)]


def batches(template: list[dict[str, Any]], total: int, size: int) -> list[list[dict[str, Any]]]:
    """``total`` rows in batches of ``size``, each row with its own event id."""
    out = []
    for start in range(0, total, size):
        batch = []
        for i in range(start, min(start + size, total)):
            row = dict(template[i % len(template)])
            row["event_id"] = f"sink-{size}-{i}"
            row["inserted_ms"] = int(time.time() * 1000)
            batch.append(row)
        out.append(batch)
    return out


async def measure(url: str, template: list[dict[str, Any]], total: int, size: int) -> dict[str, Any]:
    store = await open_store(url)
    try:
        await migrate(store)
        prepared = batches(template, total, size)
        await store.insert("feedback", prepared[0])  # first insert pays for table files
        start = time.perf_counter()
        for batch in prepared[1:]:
            await store.insert("feedback", batch)
        elapsed = time.perf_counter() - start
        rows = sum(len(b) for b in prepared[1:])
        counted = (await store.query("SELECT count() AS n FROM feedback"))[0]["n"]
        version = await store.version()
    finally:
        await store.close()
    if int(counted) != total:
        raise RuntimeError(f"{url}: inserted {total} rows but the table holds {counted}")
    return {"batch_size": size, "rows_timed": rows, "seconds": round(elapsed, 3),
            "rows_per_s": round(rows / elapsed, 1) if elapsed > 0 else None,
            "ms_per_batch": round(1000 * elapsed / max(1, len(prepared) - 1), 2),
            "server_version": version}


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    positives, negatives = load_texts(args.data, 5000, 3)
    template = template_rows(positives[:500] + negatives[:500], 1000)
    results = []
    with tempfile.TemporaryDirectory(prefix="voc-sink-") as tmp:
        with LocalClickHouse(Path(tmp) / "server") as server:
            for size in args.batch_sizes:
                total = max(args.rows, 2 * size)
                for backend, url in (
                    ("chdb", f"chdb://{Path(tmp) / f'chdb{size}'}"),
                    ("clickhouse-server", replace_db(server.url, f"sink{size}")),
                ):
                    figure = await measure(url, template, total, size)
                    results.append({"backend": backend, **figure})
                    print(f"  {backend:18} batch {size:>6}: {figure['rows_per_s']:>10,.0f} rows/s "
                          f"({figure['ms_per_batch']} ms per batch)", flush=True)
    return results


def replace_db(url: str, database: str) -> str:
    return url.rsplit("/", 1)[0] + f"/{database}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        default=DEV_REVIEWS)
    parser.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",") if x],
                        default=[1000, 10000])
    parser.add_argument("--rows", type=int, default=50000,
                        help="rows per backend and batch size (at least two batches)")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "build/bench/sink.json")
    args = parser.parse_args(argv)
    if not args.data.exists():
        args.data = REPO_ROOT / "tests/data/sentiment_sample.csv"
    print(f"sink bench: batch sizes {args.batch_sizes}, {args.rows} rows each", flush=True)
    results = asyncio.run(main_async(args))
    write_json(args.json, {
        "command": "python bench/sink_bench.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "rows": args.rows,
        "results": results,
    })
    print(f"wrote {args.json}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
