"""From aggregated SQL rows to ``cem_scores`` / ``topic_scores`` rows and ``score.v2`` events.

Pure functions: the SQL in ``queries`` sums the counts, this module derives the ratios and the
expectation gaps of each row, so both are unit-tested without a store.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from services.core.cem_metrics import (
    FLOAT_COUNTS,
    SCORE_COUNTS,
    TOPIC_COUNTS,
    URGENT_FLAGS,
    derive_scores,
    gap,
    mean_topic_sentiment,
    wire_fields,
)
from services.core.events import ExpectationGap, Score, TopicFigure, UrgentCounts
from services.scoring.expectations import Expectations
from services.scoring.windows import ALL, window_label

Record = dict[str, Any]


def _fields(names: Iterable[str]) -> tuple[tuple[str, str, bool], ...]:
    return tuple((name, f"agg_{name}", name in FLOAT_COUNTS) for name in names)


_SCORE_FIELDS = _fields(SCORE_COUNTS)
_TOPIC_FIELDS = _fields(TOPIC_COUNTS)


def _counts(row: Mapping[str, Any], fields: tuple[tuple[str, str, bool], ...]) -> Record:
    # Sums are rounded so that a recomputation in another order stores the same figure.
    # Runs for every row of every level on each batch, hence the precomputed field table.
    return {name: round(float(row[column]), 9) if floating else int(row[column])
            for name, column, floating in fields}


def agg_row(record: Mapping[str, Any], dims: Iterable[str], names: Iterable[str]) -> Record:
    """A stored (or about to be stored) row in the shape the SQL returns: dims, epoch, agg_*."""
    columns = {"tp": "touchpoint", "ch": "channel", "st": "stage", "tid": "topic"}
    return {**{dim: record[columns[dim]] for dim in dims},
            "epoch": int(record["window_start"].timestamp()),
            **{f"agg_{name}": record[name] for name in names}}


def rollup(finer: Iterable[Mapping[str, Any]], dims: tuple[str, ...], names: Iterable[str],
           seconds: int) -> list[Record]:
    """Sum finer rows (shape of ``agg_row``) into windows of ``seconds``.

    Float sums use ``math.fsum``, which is exact whatever order the rows come in, so a window
    recomputed from the same rows always stores the same figure. Runs once per level and
    table on every batch, hence the single-row shortcut (most coarse windows get one or two).
    """
    groups: dict[tuple, list[Mapping[str, Any]]] = defaultdict(list)
    for row in finer:
        epoch = int(row["epoch"])
        groups[(*(row[d] for d in dims), epoch - epoch % seconds)].append(row)
    return _summed(groups, dims, names)


def cube(cells: Iterable[Mapping[str, Any]], dims: tuple[str, ...],
         names: Iterable[str]) -> list[Record]:
    """From rows per channel x stage cell (dims ``tp, ch, st``, then any others, e.g. a
    topic), the four rows each cell counts in: its channel x its stage, its channel x all
    stages, all channels x its stage, and all x all."""
    groups: dict[tuple, list[Mapping[str, Any]]] = defaultdict(list)
    for row in cells:
        tp, channel, stage = row["tp"], row["ch"], row["st"]
        rest = (*(row[d] for d in dims[3:]), int(row["epoch"]))
        for key in ((tp, channel, stage), (tp, channel, ALL), (tp, ALL, stage), (tp, ALL, ALL)):
            groups[(*key, *rest)].append(row)
    return _summed(groups, dims, names)


def _summed(groups: Mapping[tuple, list[Mapping[str, Any]]], dims: tuple[str, ...],
            names: Iterable[str]) -> list[Record]:
    """One row per group key (dims, then the epoch) with the group's counts summed."""
    columns = [f"agg_{name}" for name in names]
    floats = {f"agg_{name}" for name in names if name in FLOAT_COUNTS}
    out = []
    for key, rows in groups.items():
        summed: Record = dict(zip(dims, key[:-1]))
        summed["epoch"] = key[-1]
        if len(rows) == 1:
            summed.update((column, rows[0][column]) for column in columns)
        else:
            summed.update((column, (math.fsum if column in floats else sum)(
                r[column] for r in rows)) for column in columns)
        out.append(summed)
    return out


def _key(row: Mapping[str, Any], seconds: int) -> Record:
    return {"touchpoint": row["tp"], "channel": row["ch"], "stage": row["st"],
            "window_seconds": seconds,
            "window_start": _start(int(row["epoch"]))}


@lru_cache(maxsize=4096)
def _start(epoch: int) -> datetime:
    """A window's start; a batch builds thousands of rows over a handful of windows."""
    return datetime.fromtimestamp(epoch, UTC)


def score_record(row: Mapping[str, Any], seconds: int, expectations: Expectations,
                 computed_ms: int) -> Record:
    """The ``cem_scores`` row of one aggregated window, with its expectation gaps."""
    counts = _counts(row, _SCORE_FIELDS)
    derived = derive_scores(counts)
    gaps = [(metric, target, gap(metric, derived[metric], target))
            for metric, target in expectations.targets(row["tp"]).items()
            if derived[metric] is not None]
    return {**_key(row, seconds), **counts, **derived,
            "gap_metrics": [g[0] for g in gaps], "gap_targets": [float(g[1]) for g in gaps],
            "gaps": [g[2] for g in gaps], "computed_ms": computed_ms}


def topic_record(row: Mapping[str, Any], seconds: int, computed_ms: int) -> Record:
    """The ``topic_scores`` row of one topic in one aggregated window."""
    counts = _counts(row, _TOPIC_FIELDS)
    return {**_key(row, seconds), "topic": row["tid"], **counts,
            "mean_topic_sentiment": mean_topic_sentiment(counts), "computed_ms": computed_ms}


_WIRE_METRICS = tuple(metric.name for metric, _ in wire_fields())


def score_event(record: Mapping[str, Any], topics: Iterable[Mapping[str, Any]],
                computed_at: datetime) -> Score:
    """The ``score.v2`` event of a ``cem_scores`` row and the topic rows of the same window."""
    seconds = int(record["window_seconds"])
    return Score(
        touchpoint=record["touchpoint"], channel=record["channel"], stage=record["stage"],
        window=window_label(seconds), window_start=record["window_start"],
        window_end=record["window_start"] + timedelta(seconds=seconds), window_seconds=seconds,
        **{name: record[name] for name in _WIRE_METRICS},
        urgent_flags=UrgentCounts(**{flag: record[f"{flag}_count"] for flag in URGENT_FLAGS}),
        topics=sorted((TopicFigure(topic=t["topic"], mentions=t["mentions"],
                                   mean_sentiment=t["mean_topic_sentiment"]) for t in topics),
                      key=lambda t: (-t.mentions, t.topic)),
        expectations=[ExpectationGap(metric=m, value=record[m], target=t, gap=g)
                      for m, t, g in zip(record["gap_metrics"], record["gap_targets"],
                                         record["gaps"])],
        computed_at=computed_at,
    )
