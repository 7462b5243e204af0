"""What the pipeline produced: a live reader of the scores and alerts topics, and the
``feedback`` table read through the store."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import datetime
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from services.core.store import Store


class TopicTap:
    """Reads the scores and alerts topics from the start in a thread, stamping receipt time."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self.records: list[tuple[str, dict[str, Any], float]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                       auto_offset_reset="earliest", fetch_max_wait_ms=20)
        partitions = [TopicPartition(t, p) for t in topics
                      for p in self._consumer.partitions_for_topic(t) or []]
        if not partitions:
            raise RuntimeError(f"topics {topics} have no partitions: were they created?")
        self._consumer.assign(partitions)
        self._consumer.seek_to_beginning(*partitions)
        self._thread = threading.Thread(target=self._loop, name="topic-tap", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            polled = self._consumer.poll(timeout_ms=50)
            now = time.time()
            batch = [(r.topic, json.loads(r.value), now) for part in polled.values() for r in part]
            if batch:
                with self._lock:
                    self.records.extend(batch)

    def matching(self, topic_suffix: str,
                 touchpoint_prefix: str) -> list[tuple[dict[str, Any], float]]:
        with self._lock:
            return [(value, at) for topic, value, at in self.records
                    if topic.endswith(topic_suffix)
                    and str(value.get("touchpoint", "")).startswith(touchpoint_prefix)]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._consumer.close()


async def wait_stored(store: Store, source: str, n: int, deadline: float) -> int:
    """Poll until ``n`` distinct events of ``source`` are stored or the deadline passes."""
    stored = 0
    while time.time() < deadline:
        rows = await store.query("SELECT uniqExact(external_id) AS n FROM feedback "
                                 "WHERE source = %(source)s", {"source": source})
        stored = int(rows[0]["n"])
        if stored >= n:
            return stored
        await asyncio.sleep(0.25)
    return stored


_ROWS_SQL = """
SELECT external_id, min(inserted_ms) AS inserted_ms,
       any(visitParamExtractString(enriched_json, 'received_at')) AS received_iso,
       any(visitParamExtractString(enriched_json, 'enriched_at')) AS enriched_iso,
       any(toUInt32(received_at)) AS received_s, any(toUInt32(enriched_at)) AS enriched_s,
       any(sentiment_label) AS label
FROM feedback WHERE source = %(source)s GROUP BY external_id
"""


def _epoch(iso_text: str, fallback: int) -> float:
    try:
        return datetime.fromisoformat(iso_text).timestamp()
    except ValueError:
        return float(fallback)


async def stored_rows(store: Store, source: str) -> dict[int, dict[str, Any]]:
    rows = await store.query(_ROWS_SQL, {"source": source})
    return {int(r["external_id"]): {
        "inserted": int(r["inserted_ms"]) / 1000,
        "received": _epoch(r["received_iso"], r["received_s"]),
        "enriched": _epoch(r["enriched_iso"], r["enriched_s"]),
        "label": r["label"]} for r in rows}


def scored_volume(tap: TopicTap, prefix: str) -> int:
    """Events stored for touchpoints with this prefix, from the newest score of each window."""
    newest: dict[tuple[str, str], int] = {}
    for value, _ in tap.matching(".scores", prefix):
        key = (value["touchpoint"], value["window_start"])
        newest[key] = max(newest.get(key, 0), int(value["volume"]))
    return sum(newest.values())
