"""Effort read from text, from the NLP stage's analysis to the figures and the comments behind
them (issue 19): the real analyzer enriches raw events, the real scorer stores them on both
store backends and publishes on the real broker, and the query API answers
``effort_flag_rate`` / ``text_effort`` per touchpoint beside CES and ``/v1/feedback?effort=true``
with each comment's effort cues and their spans into ``analysis_text``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.api import create_app
from services.core.broker import LocalBroker
from services.core.channels import prepare_raw
from services.core.events import Ratings, RawFeedback
from services.core.settings import Settings
from services.nlp.analyzer import Analyzer, load_sentiment
from services.nlp.cues import load_urgency
from services.nlp.taxonomy import load_taxonomy
from tests.conftest import run
from tests.pipeline_harness import read_topic
from tests.scoring_fixtures import records, score_row, scoring_rig

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
TEXTS = [
    # (text, CES rating, effort score)
    ("为了改个地址，我跑了好几趟营业厅，材料交了又交", 6, 1.0),   # visits (好几 -> 3) + resubmission
    ("打了两次电话才办好", 5, 0.5),                                # calls, counted two
    ("爲了退款打了三次電話", None, 0.75),                         # traditional, counted three
    ("办理很顺利，五分钟就好了", 2, 0.0),
]


def test_effort_flag_rate_and_text_effort_per_touchpoint_with_the_comments_behind_them(
        store_url: str, settings: Settings, broker: LocalBroker) -> None:
    analyzer = Analyzer(load_sentiment("default"), load_taxonomy(), load_urgency(),
                        neutral_band=0.2)
    raw = [prepare_raw(RawFeedback(
        event_id=f"eff-{i}", source="t", external_id=f"eff-{i}", channel="app",
        touchpoint="branch", text=text, occurred_at=T0 + timedelta(seconds=i),
        received_at=T0 + timedelta(seconds=i), ratings=Ratings(ces=ces)))
        for i, (text, ces, _) in enumerate(TEXTS)]
    enriched = analyzer.analyze(raw)
    assert [e.effort.score if e.effort else 0.0 for e in enriched] == [s for *_, s in TEXTS]

    async def scenario() -> None:
        async with scoring_rig(store_url, settings, broker.bootstrap) as rig:
            await rig.scorer.handle(records(enriched))
            minute = await score_row(rig.store, seconds=60, start=T0, touchpoint="branch")
            assert minute is not None
            # 3 of 4 flagged; scores 1.0 + 0.5 + 0.75 + 0 = 2.25 -> mean 0.5625; CES (6+5+2)/3
            assert (minute["effort_count"], minute["effort_flag_rate"]) == (3, 0.75)
            assert minute["text_effort"] == 0.5625 and minute["ces"] == pytest.approx(13 / 3)
            app = create_app(settings, broker.bootstrap, rig.store)
            span = {"from": (T0 - timedelta(hours=1)).isoformat(),
                    "to": (T0 + timedelta(hours=1)).isoformat()}
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://127.0.0.1") as client:
                scores = await client.get("/v1/scores", params={
                    **span, "touchpoint": "branch", "window": "1m", "metric": "effort_flag_rate"})
                flagged = await client.get("/v1/feedback", params={
                    **span, "touchpoint": "branch", "effort": "true"})
                plain = await client.get("/v1/feedback", params={
                    **span, "touchpoint": "branch", "effort": "false"})
                catalogue = await client.get("/v1/metrics")
        assert scores.status_code == 200, scores.text
        [row] = scores.json()["rows"]
        assert row["value"] == 0.75
        assert flagged.status_code == 200, flagged.text
        items = flagged.json()["items"]
        assert [i["event_id"] for i in items] == ["eff-2", "eff-1", "eff-0"]
        for item in items:
            for cue in item["effort"]["cues"]:
                for start, end in cue["evidence"]:
                    assert item[item["spans_index"]][start:end] == cue["term"]
        terms = {c["kind"]: c["term"] for c in items[0]["effort"]["cues"]}
        assert terms == {"calls": "打了三次电话"}, "the traditional text is read simplified"
        assert [i["event_id"] for i in plain.json()["items"]] == ["eff-3"]
        assert plain.json()["items"][0]["effort"] is None
        names = {m["name"]: m for m in catalogue.json()["metrics"]}
        assert names["effort_flag_rate"]["lower_is_better"] and "text_effort" in names

    run(scenario())
    published = [value for _, value in read_topic(broker.bootstrap, settings.topic("scores"))
                 if value["touchpoint"] == "branch" and value["window_seconds"] == 60]
    assert published and published[-1]["effort_flag_rate"] == 0.75
    assert published[-1]["text_effort"] == 0.5625 and published[-1]["effort_count"] == 3
