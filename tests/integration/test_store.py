"""The store interface on both backends: chdb in a temp dir and a real clickhouse-server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import schemas
from services.core.migrations import migrate
from services.core.store import StoreError, StoreUrl, open_store
from services.scoring.queries import SCORES_FROM_EVENTS_SQL
from tests.conftest import run

T0 = datetime(2026, 11, 23, 10, 0, 30, tzinfo=UTC)


def feedback(event_id: str, touchpoint: str, when: datetime, score: float, label: str,
             text: str = "好") -> dict:
    return {"event_id": event_id, "source": "s", "external_id": "", "channel": "web",
            "touchpoint": touchpoint, "customer_id": "", "text": text, "occurred_at": when,
            "received_at": when, "enriched_at": when, "sentiment": score,
            "sentiment_label": label, "sentiment_model": "m", "topics": ["a"], "metadata": "{}",
            "enriched_json": "{}", "inserted_ms": 1}


def test_migrations_apply_once_and_tables_exist(store_url: str) -> None:
    async def scenario() -> None:
        store = await open_store(store_url)
        try:
            every = [m.version for m in schemas.migrations()]
            assert await migrate(store) == every
            assert await migrate(store) == []
            await store.execute("DROP TABLE schema_migrations")
            assert await migrate(store) == every, "statements applied but not recorded re-run"
            tables = {r["name"] for r in await store.query(
                "SELECT name FROM system.tables WHERE database = %(db)s", {"db": store.database})}
            assert {"feedback", "scores", "alerts", "schema_migrations"} <= tables
        finally:
            await store.close()

    run(scenario())


def test_round_trip_escaping_and_window_sql(store_url: str) -> None:
    hostile = "'); DROP TABLE feedback; --\\ 引号\"'"

    async def scenario() -> None:
        store = await open_store(store_url)
        try:
            await migrate(store)
            rows = [feedback("e1", "tp", T0, -0.8, "negative", hostile),
                    feedback("e2", "tp", T0 + timedelta(seconds=10), 0.6, "positive"),
                    feedback("e3", "tp", T0 + timedelta(seconds=40), 0.0, "neutral"),
                    feedback("e1", "tp", T0, -0.8, "negative", hostile)]
            await store.insert("feedback", rows)
            found = await store.query(
                "SELECT event_id, text, occurred_at FROM feedback FINAL WHERE text = %(t)s",
                {"t": hostile})
            assert found == [{"event_id": "e1", "text": hostile, "occurred_at": T0.replace(microsecond=0)}]
            minute = int(T0.timestamp()) // 60 * 60
            windows = await store.query(SCORES_FROM_EVENTS_SQL, {
                "seconds": 60, "touchpoints": ("tp",), "lo": T0 - timedelta(minutes=5),
                "hi": T0 + timedelta(minutes=5), "epochs": (minute, minute + 60)})
            assert {(w["ch"], w["st"]) for w in windows} == {("web", "unknown")}
            whole = {w["window_epoch"]: w for w in windows}
            first = whole[minute]
            assert (first["agg_volume"], first["agg_negative_count"],
                    first["agg_positive_count"]) == (2, 1, 1)
            assert first["agg_sentiment_sum"] == pytest.approx(-0.2)
            assert sum(w["agg_volume"] for w in whole.values()) == 3
        finally:
            await store.close()

    run(scenario())


def test_errors_name_the_statement(store_url: str) -> None:
    async def scenario() -> None:
        store = await open_store(store_url)
        try:
            with pytest.raises(StoreError, match="no_such_table"):
                await store.query("SELECT * FROM no_such_table")
        finally:
            await store.close()

    run(scenario())


def test_unreachable_server_fails_with_advice() -> None:
    from services.core.broker import free_port

    async def scenario() -> None:
        with pytest.raises(StoreError, match="VOC_CLICKHOUSE_URL"):
            await open_store(f"clickhouse://default@127.0.0.1:{free_port()}/x", retries=2,
                             delay_s=0.1)

    run(scenario())


def test_alt_hosts_are_tried_when_the_first_server_is_unreachable(clickhouse_server: str) -> None:
    """A process whose server died goes on through the next of ``alt_hosts``."""
    from services.core.broker import free_port

    parsed = StoreUrl.parse(clickhouse_server)
    dead = f"clickhouse://default@127.0.0.1:{free_port()}/alt_{free_port()}"

    async def scenario() -> None:
        store = await open_store(f"{dead}?alt_hosts={parsed.host}:{parsed.port}", retries=2,
                                 delay_s=0.1)
        try:
            assert await store.query("SELECT 1 AS one") == [{"one": 1}]
        finally:
            await store.close()

    run(scenario())
    for bad in ("alt_hosts=ch-2", "alt_hosts=ch-2:9000;DROP", "alt_hosts=ch-2:9000,"):
        with pytest.raises(ValueError, match="alt_hosts must be host:port pairs"):
            StoreUrl.parse(f"clickhouse://default@127.0.0.1:9000/x?{bad}")


def test_fresh_reads_carry_their_settings_on_the_server_only(store_url: str) -> None:
    """Scoring and alerting read with FRESH_READS (services/core/store_server.py); the query
    API's reads and every write keep the server's defaults, and chdb has nothing to refuse.
    That a stale replica is refused is proven on the cluster (tests/e2e/test_cluster.py)."""
    names = ("max_replica_delay_for_distributed_queries",
             "fallback_to_stale_replicas_for_distributed_queries")
    sql = "SELECT name, value FROM system.settings WHERE name IN %(n)s ORDER BY name"

    async def scenario() -> None:
        store = await open_store(store_url)
        try:
            fresh = store.fresh_reads()
            if store.backend == "chdb":
                assert fresh is store
                return
            assert await fresh.query(sql, {"n": names}) == [
                {"name": names[1], "value": "0"}, {"name": names[0], "value": "1"}]
            assert [r["value"] for r in await store.query(sql, {"n": names})] == ["1", "300"]
            assert await fresh.query("SELECT count() AS n FROM system.one") == [{"n": 1}]
        finally:
            await store.close()

    run(scenario())
