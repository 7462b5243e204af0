"""What a rule kind declares, so that the live worker and the backtest need to know nothing
about any one kind.

A **window kind** (threshold, topic_spike, ...) is measured at window ends over stored history
and has a lifecycle (firing, then resolved). It declares:
- ``model``: its pydantic model, whose ``type: Literal["<name>"]`` is its tag in the rules
  file's union;
- ``loader``: what it reads from the store. Rules whose kinds share a loader are read by one
  call, so three figure kinds over ``cem_scores`` cost one query;
- ``history``: how far back from an evaluation end a rule reads, as spans of event time; the
  loader reads their union;
- ``measure``: the rule's rows of one touchpoint and an end -> a ``Measurement`` (or None:
  nothing to decide on);
- ``describe``: how its alert names what was measured;
- ``explain``: for kinds whose alerts get an explanation (services/alerting/explain.py), the
  metric it explains, which way it breached and the baseline window it is compared with;
- ``every_touchpoint``: whether it is evaluated for every touchpoint the loader finds rather
  than only for those a score batch updated (a touchpoint that stopped sending sends no
  updates).

An **event kind** is evaluated on each enriched event and only fires: it declares its model,
its dedupe key and its alert.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, Literal, TypeVar

from services.alerting.engine import Measurement
from services.alerting.rulebase import RuleBase
from services.core.events import Alert, EnrichedFeedback, Operator, TermLift
from services.core.settings import Settings
from services.core.store import Store

R = TypeVar("R", bound=RuleBase)

Span = tuple[timedelta, timedelta]
"""Event time a rule reads around an evaluation end ``e``: ``[e - span[0], e - span[1])``."""


@dataclass(frozen=True)
class Points:
    """Where rules are evaluated: at each window end, the touchpoints listed there (None: every
    touchpoint the store has rows for).

    Live, a score batch evaluates each updated touchpoint at its newest window end; the
    backtest evaluates every touchpoint at every window end of its period.
    """

    ends: Mapping[datetime, tuple[str, ...] | None]
    window_seconds: int

    @classmethod
    def of(cls, newest: Mapping[str, datetime], window_seconds: int) -> Points:
        """Each touchpoint at its own newest window end."""
        ends: dict[datetime, list[str]] = {}
        for touchpoint, end in newest.items():
            ends.setdefault(end, []).append(touchpoint)
        return cls({end: tuple(tps) for end, tps in ends.items()}, window_seconds)

    def touchpoints(self) -> tuple[str, ...] | None:
        """Every touchpoint evaluated anywhere (None: all)."""
        if any(tps is None for tps in self.ends.values()):
            return None
        return tuple(sorted({tp for tps in self.ends.values() for tp in tps or ()}))

    def periods(self, spans: Sequence[Span]) -> list[tuple[datetime, datetime]]:
        """The event time ``spans`` cover around every end, as disjoint ``[lo, hi)`` periods
        (overlaps merged, so a loader reading each period reads every row once)."""
        if not self.ends or not spans:
            return []
        first, last = min(self.ends), max(self.ends)
        periods = sorted((first - back, last - to) for back, to in spans)
        merged = [periods[0]]
        for lo, hi in periods[1:]:
            if lo <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
            else:
                merged.append((lo, hi))
        return merged


@dataclass(frozen=True)
class Wanted(Generic[R]):
    """One rule for a loader, with the spans of history its kind says it reads."""

    rule: R
    spans: tuple[Span, ...]


Rows = dict[str, dict[str, list[Any]]]
"""What a loader returns: rule id -> touchpoint -> that rule's rows of that touchpoint."""

Loader = Callable[[Store, Sequence[Wanted[Any]], Points], Awaitable[Rows]]


@dataclass(frozen=True)
class Described:
    """How an alert of a window kind names what it measured."""

    metric: str
    """The alert's ``metric``: what ``value`` is (schemas/topics/alert.v3.json)."""
    operator: Operator
    threshold: float
    what: str
    """The message's account of the value, e.g. ``negative_share 0.450 > 0.4``."""
    topic: str | None = None
    counted: str = "events"
    """What the alert's ``volume`` counts, for the message ("over 25 events")."""


@dataclass(frozen=True)
class Explained:
    """What the explanation of one firing reads: the score metric it explains, which way it
    breached (contributions are ranked that way), the baseline window of event time it is
    compared with, and the topic its example comments must mention (None: the top topic)."""

    metric: str
    direction: Literal["up", "down"]
    baseline: tuple[datetime, datetime]
    focus_topic: str | None = None
    terms: tuple[TermLift, ...] = ()
    """The over-represented terms, when the kind measured them itself (emerging phrases);
    empty: the explanation ranks the events' keywords."""
    focus_phrase: str | None = None
    """The stored candidate phrase example comments must carry (instead of a topic)."""


@dataclass(frozen=True)
class WindowKind(Generic[R]):
    """A kind measured at window ends over stored history (see the module docstring)."""

    model: type[R]
    loader: Loader
    history: Callable[[R], Sequence[Span]]
    measure: Callable[[R, Sequence[Any], datetime], Measurement | None]
    describe: Callable[[R, Measurement], Described]
    every_touchpoint: bool = False
    explain: Callable[[R, Measurement], Explained] | None = None


Recall = Callable[[Store, Sequence[Any], Sequence[EnrichedFeedback], Any], Awaitable[Any]]
"""What a kind that reads a customer's history needs for a batch of events: one store query
per batch (rules of the kind, the batch's events, the kind's in-process memory or None ->
what its ``alert`` gets as ``recalled``)."""


@dataclass(frozen=True)
class EventKind(Generic[R]):
    """A kind evaluated on each enriched event; its alerts only fire."""

    model: type[R]
    key: Callable[[R, EnrichedFeedback], str]
    alert: Callable[[R, EnrichedFeedback, datetime | None, datetime, Any], Alert | None]
    """The alert for an event (None: no match, or its key fired within the cooldown), given
    when the key last fired, the time to stamp and what ``recall`` read (None without one)."""
    recall: Recall | None = None
    """For kinds that decide on more than the event (a customer's other contacts): reads
    that from the store, once per batch, before ``alert`` is asked about each event. The
    state such a kind decides on lives in the store, so it is bounded there and survives
    restarts and re-deliveries."""
    memory: Callable[[Settings], Any] | None = None
    """For kinds with a ``recall``: makes the bounded in-process memory the live worker keeps
    for the kind and hands to every ``recall`` (what the store may not hold yet, because the
    stage that writes it lags). The backtest passes None: the store holds the whole past."""


def cooling(last_fired: datetime | None, cooldown_s: int, event: EnrichedFeedback) -> bool:
    """Whether an event rule's key fired within its cooldown before ``event`` (in event time,
    so a replay decides as the live run did)."""
    return last_fired is not None and event.occurred_at < last_fired + timedelta(
        seconds=cooldown_s)


def lookback(seconds: int) -> Span:
    """The span of a lookback ending at the evaluation end."""
    return (timedelta(seconds=seconds), timedelta(0))
