"""HTTP routes for cases: list, read, acknowledge, assign, start, comment, resolve, close,
reopen, follow up, and MTTA / MTTR per team and touchpoint.

Every state change goes through CaseService, so it becomes a case.v1 event on the cases topic
and a row in ``case_events``. A transition the case's status forbids answers 409 naming the
actions allowed now; an unknown case answers 404.

Viewers read, operators act. The actor recorded on a case event is the authenticated principal,
never a name from the request, so the audit trail says who really acted. A principal limited to
touchpoints or teams sees and acts on those cases only (403 for another one).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import timedelta
from typing import Annotated, Any, Literal

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from services.alerting.cases import CaseError, CaseNotFound, CaseService
from services.core.access import (
    Caller,
    Principal,
    Require,
    forbidden_team,
    forbidden_touchpoint,
)
from services.core.events import CaseEvent, CaseStatus, utc_now
from services.core.kafka import Producer
from services.core.settings import Settings
from services.core.store import Store

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
Comment = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: Comment | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_actor(cls, data: Any) -> Any:
        if isinstance(data, dict) and "actor" in data:
            raise ValueError("'actor' is not accepted: the case event records the principal "
                             "that authenticated this request; drop the field")
        return data


class AssignIn(_In):
    assignee: Name
    team: Name | None = Field(default=None, description="Move the case to this team as well.")


class CommentIn(_In):
    comment: Comment


class FollowUpIn(_In):
    outcome: Literal["reached", "unreachable", "declined"]
    rating: Annotated[int, Field(ge=1, le=5)] | None = Field(
        default=None, description="Customer's rating of the resolution (CSAT, 1-5).")
    customer_id: Annotated[str, StringConstraints(max_length=128)] | None = None


class FollowUpOut(BaseModel):
    case: CaseEvent
    feedback_event_id: str


class CaseDetail(BaseModel):
    case: CaseEvent
    history: list[CaseEvent]


class TeamMetrics(BaseModel):
    team: str
    touchpoint: str
    cases: int
    unresolved: int
    mtta_s: float | None = Field(description="Mean time to acknowledge, seconds.")
    mttr_s: float | None = Field(description="Mean time to resolve, seconds.")
    max_escalation_level: int


Operator = Annotated[Principal, Depends(Require("operator"))]


def _visible(who: Principal) -> Any:
    """A check that refuses (403) a case outside ``who``'s touchpoints or teams."""
    def check(case: CaseEvent) -> None:
        if not who.sees({"touchpoint": case.touchpoint, "team": case.team}):
            raise HTTPException(403, f"{who.name!r} may not see case {case.case_id} "
                                     f"(touchpoint {case.touchpoint!r}, team {case.team!r})")
    return check


def create_router(service: CaseService) -> APIRouter:
    """The cases API over one CaseService (its store and producer): viewers read, operators
    act."""
    router = APIRouter(prefix="/v1/cases", tags=["cases"],
                       dependencies=[Depends(Require("viewer"))])
    max_days = service.settings.query_max_range_days

    async def act(who: Principal, case_id: str, action: str, body: _In,
                  **changes: Any) -> CaseEvent:
        try:
            return await service.act(case_id, action, who.name,  # type: ignore[arg-type]
                                     comment=body.comment, guard=_visible(who), **changes)
        except CaseNotFound as exc:
            raise HTTPException(404, f"no case {case_id}") from exc
        except CaseError as exc:
            raise HTTPException(409, str(exc)) from exc
        except KafkaError as exc:
            raise HTTPException(503, "the message broker did not acknowledge the case event; "
                                     "nothing changed, retry", headers={"Retry-After": "5"}) from exc

    @router.get("", response_model=list[CaseEvent], summary="List cases (current state)")
    async def list_cases(who: Caller, status: CaseStatus | None = None, team: str | None = None,
                         touchpoint: str | None = None,
                         limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[CaseEvent]:
        forbidden_team(who, team)
        forbidden_touchpoint(who, touchpoint)
        return await service.list(status=status, team=team, touchpoint=touchpoint, limit=limit,
                                  touchpoints=who.touchpoints, teams=who.teams)

    @router.get("/metrics", response_model=list[TeamMetrics],
                summary="MTTA and MTTR per team and touchpoint")
    async def metrics(who: Caller,
                      days: Annotated[float, Query(gt=0, le=3660)] = 30) -> list[TeamMetrics]:
        if days > max_days:
            raise HTTPException(400, {"parameter": "days", "error": (
                f"{days} days is more than VOC_QUERY_MAX_RANGE_DAYS ({max_days}); ask for "
                "fewer")})
        figures = await service.metrics(utc_now() - timedelta(days=days))
        return [TeamMetrics(**asdict(f)) for f in figures
                if who.sees({"touchpoint": f.touchpoint, "team": f.team})]

    @router.get("/{case_id}", response_model=CaseDetail, summary="A case and its history")
    async def get_case(who: Caller, case_id: str) -> CaseDetail:
        try:
            history = await service.history(case_id)
        except CaseNotFound as exc:
            raise HTTPException(404, f"no case {case_id}") from exc
        _visible(who)(history[-1])
        return CaseDetail(case=history[-1], history=history)

    @router.post("/{case_id}/ack", response_model=CaseEvent, summary="Acknowledge")
    async def ack(who: Operator, case_id: str, body: _In) -> CaseEvent:
        return await act(who, case_id, "acknowledged", body)

    @router.post("/{case_id}/assign", response_model=CaseEvent, summary="Assign")
    async def assign(who: Operator, case_id: str, body: AssignIn) -> CaseEvent:
        changes: dict[str, Any] = {"assignee": body.assignee}
        if body.team:
            forbidden_team(who, body.team)
            changes["team"] = body.team
        return await act(who, case_id, "assigned", body, **changes)

    @router.post("/{case_id}/start", response_model=CaseEvent, summary="Start work")
    async def start(who: Operator, case_id: str, body: _In) -> CaseEvent:
        return await act(who, case_id, "started", body)

    @router.post("/{case_id}/comment", response_model=CaseEvent, summary="Comment")
    async def comment(who: Operator, case_id: str, body: CommentIn) -> CaseEvent:
        return await act(who, case_id, "commented", body)

    @router.post("/{case_id}/resolve", response_model=CaseEvent, summary="Resolve")
    async def resolve(who: Operator, case_id: str, body: _In) -> CaseEvent:
        return await act(who, case_id, "resolved", body)

    @router.post("/{case_id}/close", response_model=CaseEvent, summary="Close")
    async def close(who: Operator, case_id: str, body: _In) -> CaseEvent:
        return await act(who, case_id, "closed", body)

    @router.post("/{case_id}/reopen", response_model=CaseEvent, summary="Reopen")
    async def reopen(who: Operator, case_id: str, body: _In) -> CaseEvent:
        return await act(who, case_id, "reopened", body)

    @router.post("/{case_id}/follow-up", response_model=FollowUpOut,
                 summary="Record the customer callback; the rating flows back as feedback")
    async def follow_up(who: Operator, case_id: str, body: FollowUpIn) -> FollowUpOut:
        """The rating enters the pipeline as feedback recorded by the operator (metadata
        ``operator``), counted against the operator's write rate limit like ingest."""
        try:
            event, feedback = await service.follow_up(case_id, who.name, body.outcome,
                                                      body.rating, body.comment, body.customer_id,
                                                      guard=_visible(who))
        except CaseNotFound as exc:
            raise HTTPException(404, f"no case {case_id}") from exc
        except CaseError as exc:
            raise HTTPException(409, str(exc)) from exc
        except KafkaError as exc:
            raise HTTPException(503, "the message broker did not acknowledge the follow-up; "
                                     "retry (a retry keeps the feedback's event id, so it does "
                                     "not count twice)", headers={"Retry-After": "5"}) from exc
        return FollowUpOut(case=event, feedback_event_id=feedback.event_id)

    return router



def mount_cases(app: FastAPI, settings: Settings, bootstrap: str, store: Store) -> None:
    """Add the cases routes to an app that runs next to a store (``voc up``), with a producer
    started and stopped with the app."""
    producer = Producer(bootstrap, client_id=settings.group("cases-api"))
    app.include_router(create_router(CaseService(settings, store, producer)))
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: FastAPI) -> AsyncIterator[Any]:
        await producer.start()
        try:
            async with inner(application) as state:
                yield state
        finally:
            await producer.stop()

    app.router.lifespan_context = lifespan
