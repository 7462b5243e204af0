"""Emerging topics (issue 18) through the store: background feedback replayed in accelerated
event time into the ``feedback`` table, counted by the alerting SQL and judged by the
``emerging_topic`` rule kind, then a new issue injected at 1 % of one touchpoint's traffic.
Measured: false ``emerging_topic`` alerts per simulated day over the background, event time
from the first injected comment to the alert, and the alert's top phrase.

What runs, and how it is made to fit in minutes:

- **Texts:** every shared dev text (``sentiment_dev.csv`` by domain and shopping category,
  ``aspect_ecom_makeup_dev``, ``aspect_car_dev``, ``aspect_restaurant_aic_dev``; never a
  held-out file), one touchpoint per domain or category, each event on one of six channels.
  Their candidate phrases come from the NLP stage's segmenter and services/core/phrases.py, as
  the scoring stage stores them (``feedback.phrases``, migration 0015).
- **Background:** ``--rate`` events/s on average, following a day/night curve (busiest at
  14:00, a third of that at 02:00, a tenth of noise per batch), texts drawn at random from the
  pool, so a touchpoint's volume follows its share of the texts. **Organic drift:** a few
  ordinary phrases of the texts (not taxonomy keywords) rise and fall over hours, their texts
  drawn up to ``1 + --drift-peak`` times as often at the peak of a bump.
- **What is real and what is drawn:** a week at 1,000 events/s is 605 million events, and this
  machine stores about 60,000 raw rows a second, so most background hours are not stored row
  by row. Each hour of event time (a bucket of ``VOC_EMERGING_BUCKET_S``) is either
  *raw*: ``feedback`` rows, one per event (event id, touchpoint, channel, customer, event time,
  phrases; the text itself is left empty: nothing here reads it), written by
  ``INSERT ... SELECT`` from a table of the texts' phrases, ``--batch-s`` of event time per
  insert, and rolled up into ``phrase_counts`` by the real roll-up
  (services/alerting/phrase_rollup.py); or *drawn*: per batch the same event count as raw rows
  would have, the texts drawn by one multinomial draw over the pool (the drifting phrases'
  extra texts likewise), their phrases summed per touchpoint into ``phrase_counts`` by the
  store and the bucket recorded as rolled up. Raw: the injection's hour, the
  ``--raw-hours`` before it, the first hour of every baseline read during the injection, and
  the window of every evaluation (its bucket is drawn whole besides and recorded with those
  rows, so the roll-up leaves it as drawn). So every window evaluated is read from raw rows,
  and the baselines of the injection's windows hold real roll-ups. The store is the embedded
  chdb (``--store``, default a fresh temporary directory) or a clickhouse-server
  (``--store clickhouse://...``).
- **Judged by the real path:** at each evaluation end the roll-up runs, then the
  ``emerging_topic`` kind's loader (services/alerting/kinds/emerging_topic.py:
  queries.rolled_buckets, phrase_counts and phrase_volumes, then the detector) and its
  ``measure``, then the alert lifecycle (engine.step: cooldown, hysteresis), per touchpoint,
  with the shipped rule defaults unless ``--baseline-s`` says otherwise.
- **Sampled evaluation ticks:** the live stage evaluates every minute; here the background is
  evaluated once every ``--tick-s`` of event time (the 5-minute window at the start of the
  hour, against the 24 whole hours before it). False alerts per day are reported as counted
  over those ticks and extrapolated to every window of a day (breached ticks / ticks x windows
  per day: an upper bound, one alert per breached window). After the injection starts every
  minute is evaluated, as live.
- **Warm-up:** the store first gets one baseline of background that is not evaluated, so the
  first evaluated window has a full baseline, as a deployment has after its first day.

    python bench/emerging_bench.py --data-dir ../shared/data/nlp --rate 1000 --days 7 \\
        --tick-s 10800 --seed 18 --json build/bench/emerging.json
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from services.alerting import phrase_rollup, queries  # noqa: E402
from services.alerting.emerging import Excluded  # noqa: E402
from services.alerting.engine import KeyState, step  # noqa: E402
from services.alerting.kinds.base import Points, Wanted  # noqa: E402
from services.alerting.kinds.emerging_topic import (  # noqa: E402
    EMERGING_TOPIC,
    EmergingTopicRule,
    Found,
    measure_emerging,
)
from services.core.migrations import migrate  # noqa: E402
from services.core.phrases import candidate_phrases, display  # noqa: E402
from services.core.settings import load_settings  # noqa: E402
from services.core.store import Store, open_store  # noqa: E402
from services.nlp.segmenter import Segmenter  # noqa: E402
from services.nlp.taxonomy import load_terms  # noqa: E402

TARGET_ALERT_S = 120.0
TARGET_FALSE_PER_DAY = 1.0
CHANNELS = ("app", "web", "call_center", "email", "social", "survey")
INJECTED_PHRASE = "餐盒 盖子"
"""The new issue: the lid of the food box (cracked, not shut): no taxonomy topic names it."""
INJECTED_TERM = "盖子"
INJECTED = ["餐盒盖子没盖紧，汤都洒了", "打开发现餐盒盖子裂了", "餐盒盖子破了，汤洒了一袋",
            "这次餐盒盖子没扣好，漏了一路", "餐盒盖子松的，菜都撒了"]
INJECTED_TOUCHPOINT = "waimai"
T0 = datetime(2026, 11, 2, tzinfo=UTC)
DEV_FILES = ("aspect_ecom_makeup_dev.jsonl", "aspect_car_dev.jsonl",
             "aspect_restaurant_aic_dev.jsonl")
CATEGORY_SLUGS = {"书籍": "books", "平板": "tablet", "手机": "phone", "水果": "fruit",
                  "洗发水": "shampoo", "热水器": "heater", "蒙牛": "dairy", "衣服": "clothes",
                  "计算机": "computer", "酒店": "hotel"}


def load_texts(data_dir: Path) -> list[tuple[str, str]]:
    """(touchpoint, text) of every shared dev text: sentiment_dev.csv per domain (e-commerce
    per shopping category) and each aspect dev file as a touchpoint of its own."""
    texts: list[tuple[str, str]] = []
    with (data_dir / "sentiment_dev.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            touchpoint = row["domain"]
            if touchpoint == "ecommerce" and row["source_cat"] in CATEGORY_SLUGS:
                touchpoint = f"shop-{CATEGORY_SLUGS[row['source_cat']]}"
            texts.append((touchpoint, row["text"]))
    for name in DEV_FILES:
        touchpoint = name.removeprefix("aspect_").removesuffix("_dev.jsonl").replace("_", "-")
        with (data_dir / name).open(encoding="utf-8") as handle:
            texts.extend((touchpoint, json.loads(line)["text"]) for line in handle if line.strip())
    return texts


@dataclass(frozen=True)
class Drift:
    """An ordinary phrase whose texts are drawn up to ``1 + peak`` times as often around
    ``centre`` (a Gaussian bump ``width_s`` wide)."""

    phrase: str
    touchpoint: str
    indexes: tuple[int, ...]
    centre_s: float
    width_s: float
    peak: float

    def factor(self, at_s: float) -> float:
        return self.peak * math.exp(-0.5 * ((at_s - self.centre_s) / self.width_s) ** 2)


def day_curve(at_s: float) -> float:
    """Traffic relative to the mean at ``at_s`` of event time: busiest at 14:00, a third of
    that at 02:00 (1.5 and 0.5 of the mean)."""
    return 1 + 0.5 * math.cos(2 * math.pi * ((at_s / 3600) % 24 - 14) / 24)


def pick_drifts(pool: list[tuple[str, list[str]]], excluded: Excluded, count: int,
                begin_s: float, span_s: float, peak: float, rng: random.Random) -> list[Drift]:
    """``count`` ordinary phrases of one touchpoint each (in 1 % to 5 % of its texts, not a
    taxonomy keyword) with a bump somewhere in the ``span_s`` after ``begin_s``."""
    by_touchpoint: dict[str, list[int]] = {}
    for index, (touchpoint, _) in enumerate(pool):
        by_touchpoint.setdefault(touchpoint, []).append(index)
    candidates: list[tuple[str, str]] = []
    for touchpoint, indexes in sorted(by_touchpoint.items()):
        if touchpoint == INJECTED_TOUCHPOINT:
            continue
        df = Counter(p for i in indexes for p in pool[i][1])
        candidates += [(touchpoint, p) for p, n in sorted(df.items())
                       if 0.01 <= n / len(indexes) <= 0.05 and not excluded(p)]
    drifts = []
    for touchpoint, phrase in rng.sample(candidates, min(count, len(candidates))):
        indexes = tuple(i for i in by_touchpoint[touchpoint] if phrase in pool[i][1])
        drifts.append(Drift(phrase, touchpoint, indexes,
                            begin_s + rng.uniform(0.1, 0.9) * span_s,
                            rng.uniform(2, 6) * 3600, rng.uniform(0.5, 1) * peak))
    return drifts


_CHANNELS_SQL = "[" + ", ".join(f"'{c}'" for c in CHANNELS) + "]"
POOL_DDL = ("CREATE TABLE bench_pool (idx UInt32, touchpoint String, phrases Array(String))"
            " ENGINE = MergeTree ORDER BY idx")
DRAWS_DDL = "CREATE TABLE bench_draws (idx UInt32, n UInt64) ENGINE = MergeTree ORDER BY idx"


def _insert_sql(first_id: int, start_s: int, span_s: int, count: int, seed: int,
                choice: str) -> str:
    """``count`` background events spread evenly over ``span_s`` seconds from ``start_s``, the
    text of each chosen by the SQL expression ``choice`` of ``n`` (its number)."""
    return (
        "INSERT INTO feedback (event_id, source, channel, touchpoint, customer_id, text,"
        " occurred_at, received_at, enriched_at, sentiment_label, phrases, inserted_ms)"
        " SELECT concat('bg-', toString(n)), 'bench', "
        f"{_CHANNELS_SQL}[1 + cityHash64(n, {seed}, 1) % {len(CHANNELS)}],"
        f" touchpoint, concat('c', toString(cityHash64(n, {seed}, 2) % 5000000)), '',"
        f" toDateTime({start_s} + intDiv((n - {first_id}) * {span_s}, {count}), 'UTC') AS t,"
        " t, t, 'neutral', phrases, 1"
        f" FROM (SELECT number + {first_id} AS n, toUInt32({choice}) AS idx"
        f" FROM numbers({count})) AS drawn ALL INNER JOIN bench_pool USING idx")


class Replay:
    """Writes background into the store: raw ``feedback`` rows for a span of event time, or a
    whole bucket's phrase counts drawn statistically (:meth:`generate`)."""

    def __init__(self, store: Store, pool_size: int, drifts: list[Drift], rate: float,
                 batch_s: int, seed: int) -> None:
        self.store, self.pool_size, self.drifts = store, pool_size, drifts
        self.rate, self.batch_s, self.seed = rate, batch_s, seed
        self.rng = random.Random(seed)
        self.draws = np.random.default_rng(seed)
        self.written_s = 0
        self.next_id = 0
        self.events = 0
        self.generated = 0
        self.insert_s = 0.0
        self.generate_s = 0.0

    def _batches(self, start: int, end: int) -> list[tuple[int, int, int]]:
        """(start, span, events) of each batch of ``[start, end)``: the day/night curve and a
        tenth of noise per batch."""
        out = []
        while start < end:
            span = min(self.batch_s, end - start)
            count = int(self.rate * span * day_curve(start + span / 2)
                        * self.rng.uniform(0.9, 1.1))
            out.append((start, span, count))
            start += span
        return out

    async def span(self, start: int, end: int) -> int:
        """Raw background rows over ``[start, end)`` seconds after T0; how many."""
        began, before = time.perf_counter(), self.events
        for first, span, count in self._batches(start, end):
            await self._write(first, span, count, f"cityHash64(n, {self.seed}) % "
                              f"{self.pool_size}")
            for drift in self.drifts:
                share = len(drift.indexes) / self.pool_size
                extra = int(count * share * drift.factor(first + span / 2))
                if extra:
                    listed = ",".join(map(str, drift.indexes))
                    await self._write(first, span, extra, f"[{listed}][1 + cityHash64(n, "
                                      f"{self.seed}, 3) % {len(drift.indexes)}]")
        self.written_s = max(self.written_s, end)
        self.insert_s += time.perf_counter() - began
        return self.events - before

    async def until(self, at_s: int) -> None:
        """Raw background up to ``at_s`` seconds after T0."""
        if self.written_s < at_s:
            await self.span(self.written_s, at_s)

    async def _write(self, start: int, span: int, count: int, choice: str) -> None:
        start_s = int(T0.timestamp()) + start
        await self.store.execute(_insert_sql(self.next_id, start_s, span, count, self.seed,
                                             choice))
        self.next_id += count
        self.events += count

    async def generate(self, start: int, bucket_s: int, raw_rows: int) -> None:
        """The phrase counts of the bucket ``[start, start + bucket_s)``, drawn as its raw rows
        would be (per batch: the same event count, texts drawn uniformly from the pool by a
        multinomial draw, the drifting phrases' extra texts likewise), summed per touchpoint
        and phrase in the store and recorded as rolled up with ``raw_rows`` (the raw rows the
        bucket holds besides, an evaluated window's) so the real roll-up leaves it as it is."""
        began = time.perf_counter()
        texts = np.zeros(self.pool_size, dtype=np.int64)
        uniform = np.full(self.pool_size, 1 / self.pool_size)
        for first, span, count in self._batches(start, start + bucket_s):
            texts += self.draws.multinomial(count, uniform)
            for drift in self.drifts:
                extra = int(count * len(drift.indexes) / self.pool_size
                            * drift.factor(first + span / 2))
                if extra:
                    picked = self.draws.multinomial(
                        extra, np.full(len(drift.indexes), 1 / len(drift.indexes)))
                    np.add.at(texts, np.asarray(drift.indexes), picked)
        drawn = [{"idx": int(i), "n": int(texts[i])} for i in np.flatnonzero(texts)]
        await self.store.execute("TRUNCATE TABLE bench_draws")
        await self.store.insert("bench_draws", drawn)
        rolled_ms = time.time_ns() // 1_000_000
        at = int(T0.timestamp()) + start
        await self.store.execute(
            "INSERT INTO phrase_counts (bucket_s, bucket, touchpoint, phrase, mentions,"
            f" rolled_ms) SELECT {bucket_s}, toDateTime({at}, 'UTC'), touchpoint, phrase,"
            f" sum(n), {rolled_ms} FROM (SELECT touchpoint, phrases, n FROM bench_draws"
            " ALL INNER JOIN bench_pool USING idx)"
            " ARRAY JOIN arrayConcat([''], phrases) AS phrase GROUP BY touchpoint, phrase")
        await queries.record_phrase_rollup(self.store, bucket_s=bucket_s, start=at,
                                           rolled_ms=rolled_ms, done=True, rows=raw_rows)
        self.generated += int(texts.sum())
        self.written_s = max(self.written_s, start + bucket_s)
        self.generate_s += time.perf_counter() - began


async def inject(store: Store, replay: Replay, tp_share: float, share: float, begin_s: int,
                 end_s: int, segmenter: Segmenter, rng: random.Random) -> list[datetime]:
    """Comments of the new issue at ``share`` of the injected touchpoint's traffic over
    ``[begin_s, end_s)``, each from a customer of its own; their event times."""
    rows: list[dict[str, Any]] = []
    moments: list[datetime] = []
    for second in range(begin_s, end_s):
        expected = replay.rate * day_curve(second) * tp_share * share
        for _ in range(_poisson(expected, rng)):
            at = T0 + timedelta(seconds=second + rng.random())
            at = at.replace(microsecond=0)
            text = rng.choice(INJECTED)
            rows.append({"event_id": f"inj-{len(rows)}", "source": "bench",
                         "channel": rng.choice(CHANNELS), "touchpoint": INJECTED_TOUCHPOINT,
                         "customer_id": f"inj-{len(rows)}", "text": text, "occurred_at": at,
                         "received_at": at, "enriched_at": at, "sentiment_label": "negative",
                         "phrases": candidate_phrases(segmenter.cut(text)), "inserted_ms": 1})
            moments.append(at)
    if rows:
        await store.insert("feedback", rows)
    return moments


def _poisson(mean: float, rng: random.Random) -> int:
    """Knuth's Poisson draw (the means here are a few at most)."""
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


class Judge:
    """The rule kind and the lifecycle per touchpoint, at the ends it is asked about."""

    def __init__(self, store: Store, rule: EmergingTopicRule) -> None:
        self.store, self.rule = store, rule
        self.states: dict[str, KeyState] = {}
        self.query_s: list[float] = []

    async def at(self, end: datetime) -> list[tuple[str, Found, bool]]:
        """(touchpoint, its detection, whether its alert fired) for every touchpoint evaluated
        at ``end``."""
        wanted = Wanted(self.rule, tuple(EMERGING_TOPIC.history(self.rule)))
        began = time.perf_counter()
        rows = await EMERGING_TOPIC.loader(self.store, [wanted],
                                           Points({end: None}, self.rule.window_s))
        self.query_s.append(time.perf_counter() - began)
        out = []
        for touchpoint, found in sorted(rows.get(self.rule.id, {}).items()):
            measurement = measure_emerging(self.rule, found, end)
            if measurement is None:
                continue
            state = self.states.get(touchpoint, KeyState())
            self.states[touchpoint], transition = step(
                state, measurement, end, cooldown_s=self.rule.cooldown_s,
                resolve_after_s=self.rule.resolve_after_s, key=f"{self.rule.id}:{touchpoint}",
                now=end)
            out.append((touchpoint, found[-1], transition == "fire"))
        return out


def _firing(rule: EmergingTopicRule, found: Found) -> list[Any]:
    return [r for r in found.rising if r.llr >= rule.min_llr]


def _evaluate(found: list[tuple[str, Found, bool]], rule: EmergingTopicRule, end: datetime,
              tally: dict[str, Any]) -> None:
    """Count a background evaluation's touchpoint-windows, breaches and alerts."""
    for touchpoint, detection, fired in found:
        tally["ticks"] += 1
        firing = _firing(rule, detection)
        tally["breached"] += bool(firing)
        if firing and len(tally["breaches"]) < 200:
            tally["breaches"].append({
                "touchpoint": touchpoint, "at": end.isoformat(), "phrase": firing[0].text,
                "mentions": firing[0].mentions, "baseline": firing[0].baseline,
                "llr": round(firing[0].llr, 1), "new": firing[0].new})
        if fired:
            tally["false_alerts"].append({
                "touchpoint": touchpoint, "at": end.isoformat(), "phrase": firing[0].text,
                "mentions": firing[0].mentions, "baseline": firing[0].baseline,
                "llr": round(firing[0].llr, 1)})


async def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    segmenter = Segmenter()
    texts = load_texts(args.data_dir)
    pool = [(tp, candidate_phrases(segmenter.cut(text))) for tp, text in texts]
    segmented_s = time.perf_counter() - started
    rule = EmergingTopicRule.model_validate(
        {"id": "new-complaint", "type": "emerging_topic",
         **({"baseline_s": args.baseline_s} if args.baseline_s else {})})
    bucket_s = load_settings().emerging_bucket_s
    if rule.baseline_s % bucket_s or args.tick_s % bucket_s or rule.window_s > bucket_s:
        raise SystemExit(f"--baseline-s {rule.baseline_s} and --tick-s {args.tick_s} must be "
                         f"whole buckets of VOC_EMERGING_BUCKET_S {bucket_s}, the window "
                         f"{rule.window_s} s at most one")
    excluded = Excluded(load_terms())
    rng = random.Random(args.seed)
    warmup_h = rule.baseline_s // bucket_s
    background_h = int(args.days * 86400) // bucket_s
    tick_h = args.tick_s // bucket_s
    drifts = pick_drifts(pool, excluded, args.drifts, warmup_h * bucket_s,
                         background_h * bucket_s, args.drift_peak, rng)
    # the injection, and which buckets hold raw rows the real roll-up rolls up: the hours
    # just before it, its own, and the first hours of the baselines read every minute
    inject_at = (warmup_h + background_h) * bucket_s + rng.randrange(60, 600)
    minutes = list(range((inject_at // 60 + 1) * 60, inject_at + args.inject_minutes * 60 + 1,
                         60))
    inject_h = inject_at // bucket_s
    raw_hours = set(range(inject_h - args.raw_hours, inject_h))
    raw_hours |= {(m - rule.window_s - rule.baseline_s) // bucket_s for m in minutes}
    horizon = phrase_rollup.horizon_s([rule.window_s + rule.baseline_s], bucket_s)
    directory = None
    url = args.store
    if url is None:
        directory = Path(tempfile.mkdtemp(prefix="emerging-bench-"))
        url = f"chdb://{directory}"
    store = await open_store(url)
    try:
        await migrate(store)
        foreign = await store.query("SELECT count() AS n FROM feedback WHERE source != 'bench'")
        if int(foreign[0]["n"]):
            raise SystemExit(f"{url} holds feedback this bench did not write, and the bench "
                             "empties the table: point --store at a database of its own")
        for table in ("bench_pool", "bench_draws"):
            await store.execute(f"DROP TABLE IF EXISTS {table}")
        await store.execute(POOL_DDL)
        await store.execute(DRAWS_DDL)
        for table in ("feedback", "phrase_counts", "phrase_rollups"):
            await store.execute(f"TRUNCATE TABLE {table}")
        await store.insert("bench_pool", [{"idx": i, "touchpoint": tp, "phrases": phrases}
                                          for i, (tp, phrases) in enumerate(pool)])
        replay = Replay(store, len(pool), drifts, args.rate, args.batch_s, args.seed)
        judge = Judge(store, rule)
        rollup_s = 0.0

        async def roll_up(now: datetime) -> None:
            nonlocal rollup_s
            began = time.perf_counter()
            await phrase_rollup.roll_up(store, bucket_s=bucket_s, horizon=horizon, now=now)
            rollup_s += time.perf_counter() - began

        # warm-up and background, an hour at a time: evaluated every tick_h hours
        tally: dict[str, Any] = {"ticks": 0, "breached": 0, "false_alerts": [], "breaches": []}
        for hour in range(inject_h):
            start = hour * bucket_s
            evaluated = hour >= warmup_h and (hour - warmup_h) % tick_h == 0
            if hour in raw_hours:
                await replay.span(start, start + bucket_s)
            else:
                window_rows = (await replay.span(start, start + rule.window_s)
                               if evaluated else 0)
                await replay.generate(start, bucket_s, window_rows)
            if not evaluated:
                continue
            end = T0 + timedelta(seconds=start + rule.window_s)
            await roll_up(end)
            _evaluate(await judge.at(end), rule, end, tally)
            print(f"{end.isoformat()} raw {replay.events} generated {replay.generated} "
                  f"evaluations {tally['ticks']} false alerts {len(tally['false_alerts'])} "
                  f"(insert {replay.insert_s:.0f}s, generate {replay.generate_s:.0f}s, "
                  f"roll-up {rollup_s:.0f}s, queries {sum(judge.query_s):.0f}s)",
                  file=sys.stderr, flush=True)
        background_ticks = len(judge.query_s)
        # the injection, raw rows and the real roll-up, evaluated every minute as live
        tp_share = sum(1 for tp, _ in pool if tp == INJECTED_TOUCHPOINT) / len(pool)
        detection = None
        injected: list[datetime] = []
        for minute in minutes:
            await replay.until(minute)
            injected += await inject(store, replay, tp_share, args.share,
                                     max(inject_at, minute - 60), minute, segmenter, rng)
            end = T0 + timedelta(seconds=minute)
            await roll_up(end)
            for touchpoint, found, fired in await judge.at(end):
                firing = _firing(rule, found)
                if not fired:
                    continue
                if touchpoint == INJECTED_TOUCHPOINT and injected:
                    top = firing[0].text
                    detection = {
                        "touchpoint": touchpoint, "window_end": end.isoformat(),
                        "seconds": (end - injected[0]).total_seconds(),
                        "top_phrase": top, "exact": top == display(INJECTED_PHRASE),
                        "contains_term": INJECTED_TERM in top,
                        "phrases": [r.text for r in firing[:5]],
                        "mentions": firing[0].mentions, "customers": firing[0].customers,
                        "injected_before": len(injected)}
                else:
                    tally["false_alerts"].append({
                        "touchpoint": touchpoint, "at": end.isoformat(),
                        "phrase": firing[0].text, "during_injection": True})
            if detection is not None:
                break
        rolled = await store.query(
            "SELECT count() AS n FROM phrase_rollups FINAL WHERE done = 1")
        windows_per_day = 86400 / rule.window_s
        touchpoints = len({tp for tp, _ in pool})
        ticks, breached, false_alerts = tally["ticks"], tally["breached"], tally["false_alerts"]
        in_background = [a for a in false_alerts if not a.get("during_injection")]
        return {
            "store": store.backend, "rate": args.rate, "days": args.days,
            "tick_s": args.tick_s, "baseline_s": rule.baseline_s, "window_s": rule.window_s,
            "bucket_s": bucket_s, "raw_hours": sorted(h - inject_h for h in raw_hours),
            "raw_hours_before": args.raw_hours,
            "touchpoints": touchpoints, "texts": len(pool), "share": args.share,
            "injected_touchpoint": INJECTED_TOUCHPOINT,
            "injected_touchpoint_share": round(tp_share, 4),
            "injected_phrase": display(INJECTED_PHRASE), "injected_term": INJECTED_TERM,
            "drifts": [{"phrase": display(d.phrase), "touchpoint": d.touchpoint,
                        "centre_h": round(d.centre_s / 3600, 1),
                        "width_h": round(d.width_s / 3600, 1), "peak": round(d.peak, 2)}
                       for d in drifts],
            "events": replay.events + replay.generated, "raw_events": replay.events,
            "generated_events": replay.generated, "buckets_rolled": int(rolled[0]["n"]),
            "background_evaluations": background_ticks,
            "evaluations": ticks, "breached": breached, "breaches": tally["breaches"],
            "false_alerts": false_alerts[:50], "false_alert_count": len(in_background),
            "false_per_day": round(len(in_background) / args.days, 3),
            "false_per_day_extrapolated": round(
                breached / max(ticks, 1) * windows_per_day * touchpoints, 3),
            "detection": detection, "injected": len(injected),
            "insert_s": round(replay.insert_s, 1), "generate_s": round(replay.generate_s, 1),
            "rollup_s": round(rollup_s, 1), "query_s": round(sum(judge.query_s), 1),
            "query_max_s": round(max(judge.query_s, default=0.0), 2),
            "segment_s": round(segmented_s, 1),
            "seconds": round(time.perf_counter() - started, 1),
        }
    finally:
        await store.close()
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


def markdown(result: dict[str, Any], command: str) -> str:
    found = result["detection"]
    if found is None:
        top = "no alert"
    else:
        how = ("yes, exactly" if found["exact"] else
               f"contains the injected term {result['injected_term']}"
               if found["contains_term"] else "no")
        top = f"{how} ({found['top_phrase']})"
    rows = [
        "| figure | target | measured |", "|---|---|---|",
        f"| event time from first injected comment to alert | ≤ {TARGET_ALERT_S:.0f} s | "
        + (f"{found['seconds']:.0f} s ({found['injected_before']} injected comments)"
           if found else "no alert") + " |",
        f"| false `emerging_topic` alerts per simulated day | ≤ {TARGET_FALSE_PER_DAY:g} | "
        f"{result['false_per_day']:g} counted ({result['false_alert_count']} over "
        f"{result['evaluations']} sampled touchpoint-windows in {result['days']:g} days); "
        f"{result['false_per_day_extrapolated']:g} extrapolated to every window "
        f"({result['breached']} breached) |",
        f"| the injected phrase ({result['injected_phrase']}) is the alert's top phrase | "
        f"yes | {top} |",
    ]
    drifts = ", ".join(f"{d['phrase']} ({d['touchpoint']}, x{1 + d['peak']:.1f} at "
                       f"{d['centre_h']} h)" for d in result["drifts"])
    return "\n".join([
        f"`{command}`: {result['events']:,} background events in {result['store']} "
        f"({result['rate']:g} events/s on average with a day/night curve, "
        f"{result['touchpoints']} touchpoints from {result['texts']:,} shared dev texts, six "
        f"channels; organic drift: {drifts}): one baseline of warm-up, then "
        f"{result['days']:g} simulated days evaluated every {result['tick_s']} s of event time "
        f"({result['background_evaluations']} windows), then a new issue at "
        f"{100 * result['share']:g} % of `{result['injected_touchpoint']}`'s traffic evaluated "
        f"every minute; the `emerging_topic` kind with the shipped defaults"
        + ("" if result["baseline_s"] == 86400 else
           f" but a {result['baseline_s']} s baseline") + ". "
        f"{result['raw_events']:,} of the events are `feedback` rows (each evaluated window; "
        f"the injection's hour, the {result['raw_hours_before']} before it and the first hour "
        f"of each baseline read during the injection, those rolled up by the real roll-up); "
        f"the other "
        f"{result['generated_events']:,} were drawn per hour into `phrase_counts` "
        f"(multinomial, from the same texts). Raw inserts took {result['insert_s']:g} s, "
        f"drawing {result['generate_s']:g} s, roll-ups {result['rollup_s']:g} s, evaluations "
        f"{result['query_s']:g} s (at most {result['query_max_s']:g} s each), the whole run "
        f"{result['seconds']:g} s.", "", *rows, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True,
                        help="the shared dev texts (../shared/data/nlp)")
    parser.add_argument("--store", help="store URL (default: a fresh chdb directory); "
                        "clickhouse://.../db for a server: a database of its own, whose feedback table the "
                        "bench empties (refused when it holds other feedback)")
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--tick-s", type=int, default=3600,
                        help="event time between background evaluations")
    parser.add_argument("--batch-s", type=int, default=600, help="event time per insert")
    parser.add_argument("--baseline-s", type=int, default=0,
                        help="the rule's baseline_s (0: the shipped default)")
    parser.add_argument("--share", type=float, default=0.01)
    parser.add_argument("--drifts", type=int, default=4)
    parser.add_argument("--drift-peak", type=float, default=2.0)
    parser.add_argument("--inject-minutes", type=int, default=30)
    parser.add_argument("--raw-hours", type=int, default=2,
                        help="hours of raw rows, rolled up for real, before the injection's")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    command = (f"python bench/emerging_bench.py --data-dir <shared>/data/nlp --rate {args.rate:g} "
               f"--days {args.days:g} --tick-s {args.tick_s}"
               + (f" --baseline-s {args.baseline_s}" if args.baseline_s else "")
               + f" --seed {args.seed}")
    result["markdown"] = markdown(result, command)
    print(result["markdown"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
