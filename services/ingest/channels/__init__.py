"""The channel registry of ingest: every way feedback comes in, one module each.

A channel module declares its input shape (pydantic models built from
services/ingest/inputs.py), how one input becomes a ``RawFeedback`` (built through
``prepare_raw``, so it is redacted and normalised like any event), and its route on an
``APIRouter``. The app serves the routers listed here, in this order (which is also their
order in the OpenAPI document). What a channel's text and facts mean to the later stages is
declared in services/core/channels.py; docs/extending.md lists every file a new channel
touches.
"""

from __future__ import annotations

from fastapi import APIRouter

from services.ingest.channels import calls, emails, generic, reviews, social, surveys

ROUTERS: tuple[APIRouter, ...] = (
    generic.router,
    surveys.router,
    calls.router,
    social.router,
    emails.router,
    reviews.router,
)
