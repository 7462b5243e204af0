"""The taxonomy action (POST /v1/taxonomy/changes) and its preview, on the real app over both
store backends and, for the reload, the NLP stage on the real broker.

- The preview counts the stored comments the keywords would tag, within the caller's
  touchpoints, and how many the topic tags already.
- An operator turns a phrase into a new topic, then adds keywords to it; the file stays a
  valid taxonomy (the old one kept as .bak), and each change is recorded with who and when.
- Viewers, principals limited to touchpoints, an unnamed new topic and the shipped taxonomy
  are refused, and nothing changes.
- The NLP stage tags with the new topic from its next batch, without a restart.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from services.api import create_app
from services.core.broker import LocalBroker
from services.core.events import EnrichedFeedback, RawFeedback, utc_now
from services.core.kafka import create_topics
from services.core.migrations import migrate
from services.core.settings import Settings
from services.core.store import open_store
from services.nlp.taxonomy import load_taxonomy
from services.scoring.sink import feedback_row
from tests.access_fixtures import principals_file
from tests.conftest import run
from tests.integration.test_emerging_detector import enriched
from tests.pipeline_harness import read_topic, running, store_and_producer

TAXONOMY = """
version: 3
topics:
  - {id: logistics_delivery, name: 物流/配送, keywords: [配送]}
"""


def comments() -> list[EnrichedFeedback]:
    now = utc_now() - timedelta(hours=1)
    said = [("checkout", ["二维码", "扫不出"]), ("checkout", ["二维码", "扫不出"]),
            ("delivery", ["二维码", "扫不出"]), ("delivery", ["配送", "很快"]),
            ("checkout", ["价格", "便宜"])]
    return [enriched(n, tp, now, tokens, f"c{n}") for n, (tp, tokens) in enumerate(said)]


def test_a_phrase_becomes_a_topic_previewed_and_recorded(
        store_url: str, settings: Settings, broker: LocalBroker, tmp_path: Path) -> None:
    taxonomy = tmp_path / "taxonomy.yaml"
    taxonomy.write_text(TAXONOMY, encoding="utf-8")
    path, keys = principals_file(tmp_path, {
        "王": {"roles": ["operator"]}, "viewer": {"roles": ["viewer"]},
        "courier": {"roles": ["operator"], "touchpoints": ["delivery"]}})
    settings = settings.model_copy(update={"api_keys_file": path, "taxonomy_path": taxonomy})

    async def main() -> dict:
        store = await open_store(store_url)
        try:
            await migrate(store)
            await store.insert("feedback", [feedback_row(e, 1) for e in comments()])
            app = create_app(settings, broker.bootstrap, store)
            shipped = create_app(settings.model_copy(update={"taxonomy_path": None}),
                                 broker.bootstrap, store)
            got: dict = {}
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://127.0.0.1") as client:
                def as_(who: str) -> dict:
                    return {"X-API-Key": keys[who]}

                preview = {"keywords": ["二维码扫不出"], "topic": "qr_code_scan"}
                got["preview"] = (await client.get("/v1/taxonomy/preview", params=preview,
                                                   headers=as_("viewer"))).json()
                got["scoped"] = (await client.get("/v1/taxonomy/preview", params=preview,
                                                  headers=as_("courier"))).json()
                new = {"topic": "qr_code_scan", "name": "二维码扫码", "parent":
                       "logistics_delivery", "keywords": ["二维码扫不出"], "phrase": "二维码 扫不出"}
                got["refused"] = [
                    (await client.post("/v1/taxonomy/changes", json=new,
                                       headers=as_("viewer"))).status_code,
                    (await client.post("/v1/taxonomy/changes", json=new,
                                       headers=as_("courier"))).status_code,
                    (await client.post("/v1/taxonomy/changes", json={**new, "name": None},
                                       headers=as_("王"))).status_code]
                got["unchanged"] = taxonomy.read_text(encoding="utf-8")
                created = await client.post("/v1/taxonomy/changes", json=new, headers=as_("王"))
                assert created.status_code == 201, created.text
                got["created"] = created.json()
                more = await client.post("/v1/taxonomy/changes", headers=as_("王"), json={
                    "topic": "qr_code_scan", "keywords": ["扫码失败", "二维码扫不出"]})
                got["more"] = more.json()
                got["after"] = (await client.get("/v1/taxonomy/preview", params=preview,
                                                 headers=as_("viewer"))).json()
                got["changes"] = (await client.get("/v1/taxonomy/changes",
                                                   headers=as_("viewer"))).json()
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=shipped),
                                         base_url="http://127.0.0.1") as client:
                got["shipped"] = (await client.post(
                    "/v1/taxonomy/changes", json=new,
                    headers={"X-API-Key": keys["王"]})).status_code
            return got
        finally:
            await store.close()

    got = run(main())
    assert {k: got["preview"][k] for k in ("matches", "already_tagged", "new_topic")} == {
        "matches": 3, "already_tagged": 0, "new_topic": True}
    assert got["scoped"]["matches"] == 1, "the courier counts only delivery's comments"
    assert got["refused"] == [403, 403, 422]
    assert got["unchanged"] == TAXONOMY, "a refused change changes nothing"
    created = got["created"]
    assert (created["principal"], created["action"], created["topic"], created["matches"]) == (
        "王", "add_topic", "qr_code_scan", 3)
    assert got["more"]["action"] == "add_keywords"
    assert got["after"]["new_topic"] is False
    spec = load_taxonomy(tmp_path / "taxonomy.yaml").spec
    topic = next(t for t in spec.topics if t.id == "qr_code_scan")
    assert (topic.name, topic.parent, topic.keywords) == (
        "二维码扫码", "logistics_delivery", ["二维码扫不出", "扫码失败"])
    assert spec.version == 5
    assert (tmp_path / "taxonomy.yaml.bak").read_text(encoding="utf-8") != TAXONOMY, \
        "the .bak is the file before the last change"
    recorded = got["changes"]["changes"]
    assert [(c["action"], c["principal"], c["phrase"]) for c in recorded] in (
        [("add_keywords", "王", ""), ("add_topic", "王", "二维码 扫不出")],
        [("add_topic", "王", "二维码 扫不出"), ("add_keywords", "王", "")]), \
        "both recorded (the same second may order them either way)"
    assert all(abs(datetime.fromisoformat(c["at"].replace("Z", "+00:00"))
                   - datetime.now(UTC)) < timedelta(minutes=5) for c in recorded)
    assert got["shipped"] == 409


def raw(n: int, text: str) -> RawFeedback:
    now = utc_now()
    return RawFeedback(event_id=f"r{n}", source="test", channel="app", touchpoint="checkout",
                       text=text, occurred_at=now, received_at=now)


def test_the_nlp_stage_tags_with_a_changed_taxonomy_without_a_restart(
        settings: Settings, broker: LocalBroker, tmp_path: Path) -> None:
    from services.nlp.taxonomy import add_to_taxonomy

    taxonomy = tmp_path / "taxonomy.yaml"
    taxonomy.write_text(TAXONOMY, encoding="utf-8")
    settings = settings.model_copy(update={"taxonomy_path": taxonomy,
                                           "nlp_batch_wait_s": 0.2})
    create_topics(settings, broker.bootstrap)
    enriched_topic = settings.topic("feedback.enriched")

    def topics_of(event_id: str) -> list[str] | None:
        for _, value in read_topic(broker.bootstrap, enriched_topic):
            if value["event_id"] == event_id:
                return [t["id"] for t in value["topics"]]
        return None

    async def main() -> tuple:
        async with store_and_producer(f"chdb://{tmp_path / 'chdb'}", broker.bootstrap) as (
                _, producer):
            async with running(settings, ["nlp"], broker.bootstrap):
                send = settings.topic("feedback.raw")
                await producer.send_many(send, [(b"checkout", raw(1, "二维码扫不出来").to_bytes())])
                before = await poll(lambda: topics_of("r1"))
                await asyncio.to_thread(add_to_taxonomy, taxonomy, topic="qr_code_scan",
                                        name="二维码扫码", keywords=["二维码扫不出"])
                await producer.send_many(send, [(b"checkout", raw(2, "二维码扫不出来").to_bytes())])
                after = await poll(lambda: topics_of("r2"))
        return before, after

    async def poll(check) -> list[str]:
        for _ in range(120):
            found = await asyncio.to_thread(check)
            if found is not None:
                return found
            await asyncio.sleep(0.5)
        raise AssertionError("the NLP stage enriched nothing within a minute")

    before, after = run(main())
    assert before == []
    assert after == ["qr_code_scan"]


def test_names_follow_a_change_and_a_change_the_store_cannot_record_is_undone(
        store_url: str, settings: Settings, broker: LocalBroker, tmp_path: Path) -> None:
    """GET /v1/taxonomy names a topic added through the action without a restart; with
    taxonomy_changes gone (a real store fault on either backend) the change answers 503 and
    the file is as it was before, so no change is made without its record."""
    taxonomy = tmp_path / "taxonomy.yaml"
    taxonomy.write_text(TAXONOMY, encoding="utf-8")
    path, keys = principals_file(tmp_path, {"王": {"roles": ["operator"]}})
    settings = settings.model_copy(update={"api_keys_file": path, "taxonomy_path": taxonomy})
    headers = {"X-API-Key": keys["王"]}

    async def main() -> dict:
        store = await open_store(store_url)
        try:
            await migrate(store)
            app = create_app(settings, broker.bootstrap, store)
            got: dict = {}
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://127.0.0.1") as client:
                async def names() -> dict[str, str]:
                    answer = (await client.get("/v1/taxonomy", headers=headers)).json()
                    return {t["id"]: t["name"] for t in answer["topics"]}

                got["before"] = await names()
                created = await client.post("/v1/taxonomy/changes", headers=headers, json={
                    "topic": "box_lid", "name": "餐盒盖子", "keywords": ["餐盒盖子"]})
                got["created"] = created.status_code
                got["named"] = await names()
                got["file"] = taxonomy.read_text(encoding="utf-8")
                await store.execute("DROP TABLE taxonomy_changes")
                failed = await client.post("/v1/taxonomy/changes", headers=headers, json={
                    "topic": "box_lid", "keywords": ["盖子裂了"]})
                got["failed"] = (failed.status_code, failed.json())
                got["after"] = taxonomy.read_text(encoding="utf-8")
                got["still"] = await names()
            return got
        finally:
            await store.close()

    got = run(main())
    assert "box_lid" not in got["before"]
    assert got["created"] == 201
    assert got["named"]["box_lid"] == "餐盒盖子", "named at once, no restart"
    status, body = got["failed"]
    assert status == 503 and "undone" in body["detail"], body
    assert got["after"] == got["file"], "the unrecorded change was rolled back"
    assert "盖子裂了" not in got["after"]
    assert got["still"] == got["named"]
    assert load_taxonomy(taxonomy).spec.version == 4, "the file loads, as after the first change"
