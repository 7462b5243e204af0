"""GET /v1/emerging: the rising phrases of one window, per touchpoint and over all of them,
for the dashboard's 新话题 panel and for people (docs/api.md, docs/emerging.md).

The detection is the one ``emerging_topic`` rules run (services/alerting/emerging.py) with the
deployment's thresholds (``VOC_EMERGING_*``), read on demand: nothing is kept between calls. A
caller limited to touchpoints gets only those, and "overall" is then the sum over them, so no
figure of another touchpoint reaches it. Each phrase comes with the window, so a client opens
its comments with ``GET /v1/feedback?q=<text>&touchpoint=..&from=..&to=..``.
"""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.alerting import emerging
from services.alerting.emerging import Detection, Thresholds, Window
from services.core.access import Caller, Require, forbidden_touchpoint
from services.core.errors import PROBLEM_RESPONSES, ParameterRoute
from services.core.settings import Settings
from services.core.store import Store

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


class EmergingOut(_Out):
    window_start: datetime
    window_end: datetime
    baseline_start: datetime
    overall: TouchpointPhrases | None
    touchpoints: list[TouchpointPhrases]


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
                        settings.emerging_max_phrases)
        scope = ([touchpoint] if touchpoint else
                 sorted(who.touchpoints) if who.touchpoints is not None else None)
        excluded = await asyncio.to_thread(emerging.current_exclusions)
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

    return router
