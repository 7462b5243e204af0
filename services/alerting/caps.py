"""Bounds on what alerting keeps and emits: lifecycle state per key, and alerts per rule.

Both are pure bookkeeping (no I/O), so the worker decides with them, publishes, and only then
commits what they decided: a publish that fails leaves them as they were, and its retry
decides the same again.

- :class:`KeyStates`: one ``KeyState`` per dedupe key (rule x subject). Subjects come from
  the data (touchpoints, customer ids), so the map is bounded: keys with an open alert are
  never forgotten (forgetting one would never resolve it, or page it again), the others are
  kept up to ``VOC_ALERT_MAX_KEYS`` and then the least recently used go. Such a key only
  holds a cooldown (the last time it fired); forgetting an old one can at worst let it fire
  again after its cooldown was mostly over, which the cap below still bounds.
- :class:`AlertCaps`: at most ``VOC_ALERT_MAX_PER_RULE`` firing alerts per rule per
  ``VOC_ALERT_CAP_PERIOD_S`` (periods aligned to the UTC epoch). The first alert over the cap
  fires one summary alert of the rule (its own deterministic id, dedupe key
  ``<rule>:alert-cap``) telling the team that alerts are being suppressed; at the end of the
  period the summary resolves with the number suppressed ("rule X: N more alerts suppressed
  in the period ..."). Suppressed alerts open no case and page nobody, and are never dropped
  silently: they are counted there, in the log and in ``voc_alerts_suppressed_total``.
  Resolutions are never capped: an open alert must be able to close.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from cachetools import LRUCache

from services.alerting.engine import KeyState
from services.core.events import Alert

_CAP_NAMESPACE = uuid.UUID("0b7f6c7e-2f55-4d3a-9d0e-5f7c1a2b3c4d")
CAP_KEY_SUFFIX = ":alert-cap"
SUMMARY_TOUCHPOINT = "all"


class KeyStates:
    """Lifecycle state per dedupe key, bounded as the module docstring says."""

    def __init__(self, max_keys: int) -> None:
        self._firing: dict[str, KeyState] = {}
        self._ok: LRUCache[str, KeyState] = LRUCache(maxsize=max_keys)

    def get(self, key: str) -> KeyState:
        state = self._firing.get(key)
        if state is None:
            state = self._ok.get(key)
        return state or KeyState()

    def update(self, changes: Mapping[str, KeyState]) -> None:
        for key, state in changes.items():
            if state.status == "firing":
                self._ok.pop(key, None)
                self._firing[key] = state
            else:
                self._firing.pop(key, None)
                self._ok[key] = state

    def __contains__(self, key: object) -> bool:
        return key in self._firing or key in self._ok

    def __len__(self) -> int:
        return len(self._firing) + len(self._ok)


@dataclass(frozen=True)
class Pending:
    """An alert the rules produced, with what its key's state becomes either way."""

    alert: Alert
    fired_end: datetime
    key: str
    state: KeyState
    """The key's state once the alert is published."""
    suppressed: KeyState
    """The key's state when the cap suppresses the alert: as if it fired, so its cooldown
    starts and it is counted once rather than at every evaluation."""


@dataclass(frozen=True)
class Owner:
    """What a summary alert takes from its rule (or, after a restart, from its stored row)."""

    rule_id: str
    rule_type: str
    severity: str
    team: str | None
    owner: str | None
    notify: tuple[str, ...]

    @classmethod
    def of(cls, rule: Any) -> Owner:
        return cls(rule.id, rule.type, rule.severity, rule.route.team, rule.route.owner,
                   tuple(rule.route.notify))


@dataclass
class RuleCap:
    """One rule's count in one period, and its open summary alert (if it needed one)."""

    period_start: datetime
    fired: int = 0
    suppressed: int = 0
    summary: Alert | None = None


@dataclass
class CapPlan:
    """What to publish for a batch, and the cap state to keep once it is published."""

    alerts: list[tuple[Alert, datetime]] = field(default_factory=list)
    """To the alerts topic and table, in order."""
    table_only: list[tuple[Alert, datetime]] = field(default_factory=list)
    """Open summaries with their count so far: to the table only (no page), so a restarted
    evaluator resumes the count."""
    suppressed: list[Pending] = field(default_factory=list)
    caps: dict[str, RuleCap] = field(default_factory=dict)


class AlertCaps:
    """Firing alerts per rule per period, as the module docstring says."""

    def __init__(self, max_per_rule: int, period_s: int) -> None:
        self.max_per_rule = max_per_rule
        self.period_s = period_s
        self.caps: dict[str, RuleCap] = {}
        self.owners: dict[str, Owner] = {}

    def period_of(self, now: datetime) -> datetime:
        epoch = int(now.timestamp())
        return datetime.fromtimestamp(epoch - epoch % self.period_s, UTC)

    def plan(self, pending: Iterable[Pending], owners: Mapping[str, Owner],
             now: datetime) -> CapPlan:
        """Admit or suppress each pending alert, and close the summaries of ended periods."""
        period = self.period_of(now)
        plan = CapPlan()
        for rule_id, held in self.caps.items():
            if held.period_start < period:
                if held.summary is not None:
                    closed = self._resolved(held.summary, held.suppressed, now)
                    plan.alerts.append((closed, closed.window_end))
                plan.caps[rule_id] = RuleCap(period)
        for item in pending:
            alert = item.alert
            if alert.status != "firing":
                plan.alerts.append((alert, item.fired_end))
                continue
            cap = plan.caps.get(alert.rule_id)
            if cap is None:
                current = self.caps.get(alert.rule_id)
                cap = (replace(current) if current is not None and current.period_start >= period
                       else RuleCap(period))
                plan.caps[alert.rule_id] = cap
            if cap.fired < self.max_per_rule:
                cap.fired += 1
                plan.alerts.append((alert, item.fired_end))
                continue
            cap.suppressed += 1
            plan.suppressed.append(item)
            if cap.summary is None:
                owner = owners.get(alert.rule_id) or self.owners.get(alert.rule_id)
                if owner is None:
                    owner = Owner(alert.rule_id, alert.rule_type, alert.severity, alert.team,
                                  alert.owner, tuple(alert.notify))
                cap.summary = self._firing(owner, cap, now)
                plan.alerts.append((cap.summary, cap.summary.window_end))
        for cap in plan.caps.values():
            if cap.summary is not None and cap.summary.status == "firing" and cap.suppressed:
                counted = cap.summary.model_copy(update={"value": float(cap.suppressed),
                                                         "volume": cap.suppressed})
                plan.table_only.append((counted, counted.window_end))
        return plan

    def commit(self, plan: CapPlan, owners: Mapping[str, Owner]) -> None:
        """Keep the plan's counts: call once its alerts were published."""
        self.caps.update(plan.caps)
        for rule_id in plan.caps:
            if rule_id in owners:
                self.owners[rule_id] = owners[rule_id]
        # Rules gone from the rules file keep an entry only while a summary of theirs is open.
        for rule_id in [r for r, cap in self.caps.items()
                        if r not in owners and cap.summary is None]:
            del self.caps[rule_id]
            self.owners.pop(rule_id, None)

    def restore(self, rule_id: str, cap: RuleCap, owner: Owner | None) -> None:
        """A rule's count and open summary as a previous process left them in the store."""
        self.caps[rule_id] = cap
        if owner is not None:
            self.owners[rule_id] = owner

    def summary_id(self, rule_id: str, period_start: datetime) -> str:
        return str(uuid.uuid5(_CAP_NAMESPACE, f"{rule_id}@{period_start.isoformat()}"))

    def _firing(self, owner: Owner, cap: RuleCap, now: datetime) -> Alert:
        end = cap.period_start + timedelta(seconds=self.period_s)
        return Alert(
            alert_id=self.summary_id(owner.rule_id, cap.period_start),
            dedupe_key=owner.rule_id + CAP_KEY_SUFFIX, rule_id=owner.rule_id,
            rule_type=owner.rule_type, severity=owner.severity, status="firing",
            touchpoint=SUMMARY_TOUCHPOINT, channel=None, stage=None, topic=None,
            metric="suppressed_alerts", operator=">", threshold=float(self.max_per_rule),
            value=float(cap.suppressed), baseline=None, volume=cap.suppressed,
            window_start=cap.period_start, window_end=end, fired_at=now, resolved_at=None,
            emitted_at=now, team=owner.team, owner=owner.owner, notify=list(owner.notify),
            open_case=False, event_ids=[], latest_received_at=None,
            message=(f"[firing] rule {owner.rule_id} reached its cap of {self.max_per_rule} "
                     f"alerts per {self.period_s} s (VOC_ALERT_MAX_PER_RULE); its further "
                     f"alerts until {end.isoformat()} are suppressed and counted in this "
                     "alert, which resolves with the count then."))

    def _resolved(self, summary: Alert, suppressed: int, now: datetime) -> Alert:
        return summary.model_copy(update={
            "status": "resolved", "value": float(suppressed), "volume": suppressed,
            "resolved_at": now, "emitted_at": now,
            "message": (f"[resolved] rule {summary.rule_id}: {suppressed} more alerts "
                        f"suppressed in the period {summary.window_start.isoformat()} to "
                        f"{summary.window_end.isoformat()} (cap {self.max_per_rule} per "
                        f"{self.period_s} s, VOC_ALERT_MAX_PER_RULE).")})
