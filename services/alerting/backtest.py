"""Replays stored history through a rules file and reports what would have fired and resolved.

The replay uses the same code as the live stage: each kind's loader and measure from the table
of kinds (evaluation.py), the lifecycle (engine.step) and event matching, evaluated at every
window end of the period in event time for every touchpoint, so a rule tuned here behaves the
same live. Nothing is published or stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from services.alerting import queries
from services.alerting.engine import KeyState, Measurement, metric_key, step
from services.alerting.evaluation import Loaded, lifecycle_alert, load
from services.alerting.kinds import event_kind, recall_all
from services.alerting.kinds.base import Points
from services.alerting.rulebase import RuleBase, WindowRuleBase
from services.alerting.rules import RuleSet
from services.core.cem_metrics import window_start
from services.core.events import Alert, EnrichedFeedback
from services.core.store import Store


def window_ends(start: datetime, end: datetime, seconds: int) -> list[datetime]:
    """Every window end in ``(start, end]``: the evaluation points of the replay."""
    first = window_start(start, seconds) + timedelta(seconds=seconds)
    ends = []
    while first <= end:
        ends.append(first)
        first += timedelta(seconds=seconds)
    return ends


def replay_windows(rules: Sequence[WindowRuleBase], loaded: Loaded,
                   ends: Sequence[datetime]) -> list[Alert]:
    """Lifecycle events of window rules evaluated at each of ``ends``, at every touchpoint
    their loaders found rows of; "now" is the evaluation end (event time)."""
    states: dict[str, KeyState] = {}
    out = []
    for end in ends:
        for rule in rules:
            for touchpoint in loaded.touchpoints(rule):
                if rule.scope.has_touchpoint(touchpoint):
                    m = loaded.measure(rule, touchpoint, end)
                    out += _advance(states, rule, touchpoint, m, end)
    return out


def _advance(states: dict[str, KeyState], rule: WindowRuleBase, touchpoint: str,
             m: Measurement | None, end: datetime) -> list[Alert]:
    key = metric_key(rule.id, touchpoint)
    before = states.get(key, KeyState())
    state, transition = step(before, m, end, cooldown_s=rule.cooldown_s,
                             resolve_after_s=rule.resolve_after_s, key=key, now=end)
    states[key] = state
    if transition is None or m is None:
        return []
    return [lifecycle_alert(rule, touchpoint, state if transition == "fire" else before,
                            transition, m, end)]


def replay_events(rules: Sequence[RuleBase], events: Iterable[EnrichedFeedback],
                  recalled: Mapping[int, Any] | None = None) -> list[Alert]:
    """Single-event alerts over events in occurred_at order, with per-key cooldowns;
    ``recalled`` is what kinds reading a customer's history read (kinds.recall_all)."""
    last: dict[str, datetime] = {}
    out = []
    for event in events:
        for rule in rules:
            kind = event_kind(rule)
            key = kind.key(rule, event)
            alert = kind.alert(rule, event, last.get(key), event.occurred_at,
                               (recalled or {}).get(id(kind)))
            if alert is not None:
                last[key] = event.occurred_at
                out.append(alert)
    return out


async def backtest(store: Store, rules: RuleSet, start: datetime, end: datetime,
                   window_seconds: int) -> list[Alert]:
    """Every alert event the rules would have produced over ``[start, end]``, in time order."""
    ends = window_ends(start, end, window_seconds)
    alerts: list[Alert] = []
    window_rules = rules.window_rules()
    if window_rules and ends:
        loaded = await load(store, window_rules,
                            Points(dict.fromkeys(ends), window_seconds))
        alerts += replay_windows(window_rules, loaded, ends)
    event_rules = rules.event_rules()
    if event_rules:
        events = await queries.enriched_events(store, start, end)
        alerts += replay_events(event_rules, events,
                                await recall_all(store, event_rules, events))
    return sorted(alerts, key=lambda a: (a.window_end, a.rule_id, a.touchpoint))


def report(alerts: Sequence[Alert]) -> str:
    """A human-readable table of the replayed alert events and a per-rule summary."""
    lines = [f"{'event time (UTC)':<20} {'status':<9} {'rule':<28} {'touchpoint':<18} "
             f"{'value':>9}  message"]
    for a in alerts:
        lines.append(f"{a.window_end:%Y-%m-%d %H:%M:%S} {a.status:<9} {a.rule_id:<28} "
                     f"{a.touchpoint:<18} {a.value:>9.3f}  {a.message[:80]}")
    lines.append("")
    summary: dict[str, list[int]] = {}
    for a in alerts:
        counts = summary.setdefault(a.rule_id, [0, 0])
        counts[0 if a.status == "firing" else 1] += 1
    for rule_id, (fired, resolved) in sorted(summary.items()):
        lines.append(f"{rule_id}: {fired} fired, {resolved} resolved")
    if not alerts:
        lines.append("no alert would have fired")
    return "\n".join(lines)
