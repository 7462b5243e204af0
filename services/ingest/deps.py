"""The dependencies every channel route declares: who sends, for which source, and the
publisher that takes the events it builds.

Each route states them as ``Annotated`` parameters, so a route's signature says what it needs
and the OpenAPI document shows the same parameters whichever module the route lives in.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request

from services.core.access import Principal, Require
from services.core.events import SOURCE_PATTERN
from services.ingest.publish import Publisher

Sender = Annotated[Principal, Depends(Require("ingest"))]
"""The caller; only principals with the ``ingest`` role get past it (401, 403)."""


async def get_publisher(request: Request) -> Publisher:
    publisher: Publisher = request.app.state.publisher
    return publisher


PublisherDep = Annotated[Publisher, Depends(get_publisher)]


def authorize(sources: set[str], who: Principal) -> None:
    """403 unless ``who`` may send for every one of ``sources``."""
    foreign = who.foreign_sources(sources)
    if foreign:
        raise HTTPException(status_code=403, detail=(
            f"{who.name!r} may send only for {sorted(who.sources or [])}, not for {foreign}"))


async def sending_source(source: Annotated[str, Path(
        min_length=1, max_length=64, pattern=SOURCE_PATTERN,
        description="The sending system; its API key must match.")], who: Sender) -> str:
    """The ``{source}`` of the path, once the caller is known to send for it."""
    authorize({source}, who)
    return source


Source = Annotated[str, Depends(sending_source)]
"""The path's ``{source}``, which the caller may send for."""
