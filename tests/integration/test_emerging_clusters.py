"""Clusters of negative feedback no topic tags (services/alerting/clusters.py) and
GET /v1/emerging/clusters.

Without I/O: comments about the same failure, worded differently, fall in one cluster by their
character n-grams, apart from another failure's; each cluster has its size, its trend, its top
phrases and its representative comments; small groups are dropped; 2,000 comments cluster in
well under the API's patience.

On the real app over both store backends: only negative comments without a topic, within the
caller's touchpoints, are clustered.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from services.alerting.clusters import Text, cluster, ngrams
from services.api import create_app
from services.core.broker import LocalBroker
from services.core.events import AspectSentiment, Sentiment, TopicTag
from services.core.migrations import migrate
from services.core.phrases import candidate_phrases
from services.core.settings import Settings
from services.core.store import open_store
from services.scoring.sink import feedback_row
from tests.access_fixtures import principals_file
from tests.conftest import run
from tests.integration.test_emerging_detector import enriched

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
QR = [["二维码", "扫不出", "来"], ["付款", "二维码", "扫不出"], ["二维码", "一直", "扫不出"],
      ["二维码", "怎么", "都", "扫不出"], ["店里", "二维码", "扫不出", "付款"]]
BATTERY = [["充电宝", "发烫", "鼓包"], ["充电宝", "鼓包", "了"], ["买", "的", "充电宝", "鼓包"],
           ["充电宝", "充电", "鼓包"]]
OTHER = [["客服", "态度", "差"], ["价格", "太贵"]]


def text(n: int, tokens: list[str], minute: float, touchpoint: str = "checkout") -> Text:
    return Text(f"e{n}", touchpoint, T0 + timedelta(minutes=minute), "".join(tokens),
                tuple(candidate_phrases(tokens)))


def sample() -> list[Text]:
    texts = [text(i, QR[i % len(QR)], 10 + 5 * i) for i in range(10)]
    texts += [text(100 + i, BATTERY[i % len(BATTERY)], 50 + i) for i in range(4)]
    texts += [text(200 + i, tokens, 70 + i) for i, tokens in enumerate(OTHER)]
    return sorted(texts, key=lambda t: t.occurred_at)


def test_ngrams_are_character_pairs_and_triples_of_runs() -> None:
    assert ngrams("扫不出，QR码") == ["扫不", "不出", "扫不出", "qr", "r码", "qr码"]


def test_the_same_failure_in_other_words_is_one_cluster() -> None:
    found = cluster(sample(), T0, T0 + timedelta(hours=2), similarity=0.2, min_size=3)
    assert [c.size for c in found] == [10, 4], "two failures; the two one-offs are dropped"
    qr, battery = found
    assert {t.event_id for t in qr.members} == {f"e{i}" for i in range(10)}
    assert {t.event_id for t in battery.members} == {f"e{100 + i}" for i in range(4)}
    assert set(qr.phrases[:2]) == {"二维码", "扫不出"}
    assert set(battery.phrases[:2]) == {"充电宝", "鼓包"}
    assert sum(qr.trend) == 10 and qr.trend[0] > 0 and battery.trend[:2] == [0, 0]
    assert len(qr.representative) == 3 and all("二维码" in t.text for t in qr.representative)


@pytest.mark.serial
def test_clustering_is_bounded_in_time() -> None:
    texts = [text(i, [f"问题{i % 50}", "扫不出", "第", str(i)], i / 10) for i in range(2000)]
    started = time.perf_counter()
    found = cluster(texts, T0, T0 + timedelta(hours=4), similarity=0.2, min_size=3)
    assert time.perf_counter() - started < 20
    assert sum(c.size for c in found) <= 2000


def test_only_untagged_negative_comments_within_scope_are_clustered(
        store_url: str, settings: Settings, broker: LocalBroker, tmp_path: Path) -> None:
    path, keys = principals_file(tmp_path, {
        "lead": {"roles": ["viewer"]},
        "courier": {"roles": ["viewer"], "touchpoints": ["delivery"]}})
    settings = settings.model_copy(update={"api_keys_file": path, "emerging_cluster_hours": 2})
    events = [enriched(i, "checkout", t.occurred_at, QR[i % len(QR)], f"c{i}")
              for i, t in enumerate(sample()[:10])]
    tag = TopicTag(id="payment", name="支付", sentiment=AspectSentiment(
        score=-0.5, label="negative"), evidence=[(0, 2)])
    tagged = [e.model_copy(update={"event_id": f"t{i}", "topics": [tag]})
              for i, e in enumerate(events[:5])]
    happy = [e.model_copy(update={"event_id": f"h{i}", "sentiment": Sentiment(
        score=0.8, label="positive", model="t")}) for i, e in enumerate(events[:5])]
    elsewhere = [e.model_copy(update={"event_id": f"d{i}", "touchpoint": "delivery"})
                 for i, e in enumerate(events[:4])]

    async def main() -> tuple[dict, dict]:
        store = await open_store(store_url)
        try:
            await migrate(store)
            await store.insert("feedback", [feedback_row(e, 1)
                                            for e in events + tagged + happy + elsewhere])
            app = create_app(settings, broker.bootstrap, store)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://127.0.0.1") as client:
                end = {"end": (T0 + timedelta(hours=2)).isoformat()}
                lead = (await client.get("/v1/emerging/clusters", params=end,
                                         headers={"X-API-Key": keys["lead"]})).json()
                courier = (await client.get("/v1/emerging/clusters", params=end,
                                            headers={"X-API-Key": keys["courier"]})).json()
            return lead, courier
        finally:
            await store.close()

    lead, courier = run(main())
    assert lead["events"] == 14, "10 + 4 at delivery; the tagged and the positive left out"
    [qr] = lead["clusters"]
    assert qr["size"] == 14 and set(qr["phrases"][:2]) == {"二维码", "扫不出"}
    assert len(qr["representative"]) == 3 and len(qr["comments"]) == 14
    assert courier["events"] == 4
    assert {c["touchpoint"] for c in courier["clusters"][0]["comments"]} == {"delivery"}
