"""The field types every ingest input shape shares, so each channel bounds the same way.

Names are trimmed and must then be names (the one character set of services/core/events.py,
so the dashboard never receives markup). Texts lose control and zero-width characters
(services/core/bounds.py) before their limits are checked: a text of nothing but such
characters is refused as empty rather than stored invisible.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, StringConstraints

from services.core.bounds import clean_input
from services.core.events import MAX_META_ENTRIES, MAX_NAME, MAX_SEGMENT, NAME_PATTERN, MetaKey

Stage = Literal["售前", "售中", "售后"]
Touchpoint = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                              max_length=MAX_NAME, pattern=NAME_PATTERN)]
Segment = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                           max_length=MAX_SEGMENT, pattern=NAME_PATTERN)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20000),
                 BeforeValidator(clean_input)]
Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
MetaText = Annotated[str, StringConstraints(max_length=1024), BeforeValidator(clean_input)]
Metadata = Annotated[dict[MetaKey, MetaText], Field(max_length=MAX_META_ENTRIES)]
