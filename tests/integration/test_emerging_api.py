"""GET /v1/emerging (services/alerting/emerging_api.py): the real app over a real store, both
backends.

- The injected phrase is the rising phrase of its touchpoint and overall, with its figures,
  and the touchpoint that talked as usual has none.
- A phrase's comments open through /v1/feedback with the phrase's text and window.
- A principal limited to one touchpoint sees only it: overall is then its own figures, and
  asking for another touchpoint is refused.
- Once the phrase is in the taxonomy (VOC_TAXONOMY_PATH), it is no longer emerging.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx

from services.api import create_app
from services.core.broker import LocalBroker
from services.core.migrations import migrate
from services.core.settings import Settings
from services.core.store import open_store
from services.nlp.taxonomy import add_to_taxonomy
from services.scoring.sink import feedback_row
from tests.access_fixtures import principals_file
from tests.conftest import run
from tests.integration.test_emerging_detector import T0, stream
from tests.integration.test_taxonomy_action import TAXONOMY

END = T0 + timedelta(hours=1, minutes=5)


def test_rising_phrases_per_touchpoint_overall_and_within_scope(
        store_url: str, settings: Settings, broker: LocalBroker, tmp_path: Path) -> None:
    path, keys = principals_file(tmp_path, {
        "lead": {"roles": ["viewer"]},
        "courier": {"roles": ["viewer"], "touchpoints": ["delivery"]}})
    taxonomy = tmp_path / "taxonomy.yaml"
    taxonomy.write_text(TAXONOMY, encoding="utf-8")
    settings = settings.model_copy(update={
        "api_keys_file": path, "emerging_window_s": 300, "emerging_baseline_s": 3600,
        "taxonomy_path": taxonomy})

    async def main() -> dict:
        store = await open_store(store_url)
        try:
            await migrate(store)
            await store.insert("feedback", [feedback_row(e, 1) for e in stream()])
            app = create_app(settings, broker.bootstrap, store)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://127.0.0.1") as client:
                def get(route: str, who: str, **params: str) -> httpx.Response:
                    return client.get(route, params=params, headers={"X-API-Key": keys[who]})

                seen = (await get("/v1/emerging", "lead", end=END.isoformat())).json()
                phrase = seen["touchpoints"][0]["phrases"][0]
                comments = (await get(
                    "/v1/feedback", "lead", q=phrase["text"], touchpoint="checkout",
                    **{"from": seen["window_start"], "to": seen["window_end"]})).json()
                limited = (await get("/v1/emerging", "courier", end=END.isoformat())).json()
                refused = await get("/v1/emerging", "courier", end=END.isoformat(),
                                    touchpoint="checkout")
                anonymous = await client.get("/v1/emerging")
                add_to_taxonomy(taxonomy, topic="qr_code_scan", name="二维码扫码",
                                keywords=["二维码扫不出"])
                known = (await get("/v1/emerging", "lead", end=END.isoformat())).json()
        finally:
            await store.close()
        return {"seen": seen, "comments": comments, "limited": limited, "refused": refused,
                "anonymous": anonymous, "known": known}

    got = run(main())
    seen = got["seen"]
    assert (seen["window_start"], seen["window_end"]) == (
        "2026-11-23T11:00:00Z", "2026-11-23T11:05:00Z")
    checkout, delivery = seen["touchpoints"]
    assert checkout["touchpoint"] == "checkout" and delivery == {
        "touchpoint": "delivery", "volume": 60, "baseline_volume": 600, "phrases": []}
    [phrase] = checkout["phrases"]
    assert {k: phrase[k] for k in ("phrase", "text", "mentions", "customers", "baseline",
                                   "new")} == {
        "phrase": "二维码 扫不出", "text": "二维码扫不出", "mentions": 12, "customers": 8,
        "baseline": 0, "new": True}
    assert phrase["share"] == 0.2 and phrase["llr"] > 20
    assert [p["text"] for p in seen["overall"]["phrases"]] == ["二维码扫不出"]
    assert seen["overall"]["volume"] == 120
    items = got["comments"]["items"]
    assert got["comments"]["total"] == 12 and all("二维码扫不出" in i["text"] for i in items)
    limited = got["limited"]
    assert [t["touchpoint"] for t in limited["touchpoints"]] == ["delivery"]
    assert limited["overall"]["volume"] == 60 and limited["overall"]["phrases"] == [], \
        "overall is the sum over the caller's own touchpoints"
    assert got["refused"].status_code == 403
    assert got["anonymous"].status_code == 401
    assert all(not t["phrases"] for t in got["known"]["touchpoints"])
    assert got["known"]["overall"]["phrases"] == []
