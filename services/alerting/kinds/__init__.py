"""The table of rule kinds: every kind the rules file accepts, in one place.

Each entry declares its model (the rules file's union is built from them), how it is measured,
how far back it reads and what it reads (kinds/base.py). The live worker and the backtest look
a rule's kind up here and know nothing about any one kind, so adding a kind is a module in this
package plus a line in this table (docs/extending.md, "Add a rule kind").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard, get_args

from services.alerting.kinds.base import EventKind, Recall, WindowKind
from services.alerting.kinds.customer_history import CUSTOMER_HISTORY
from services.alerting.kinds.emerging_topic import EMERGING_TOPIC
from services.alerting.kinds.event import EVENT
from services.alerting.kinds.figures import ANOMALY, RATE_OF_CHANGE, THRESHOLD
from services.alerting.kinds.rating import RATING
from services.alerting.kinds.topic_spike import TOPIC_SPIKE
from services.alerting.kinds.volume_drop import VOLUME_DROP
from services.alerting.rulebase import RuleBase, WindowRuleBase
from services.core.events import EnrichedFeedback
from services.core.settings import Settings
from services.core.store import Store

WINDOW_KINDS: tuple[WindowKind[Any], ...] = (THRESHOLD, RATE_OF_CHANGE, ANOMALY, TOPIC_SPIKE,
                                              VOLUME_DROP, EMERGING_TOPIC)
EVENT_KINDS: tuple[EventKind[Any], ...] = (EVENT, RATING, CUSTOMER_HISTORY)

_WINDOW = {kind.model: kind for kind in WINDOW_KINDS}
_EVENT = {kind.model: kind for kind in EVENT_KINDS}


def kind_name(model: type[RuleBase]) -> str:
    """The tag of a kind's model in the rules file (its ``type`` literal)."""
    (name,) = get_args(model.model_fields["type"].annotation)
    return str(name)


def models() -> tuple[type[RuleBase], ...]:
    """Every kind's model, in table order: the members of the rules file's union."""
    return (*_WINDOW, *_EVENT)


def window_kind(rule: RuleBase) -> WindowKind[Any]:
    """The kind of a rule measured at window ends; KeyError for an event rule."""
    return _WINDOW[type(rule)]


def event_kind(rule: RuleBase) -> EventKind[Any]:
    """The kind of a rule evaluated per event; KeyError for a window rule."""
    return _EVENT[type(rule)]


def is_window_rule(rule: RuleBase) -> TypeGuard[WindowRuleBase]:
    """Whether a rule is of a window kind (whose models derive from WindowRuleBase)."""
    return type(rule) in _WINDOW



async def recall_all(store: Store, rules: Sequence[RuleBase],
                     events: Sequence[EnrichedFeedback],
                     memories: Mapping[int, Any] | None = None) -> dict[int, Any]:
    """What each event kind with a ``recall`` reads for a batch, by ``id(kind)``: one store
    query per kind and batch, whatever the number of events. ``memories``: each kind's
    in-process memory by ``id(kind)`` (see ``memories``); None reads the store alone."""
    by_kind: dict[int, tuple[Recall, list[RuleBase]]] = {}
    for rule in rules:
        kind = event_kind(rule)
        if kind.recall is not None:
            by_kind.setdefault(id(kind), (kind.recall, []))[1].append(rule)
    if not events:
        return {}
    return {key: await recall(store, kind_rules, events, (memories or {}).get(key))
            for key, (recall, kind_rules) in by_kind.items()}


def memories(settings: Settings) -> dict[int, Any]:
    """A fresh in-process memory of every event kind that keeps one, by ``id(kind)``: what a
    live evaluator keeps across batches and passes to ``recall_all``."""
    return {id(kind): kind.memory(settings) for kind in EVENT_KINDS if kind.memory is not None}
