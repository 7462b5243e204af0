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
- **Sampled evaluation ticks:** the live stage evaluates every minute; here the real path
  evaluates the background once every ``--tick-s`` of event time (the 5-minute window at the
  start of the hour, against the 24 whole hours before it), and after the injection starts
  every minute, as live. Those sampled windows report their own count, and they tie the
  full-resolution pass to the real path: for each touchpoint-window the pass's decision
  (:func:`decide_scope`) on the counts the kind's SQL returned (tapped on their way to the
  detector) is compared with the kind's.
- **Full resolution, in process** (:class:`FullPass`, run first): every minute end of the
  week, each touchpoint and overall (10,080 x 15 evaluations), decided by the kind's own code
  (the SQL's ranking and limit, ``emerging.detect`` with the clearing thresholds,
  ``measure_emerging``, the lifecycle ``engine.step``) on per-minute phrase counts drawn from
  the same generator (per minute: its event count by the day/night curve and the batch's
  noise, one multinomial draw of texts over the pool, the drifts' extra texts; window and
  baseline as running sums over a ring of minutes; each event its own customer). Its false
  alerts per simulated day, with a 95 % upper bound, are the false-alert figure; it measures
  the injection's time to alert too (the real path's stays the headline for that and the
  top phrase).
- **Warm-up:** the store first gets one baseline of background that is not evaluated, so the
  first evaluated window has a full baseline, as a deployment has after its first day.

    python bench/emerging_bench.py --data-dir ../shared/data/nlp --rate 1000 --days 7 \\
        --tick-s 43200 --seed 18 --json build/bench/emerging.json
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
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix
from scipy.stats import beta, chi2

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from services.alerting import phrase_rollup, queries  # noqa: E402
from services.alerting.emerging import Count, Excluded, Rising, corrected, detect  # noqa: E402
from services.alerting.engine import KeyState, step  # noqa: E402
from services.alerting.kinds.base import Points, Wanted  # noqa: E402
from services.alerting.kinds.emerging_topic import (  # noqa: E402
    EMERGING_TOPIC,
    EmergingTopicRule,
    Found,
    measure_emerging,
    reaching,
)
from services.core.migrations import migrate  # noqa: E402
from services.core.phrases import candidate_phrases, display, words  # noqa: E402
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


class PairSpace:
    """Every (scope, phrase) the texts can mention, as rows of two sparse matrices over the
    texts: a scope is a touchpoint, or '' for all touchpoints together. Within a scope the
    phrases are in code-point (= UTF-8 byte) order, so a lower row is the SQL's tie-break
    (``ORDER BY ..., phrase``)."""

    def __init__(self, texts: Sequence[tuple[str, Sequence[str]]]) -> None:
        touchpoints = sorted({tp for tp, _ in texts})
        self.scopes = [*touchpoints, ""]
        by_scope: dict[str, set[str]] = {s: set() for s in self.scopes}
        for tp, phrases in texts:
            by_scope[tp].update(phrases)
            by_scope[""].update(phrases)
        self.phrases: list[str] = []
        offsets = [0]
        index: dict[tuple[str, str], int] = {}
        for scope in self.scopes:
            for phrase in sorted(by_scope[scope]):
                index[(scope, phrase)] = len(self.phrases)
                self.phrases.append(phrase)
            offsets.append(len(self.phrases))
        self.offsets = np.asarray(offsets)
        scope_of = {s: k for k, s in enumerate(self.scopes)}
        rows, cols, events = [], [], []
        for i, (tp, phrases) in enumerate(texts):
            for phrase in phrases:
                rows += [index[(tp, phrase)], index[("", phrase)]]
                cols += [i, i]
            events += [scope_of[tp], scope_of[""]]
        self.mentions = csr_matrix((np.ones(len(rows), np.int64), (rows, cols)),
                                   shape=(len(self.phrases), len(texts)))
        self.events = csr_matrix((np.ones(len(events), np.int64),
                                  (events, np.repeat(np.arange(len(texts)), 2))),
                                 shape=(len(self.scopes), len(texts)))


def _g2(a: np.ndarray, v: float, c: np.ndarray, bv: float) -> np.ndarray:
    """emerging.llr over arrays (signed G²), for the pre-filter only: the detector decides."""
    def xlogx(x: np.ndarray | float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0)), 0.0)
    b, d, n = v - a, bv - c, v + bv
    g2 = 2 * (xlogx(a) + xlogx(b) + xlogx(c) + xlogx(d) + xlogx(n)
              - xlogx(v) - xlogx(bv) - xlogx(a + c) - xlogx(b + d))
    g2 = np.maximum(g2, 0.0)
    return np.where(a / max(v, 1) >= c / max(bv, 1), g2, -g2)


def decide_scope(rule: EmergingTopicRule, excluded: Excluded, phrases: Sequence[str],
                 mentions: np.ndarray, customers: np.ndarray, baseline: np.ndarray,
                 volume: int, baseline_volume: int, shut: np.ndarray, *,
                 force: bool = False) -> tuple[Rising, ...] | None:
    """What the ``emerging_topic`` kind's loader finds for one scope's window, given the
    counts its SQL would return before its limit (``phrases`` in byte order, every one with
    at least the SQL's minimum mentions; ``shut`` marks the taxonomy's): the SQL's ranking
    and limit (mentions / (baseline + 1) descending, then phrase; ``max_phrases``), then
    ``emerging.detect`` with the kind's clearing thresholds, as ``detections`` calls it.

    The detector runs on the phrases that can matter to its answer only: those passing the
    thresholds it checks phrase by phrase (support, lift, G² at the clearing level, not the
    taxonomy's; with a hair of margin, the detector decides), the listed words of those (its
    cohesion test) and the listed taxonomy phrases holding one of them (its coverage test);
    every other listed phrase can neither be found nor change what is. None, without calling
    it, when no listed phrase passes. ``force`` gives it every listed phrase (the pass audits
    the shortcut so)."""
    relaxed = replace(rule.thresholds(), min_llr=rule.clear())
    new = baseline == 0
    candidate = ((mentions >= np.where(new, relaxed.new_min_mentions, relaxed.min_mentions))
                 & (customers >= np.where(new, relaxed.new_min_customers,
                                          relaxed.min_customers))
                 & ((mentions / max(volume, 1)) / ((baseline + 1) / max(baseline_volume, 1))
                    >= relaxed.min_lift * (1 - 1e-9))
                 & ~shut)
    tested = max(min(len(mentions), rule.max_phrases), 1)
    passing = np.zeros(len(mentions), bool)
    if volume > 0 and baseline_volume >= relaxed.min_baseline_volume and candidate.any():
        passing[candidate] = _g2(mentions[candidate], volume, baseline[candidate],
                                 baseline_volume) >= corrected(relaxed.min_llr, tested) - 1e-6
    if not force and not passing.any():
        return None
    ratio = mentions / (baseline + 1)
    order = np.lexsort((np.arange(len(mentions)), -ratio))[:rule.max_phrases]
    if not force:
        kept = order[passing[order]]
        if not len(kept):
            return None
        listed = {phrases[i]: int(i) for i in order}
        runs = {phrases[i] for i in kept}
        wanted = {int(i) for i in kept}
        for phrase in runs:
            wanted.update(listed[w] for w in words(phrase) if w in listed)
        for i in order[shut[order]]:
            parts = words(phrases[i])
            if any(" ".join(parts[j:j + n]) in runs for n in range(1, len(parts))
                   for j in range(len(parts) - n + 1)):
                wanted.add(int(i))
        order = np.array([i for i in order if int(i) in wanted])
    counts = [Count(phrases[i], int(mentions[i]), int(customers[i]), int(baseline[i]))
              for i in order]
    return tuple(detect(counts, volume, baseline_volume, relaxed, excluded, tested=tested))


def _upper_poisson(k: int, exposure: float) -> float:
    """One-sided 95 % upper bound of a Poisson rate with ``k`` events in ``exposure``."""
    return float(chi2.ppf(0.95, 2 * k + 2) / 2 / exposure)


def _upper_share(k: int, n: int) -> float:
    """One-sided 95 % Clopper-Pearson upper bound of a share of ``k`` in ``n``."""
    return 1.0 if k >= n else float(beta.ppf(0.95, k + 1, n - k))


@dataclass
class FullPass:
    """Every evaluation the live stage makes, every minute of event time, per touchpoint and
    overall, decided by the kind's own code (:func:`decide_scope`: the SQL's ranking and
    limit, ``emerging.detect``; then ``measure_emerging`` and the lifecycle ``engine.step``)
    on per-minute counts drawn in process from the background generator the drawn hours use.

    Each minute: its event count (the day/night curve, the tenth of noise per ``batch_s``),
    its texts by one multinomial draw over the pool, the drifting phrases' extra texts
    likewise; the injected comments Poisson per second as the raw-row injection. Window and
    baseline are running sums of the minutes' text counts (a ring of one baseline and window
    of minutes), turned into phrase counts by one sparse product. Every text's event is its
    own customer (the raw rows' customers are drawn from five million, so two events of one
    customer mentioning one phrase in a window are all but absent; the real-SQL windows
    measure how often)."""

    pool: Sequence[tuple[str, Sequence[str]]]
    drifts: Sequence[Drift]
    rule: EmergingTopicRule
    excluded: Excluded
    rate: float
    batch_s: int
    seed: int
    injected: Sequence[Sequence[str]] = ()
    injected_touchpoint: str = INJECTED_TOUCHPOINT
    audit_every: int = 60

    def run(self, warmup_s: int, background_s: int, inject_at: int | None = None,
            share: float = 0.01, inject_minutes: int = 30) -> dict[str, Any]:
        """Evaluate every minute end from one window after ``warmup_s`` through the
        ``background_s`` after it, then (with ``inject_at``) every minute of the injection
        until its alert or ``inject_minutes``."""
        began = time.perf_counter()
        rule, size = self.rule, len(self.pool)
        texts = [*self.pool, *((self.injected_touchpoint, p) for p in self.injected)]
        space = PairSpace(texts)
        shut = np.fromiter((self.excluded(p) for p in space.phrases), bool, len(space.phrases))
        window_m, baseline_m = rule.window_s // 60, rule.baseline_s // 60
        ring = np.zeros((window_m + baseline_m + 1, len(texts)), np.int32)
        window = np.zeros(len(texts), np.int64)
        base = np.zeros(len(texts), np.int64)
        draws = np.random.default_rng([self.seed, 5])
        noise = random.Random(self.seed * 7919 + 5)
        uniform = np.full(size, 1 / size)
        tp_share = sum(1 for tp, _ in self.pool if tp == self.injected_touchpoint) / size
        minimum = min(rule.min_mentions, rule.new_min_mentions)
        first_end = warmup_s // 60 + window_m
        last_background = (warmup_s + background_s) // 60 + window_m - 1
        stop = (last_background if inject_at is None
                else max(last_background, inject_at // 60 + inject_minutes + 1))
        states: dict[str, KeyState] = {}
        alerts: list[dict[str, Any]] = []
        # the phrases of the drifting texts, all of which the drift makes more frequent
        drifted = [(d.touchpoint, {p for i in d.indexes for p in self.pool[i][1]})
                   for d in self.drifts]
        tally = {"evaluations": 0, "breached": 0, "decided": 0, "audited": 0,
                 "audit_differ": 0, "events": 0}
        batch, factor = -1, 1.0
        injected_at: list[float] = []
        detection: dict[str, Any] | None = None
        for minute in range(stop):
            at = minute * 60
            if at // self.batch_s != batch:
                batch, factor = at // self.batch_s, noise.uniform(0.9, 1.1)
            count = int(self.rate * 60 * day_curve(at + 30) * factor)
            drawn = np.zeros(len(texts), np.int64)
            drawn[:size] = draws.multinomial(count, uniform)
            for drift in self.drifts:
                extra = int(count * len(drift.indexes) / size * drift.factor(at + 30))
                if extra:
                    np.add.at(drawn, np.asarray(drift.indexes), draws.multinomial(
                        extra, np.full(len(drift.indexes), 1 / len(drift.indexes))))
            if inject_at is not None and self.injected and at + 60 > inject_at:
                seconds = np.arange(max(at, inject_at), at + 60)
                expected = np.array([self.rate * day_curve(s) * tp_share * share
                                     for s in seconds])
                per_second = draws.poisson(expected)
                injected_at += [float(s) + draws.random() for s, n in
                                zip(seconds, per_second, strict=True) for _ in range(n)]
                drawn[size:] = draws.multinomial(int(per_second.sum()),
                                                 np.full(len(self.injected),
                                                         1 / len(self.injected)))
            tally["events"] += int(drawn.sum())
            ring[minute % len(ring)] = drawn
            window += drawn
            if minute >= window_m:
                leaving = ring[(minute - window_m) % len(ring)]
                window -= leaving
                base += leaving
            if minute >= window_m + baseline_m:
                base -= ring[(minute - window_m - baseline_m) % len(ring)]
            end_m = minute + 1
            if end_m % 1440 == 0:
                print(f"full-resolution pass: day {end_m // 1440}, {tally['evaluations']} "
                      f"evaluations, {len(alerts)} alerts ({time.perf_counter() - began:.0f} s)",
                      file=sys.stderr, flush=True)
            if end_m < first_end:
                continue
            in_background = end_m <= last_background and (
                inject_at is None or end_m * 60 <= inject_at)
            end = T0 + timedelta(minutes=end_m)
            audit = (end_m - first_end) % self.audit_every == 0
            fired = self._evaluate(space, shut, window, base, minimum, end, audit, states,
                                   tally if in_background else None)
            for scope, rising in fired:
                top = rising[0]
                if (inject_at is not None and injected_at and not in_background
                        and scope == self.injected_touchpoint):
                    detection = {"window_end": end.isoformat(),
                                 "seconds": round(end_m * 60 - injected_at[0], 1),
                                 "top_phrase": top.text, "mentions": top.mentions,
                                 "injected_before": sum(1 for s in injected_at
                                                        if s < end_m * 60)}
                else:
                    alerts.append({"scope": scope or "(overall)", "at": end.isoformat(),
                                   "phrase": top.text, "mentions": top.mentions,
                                   "baseline": top.baseline, "llr": round(top.llr, 1),
                                   "background": in_background,
                                   "drift": any(scope in (tp, "") and top.phrase in said
                                                for tp, said in drifted)})
            if detection is not None:
                break
        days = background_s / 86400
        background = [a for a in alerts if a["background"]]
        overall = [a for a in background if a["scope"] == "(overall)"]
        by_phrase = Counter(f"{a['scope']} {a['phrase']}" for a in background)
        return {
            "evaluations": tally["evaluations"], "scopes": len(space.scopes),
            "ticks": tally["evaluations"] // len(space.scopes),
            "breached": tally["breached"],
            "breached_share_upper95": _upper_share(tally["breached"], tally["evaluations"]),
            "false_alerts": len(background), "false_alerts_overall": len(overall),
            "false_per_day": round(len(background) / days, 3),
            "false_per_day_touchpoints": round((len(background) - len(overall)) / days, 3),
            "false_per_day_upper95": round(_upper_poisson(len(background), days), 3),
            "false_alerts_drift": sum(a["drift"] for a in background),
            "by_phrase": dict(by_phrase.most_common(100)),
            "alerts": alerts[:50], "during_injection": [a for a in alerts
                                                        if not a["background"]][:20],
            "detection": detection, "detector_calls": tally["decided"],
            "audited": tally["audited"], "audit_differ": tally["audit_differ"],
            "events": tally["events"], "phrases": len(space.phrases),
            "touchpoints": len(space.scopes) - 1,
            "seconds": round(time.perf_counter() - began, 1)}

    def _evaluate(self, space: PairSpace, shut: np.ndarray, window: np.ndarray,
                  base: np.ndarray, minimum: int, end: datetime, audit: bool,
                  states: dict[str, KeyState], tally: dict[str, int] | None
                  ) -> list[tuple[str, tuple[Rising, ...]]]:
        """One minute end, every scope: the scopes whose alert fired, with their phrases."""
        rule = self.rule
        mentions = space.mentions @ window
        baseline = space.mentions @ base
        volumes, baseline_volumes = space.events @ window, space.events @ base
        candidates = np.flatnonzero(mentions >= minimum)
        bounds = np.searchsorted(candidates, space.offsets)
        fired = []
        for k, scope in enumerate(space.scopes):
            rows = candidates[bounds[k]:bounds[k + 1]]
            volume, baseline_volume = int(volumes[k]), int(baseline_volumes[k])
            if volume == 0 and baseline_volume == 0:
                continue
            args = (rule, self.excluded, [space.phrases[i] for i in rows] if audit else
                    _Lazy(space.phrases, rows), mentions[rows], mentions[rows], baseline[rows],
                    volume, baseline_volume, shut[rows])
            rising = decide_scope(*args)
            if tally is not None and audit:
                tally["audited"] += 1
                tally["audit_differ"] += (rising or ()) != decide_scope(*args, force=True)
            if rising is not None and tally is not None:
                tally["decided"] += 1
            found = Found(end, volume, rising or ())
            measurement = measure_emerging(rule, [found], end)
            state = states.get(scope, KeyState())
            states[scope], transition = step(
                state, measurement, end, cooldown_s=rule.cooldown_s,
                resolve_after_s=rule.resolve_after_s, key=f"{rule.id}:{scope}", now=end)
            if tally is not None:
                tally["evaluations"] += 1
                tally["breached"] += bool(measurement and measurement.breached)
            if transition == "fire" and measurement is not None:
                fired.append((scope, tuple(measurement.evidence)))
        return fired


class _Lazy(Sequence[str]):
    """The phrases of some rows, looked up only when the detector is called."""

    def __init__(self, phrases: list[str], rows: np.ndarray) -> None:
        self.phrases, self.rows = phrases, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: Any) -> Any:
        return self.phrases[int(self.rows[i])]


class Judge:
    """The rule kind and the lifecycle per touchpoint, at the ends it is asked about; and, for
    each touchpoint-window, the full-resolution pass's decision (:func:`decide_scope`) on the
    counts the kind's SQL returned, its customers modelled as the pass models them (each
    mention its own customer), compared with what the kind decided."""

    def __init__(self, store: Store, rule: EmergingTopicRule, excluded: Excluded) -> None:
        self.store, self.rule, self.excluded = store, rule, excluded
        self.states: dict[str, KeyState] = {}
        self.query_s: list[float] = []
        self.tie: dict[str, Any] = {"windows": 0, "agree": 0, "differ": [], "counts": 0,
                                    "customers_differ": 0}

    async def at(self, end: datetime) -> list[tuple[str, Found, bool]]:
        """(touchpoint, its detection, whether its alert fired) for every touchpoint evaluated
        at ``end``."""
        wanted = Wanted(self.rule, tuple(EMERGING_TOPIC.history(self.rule)))
        seen: dict[str, list[Any]] = {}
        counted, measured = queries.phrase_counts, queries.phrase_volumes

        async def counts(*args: Any, **kwargs: Any) -> list[queries.PhraseCount]:
            seen["counts"] = await counted(*args, **kwargs)
            return seen["counts"]

        async def volumes(*args: Any, **kwargs: Any) -> list[queries.PhraseVolume]:
            seen["volumes"] = await measured(*args, **kwargs)
            return seen["volumes"]

        # the loader's own queries, their rows kept on the way (the kind calls them through
        # the queries module, so the tap sees exactly what it decided on)
        queries.phrase_counts, queries.phrase_volumes = counts, volumes  # type: ignore[assignment]
        began = time.perf_counter()
        try:
            rows = await EMERGING_TOPIC.loader(self.store, [wanted],
                                               Points({end: None}, self.rule.window_s))
        finally:
            queries.phrase_counts, queries.phrase_volumes = counted, measured  # type: ignore[assignment]
        self.query_s.append(time.perf_counter() - began)
        out = []
        for touchpoint, found in sorted(rows.get(self.rule.id, {}).items()):
            self._tied(touchpoint, found[-1], seen)
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

    def _tied(self, touchpoint: str, found: Found, seen: dict[str, list[Any]]) -> None:
        """Whether the pass's decision on the SQL's counts is the kind's."""
        rows = sorted((c for c in seen.get("counts", []) if c.touchpoint == touchpoint),
                      key=lambda c: c.phrase)
        volume = next(v for v in seen["volumes"] if v.touchpoint == touchpoint)
        mentions = np.array([c.mentions for c in rows], np.int64)
        phrases = [c.phrase for c in rows]
        decided = decide_scope(
            self.rule, self.excluded, phrases, mentions, mentions,
            np.array([c.baseline for c in rows], np.int64), volume.volume, volume.baseline,
            np.fromiter((self.excluded(p) for p in phrases), bool, len(phrases))) or ()
        tie = self.tie
        tie["windows"] += 1
        tie["counts"] += len(rows)
        tie["customers_differ"] += sum(c.customers != c.mentions for c in rows)
        if [_decided(r) for r in decided] == [_decided(r) for r in found.rising]:
            tie["agree"] += 1
        elif len(tie["differ"]) < 20:
            tie["differ"].append({"touchpoint": touchpoint, "at": found.end.isoformat(),
                                  "kind": [r.text for r in found.rising[:5]],
                                  "pass": [r.text for r in decided[:5]]})


def _decided(rising: Rising) -> tuple[str, int, int, int, int, float]:
    """What a decision is made of, its customers aside (the pass models them, the tie
    counts how often the SQL's differ)."""
    return (rising.phrase, rising.mentions, rising.baseline, rising.volume,
            rising.baseline_volume, rising.llr)


def _evaluate(found: list[tuple[str, Found, bool]], rule: EmergingTopicRule, end: datetime,
              tally: dict[str, Any]) -> None:
    """Count a background evaluation's touchpoint-windows, breaches and alerts."""
    for touchpoint, detection, fired in found:
        tally["ticks"] += 1
        firing = reaching(detection.rising, rule.min_llr)
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
    full = FullPass(pool, drifts, rule, excluded, args.rate, args.batch_s, args.seed,
                    injected=[candidate_phrases(segmenter.cut(t)) for t in INJECTED])
    full_result = full.run(warmup_h * bucket_s, background_h * bucket_s, inject_at,
                           args.share, args.inject_minutes)
    print(f"full-resolution pass: {full_result['evaluations']} evaluations, "
          f"{full_result['false_alerts']} false alerts, detection {full_result['detection']}"
          f" ({full_result['seconds']} s)", file=sys.stderr, flush=True)
    if args.full_only:
        return {"full": full_result, "rate": args.rate, "days": args.days,
                "baseline_s": rule.baseline_s, "window_s": rule.window_s,
                "touchpoints": len({tp for tp, _ in pool}), "texts": len(pool),
                "seed": args.seed, "seconds": round(time.perf_counter() - started, 1)}
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
        judge = Judge(store, rule, excluded)
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
                firing = reaching(found.rising, rule.min_llr)
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
            "full": full_result, "tie": judge.tie,
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
        f"| sampled real-SQL windows: false `emerging_topic` alerts per simulated day | ≤ {TARGET_FALSE_PER_DAY:g} | "
        f"{result['false_per_day']:g} counted ({result['false_alert_count']} over "
        f"{result['evaluations']} sampled touchpoint-windows in {result['days']:g} days); "
        f"{result['false_per_day_extrapolated']:g} extrapolated to every window "
        f"({result['breached']} breached) |",
        f"| the injected phrase ({result['injected_phrase']}) is the alert's top phrase | "
        f"yes | {top} |",
    ]
    full, tie = result["full"], result["tie"]
    caught = full["detection"]
    rows += [
        f"| full resolution: false alerts per simulated day, every minute of the week | ≤ "
        f"{TARGET_FALSE_PER_DAY:g} | {full['false_per_day']:g} ({full['false_alerts']} alerts "
        f"in {full['evaluations']:,} evaluations: {full['ticks']:,} minute ends x "
        f"{full['scopes']} scopes, {full['touchpoints']} touchpoints and overall; "
        f"{full['false_alerts_overall']} of them overall, so "
        f"{full['false_per_day_touchpoints']:g} a day over the touchpoints alone; "
        f"{full['false_alerts_drift']} on a "
        f"phrase of the drifting texts; {full['breached']} breached); 95 % "
        f"upper bound {full['false_per_day_upper95']:g} a day |",
        "| full resolution: first injected comment to alert | "
        f"≤ {TARGET_ALERT_S:.0f} s | "
        + (f"{caught['seconds']:.0f} s ({caught['injected_before']} injected comments, top "
           f"phrase {caught['top_phrase']})" if caught else "no alert") + " |",
    ]
    differ = "; ".join(f"{d['touchpoint']} at {d['at']}: kind {d['kind']}, pass {d['pass']}"
                       for d in tie["differ"])
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
        f"{result['seconds']:g} s.", "",
        f"Full-resolution pass (in process, {full['seconds']:g} s): every minute end of the "
        f"{result['days']:g} simulated days and of the injection, each touchpoint and "
        f"overall, decided by the kind's code (the SQL's ranking and "
        f"limit, `emerging.detect`, `measure_emerging`, `engine.step`) on per-minute counts "
        f"drawn from the same generator ({full['events']:,} events; each event its own "
        f"customer); the detector was called in {full['detector_calls']:,} evaluations, the "
        f"others had no phrase passing its per-phrase thresholds ({full['audited']:,} of them "
        f"audited through the detector: {full['audit_differ']} differed). Tied to the real "
        f"path: on the SQL's counts of each of the {tie['windows']} touchpoint-windows the "
        f"kind evaluated, the pass's decision was the kind's in {tie['agree']}"
        + (f" (differing: {differ})" if differ else "")
        + f"; distinct customers differed from mentions in {tie['customers_differ']} of "
        f"{tie['counts']:,} phrase counts.", "", *rows, ""])


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
    parser.add_argument("--full-only", action="store_true",
                        help="only the full-resolution pass (every minute, in process)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    command = (f"python bench/emerging_bench.py --data-dir <shared>/data/nlp --rate {args.rate:g} "
               f"--days {args.days:g} --tick-s {args.tick_s}"
               + (f" --baseline-s {args.baseline_s}" if args.baseline_s else "")
               + f" --seed {args.seed}")
    if args.full_only:
        print(json.dumps(result, ensure_ascii=False, indent=1))
        return
    result["markdown"] = markdown(result, command)
    print(result["markdown"])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
