"""The customer side of the closed loop: a customer's timeline.

Routes (viewer role), over the stored feedback and cases:
- ``GET /v1/customers/{customer_id}/timeline``: every feedback of one customer across
  channels, newest first, with its scores, topics and the cases linked to it, a page at a
  time (``limit``, and ``cursor`` from the previous page). The id is the pseudonymous one the
  feedback and cases carry (never a raw id: ingest redacts it).

A principal limited to touchpoints sees only that feedback and the cases of those
touchpoints; one limited to teams sees only its teams' cases.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from services.alerting import queries
from services.core.access import Caller, Principal, Require
from services.core.errors import ParameterRoute, bad_parameter
from services.core.events import CaseEvent, CaseKind, CaseStatus
from services.core.settings import Settings
from services.core.store import Store

TIMELINE_MAX = 200
TIMELINE_CASES_MAX = 100


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


def _sees_case(who: Principal, case: CaseEvent) -> bool:
    return who.sees({"touchpoint": case.touchpoint, "team": case.team})
