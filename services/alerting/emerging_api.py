"""GET /v1/emerging: the rising phrases of one window, per touchpoint and over all of them,
for the dashboard's 新话题 panel and for people (docs/api.md, docs/emerging.md); and the
taxonomy action that turns a phrase into a topic or keywords of one (operators), with its
preview and its record.

The detection is the one ``emerging_topic`` rules run (services/alerting/emerging.py) with the
deployment's thresholds (``VOC_EMERGING_*``), read on demand: nothing is kept between calls. A
caller limited to touchpoints gets only those, and "overall" is then the sum over them, so no
figure of another touchpoint reaches it. Each phrase comes with the window, so a client opens
its comments with ``GET /v1/feedback?q=<text>&touchpoint=..&from=..&to=..``.

The taxonomy action edits the file the NLP stage tags with (``VOC_TAXONOMY_PATH``; the shipped
file is never edited): services/nlp/taxonomy.add_to_taxonomy checks the edited file loads, then
replaces the old one in one rename, and the stage reloads it at its next batch. The change is
recorded (principal, time, topic, keywords, phrase, preview count) in ``taxonomy_changes``
after the file was replaced; when the record cannot be written the file is put back (from its
``.bak``) and the answer is a 503, so a change is made only with its record and a record names
only a change that was made. It changes what every touchpoint is tagged with, so a principal
limited to touchpoints or teams may not make it.
"""

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, HTTPException, Query, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from services.alerting import clusters, emerging, queries
from services.alerting.emerging import Detection, Thresholds, Window
from services.core.access import Caller, Principal, Require, forbidden_touchpoint
from services.core.errors import PROBLEM_RESPONSES, ParameterRoute
from services.core.settings import Settings
from services.core.store import Store
from services.nlp.taxonomy import (
    TaxonomyEditError,
    add_to_taxonomy,
    load_taxonomy_spec,
    restore_taxonomy,
)

log = structlog.get_logger(__name__)

MAX_SHOWN = 50
"""Most phrases answered per touchpoint: a panel, not an export."""


class _Out(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class PhraseOut(_Out):
    phrase: str = Field(description="As stored: words joined by one space.")
    text: str = Field(description="As written (the words of a Chinese phrase unspaced).")
    mentions: int = Field(description="Events of the window mentioning it.")
    customers: int = Field(description="Distinct customers among them.")
    baseline: int = Field(description="Events of the baseline mentioning it.")
    share: float
    baseline_share: float
    lift: float
    llr: float = Field(description="Dunning's G² of the window share against the baseline.")
    new: bool = Field(description="Never mentioned in the baseline.")


class TouchpointPhrases(_Out):
    touchpoint: str = Field(description="'' for all the caller's touchpoints together.")
    volume: int
    baseline_volume: int
    phrases: list[PhraseOut]


class ClusterComment(_Out):
    event_id: str
    touchpoint: str
    occurred_at: datetime
    text: str


class ClusterOut(_Out):
    size: int
    trend: list[int] = Field(description="Events per sixth of the period, oldest first.")
    phrases: list[str] = Field(description="Its most characteristic phrases, as written.")
    representative: list[ClusterComment] = Field(description="Nearest its centroid.")
    comments: list[ClusterComment] = Field(description="Its newest comments (at most 20).")


class ClustersOut(_Out):
    from_: datetime = Field(alias="from")
    to: datetime
    events: int = Field(description="Untagged negative comments clustered.")
    clusters: list[ClusterOut]


def _comment(text: clusters.Text) -> ClusterComment:
    return ClusterComment(event_id=text.event_id, touchpoint=text.touchpoint,
                          occurred_at=text.occurred_at, text=text.text)


class EmergingOut(_Out):
    window_start: datetime
    window_end: datetime
    baseline_start: datetime
    overall: TouchpointPhrases | None
    touchpoints: list[TouchpointPhrases]


Keyword = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
TopicId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]+$", max_length=64)]
Operator = Annotated[Principal, Depends(Require("operator"))]


class PreviewOut(_Out):
    keywords: list[str]
    topic: str
    from_: datetime = Field(alias="from")
    to: datetime
    matches: int = Field(description="Stored comments of the period holding a keyword.")
    already_tagged: int = Field(description="Of those, the ones the topic tags already.")
    new_topic: bool


class ChangeIn(_Out):
    topic: TopicId = Field(description="An existing topic's id, or the id of the new topic.")
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                           max_length=64)] | None = Field(
        default=None, description="The new topic's display name (only for a new topic).")
    parent: TopicId | None = None
    keywords: list[Keyword] = Field(min_length=1, max_length=20)
    phrase: Annotated[str, StringConstraints(max_length=64)] = Field(
        default="", description="The emerging phrase this change comes from, for the record.")
    days: int = Field(default=30, ge=1, le=366, description="Preview period, in days.")


class ChangeOut(_Out):
    change_id: str
    at: datetime
    principal: str
    action: str
    topic: str
    name: str
    keywords: list[str]
    phrase: str
    matches: int


class ChangesOut(_Out):
    changes: list[ChangeOut]


def _shaped(touchpoint: str, found: Detection) -> TouchpointPhrases:
    return TouchpointPhrases(
        touchpoint=touchpoint, volume=found.volume, baseline_volume=found.baseline_volume,
        phrases=[PhraseOut(
            phrase=r.phrase, text=r.text, mentions=r.mentions, customers=r.customers,
            baseline=r.baseline, share=round(r.mentions / r.volume, 10),
            baseline_share=round(r.baseline / r.baseline_volume, 10), lift=round(r.lift, 6),
            llr=round(r.llr, 6), new=r.new) for r in found.rising[:MAX_SHOWN]])


def build_router(store: Store, settings: Settings) -> APIRouter:
    """``GET /v1/emerging`` over ``store``, for viewers, within their touchpoints."""
    router = APIRouter(prefix="/v1", tags=["emerging"], dependencies=[Depends(Require("viewer"))],
                       responses=PROBLEM_RESPONSES, route_class=ParameterRoute)
    thresholds = Thresholds.of(settings)
    editing = asyncio.Lock()
    """One change at a time: undoing one whose record failed must not undo another's."""

    @router.get("/emerging", summary="Rising phrases no topic names, per touchpoint",
                response_model=EmergingOut)
    async def rising_phrases(
        who: Caller,
        end: Annotated[AwareDatetime | None, Query(description=(
            "End of the window (default: now, to the minute)."))] = None,
        touchpoint: Annotated[str | None, Query(description="Only this touchpoint.")] = None,
    ) -> Response:
        """The phrases rising in the window of `VOC_EMERGING_WINDOW_S` ending at `end`
        against the `VOC_EMERGING_BASELINE_S` before it, most significant first, per
        touchpoint and over all of them (docs/emerging.md says how it decides)."""
        forbidden_touchpoint(who, touchpoint)
        stop = end or datetime.now(UTC).replace(second=0, microsecond=0)
        window = Window(stop, settings.emerging_window_s, settings.emerging_baseline_s,
                        settings.emerging_max_phrases, settings.emerging_bucket_s)
        scope = ([touchpoint] if touchpoint else
                 sorted(who.touchpoints) if who.touchpoints is not None else None)
        excluded = await asyncio.to_thread(emerging.current_exclusions, settings.taxonomy_path)
        per = await emerging.rising(store, window, thresholds, excluded, touchpoints=scope)
        overall = None
        if touchpoint is None:
            together = await emerging.rising(store, window, thresholds, excluded,
                                             touchpoints=scope, overall=True)
            overall = _shaped("", together[""]) if "" in together else None
        answer = EmergingOut(
            window_start=window.start, window_end=window.end,
            baseline_start=window.start - timedelta(seconds=window.baseline_s),
            overall=overall,
            touchpoints=sorted((_shaped(tp, found) for tp, found in per.items()),
                               key=lambda t: (-len(t.phrases), t.touchpoint)))
        return Response(answer.model_dump_json(), media_type="application/json")

    @router.get("/emerging/clusters", summary="Clusters of negative feedback no topic tags",
                response_model=ClustersOut)
    async def untagged_clusters(
        who: Caller,
        end: Annotated[AwareDatetime | None, Query(description=(
            "End of the period (default: now, to the minute)."))] = None,
        touchpoint: Annotated[str | None, Query(description="Only this touchpoint.")] = None,
    ) -> Response:
        """The negative feedback of the `VOC_EMERGING_CLUSTER_HOURS` before `end` that no topic
        tags (at most `VOC_EMERGING_CLUSTER_MAX_EVENTS`, the newest), grouped by the character
        n-grams of its text: each cluster with its size, trend, top phrases, representative
        comments and newest comments, largest first (docs/emerging.md, "Clusters")."""
        forbidden_touchpoint(who, touchpoint)
        stop = end or datetime.now(UTC).replace(second=0, microsecond=0)
        start = stop - timedelta(hours=settings.emerging_cluster_hours)
        scope = ([touchpoint] if touchpoint else
                 sorted(who.touchpoints) if who.touchpoints is not None else None)
        rows = await queries.untagged_negative(store, touchpoints=scope, lo=start, hi=stop,
                                               limit=settings.emerging_cluster_max_events)
        texts = [clusters.Text(r["event_id"], r["touchpoint"],
                               r["occurred_at"], r["body"],
                               tuple(r["phrases"])) for r in rows]
        found = await asyncio.to_thread(
            clusters.cluster, texts, start, stop,
            similarity=settings.emerging_cluster_similarity,
            min_size=settings.emerging_cluster_min_size)
        answer = ClustersOut(**{"from": start}, to=stop, events=len(texts), clusters=[
            ClusterOut(size=c.size, trend=c.trend, phrases=c.phrases,
                       representative=[_comment(t) for t in c.representative],
                       comments=[_comment(t) for t in c.members]) for c in found])
        return Response(answer.model_dump_json(by_alias=True), media_type="application/json")

    async def preview_of(keywords: list[str], topic: str, days: int,
                         who: Principal) -> PreviewOut:
        if days > settings.query_max_range_days:
            raise HTTPException(400, {"parameter": "days", "error": (
                f"{days} days is more than VOC_QUERY_MAX_RANGE_DAYS "
                f"({settings.query_max_range_days}); ask for fewer")})
        to = datetime.now(UTC)
        start = to - timedelta(days=days)
        counted = await queries.keyword_matches(
            store, keywords=keywords, topic=topic, lo=start, hi=to,
            touchpoints=sorted(who.touchpoints) if who.touchpoints is not None else None)
        spec = await asyncio.to_thread(load_taxonomy_spec, settings.taxonomy_path)
        return PreviewOut(keywords=keywords, topic=topic, **{"from": start}, to=to,
                          matches=counted.matches, already_tagged=counted.already,
                          new_topic=all(t.id != topic for t in spec.topics))

    @router.get("/taxonomy/preview", summary="How many stored comments keywords would tag",
                response_model=PreviewOut)
    async def preview(
        who: Caller,
        keywords: Annotated[list[Keyword], Query(min_length=1, max_length=20, description=(
            "Keywords (repeat the parameter), e.g. an emerging phrase as written."))],
        topic: Annotated[TopicId, Query(description="The topic they would be added to.")],
        days: Annotated[int, Query(ge=1, le=366, description=(
            "Period before now to count in (default 30 days)."))] = 30,
    ) -> Response:
        """The stored comments of the last `days` (within the caller's touchpoints) holding
        one of `keywords`, and how many of them `topic` tags already: what the change would
        add, before making it. Substring matching, ignoring case: the NLP stage's word edges
        for Latin words and the topic's exclusions can tag a few fewer."""
        answer = await preview_of(keywords, topic, days, who)
        return Response(answer.model_dump_json(by_alias=True), media_type="application/json")

    @router.post("/taxonomy/changes", summary="Turn a phrase into a topic or keywords of one",
                 response_model=ChangeOut, status_code=201,
                 dependencies=[Depends(Require("operator"))])
    async def change(body: ChangeIn, who: Operator) -> Response:
        """Adds `keywords` to topic `topic`, or creates it (with `name`, under `parent`), in
        the taxonomy file (VOC_TAXONOMY_PATH); the NLP stage tags with it from its next batch,
        without a restart. Recorded with who made it, when, and the preview's count."""
        if who.limited:
            raise HTTPException(403, "a taxonomy change affects every touchpoint: a principal "
                                     "limited to touchpoints or teams may not make it")
        path = settings.taxonomy_path
        if path is None:
            raise HTTPException(409, "the shipped taxonomy is not edited: copy it, point "
                                     "VOC_TAXONOMY_PATH at the copy and restart, then retry")
        preview_answer = await preview_of(body.keywords, body.topic, body.days, who)
        async with editing:
            try:
                created = await asyncio.to_thread(
                    add_to_taxonomy, path, topic=body.topic, keywords=body.keywords,
                    name=body.name, parent=body.parent)
            except TaxonomyEditError as exc:
                raise HTTPException(422, str(exc)) from exc
            record = queries.TaxonomyChange(
                change_id=str(uuid.uuid4()), at=datetime.now(UTC).replace(microsecond=0),
                principal=who.name, action="add_topic" if created else "add_keywords",
                topic=body.topic, name=body.name or "", keywords=body.keywords,
                phrase=body.phrase, matches=preview_answer.matches)
            try:
                await queries.record_taxonomy_change(store, record, int(time.time() * 1000))
            except Exception as exc:
                # No change without its record: the file goes back as it was, so the answer
                # tells the truth (nothing changed) and a retry starts from the same file.
                await asyncio.to_thread(restore_taxonomy, path)
                log.error("taxonomy change NOT recorded, so undone", topic=body.topic,
                          keywords=body.keywords, error=f"{type(exc).__name__}: {exc}"[:500])
                raise HTTPException(503, "the change could not be recorded in the store "
                                         "(taxonomy_changes), so it was undone: the taxonomy "
                                         "is as before. Check the store, then retry") from exc
        log.info("taxonomy changed", principal=who.name, action=record.action,
                 topic=body.topic, keywords=body.keywords, phrase=body.phrase)
        return Response(ChangeOut(**record.__dict__).model_dump_json(), status_code=201,
                        media_type="application/json")

    @router.get("/taxonomy/changes", summary="Changes made to the taxonomy through the API",
                response_model=ChangesOut)
    async def changes(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Response:
        """Newest first: who changed what, when, from which phrase."""
        rows = await queries.taxonomy_changes(store, limit)
        return Response(ChangesOut(changes=[ChangeOut(**r.__dict__) for r in rows])
                        .model_dump_json(), media_type="application/json")

    return router
