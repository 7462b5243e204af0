"""The windows and cells a score row covers: window lengths and names, channel and stage cells.

Shared by the scorer, its SQL (services/scoring/queries.py) and the query API; the window
arithmetic every stage shares (``window_start``) is in services/core/cem_metrics.py.
"""

from __future__ import annotations

ALL = ""
"""channel / stage value of the rows that cover all channels / all stages."""

UNKNOWN_STAGE = "unknown"
"""stage value of the rows that count events that carried no journey stage."""

STAGES = ("售前", "售中", "售后", UNKNOWN_STAGE)

ROLLUP_SECONDS = (300, 3600, 86400)
"""Windows above the base window; each divides the next so rollups chain exactly."""

_LABELS = {60: "1m", 300: "5m", 3600: "1h", 86400: "1d"}


def window_label(seconds: int) -> str:
    """``1m``, ``5m``, ``1h``, ``1d`` (the query API's names), else ``<n>s``."""
    return _LABELS.get(seconds, f"{seconds}s")


def granularities(base_seconds: int) -> tuple[int, ...]:
    """The base window followed by the rollup windows coarser than it."""
    return (base_seconds, *(s for s in ROLLUP_SECONDS if s > base_seconds))
