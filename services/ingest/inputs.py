"""The field types every ingest input shape shares, so each channel bounds the same way.

Names are trimmed and must then be names (the one character set of services/core/events.py,
so the dashboard never receives markup). Texts lose control and zero-width characters
(services/core/bounds.py) before their limits are checked: a text of nothing but such
characters is refused as empty rather than stored invisible.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

from services.core.bounds import clean_input
from services.core.events import (
    MAX_META_ENTRIES,
    MAX_NAME,
    MAX_SEGMENT,
    NAME_PATTERN,
    Closed,
    MetaKey,
    at_most_entries,
)
from services.core.settings import INGEST_BATCH_LIMIT

Stage = Literal["售前", "售中", "售后"]
Touchpoint = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                              max_length=MAX_NAME, pattern=NAME_PATTERN)]
Segment = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                           max_length=MAX_SEGMENT, pattern=NAME_PATTERN)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20000),
                 BeforeValidator(clean_input)]
Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
CustomerId = Annotated[str, StringConstraints(max_length=128)]
MetaText = Annotated[str, StringConstraints(max_length=1024), BeforeValidator(clean_input)]
Metadata = Annotated[dict[MetaKey, MetaText], Field(max_length=MAX_META_ENTRIES),
                     at_most_entries(MAX_META_ENTRIES)]

Input = Closed
"""Base of every input shape: unknown fields are errors, at most one per field the shape has."""

BATCH_LIMIT = INGEST_BATCH_LIMIT
"""Items of a batch the shapes take at most, whatever VOC_INGEST_BATCH_MAX says: a list is
refused as too long before its items are validated, so 100,000 empty items cost one error,
not 400,000 (the app answers 413 for batches over the setting either way)."""

BATCH_TOO_LONG = "batch_too_long"
"""The error type of a batch longer than ``BATCH_LIMIT``: the app answers it with 413."""


def _at_most_batch_limit(value: Any) -> Any:
    if isinstance(value, list) and len(value) > BATCH_LIMIT:
        raise PydanticCustomError(BATCH_TOO_LONG, "{size} items; at most {limit} are accepted",
                                  {"size": len(value), "limit": BATCH_LIMIT})
    return value


Item = TypeVar("Item")
Batch = Annotated[list[Item], Field(min_length=1, max_length=BATCH_LIMIT),
                  BeforeValidator(_at_most_batch_limit)]
"""The list of items of a batch route: its length is checked before any item is validated,
and a list over ``BATCH_LIMIT`` is a 413 on whichever route and field it comes."""


class Ratings(Input):
    """Survey scores; each is optional and range-checked."""

    model_config = ConfigDict(extra="forbid")

    nps: Annotated[int, Field(ge=0, le=10)] | None = Field(default=None, description="NPS 0-10")
    csat: Annotated[int, Field(ge=1, le=5)] | None = Field(default=None, description="CSAT 1-5")
    ces: Annotated[int, Field(ge=1, le=7)] | None = Field(default=None, description="CES 1-7")
