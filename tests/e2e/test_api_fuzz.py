"""The whole HTTP API fuzzed from its own OpenAPI document (schemathesis) on real parts.

The API process runs as ``voc up`` would serve it (ingest, queries, cases) on the real broker
and chdb. Every generated request, valid or not, must get an answer that is not a 5xx and, for
documented status codes, matches the documented response schema.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from services.core.broker import LocalBroker
from services.core.kafka import create_topics
from services.core.settings import load_settings
from services.pipeline import run_services
from tests.conftest import unique

pytestmark = pytest.mark.slow

STREAMING = r"^/v1/stream"
"""Server-sent event streams never end, so a fuzzer cannot wait for their response."""


@pytest.fixture(scope="module")
def api_schema(broker: LocalBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    config = load_settings(topic_prefix=unique("f"), group_prefix=unique("f"), http_port=0,
                           data_dir=tmp_path_factory.mktemp("fuzz"), api_rate_limit="",
                           topic_partitions=1)
    create_topics(config, broker.bootstrap)
    listening = threading.Event()
    state: dict[str, object] = {}

    async def serve() -> None:
        stop = asyncio.Event()
        state["stop"], state["loop"] = stop, asyncio.get_running_loop()

        def on_listening(url: str) -> None:
            state["url"] = url
            listening.set()
        try:
            await run_services(config, ["ingest"], broker.bootstrap, stop, on_listening=on_listening)
        except BaseException as exc:
            state["error"] = exc
            listening.set()
            raise

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    assert listening.wait(120), "the API did not start"
    assert "error" not in state, state.get("error")
    try:
        yield schemathesis.openapi.from_url(f"{state['url']}/openapi.json").exclude(
            path_regex=STREAMING)
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)  # type: ignore[attr-defined]
        thread.join(60)


def test_no_server_errors_and_documented_responses(api_schema: object) -> None:
    """Every operation, up to 25 generated cases each; all failures are reported together."""
    failures: dict[str, str] = {}
    operations = [result.ok() for result in api_schema.get_all_operations()]  # type: ignore[attr-defined]
    assert len(operations) >= 8, [op.label for op in operations]
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=[not_a_server_error, response_schema_conformance,
                                           content_type_conformance], timeout=30)
        try:
            check()
        except Exception as exc:
            failures[operation.label] = str(exc)[:1500]
    assert not failures, "\n\n".join(f"{label}: {why}" for label, why in failures.items())
