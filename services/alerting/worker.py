"""The alerting stage: score updates and enriched events -> alert lifecycle events.

Two consumers feed one set of rules:
- score updates (``scores`` topic): for each touchpoint in a batch, every window rule is
  measured at the touchpoint's newest updated window end, from what its kind reads from the
  store (services/alerting/kinds/, through evaluation.load); kinds that watch for silence
  are measured for every touchpoint they find, at the batch's newest window end. Each rule and
  touchpoint (the dedupe key) then steps through its lifecycle (engine.step).
- enriched events (``feedback.enriched``, its own consumer group): single-event rules.

An alert event is published first and recorded second, and the lifecycle state that led to it
changes only after both: if either fails, or the process dies in between, the retried or
re-delivered input re-emits the same deterministic ``alert_id`` rather than losing it. The
lifecycle state (bounded, caps.KeyStates) is rebuilt from the ``alerts`` table on start, so a
restart neither re-pages anyone nor forgets an open alert. At most VOC_ALERT_MAX_PER_RULE
alerts per rule fire per period; the excess is summarised in one alert (caps.AlertCaps).
A firing figure alert carries its explanation (explain.py), and its resolution repeats it.
Alerts that ask for it then open cases, and webhooks deliver them, each from the alerts topic
in their own consumer group (cases.py, delivery.py).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import structlog
from aiokafka import ConsumerRecord
from prometheus_client import Counter

from services.alerting import phrase_rollup, queries
from services.alerting.caps import (
    CAP_KEY_SUFFIX,
    AlertCaps,
    KeyStates,
    Owner,
    Pending,
    RuleCap,
)
from services.alerting.engine import KeyState, Measurement, metric_key, step
from services.alerting.evaluation import Loaded, lifecycle_alert, load
from services.alerting.explain import carried, explain_firing
from services.alerting.kinds import event_kind, memories, recall_all, window_kind
from services.alerting.kinds.base import Points
from services.alerting.kinds.emerging_topic import EmergingTopicRule
from services.alerting.rulebase import WindowRuleBase
from services.alerting.rules import RuleSet, load_rules
from services.core.config_file import Watched
from services.core.events import Alert, EnrichedFeedback, Score, utc_now
from services.core.kafka import BatchConsumer, Producer, parse_or_dead_letter, parse_or_reason
from services.core.settings import Settings
from services.core.store import Store

log = structlog.get_logger(__name__)

SUPPRESSED = Counter("voc_alerts_suppressed_total",
                     "Firing alerts the per-rule cap (VOC_ALERT_MAX_PER_RULE) kept from paging; "
                     "each rule's cap summary alert counts them too.", ["rule"])


class RulesFile:
    """The current rule set, reloaded when the file's mtime changes.

    A broken edit is logged and the previous rules stay in force: a typo must not silence
    every alert, nor crash the stage.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.rules = load_rules(path)
        self._file = Watched(path)

    def reload_if_changed(self) -> bool:
        """True when a changed file was loaded."""
        if not self._file.changed():
            return False
        try:
            self.rules = load_rules(self.path)
        except ValueError as exc:
            log.error("alert rules NOT reloaded; the previous rules stay in force", error=str(exc))
            return False
        log.info("alert rules reloaded", path=str(self.path), rules=[r.id for r in self.rules.rules])
        return True


class LatencyStats:
    """Recent alert latencies (ingest of the newest breaching event -> alert emitted)."""

    def __init__(self, size: int = 1000) -> None:
        self.samples: deque[float] = deque(maxlen=size)

    def add(self, ms: float) -> None:
        self.samples.append(ms)

    def summary(self) -> dict[str, float]:
        if not self.samples:
            return {}
        ordered = sorted(self.samples)
        p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
        return {"count": len(ordered), "p50_ms": statistics.median(ordered), "p95_ms": p95,
                "max_ms": ordered[-1]}


class AlertEvaluator:
    """Evaluates rules on score and event batches and publishes lifecycle events.

    Each handler stages the lifecycle states its evaluation leads to, and they (and the cap
    counts) become the evaluator's only once the alerts were published and recorded: a publish
    that fails leaves the evaluator as it was, so the retried batch publishes the same alerts
    again (same deterministic ids) instead of none. The two consumers evaluate disjoint keys
    (figure and topic rules on scores, event rules on events); the caps they share are
    planned, published and committed under one lock.
    """

    def __init__(self, settings: Settings, store: Store, producer: Producer,
                 rules: RulesFile) -> None:
        self.settings = settings
        self.store = store
        self.producer = producer
        self.rules_file = rules
        self.states = KeyStates(settings.alert_max_keys)
        self.caps = AlertCaps(settings.alert_max_per_rule, settings.alert_cap_period_s)
        self.latency = LatencyStats()
        self.memories = memories(settings)
        self._publishing = asyncio.Lock()

    @property
    def rules(self) -> RuleSet:
        return self.rules_file.rules

    async def load_state(self) -> None:
        """Lifecycle state survives restarts: open alerts, cooldowns still running, and the
        caps' counts of the current period come from the store."""
        longest = max((r.cooldown_s for r in self.rules.rules), default=0)
        stored = await queries.alert_keys(self.store,
                                          since=utc_now() - timedelta(seconds=longest),
                                          limit=self.settings.alert_max_keys)
        loaded = {}
        for key in stored:
            firing = key.status == "firing"
            loaded[key.dedupe_key] = KeyState(
                status="firing" if firing else "ok", alert_id=key.alert_id if firing else None,
                fired_end=key.fired_end, fired_at=key.fired_at if firing else None)
        self.states.update(loaded)
        await self._load_caps()

    async def _load_caps(self) -> None:
        period = self.caps.period_of(utc_now())
        fired = await queries.fired_per_rule(self.store, since=period,
                                             except_suffix=CAP_KEY_SUFFIX)
        summaries = {a.rule_id: a for a in await queries.firing_alerts(
            self.store, key_suffix=CAP_KEY_SUFFIX)}
        for rule_id in fired.keys() | summaries.keys():
            rule = self.rules.by_id(rule_id)
            owner = Owner.of(rule) if rule is not None else None
            summary = summaries.get(rule_id)
            if summary is None:
                cap = RuleCap(period, fired[rule_id])
            else:
                # A summary of an earlier period resolves at the next evaluation; the current
                # period's count then starts from nothing. Its notify list is the rule's now.
                notify = list(owner.notify) if owner else []
                cap = RuleCap(summary.window_start, fired.get(rule_id, 0), summary.volume,
                              summary.model_copy(update={"notify": notify}))
            self.caps.restore(rule_id, cap, owner)

    def _owners(self) -> dict[str, Owner]:
        return {rule.id: Owner.of(rule) for rule in self.rules.rules}

    async def handle_scores(self, records: list[ConsumerRecord]) -> None:
        newest: dict[str, datetime] = {}
        for score in await parse_or_dead_letter(Score, records, "alerting", self.producer,
                                                self.settings):
            if score.window_seconds == self.settings.window_seconds:
                newest[score.touchpoint] = max(newest.get(score.touchpoint, score.window_end),
                                               score.window_end)
        if newest:
            staged: dict[str, KeyState] = {}
            pending = await self._window_alerts(newest, staged)
            await self._publish_and_commit(pending, staged)

    async def handle_events(self, records: list[ConsumerRecord]) -> None:
        rules = self.rules.event_rules()
        if not rules:
            return
        # Invalid records are skipped, not dead-lettered: the scoring stage consumes the same
        # topic and already dead-letters them, once.
        events = [e for e, _ in (parse_or_reason(EnrichedFeedback, r.value, self.settings)
                                            for r in records)
                  if e is not None]
        recalled = await recall_all(self.store, rules, events, self.memories)
        now = utc_now()
        staged: dict[str, KeyState] = {}
        pending = []
        for event in events:
            for rule in rules:
                kind = event_kind(rule)
                key = kind.key(rule, event)
                state = staged.get(key) or self.states.get(key)
                alert = kind.alert(rule, event, state.fired_end, now, recalled.get(id(kind)))
                if alert is not None:
                    staged[key] = KeyState("ok", None, event.occurred_at, now)
                    pending.append(Pending(alert, event.occurred_at, key, staged[key],
                                           staged[key]))
        await self._publish_and_commit(pending, staged)

    async def roll_up_phrases(self) -> None:
        """Bring the phrase counts of the longest baseline an emerging reader uses up to date
        (phrase_rollup.py); a bucket that fails is skipped, the others rolled up, and the run
        then raises, so the next tick redoes what is left."""
        baselines = [r.window_s + r.baseline_s for r in self.rules.rules
                     if isinstance(r, EmergingTopicRule)]
        baselines.append(self.settings.emerging_window_s + self.settings.emerging_baseline_s)
        bucket_s = self.settings.emerging_bucket_s
        await phrase_rollup.roll_up(self.store, bucket_s=bucket_s,
                                    horizon=phrase_rollup.horizon_s(baselines, bucket_s))

    async def flush_caps(self) -> None:
        """Resolve the cap summaries of periods that ended, without waiting for a batch."""
        await self._publish_and_commit([], {})

    async def _publish_and_commit(self, pending: list[Pending],
                                  staged: dict[str, KeyState]) -> None:
        async with self._publishing:
            owners = self._owners()
            plan = self.caps.plan(pending, owners, utc_now())
            for item in plan.suppressed:
                staged[item.key] = item.suppressed
            await self.publish(plan.alerts, plan.table_only)
            self.states.update(staged)
            self.caps.commit(plan, owners)
        for item in plan.suppressed:
            SUPPRESSED.labels(item.alert.rule_id).inc()
        if plan.suppressed:
            log.warning("alerts suppressed by the per-rule cap", count=len(plan.suppressed),
                        rules=sorted({i.alert.rule_id for i in plan.suppressed}),
                        max_per_rule=self.caps.max_per_rule, period_s=self.caps.period_s)

    async def _window_alerts(self, newest: dict[str, datetime],
                             staged: dict[str, KeyState]) -> list[Pending]:
        """Each updated touchpoint measured at its newest window end by the rules in its
        scope; kinds that watch for silence measure every touchpoint they find at the
        batch's newest end (a touchpoint that stopped sending is not in the batch)."""
        rules = self.rules.window_rules()
        updated = [r for r in rules if not window_kind(r).every_touchpoint]
        watching = [r for r in rules if window_kind(r).every_touchpoint]
        seconds = self.settings.window_seconds
        out: list[Pending] = []
        if updated:
            loaded = await load(self.store, updated, Points.of(newest, seconds))
            for touchpoint, end in newest.items():
                for rule in updated:
                    if rule.scope.has_touchpoint(touchpoint):
                        out += await self._measure_and_step(loaded, rule, touchpoint, end, staged)
        if watching:
            end = max(newest.values())
            loaded = await load(self.store, watching, Points({end: None}, seconds))
            for rule in watching:
                for touchpoint in loaded.touchpoints(rule):
                    if rule.scope.has_touchpoint(touchpoint):
                        out += await self._measure_and_step(loaded, rule, touchpoint, end, staged)
        return out

    async def _measure_and_step(self, loaded: Loaded, rule: WindowRuleBase, touchpoint: str,
                                end: datetime, staged: dict[str, KeyState]) -> list[Pending]:
        """Step one key's lifecycle into ``staged``; the alert of its transition, if any."""
        m: Measurement | None = loaded.measure(rule, touchpoint, end)
        key = metric_key(rule.id, touchpoint)
        before = staged.get(key) or self.states.get(key)
        now = utc_now()
        state, transition = step(before, m, end, cooldown_s=rule.cooldown_s,
                                 resolve_after_s=rule.resolve_after_s, key=key, now=now)
        staged[key] = state
        if transition is None or m is None:
            return []
        received = None
        if transition == "fire":
            received = await queries.latest_received(self.store, touchpoint, m.start, m.end)
            explanation = await explain_firing(self.store, rule, touchpoint, m)
        else:
            explanation = await carried(self.store, rule, before.alert_id)
        alert = lifecycle_alert(rule, touchpoint, state if transition == "fire" else before,
                                transition, m, utc_now(), received, explanation)
        suppressed = replace(before, last_end=end, fired_end=end, clear_since=None)
        return [Pending(alert, state.fired_end or end, key, state, suppressed)]

    async def publish(self, alerts: Sequence[tuple[Alert, datetime]],
                      table_only: Sequence[tuple[Alert, datetime]] = ()) -> None:
        """Alerts topic first (the contract), then the table (current status per alert)."""
        if not alerts and not table_only:
            return
        if alerts:
            await self.producer.send_many(
                self.settings.topic("alerts"),
                [(a.dedupe_key.encode(), a.to_bytes()) for a, _ in alerts])
        # The running counts last: of equal inserted_ms the table keeps the last row.
        await queries.record_alerts(self.store, [*alerts, *table_only], int(time.time() * 1000))
        for alert, _ in alerts:
            latency_ms = None
            if alert.latest_received_at is not None and alert.status == "firing":
                latency_ms = (alert.emitted_at - alert.latest_received_at).total_seconds() * 1000
                self.latency.add(latency_ms)
            log.warning("ALERT fired" if alert.status == "firing" else "ALERT resolved",
                        touchpoint=alert.touchpoint, rule=alert.rule_id, severity=alert.severity,
                        metric=alert.metric, value=round(alert.value, 3), volume=alert.volume,
                        alert_id=alert.alert_id, latency_ms=latency_ms,
                        latency_summary=self.latency.summary() if latency_ms else None)


ROLLUP_EVERY_S = 30.0
"""How often the alerting stage rolls phrase counts up: often enough that a closed bucket is
read from phrase_counts within a minute, rarely enough that checking the baseline's buckets
(one count over a day of feedback) costs nothing."""


async def _poll_rules(rules: RulesFile, evaluator: AlertEvaluator, every_s: float,
                      stop: asyncio.Event) -> None:
    """Reload changed rules, and close the cap summaries of ended periods, every ``every_s``;
    roll phrase counts up every ``ROLLUP_EVERY_S``."""
    rolled_at = -ROLLUP_EVERY_S
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=every_s)
        except TimeoutError:
            rules.reload_if_changed()
            try:
                await evaluator.flush_caps()
            except Exception as exc:  # broker or store away: the next tick tries again
                log.warning("closing alert cap summaries failed; retrying next tick",
                            error=str(exc)[:300])
            if time.monotonic() - rolled_at >= ROLLUP_EVERY_S:
                rolled_at = time.monotonic()
                try:
                    await evaluator.roll_up_phrases()
                except Exception as exc:  # store away or a bucket failed: redone next tick
                    log.warning("rolling phrase counts up failed; retrying next tick",
                                error=str(exc)[:300])


async def run(settings: Settings, bootstrap: str, store: Store, stop: asyncio.Event) -> None:
    """Run the alerting stage until ``stop`` is set."""
    from services.alerting.cases import run_cases
    from services.alerting.delivery import run_delivery

    rules = RulesFile(settings.alert_rules_path)
    producer = Producer(bootstrap, client_id=settings.group("alerting"))
    await producer.start()
    try:
        evaluator = AlertEvaluator(settings, store, producer, rules)
        await evaluator.load_state()
        log.info("alerting stage started", rules=[r.id for r in rules.rules.rules])
        scores = BatchConsumer(settings, bootstrap, settings.topic("scores"),
                               settings.group("alerting"), evaluator.handle_scores,
                               stage="alerting", producer=producer,
                               max_records=settings.sink_batch_size,
                               wait_s=settings.sink_batch_wait_s)
        events = BatchConsumer(settings, bootstrap, settings.topic("feedback.enriched"),
                               settings.group("alerting-events"), evaluator.handle_events,
                               stage="alerting", producer=producer,
                               max_records=settings.sink_batch_size,
                               wait_s=settings.sink_batch_wait_s)
        await asyncio.gather(scores.run(stop), events.run(stop),
                             _poll_rules(rules, evaluator, settings.alert_rules_poll_s, stop),
                             run_delivery(settings, bootstrap, store, producer, rules, stop),
                             run_cases(settings, bootstrap, store, producer, rules, stop))
    finally:
        await producer.stop()
