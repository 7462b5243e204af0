"""The alerting service's store seam (services/alerting/queries.py) on both store backends.

- Listing cases filters by current status, team and touchpoint, and by what the caller may
  see, and applies its limit in the store: the store returns at most ``limit`` rows however
  many cases were written.
- An alert read back from its row is the alert that was written, less its routing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.alerting import queries
from services.alerting.cases import open_case, transition
from services.alerting.rules import Sla
from services.core.events import Alert, CaseEvent
from services.core.migrations import migrate
from services.core.store import Store, open_store
from tests import factories
from tests.conftest import run

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
SLA = Sla(ack_minutes=30, resolve_hours=4)


def alert(n: int, touchpoint: str, team: str | None, **changes: Any) -> Alert:
    return factories.alert(**{
        "at": T0, "alert_id": f"a{n}", "dedupe_key": f"r:{touchpoint}:{n}",
        "rule_type": "event", "severity": "warning", "touchpoint": touchpoint,
        "channel": "app", "metric": "event_sentiment", "operator": None, "threshold": -0.6,
        "value": -0.9, "volume": 1, "team": team, "notify": ["pager"],
        "event_ids": [f"e{n}"], "latest_received_at": T0 - timedelta(seconds=3),
        "message": f"m{n}", **changes})


def history() -> list[CaseEvent]:
    """40 cases opened a minute apart at two touchpoints and teams (every fifth without a
    team); every third acknowledged; case 37 moved from team ops to vip-care."""
    events = []
    for n in range(40):
        touchpoint = "hotline" if n % 2 else "delivery"
        team = None if n % 5 == 4 else ("ops" if n % 4 < 2 else "vip-care")
        case = open_case(alert(n, touchpoint, team), SLA, T0 + timedelta(minutes=n))
        events.append(case)
        if n % 3 == 0:
            events.append(transition(case, "acknowledged", "op", case.opened_at
                                     + timedelta(seconds=30)))
        if n == 37:
            assert case.team == "ops"
            events.append(transition(case, "assigned", "op", case.at + timedelta(seconds=1),
                                     team="vip-care", assignee="李四"))
    return events


MOVED = next(e.case_id for e in history() if e.action == "assigned")


class Counting:
    """The store, counting the rows each query returns (the seam's promise is a bound)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.returned: list[int] = []

    async def query(self, sql: str, params: Any = None) -> list[dict]:
        rows = await self.store.query(sql, params)
        self.returned.append(len(rows))
        return rows


def test_case_list_filters_and_limits_in_the_store(store_url: str) -> None:
    events = history()
    current = {e.case_id: e for e in events}  # later events of a case replace earlier ones

    def expected(limit: int = 100, **match: Any) -> list[str]:
        allowed_tp = match.pop("touchpoints", None)
        allowed_team = match.pop("teams", None)
        chosen = [c for c in current.values()
                  if all(getattr(c, k) == v for k, v in match.items())
                  and (allowed_tp is None or c.touchpoint in allowed_tp)
                  and (allowed_team is None or c.team in allowed_team)]
        return [c.case_id for c in sorted(chosen, key=lambda c: c.opened_at,
                                          reverse=True)][:limit]

    async def main() -> None:
        store = await open_store(store_url)
        try:
            await migrate(store)
            await queries.record_case_events(store, events, 1)
            counting = Counting(store)

            async def listed(limit: int = 100, **match: Any) -> list[str]:
                found = await queries.cases(
                    counting, status=match.get("status"),  # type: ignore[arg-type]
                    team=match.get("team"), touchpoint=match.get("touchpoint"),
                    touchpoints=match.get("touchpoints"), teams=match.get("teams"),
                    limit=limit)
                return [c.case_id for c in found]

            assert await listed() == expected()
            assert len(await listed()) == 40
            assert await listed(status="acknowledged") == expected(status="acknowledged")
            assert await listed(status="open", touchpoint="hotline") == expected(
                status="open", touchpoint="hotline")
            assert MOVED in await listed(team="vip-care")
            assert MOVED not in await listed(team="ops"), "the current team counts"
            assert await listed(team="ops", limit=3) == expected(team="ops", limit=3)
            scoped = {"touchpoints": {"hotline"}, "teams": {"ops", "vip-care"}}
            assert await listed(**scoped) == expected(**scoped)
            assert all(current[c].team for c in await listed(teams={"ops", "vip-care"})), \
                "a principal limited to teams never sees a case without one"
            assert await listed(touchpoints=set()) == []
            counting.returned.clear()
            assert await listed(limit=5) == expected(limit=5)
            assert counting.returned == [5], "the limit is applied by the store"
        finally:
            await store.close()

    run(main())


def test_an_alert_read_back_from_its_row_is_the_alert_less_its_routing(store_url: str) -> None:
    written = alert(1, "hotline", "ops", operator=">", baseline=0.25)

    async def main() -> list[Alert]:
        store = await open_store(store_url)
        try:
            await migrate(store)
            await queries.record_alerts(store, [(written, T0)], 1)
            return await queries.firing_alerts(store, key_suffix=":1")
        finally:
            await store.close()

    [read] = run(main())
    assert read == written.model_copy(update={"notify": [], "open_case": False})
