"""Evaluating window rules of any kind, the same way for the live worker and the backtest.

``load`` reads what a set of rules needs for some evaluation points, calling each loader of
the table of kinds once for all the rules that use it; ``Loaded.measure`` measures one rule at
one touchpoint and end; ``lifecycle_alert`` turns a lifecycle transition into its alert. The
worker and the backtest differ only in where they evaluate (services/alerting/kinds/base.py,
``Points``), what "now" is, and what they do with the alerts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.alerting.engine import KeyState, Measurement, Transition, alert_id_for, metric_key
from services.alerting.kinds import window_kind
from services.alerting.kinds.base import Loader, Points, Rows, Wanted
from services.alerting.rulebase import RuleBase
from services.core.events import Alert, AlertStatus, Explanation
from services.core.store import Store


@dataclass(frozen=True)
class Loaded:
    """Each rule's rows, per touchpoint, as its kind's loader read them."""

    rows: Rows

    def touchpoints(self, rule: RuleBase) -> list[str]:
        """The touchpoints the loader found rows of for ``rule``, in order."""
        return sorted(self.rows.get(rule.id, {}))

    def measure(self, rule: RuleBase, touchpoint: str, end: datetime) -> Measurement | None:
        """``rule`` measured at ``touchpoint`` over the history ending at ``end``."""
        rows = self.rows.get(rule.id, {}).get(touchpoint, [])
        return window_kind(rule).measure(rule, rows, end)


async def load(store: Store, rules: Sequence[RuleBase], points: Points) -> Loaded:
    """What ``rules`` (window kinds) read for evaluation at ``points``: one call per loader."""
    by_loader: dict[Loader, list[Wanted[Any]]] = {}
    for rule in rules:
        kind = window_kind(rule)
        by_loader.setdefault(kind.loader, []).append(Wanted(rule, tuple(kind.history(rule))))
    rows: Rows = {}
    for loader, wanted in by_loader.items():
        rows.update(await loader(store, wanted, points))
    return Loaded(rows)


def lifecycle_alert(rule: Any, touchpoint: str, state: KeyState, transition: Transition,
                    m: Measurement, now: datetime,
                    latest_received_at: datetime | None = None,
                    explanation: Explanation | None = None) -> Alert:
    """The alert event of a transition (the same alert_id for its firing and its resolution),
    worded as the rule's kind describes what it measured, with the explanation the live
    worker computed (services/alerting/explain.py; the backtest computes none)."""
    described = window_kind(rule).describe(rule, m)
    status: AlertStatus = "firing" if transition == "fire" else "resolved"
    key = metric_key(rule.id, touchpoint)
    scope = rule.scope
    return Alert(
        alert_id=state.alert_id or alert_id_for(key, m.end), dedupe_key=key, rule_id=rule.id,
        rule_type=rule.type, severity=rule.severity, status=status, touchpoint=touchpoint,
        channel=",".join(scope.channels) if scope.channels else None,
        stage=",".join(scope.stages) if scope.stages else None,
        topic=described.topic, metric=described.metric, operator=described.operator,
        threshold=described.threshold, value=m.value, baseline=m.baseline, volume=m.volume,
        window_start=m.start, window_end=m.end, fired_at=state.fired_at or now,
        resolved_at=now if status == "resolved" else None, emitted_at=now,
        team=rule.route.team, owner=rule.route.owner, notify=rule.route.notify,
        open_case=rule.route.open_case and status == "firing", event_ids=[],
        latest_received_at=latest_received_at, explanation=explanation,
        message=(f"[{status}] {touchpoint}: {described.what} over {m.volume} "
                 f"{described.counted}. {rule.description}").strip(),
    )
