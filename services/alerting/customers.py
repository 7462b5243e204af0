"""The customer side of the closed loop: a customer's timeline and the callback KPIs.

Routes (viewer role), over the stored feedback and cases:
- ``GET /v1/customers/{customer_id}/timeline``: every feedback of one customer across
  channels, newest first, with its scores, topics and the cases linked to it, a page at a
  time (``limit``, and ``cursor`` from the previous page). The id is the pseudonymous one the
  feedback and cases carry (never a raw id: ingest redacts it).
- ``GET /v1/customers/kpis``: per touchpoint and in total, the share of detractors called
  back within the SLA and the recovery rate (docs/metrics.md).

A principal limited to touchpoints sees only that feedback and the cases of those
touchpoints; one limited to teams sees only its teams' cases.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from services.alerting import queries
from services.alerting.queries import Callback
from services.core.access import Caller, Principal, Require
from services.core.errors import ParameterRoute, bad_parameter
from services.core.events import CaseEvent, CaseKind, CaseStatus, utc_now
from services.core.settings import Settings
from services.core.store import Store

TIMELINE_MAX = 200
TIMELINE_CASES_MAX = 100
KPI_CASES_MAX = 10_000
"""Most callback cases one KPI answer reads (the newest-opened); ``capped`` says when hit."""
LATER_PER_CUSTOMER = 20
"""Feedback events read per customer after the first callback, to find each case's next."""


class LinkedCase(BaseModel):
    case_id: str
    kind: CaseKind | None
    status: CaseStatus
    rule_id: str
    team: str | None
    touchpoint: str
    opened_at: datetime
    feedback_event_ids: list[str]


class TimelineItem(BaseModel):
    event_id: str
    occurred_at: datetime
    channel: str
    touchpoint: str
    stage: str | None
    segment: str | None
    sentiment: float
    sentiment_label: str
    nps: int | None
    csat: int | None
    ces: int | None
    topics: list[str]
    intent: str
    text: str = Field(description="As stored: PII was redacted before storage.")
    case_ids: list[str] = Field(description="Cases linking this feedback (see `cases`).")


class TimelineOut(BaseModel):
    customer_id: str
    items: list[TimelineItem]
    cases: list[LinkedCase] = Field(description=(
        "The customer's cases and those linking feedback of this page, newest-opened first."))
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; "
                                                "null on the last page.")


class CallbackFigures(BaseModel):
    touchpoint: str = Field(description="'' for the total over every touchpoint shown.")
    detractors: int = Field(description="Callback cases opened in the period.")
    called_back: int = Field(description="Of them, resolved (at any time so far).")
    called_back_within_sla: int
    callback_sla_share: float | None = Field(
        description="called_back_within_sla / detractors.")
    followed: int = Field(description="Called back, and the customer gave feedback since.")
    recovered: int = Field(description="Of those, whose next feedback was better.")
    recovery_rate: float | None = Field(description="recovered / followed.")


class KpisOut(BaseModel):
    since: datetime
    capped: bool = Field(description=f"More than {KPI_CASES_MAX} callback cases were opened "
                                     "in the period; the figures cover the newest of them.")
    touchpoints: list[CallbackFigures]
    total: CallbackFigures


def encode_cursor(occurred_at: datetime, event_id: str) -> str:
    raw = f"{int(occurred_at.timestamp())}:{event_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The ``(occurred_at, event_id)`` a cursor stands for; ValueError when it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        seconds, event_id = raw.split(":", 1)
        return datetime.fromtimestamp(int(seconds), UTC), event_id
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError, OSError) as exc:
        raise ValueError("not a cursor this route returned") from exc


def _rating(row: Mapping[str, Any]) -> float | None:
    """A rating on a 0-1 scale (NPS 0-10, CSAT 1-5), so a callback's CSAT can be compared
    with the NPS that opened the case."""
    if row.get("nps") is not None:
        return int(row["nps"]) / 10
    if row.get("csat") is not None:
        return (int(row["csat"]) - 1) / 4
    return None


def better(later: Mapping[str, Any], opening: Mapping[str, Any]) -> bool:
    """Whether a later feedback is better than the one that opened a case: its rating higher
    when both were rated, else its sentiment higher."""
    now, then = _rating(later), _rating(opening)
    if now is not None and then is not None:
        return now > then
    return float(later["sentiment"]) > float(opening["sentiment"])


@dataclass
class _Counts:
    detractors: int = 0
    called_back: int = 0
    within_sla: int = 0
    followed: int = 0
    recovered: int = 0

    def figures(self, touchpoint: str) -> CallbackFigures:
        return CallbackFigures(
            touchpoint=touchpoint, detractors=self.detractors, called_back=self.called_back,
            called_back_within_sla=self.within_sla,
            callback_sla_share=self.within_sla / self.detractors if self.detractors else None,
            followed=self.followed, recovered=self.recovered,
            recovery_rate=self.recovered / self.followed if self.followed else None)


def callback_kpis(callbacks: Iterable[Callback], opening: Mapping[str, Mapping[str, Any]],
                  later: Sequence[Mapping[str, Any]]) -> tuple[list[CallbackFigures],
                                                              CallbackFigures]:
    """Per touchpoint and in total: detractors (callback cases), those called back (resolved)
    and within the SLA they were opened with, and of those followed by feedback, the
    recovered (the customer's first feedback after the callback is better than the one that
    opened the case). ``opening``: feedback by event id; ``later``: the customers' feedback
    after their first callback, oldest first."""
    by_customer: dict[str, list[Mapping[str, Any]]] = {}
    for row in later:
        by_customer.setdefault(row["customer_id"], []).append(row)
    counts: dict[str, _Counts] = {}
    total = _Counts()
    for case in callbacks:
        for c in (counts.setdefault(case.touchpoint, _Counts()), total):
            c.detractors += 1
        if case.first_resolved_at is None:
            continue
        within = case.first_resolved_at <= case.resolve_due_at
        opened_by = opening.get(case.opening_event)
        after = next((r for r in by_customer.get(case.customer_id, ())
                      if r["occurred_at"] >= case.first_resolved_at
                      and r["event_id"] != case.opening_event), None)
        for c in (counts[case.touchpoint], total):
            c.called_back += 1
            c.within_sla += within
            if after is not None and opened_by is not None:
                c.followed += 1
                c.recovered += better(after, opened_by)
    return [counts[tp].figures(tp) for tp in sorted(counts)], total.figures("")


def _linked(case: CaseEvent) -> LinkedCase:
    return LinkedCase(case_id=case.case_id, kind=case.kind, status=case.status,
                      rule_id=case.rule_id, team=case.team, touchpoint=case.touchpoint,
                      opened_at=case.opened_at, feedback_event_ids=case.feedback_event_ids)


def _item(row: Mapping[str, Any], cases: Sequence[CaseEvent]) -> TimelineItem:
    return TimelineItem(
        event_id=row["event_id"], occurred_at=row["occurred_at"], channel=row["channel"],
        touchpoint=row["touchpoint"], stage=row["stage"] or None,
        segment=row["segment"] or None, sentiment=row["sentiment"],
        sentiment_label=row["sentiment_label"], nps=row["nps"], csat=row["csat"],
        ces=row["ces"], topics=list(row["topics"]), intent=row["intent"], text=row["text"],
        case_ids=[c.case_id for c in cases if row["event_id"] in c.feedback_event_ids])


def build_router(store: Store, settings: Settings) -> APIRouter:
    router = APIRouter(prefix="/v1/customers", tags=["customers"],
                       dependencies=[Depends(Require("viewer"))], route_class=ParameterRoute)
    max_days = settings.query_max_range_days

    @router.get("/kpis", summary="Detractors called back within the SLA, and recovered",
                response_model=KpisOut)
    async def kpis(who: Caller, days: Annotated[float, Query(gt=0, le=3660, description=(
            "Callback cases opened in the last this many days (default 30)."))] = 30,
                   ) -> KpisOut:
        """The callback KPIs over the callback cases (opened by `rating` rules) the caller
        may see, per touchpoint and in total; definitions in docs/metrics.md."""
        if days > max_days:
            raise bad_parameter("days", f"{days:g} days is more than VOC_QUERY_MAX_RANGE_DAYS "
                                        f"({max_days}); ask for fewer")
        since = utc_now() - timedelta(days=days)
        found = await queries.callback_cases(store, since, KPI_CASES_MAX + 1)
        visible = [c for c in found[:KPI_CASES_MAX] if _sees_case(who, c)]
        opening = await queries.feedback_by_id(store, {c.opening_event for c in visible
                                                        if c.opening_event})
        resolved = [c for c in visible if c.first_resolved_at is not None and c.customer_id]
        later = await queries.feedback_after(
            store, {c.customer_id for c in resolved},
            min((c.first_resolved_at for c in resolved if c.first_resolved_at), default=since),
            LATER_PER_CUSTOMER)
        per_touchpoint, total = callback_kpis(visible, opening, later)
        return KpisOut(since=since, capped=len(found) > KPI_CASES_MAX,
                       touchpoints=per_touchpoint, total=total)

    @router.get("/{customer_id}/timeline", summary="Every feedback of one customer",
                response_model=TimelineOut)
    async def timeline(
        who: Caller,
        customer_id: Annotated[str, Path(min_length=1, max_length=128, description=(
            "The pseudonymous customer id the feedback and cases carry."))],
        limit: Annotated[int, Query(ge=1, le=TIMELINE_MAX, description=(
            f"Feedback per page, 1-{TIMELINE_MAX} (default 50)."))] = 50,
        cursor: Annotated[str | None, Query(max_length=256, description=(
            "`next_cursor` of the previous page."))] = None,
    ) -> TimelineOut:
        """Newest first across channels, with scores, topics and linked cases."""
        try:
            before = decode_cursor(cursor) if cursor else None
        except ValueError as exc:
            raise bad_parameter("cursor", str(exc)) from exc
        rows = await queries.customer_feedback(store, customer_id, touchpoints=who.touchpoints,
                                               before=before, limit=limit + 1)
        page = rows[:limit]
        cases = [c for c in await queries.customer_cases(
            store, customer_id, {r["event_id"] for r in page}, TIMELINE_CASES_MAX)
            if _sees_case(who, c)]
        last = page[-1] if len(rows) > limit else None
        return TimelineOut(
            customer_id=customer_id, items=[_item(r, cases) for r in page],
            cases=[_linked(c) for c in cases],
            next_cursor=encode_cursor(last["occurred_at"], last["event_id"]) if last else None)

    return router


def _sees_case(who: Principal, case: CaseEvent | Callback) -> bool:
    """Whether a case is in the caller's touchpoint and team scope; the store's '' is no
    team, which a principal limited to teams does not see."""
    return who.sees({"touchpoint": case.touchpoint, "team": case.team or None})
