"""Real parts for the tests: a tansu broker and a clickhouse-server on free ports, chdb in a
temp dir. Each is started once per session and stopped at the end; every test gets its own
topic prefix and database so tests never see each other's data.

Set VOC_TEST_CLICKHOUSE=testcontainers on a machine with Docker to run the server-backend
tests against a ClickHouse container instead of the local clickhouse-server binary.

The tests come in three tiers, so a change can be checked at the speed it needs:

- ``tests/unit/``: pip alone, about a minute (``make test-unit``). No broker, no ClickHouse
  server, no chdb store, no browser, no processes; tests/unit/conftest.py fails a test that
  tries.
- ``tests/integration/``: the real broker, clickhouse-server and chdb store, in-process.
- ``tests/e2e/``: modules with ``slow`` end-to-end tests: the whole pipeline, service
  processes, the browser, the ClickHouse cluster.

``make test`` runs all three (plus lint and types); ``make test-fast`` leaves out ``slow``.
Both run them on ``TEST_WORKERS`` pytest-xdist workers (default 2), then the ``serial`` tests
alone; the two hooks at the end of this file decide which tests share a worker and in what
order (docs/testing.md).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.core.broker import LocalBroker
from services.core.local_clickhouse import LocalClickHouse
from services.core.settings import Settings, load_settings
from services.core.store import StoreUrl


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    log = tmp_path_factory.mktemp("broker") / "broker.log"
    with LocalBroker(log_path=log) as running:
        yield running


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real ClickHouse server (database part is replaced per test)."""
    if os.environ.get("VOC_TEST_CLICKHOUSE") == "testcontainers":
        from testcontainers.community.clickhouse import ClickHouseContainer

        with ClickHouseContainer() as container:
            host = container.get_container_host_ip()
            port = container.get_exposed_port(9000)
            yield f"clickhouse://{container.username}:{container.password}@{host}:{port}/voc"
        return
    with LocalClickHouse(tmp_path_factory.mktemp("clickhouse")) as server:
        yield server.url


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def with_database(url: str, database: str) -> str:
    parsed = StoreUrl.parse(url)
    auth = parsed.user + (f":{parsed.password}" if parsed.password else "")
    return f"clickhouse://{auth}@{parsed.host}:{parsed.port}/{database}"


@pytest.fixture(params=["chdb", "clickhouse"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs on both store backends."""
    if request.param == "chdb":
        return f"chdb://{tmp_path / 'chdb'}"
    return with_database(request.getfixturevalue("clickhouse_server"), unique("t_"))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings isolated per test: own topic prefix, data dir, and an OS-chosen API port."""
    # Fixtures date their events on fixed days (2026-11-23): a long maximum age keeps them
    # inside the entrance bounds after those days have passed. Tests of the bounds set it.
    return load_settings(topic_prefix=unique("t"), group_prefix=unique("g"), data_dir=tmp_path,
                         http_port=0, topic_partitions=3, max_event_age_s=10 * 365 * 86400)


def run(coro):  # noqa: ANN001, ANN201
    """Run a coroutine to completion in a fresh event loop (tests stay plain functions)."""
    return asyncio.run(coro)


# --- running on pytest-xdist workers ---------------------------------------------------------

# Modules whose tests must never run beside each other's share a worker, one after the other.
# Both start ZooKeeper and four clickhouse-servers with seven `voc` processes, too much to run
# twice at once on two cores. (xdist's own `xdist_group` mark does nothing under pytest 9:
# xdist 3.8 renames `item._nodeid`, which pytest 9 no longer reads, so groups are by path here.)
SAME_WORKER = {
    "tests/e2e/test_cluster.py": "cluster",
    "tests/e2e/test_bench_smoke.py": "cluster",
}
# The modules that take longest, longest first: handed out first so the run does not end with
# one worker busy for minutes on a module it got last while the other has nothing left.
LONGEST_FIRST = (
    "tests/e2e/test_bench_smoke.py",
    "tests/e2e/test_cluster.py",
    "tests/e2e/test_recovery.py",
    "tests/e2e/test_alert_e2e.py",
    "tests/e2e/test_cli_and_processes.py",
    "tests/e2e/test_e2e_pipeline.py",
)
TIER_ORDER = ("tests/e2e/", "tests/integration/", "tests/unit/")


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def _rank(item: pytest.Item) -> tuple[int, int]:
    path = _module(item.nodeid)
    tier = next((i for i, prefix in enumerate(TIER_ORDER) if path.startswith(prefix)),
                len(TIER_ORDER))
    heavy = LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)
    return tier, heavy


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On xdist workers, order the work longest first (tiers, then LONGEST_FIRST; the order
    inside a module is kept). Every worker sorts the same collection the same way, as xdist
    requires."""
    if hasattr(config, "workerinput"):
        items.sort(key=_rank)


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` (a module's tests on one worker, so module-scoped fixtures are built
    once), except that the modules of one SAME_WORKER group form one unit of work. Units are
    handed out in collection order, which ``pytest_collection_modifyitems`` made longest
    first."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModulesAndGroups(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return SAME_WORKER.get(_module(nodeid), _module(nodeid))

    config.option.loadscopereorder = False
    return ModulesAndGroups(config, log)
