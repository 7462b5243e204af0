"""The SLA loop on both store backends reads only the cases that can still escalate: not the
resolved or closed ones, nor one at the end of its escalation chain, however many were written."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from services.alerting.cases import CaseService, escalate_due, open_case, transition
from services.alerting.rules import RuleSet, Sla
from services.core.broker import LocalBroker
from services.core.kafka import create_topics
from services.core.settings import Settings
from tests.conftest import run
from tests.pipeline_harness import store_and_producer
from tests.unit.test_cases import ALERT, T0

RULES = RuleSet.model_validate({
    "rules": [{"id": "vip", "type": "event", "match": {"segments": ["VIP"]}}],
    "sla": {"critical": Sla(ack_minutes=10, resolve_hours=2, escalation=["l2", "l3"])}})


def test_the_sla_loop_reads_open_cases_only(broker: LocalBroker, store_url: str,
                                             settings: Settings) -> None:
    create_topics(settings, broker.bootstrap)
    sla = RULES.sla["critical"]
    cases = {name: open_case(ALERT.model_copy(update={"alert_id": name}), sla, T0)
             for name in ("open", "resolved", "closed", "top", "acked")}
    history = [*cases.values()]
    resolved = transition(cases["resolved"], "resolved", "agent", T0 + timedelta(minutes=5))
    history += [resolved, transition(cases["closed"], "resolved", "agent", T0),
                transition(transition(cases["closed"], "resolved", "agent", T0), "closed",
                           "agent", T0 + timedelta(minutes=1))]
    top = cases["top"]
    for level in (1, 2):
        top = transition(top, "escalated", "sla", T0, escalation_level=level)
        history.append(top)
    history.append(transition(cases["acked"], "acknowledged", "agent", T0))

    async def main() -> None:
        async with store_and_producer(store_url, broker.bootstrap) as (store, producer):
            service = CaseService(settings, store, producer)
            await service.write(history)
            real_query = store.query
            read: list[dict] = []

            async def recording(sql: str, params: Any = None) -> list[dict]:
                rows = await real_query(sql, params)
                read.extend(rows)
                return rows

            store.query = recording  # type: ignore[method-assign]
            due = await escalate_due(service, RULES, T0 + timedelta(minutes=30))
            store.query = real_query  # type: ignore[method-assign]
            names = {c.case_id: n for n, c in cases.items()}
            assert sorted(names[r["case_id"]] for r in read) == ["acked", "open"]
            assert sorted(names[e.case_id] for e in due) == ["open"], \
                "acknowledged in time: its resolve deadline has not passed"
            assert due[0].escalation_level == 1 and due[0].team == "l2"

    run(main())
