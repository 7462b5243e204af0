"""Roll closed buckets of event time up into ``phrase_counts`` (migration 0019), so the
emerging-topic detector reads a day of baseline from a few rows per phrase
(docs/emerging.md#phrase-counts).

Each run looks at every bucket of the horizon (the longest baseline read) that ended before
now, and rolls up again each one whose newest record in ``phrase_rollups`` is missing, not done
(a run cut short), or counted other feedback rows than the bucket holds now (a late or a
redelivered event arrived since): a ``done = 0`` record, the bucket's counts from
``feedback FINAL`` in one INSERT ... SELECT, then a ``done = 1`` record. A store fault at any
step leaves the bucket not done: readers count it from ``feedback`` and the next run redoes it
whole, replacing whatever part was written (ReplacingMergeTree, newer ``rolled_ms``). Runs are
idempotent, so two alerting processes rolling up at once only repeat work.

The alerting stage runs it every ``ROLLUP_EVERY_S`` (services/alerting/worker.py, checked at
each rules poll); bench/emerging_bench.py calls the same function at each evaluation.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from prometheus_client import Counter

from services.alerting import queries
from services.core.store import Store

log = structlog.get_logger(__name__)

FAILURES = Counter("voc_phrase_rollup_failures_total",
                   "Bucket roll-ups of phrase counts that raised; the bucket stays counted from "
                   "feedback rows and is tried again at the next run.")


@dataclass(frozen=True)
class RollupRun:
    """What one run did: the buckets rolled up (epoch seconds of their starts) and those
    already current."""

    rolled: tuple[int, ...]
    current: int
    failed: tuple[int, ...] = ()


class RollupIncomplete(Exception):
    """Some buckets of a run could not be rolled up (each logged with its error); the others
    were. Raised at the end of the run, so a bucket that always fails blocks no other."""

    def __init__(self, run: RollupRun, errors: dict[int, BaseException]) -> None:
        self.run = run
        self.errors = errors
        first = min(errors)
        super().__init__(
            f"{len(errors)} phrase-count bucket(s) not rolled up (first "
            f"{datetime.fromtimestamp(first, UTC).isoformat()}: {errors[first]!s:.300}); "
            f"{len(run.rolled)} rolled up; they are read from feedback rows until a run "
            "succeeds")


def horizon_s(baselines: Iterable[int], bucket_s: int) -> int:
    """How far back a run looks: the longest window plus baseline any reader uses, and one
    bucket for the baseline's first, partly covered bucket."""
    return max(baselines, default=0) + bucket_s


async def roll_up(store: Store, *, bucket_s: int, horizon: int,
                  now: datetime | None = None) -> RollupRun:
    """Bring every closed bucket of the ``horizon`` seconds before ``now`` (default the wall
    clock) up to date, oldest first. A bucket whose roll-up fails stays not done and the run
    goes on; :class:`RollupIncomplete` is raised at the end if any failed (module docstring).
    Listing the buckets failing raises at once: there is nothing to go on with."""
    moment = int((now or datetime.now(UTC)).timestamp())
    hi = moment // bucket_s * bucket_s
    lo = max(hi - horizon // bucket_s * bucket_s - bucket_s, 0)
    buckets = await queries.phrase_buckets(store, bucket_s=bucket_s,
                                           lo=datetime.fromtimestamp(lo, UTC),
                                           hi=datetime.fromtimestamp(hi, UTC))
    rolled = []
    errors: dict[int, BaseException] = {}
    for bucket in buckets:
        if bucket.done and bucket.rolled_rows == bucket.rows:
            continue
        rolled_ms = time.time_ns() // 1_000_000
        try:
            await queries.record_phrase_rollup(store, bucket_s=bucket_s, start=bucket.start,
                                               rolled_ms=rolled_ms, done=False,
                                               rows=bucket.rows)
            await queries.roll_up_phrases(store, bucket_s=bucket_s, start=bucket.start,
                                          rolled_ms=rolled_ms)
            await queries.record_phrase_rollup(store, bucket_s=bucket_s, start=bucket.start,
                                               rolled_ms=rolled_ms, done=True,
                                               rows=bucket.rows)
        except Exception as exc:  # this bucket only: the next ones are still rolled up
            errors[bucket.start] = exc
            FAILURES.inc()
            log.error("phrase-count bucket NOT rolled up; detections count it from feedback "
                      "rows (slower) and the next run tries again. If it fails every run, "
                      "read the error: a memory limit needs a higher max_memory_usage or a "
                      "smaller VOC_EMERGING_BUCKET_S; a missing table needs the migrations "
                      "(voc db migrate)",
                      bucket_s=bucket_s,
                      bucket=datetime.fromtimestamp(bucket.start, UTC).isoformat(),
                      rows=bucket.rows, error=f"{type(exc).__name__}: {exc!s:.300}")
            continue
        rolled.append(bucket.start)
    if rolled:
        log.info("phrase counts rolled up", bucket_s=bucket_s, buckets=len(rolled),
                 first=datetime.fromtimestamp(rolled[0], UTC).isoformat(),
                 last=datetime.fromtimestamp(rolled[-1], UTC).isoformat())
    run = RollupRun(tuple(rolled), len(buckets) - len(rolled) - len(errors),
                    tuple(sorted(errors)))
    if errors:
        raise RollupIncomplete(run, errors)
    return run
