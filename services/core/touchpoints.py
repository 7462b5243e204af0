"""The cap on distinct touchpoints (``VOC_MAX_TOUCHPOINTS``), one rule for ingest and scoring.

Every touchpoint gets its own score rows per window and level, a dashboard tile, alert state and
metric label values. A sender that invents one per event (a template bug, or an attacker with a
source key) would grow all of them without end, so the number of touchpoints is capped. The
store's ``feedback`` table is the record of the touchpoints that exist; each process keeps a set
of the ones it knows, which never holds more than the cap.

- Ingest refuses an event of a touchpoint beyond the cap with 422 naming it.
- Scoring dead-letters such an event with the reason: direct producers skip ingest, and several
  ingest copies each see only their own new touchpoints, so scoring is the authority.

A touchpoint counts once an event of it was written (by ingest: acknowledged by the broker; by
scoring: stored), never on a write that failed. When the store cannot be read, ingest lets new
touchpoints through (scoring still applies the cap) rather than refusing feedback.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Protocol

import structlog

from services.core.store import Store

log = structlog.get_logger(__name__)

# How often a process re-reads the stored touchpoints while new ones keep arriving: others
# (ingest copies, direct producers) add touchpoints this process has not seen.
RELOAD_S = 60.0


class HasTouchpoint(Protocol):
    """An event of some touchpoint."""

    @property
    def touchpoint(self) -> str: ...


def over_cap_reason(touchpoint: str, cap: int) -> str:
    """Why an event of ``touchpoint`` is refused, for a 422 or a dead letter."""
    return (f"touchpoint {touchpoint[:128]!r} would be touchpoint number {cap + 1}; at most "
            f"{cap} distinct touchpoints are accepted (VOC_MAX_TOUCHPOINTS): send events of an "
            "existing touchpoint, or raise the cap if the new ones are real")


class TouchpointLimit:
    """The touchpoints known to exist, and whether a new one still fits under the cap."""

    def __init__(self, store: Store, cap: int, *, reload_s: float = RELOAD_S) -> None:
        self.cap = cap
        self._store = store
        self._reload_s = reload_s
        self._loaded_at: float | None = None
        self._known: set[str] = set()
        # Touchpoints the store holds beyond the ones loaded: only when it holds more than the
        # cap (the cap was lowered); kept most recently used first, at most ``cap`` of them.
        self._beyond: OrderedDict[str, None] = OrderedDict()

    async def refused(self, touchpoints: Sequence[str]) -> list[str]:
        """The touchpoints among ``touchpoints`` that do not fit: new ones past the room left,
        in order of first appearance. Reads the store; changes nothing that a failed write
        would have to undo."""
        new = self._unknown(touchpoints)
        if not new:
            return []
        if self._loaded_at is None or time.monotonic() - self._loaded_at >= self._reload_s:
            await self._load()
            new = self._unknown(new)
        room = self.cap - len(self._known)
        if len(new) <= room:
            return []
        stored = await self._stored(new)
        self._note_beyond(stored)
        new = [t for t in new if t not in stored]
        return new[max(room, 0):]

    async def screen(self, events: Sequence[HasTouchpoint]) -> list[str | None]:
        """Per event, why it is refused (a new touchpoint over the cap), or None."""
        refused = set(await self.refused([e.touchpoint for e in events]))
        return [over_cap_reason(e.touchpoint, self.cap) if e.touchpoint in refused else None
                for e in events]

    def remember(self, touchpoints: Iterable[str]) -> None:
        """Count the touchpoints of events whose write was acknowledged."""
        for touchpoint in touchpoints:
            if touchpoint in self._known:
                continue
            if len(self._known) < self.cap:
                self._known.add(touchpoint)
            else:
                self._note_beyond([touchpoint])

    def _unknown(self, touchpoints: Iterable[str]) -> list[str]:
        new = [t for t in dict.fromkeys(touchpoints) if t not in self._known]
        for touchpoint in new:
            if touchpoint in self._beyond:
                self._beyond.move_to_end(touchpoint)
        return [t for t in new if t not in self._beyond]

    async def _load(self) -> None:
        rows = await self._store.query(
            "SELECT DISTINCT touchpoint FROM feedback LIMIT %(cap)s", {"cap": self.cap})
        self._known.update(row["touchpoint"] for row in rows)
        while len(self._known) > self.cap:
            self._known.pop()
        self._loaded_at = time.monotonic()
        log.debug("stored touchpoints read", known=len(self._known), cap=self.cap)

    async def _stored(self, touchpoints: list[str]) -> set[str]:
        rows = await self._store.query(
            "SELECT DISTINCT touchpoint FROM feedback WHERE touchpoint IN %(touchpoints)s",
            {"touchpoints": tuple(touchpoints)})
        return {row["touchpoint"] for row in rows}

    def _note_beyond(self, touchpoints: Iterable[str]) -> None:
        for touchpoint in touchpoints:
            if touchpoint in self._known:
                continue
            self._beyond[touchpoint] = None
            self._beyond.move_to_end(touchpoint)
        while len(self._beyond) > self.cap:
            self._beyond.popitem(last=False)
