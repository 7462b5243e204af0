"""Scoring and alerting in this process on the local broker and chdb, as ``voc up`` runs them.

The alert benches (alert_latency, explain_bench) measure their own traffic against the same
rig; keeping its start and its teardown order in one place means a fix to either (stop the
producer before the services, read the alert topic before the broker goes) reaches both.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import BENCH_ALERT_CAP
from services.core.broker import LocalBroker
from services.core.kafka import Producer, create_topics
from services.core.logs import configure_logging
from services.core.settings import Settings, load_settings
from services.core.store import Store, open_store
from services.pipeline import run_services
from tests.pipeline_harness import read_topic


@dataclass
class Rig:
    """What a bench drives: ``producer`` writes enriched events, ``store`` answers queries.

    ``firing`` is filled when the rig stops: every firing alert on the alert topic, in order.
    """

    settings: Settings
    store: Store
    producer: Producer
    firing: list[dict[str, Any]] = field(default_factory=list)

    @property
    def enriched_topic(self) -> str:
        return self.settings.topic("feedback.enriched")


@asynccontextmanager
async def scoring_and_alerting(rules_yaml: str, prefix: str) -> AsyncIterator[Rig]:
    """Start broker, chdb, scoring and alerting with ``rules_yaml``; stop them in order."""
    configure_logging("ERROR", "console")
    work = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    rules = work / "rules.yaml"
    rules.write_text(rules_yaml)
    with LocalBroker(log_path=work / "broker.log") as broker:
        settings = load_settings(topic_prefix="bench", group_prefix="bench", data_dir=work,
                                 alert_rules_path=rules, sink_batch_wait_s=0.1,
                                 topic_partitions=4, alert_max_per_rule=BENCH_ALERT_CAP)
        create_topics(settings, broker.bootstrap)
        store = await open_store(f"chdb://{work / 'chdb'}")
        stop = asyncio.Event()
        services = asyncio.create_task(run_services(settings, ("scoring", "alerting"),
                                                    broker.bootstrap, stop, store=store))
        producer = Producer(broker.bootstrap, client_id="bench")
        await producer.start()
        rig = Rig(settings, store, producer)
        try:
            yield rig
        finally:
            await producer.stop()
            stop.set()
            await services
            await store.close()
        rig.firing = [a for _, a in read_topic(broker.bootstrap, settings.topic("alerts"))
                      if a["status"] == "firing"]
