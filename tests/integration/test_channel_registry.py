"""The channel registry: the wire contract, what the stages do per channel and ingest's routes
agree, so a new channel cannot be half added."""

from __future__ import annotations

from typing import Any, get_args

import httpx
from fastapi.routing import APIRoute
from pydantic import BaseModel

import schemas
from services.core.broker import LocalBroker
from services.core.channels import ANALYSIS, FACTS
from services.core.events import Channel, RawFeedback
from services.core.kafka import create_topics
from services.core.settings import Settings
from services.ingest.channels import ROUTERS
from services.ingest.inputs import BATCH_LIMIT
from tests.conftest import run
from tests.pipeline_harness import read_topic, running


def test_channel_values_are_the_schema_enums() -> None:
    for name in ("feedback.raw.v2", "feedback.enriched.v2"):
        assert schemas.topic_schema(name)["properties"]["channel"]["enum"] == \
            list(get_args(Channel)), name


def _models(annotation: Any) -> list[type[BaseModel]]:
    return [a for a in (annotation, *get_args(annotation))
            if isinstance(a, type) and issubclass(a, BaseModel)]


def test_every_facts_object_and_analysis_rule_is_declared_for_a_known_channel() -> None:
    facts = {name for name, field in RawFeedback.model_fields.items()
             if name != "ratings" and _models(field.annotation)}
    assert facts == set(FACTS), "each facts object of the raw event needs an entry in FACTS"
    assert set(ANALYSIS) <= set(get_args(Channel))


def batch_routes() -> list[tuple[str, str]]:
    """(path, list field) of every route whose body holds a batch of items."""
    found = []
    for router in ROUTERS:
        for route in router.routes:
            assert isinstance(route, APIRoute)
            body = route.body_field.field_info.annotation if route.body_field else None
            for model in _models(body):
                for name, field in model.model_fields.items():
                    if any(getattr(getattr(m, "func", None), "__name__", "") ==
                           "_at_most_batch_limit" for m in field.metadata):
                        found.append((route.path, name))
    return found


def test_every_batch_route_answers_a_batch_over_the_limit_with_413(
        broker: LocalBroker, settings: Settings) -> None:
    routes = batch_routes()
    assert {path for path, _ in routes} >= {"/v1/feedback/batch", "/v1/sources/{source}/surveys",
                                            "/v1/sources/{source}/social"}
    create_topics(settings, broker.bootstrap)

    async def scenario() -> None:
        async with running(settings, ["ingest"], broker.bootstrap) as url, \
                httpx.AsyncClient(base_url=url, timeout=30) as client:
            for path, field in routes:
                answer = await client.post(path.replace("{source}", "src"),
                                           json={field: [{}] * (BATCH_LIMIT + 1)})
                assert answer.status_code == 413, (path, answer.text[:300])
                assert "VOC_INGEST_BATCH_MAX" in answer.json()["detail"], path

    run(scenario())
    assert read_topic(broker.bootstrap, settings.topic("feedback.raw")) == []
