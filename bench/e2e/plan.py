"""The load of one run: texts from a labelled CSV, touchpoints, bursts and due times."""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

POSITIVE_SHARE = 0.85


def load_texts(path: Path, limit: int, seed: int) -> tuple[list[str], list[str]]:
    """Positive and negative review texts (real length mix) from a labelled CSV."""
    positives: list[str] = []
    negatives: list[str] = []
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            text = row["text"].strip()
            if text:
                (positives if row["label"] == "1" else negatives).append(text)
    rng = random.Random(seed)
    rng.shuffle(positives)
    rng.shuffle(negatives)
    if not positives or not negatives:
        raise SystemExit(f"{path}: need both labels (column `label` 1/0) to build the load")
    return positives[:limit], negatives[:limit]


@dataclass
class Plan:
    """One run: who sends what, and when each event is due (offset from t0, seconds)."""

    name: str
    path: str  # "http" or "kafka"
    rate: float | None  # None: all-out
    source: str
    touchpoint: list[str]
    text: list[str]
    due: list[float]
    bursts: dict[str, list[int]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.text)


def build_plan(name: str, path: str, rate: float | None, n: int, texts: tuple[list[str], list[str]],
               bursts: int, burst_len: int, seed: int, touchpoints: int = 8) -> Plan:
    """Mostly-positive traffic over ``touchpoints``, with ``bursts`` all-negative bursts of
    ``burst_len`` consecutive events on their own touchpoints, spread evenly over the run."""
    rng = random.Random(seed)
    positives, negatives = texts
    tps = [f"{name}.tp{j}" for j in range(touchpoints)]
    tp = [tps[i % touchpoints] for i in range(n)]
    text = [rng.choice(positives) if rng.random() < POSITIVE_SHARE else rng.choice(negatives)
            for _ in range(n)]
    plan = Plan(name, path, rate, f"bench.{name}", tp, text,
                [i / rate if rate else 0.0 for i in range(n)])
    bursts = min(bursts, n // (burst_len * 3))
    for k in range(bursts):
        start = int((k + 0.5) * n / bursts) - burst_len // 2
        alert_tp = f"{name}.alert{k}"
        plan.bursts[alert_tp] = list(range(start, start + burst_len))
        for i in plan.bursts[alert_tp]:
            tp[i] = alert_tp
            text[i] = negatives[(k * burst_len + i) % len(negatives)]
    return plan


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()
