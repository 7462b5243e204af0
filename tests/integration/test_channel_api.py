"""The channel endpoints of the ingest API against a real broker: native shapes in, redacted
and normalised feedback.raw.v2 events out; keys, limits, bad input and duplicates."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import httpx
from jsonschema import Draft202012Validator
from prometheus_client.parser import text_string_to_metric_families

import schemas
from services.core.access import key_hash
from services.core.broker import LocalBroker
from services.core.kafka import create_topics
from services.core.settings import Settings
from tests.conftest import run
from tests.pipeline_harness import read_topic, running

DATA = Path(__file__).parents[1] / "data" / "channels"
RAW_PII = ["13812345678", "13912345678", "13700001111", "11010519491231002X",
           "6222021234567890128", "021-68881234", "zhangwei.sh@163.com", "021-61234567"]


def fixture(name: str) -> bytes:
    return (DATA / name).read_bytes()


def raw_events(broker: LocalBroker, settings: Settings) -> list[dict]:
    return [value for _, value in read_topic(broker.bootstrap, settings.topic("feedback.raw"))]


def assert_no_pii(document: object) -> None:
    dumped = json.dumps(document, ensure_ascii=False)
    for value in RAW_PII:
        assert value not in dumped, value


def test_every_channel_lands_on_the_raw_topic_normalised_and_redacted(
        broker: LocalBroker, settings: Settings) -> None:
    create_topics(settings, broker.bootstrap)

    async def scenario() -> None:
        async with running(settings, ["ingest"], broker.bootstrap) as url, \
                httpx.AsyncClient(base_url=url, timeout=30) as client:
            answers = [
                await client.post("/v1/sources/survey-tool/surveys",
                                  content=fixture("survey_batch.json"),
                                  headers={"content-type": "application/json"}),
                await client.post("/v1/sources/callcenter-sh/calls",
                                  content=fixture("call_20min_hold_transfer.json"),
                                  headers={"content-type": "application/json"}),
                await client.post("/v1/sources/social-listening/social",
                                  content=fixture("weibo_thread_traditional.json"),
                                  headers={"content-type": "application/json"}),
                await client.post("/v1/sources/mail-gw/emails?touchpoint=after_sales",
                                  content=fixture("gbk_multipart_reply.eml"),
                                  headers={"content-type": "message/rfc822"}),
                await client.post("/v1/sources/mail-gw/emails",
                                  content=fixture("big5_lying_header.eml"),
                                  headers={"content-type": "message/rfc822"}),
                await client.post("/v1/sources/mail-gw/emails", json={
                    "message_id": "<a1@helpdesk.example.cn>", "subject": "投诉",
                    "html": "<p>客服电话<b>13812345678</b>一直占线</p>", "touchpoint": "hotline",
                    "attachments": ["录音_13812345678.mp3"]}),
            ]
            assert [a.status_code for a in answers] == [202] * 6, [a.text for a in answers]
            assert [a.json()["accepted"] for a in answers] == [4, 1, 3, 1, 1, 1]

    run(scenario())
    events = raw_events(broker, settings)
    assert len(events) == 11
    validator = Draft202012Validator(schemas.topic_schema("feedback.raw.v2"),
                                     format_checker=Draft202012Validator.FORMAT_CHECKER)
    for event in events:
        validator.validate(event)
        assert_no_pii(event)
    by_channel: dict[str, list[dict]] = {}
    for event in events:
        by_channel.setdefault(event["channel"], []).append(event)

    surveys = {e["external_id"]: e for e in by_channel["survey"]}
    first = surveys["nps-post-delivery:nps-2026w47-000912"]
    assert first["ratings"] == {"nps": 2, "csat": 1, "ces": 6}
    assert (first["stage"], first["segment"]) == ("售后", "VIP")
    assert "<PHONE>" in first["text"] and first["metadata"]["city"] == "杭州"
    assert "<BANK_CARD>" in surveys["csat-checkout:csat-checkout-55820"]["text"]

    call = by_channel["call"][0]
    assert call["text"].startswith("IVR：") and "坐席：" in call["text"]
    assert "坐席" not in call["analysis_text"] and "工号1024" not in call["analysis_text"]
    assert "<ID_CARD>" in call["analysis_text"]
    facts = call["call"]
    assert (facts["duration_s"], facts["hold_count"], facts["transfers"]) == (1200.0, 1, 1)
    assert facts["queue"] == "售后-物流配送"
    for start, end, _ in facts["customer_spans"]:
        assert "\n" not in call["analysis_text"][start:end]

    posts = {e["social"]["post_id"]: e for e in by_channel["social"]}
    root = posts["5032117745603301"]
    assert "物流真的太慢了" in root["text"] and "😡" in root["text"], "the original stays"
    assert "物流真的太慢了" in root["analysis_text"].replace("们", "們") or \
        "你们的物流真的太慢了" in root["analysis_text"]
    assert "http" not in root["analysis_text"] and "@" not in root["analysis_text"]
    assert root["social"]["hashtags"] == ["優選商城配送延誤"]
    assert root["social"]["followers"] == 18342 and root["social"]["reposts"] == 87
    reply = posts["5032123390015570"]
    assert reply["social"]["parent_id"] == "5032119981102233"
    assert reply["social"]["root_id"] == "5032117745603301"
    assert "态度不错" in reply["analysis_text"]

    mails = {e["email"]["charset"]: e for e in by_channel["email"]}
    gbk = mails["gb18030"]
    assert gbk["touchpoint"] == "after_sales"
    assert gbk["email"]["attachments"] == ["滤网破损照片.jpg"]
    assert gbk["email"]["message_id"].startswith("h:")
    assert gbk["email"]["thread_id"] != gbk["email"]["message_id"]
    assert "尊敬的客户" in gbk["text"] and "尊敬的客户" not in gbk["analysis_text"]
    assert "关于订单" in gbk["analysis_text"], "the subject is analysed with the new text"
    big5 = mails["big5"]
    assert "筆記型電腦" in big5["text"] and "笔记型电脑" in big5["analysis_text"]
    html = mails[None]
    assert html["text"] == "客服电话<PHONE>一直占线"
    assert html["email"]["attachments"] == ["录音_<PHONE>.mp3"]


def test_api_keys_are_per_source(broker: LocalBroker, settings: Settings,
                                 tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text(f"survey-tool: {key_hash('s3cret-survey')}\n"
                    f"callcenter-sh: [{key_hash('old-call-key')}, {key_hash('new-call-key')}]\n")
    secured = settings.model_copy(update={"ingest_api_keys_file": keys})
    survey = json.loads(fixture("survey_batch.json"))
    create_topics(settings, broker.bootstrap)

    async def scenario() -> None:
        async with running(secured, ["ingest"], broker.bootstrap) as url, \
                httpx.AsyncClient(base_url=url, timeout=30) as client:
            path = "/v1/sources/survey-tool/surveys"
            missing = await client.post(path, json=survey)
            assert missing.status_code == 401 and "X-API-Key" in missing.json()["detail"]
            wrong = await client.post(path, json=survey, headers={"X-API-Key": "guess"})
            assert wrong.status_code == 401
            other = await client.post(path, json=survey, headers={"X-API-Key": "new-call-key"})
            assert other.status_code == 403 and "callcenter-sh" in other.json()["detail"]
            generic = await client.post("/v1/feedback", headers={"X-API-Key": "s3cret-survey"},
                                        json={"source": "app-cn", "channel": "app",
                                              "touchpoint": "t", "text": "好"})
            assert generic.status_code == 403
            good = await client.post(path, json=survey, headers={"X-API-Key": "s3cret-survey"})
            assert good.status_code == 202
            rotated = await client.post(
                "/v1/sources/callcenter-sh/calls", content=fixture("call_20min_hold_transfer.json"),
                headers={"X-API-Key": "old-call-key", "content-type": "application/json"})
            assert rotated.status_code == 202

    run(scenario())
    assert "s3cret" not in keys.read_text()


def test_limits_bad_input_and_undecodable_bytes(broker: LocalBroker, settings: Settings) -> None:
    small = settings.model_copy(update={"ingest_max_body_bytes": 4096})
    create_topics(settings, broker.bootstrap)
    survey = json.loads(fixture("survey_batch.json"))

    async def scenario() -> None:
        async with running(small, ["ingest"], broker.bootstrap) as url, \
                httpx.AsyncClient(base_url=url, timeout=30) as client:
            big = await client.post("/v1/sources/callcenter-sh/calls",
                                    content=fixture("call_20min_hold_transfer.json"),
                                    headers={"content-type": "application/json"})
            assert big.status_code == 413 and "VOC_INGEST_MAX_BODY_BYTES" in big.text

            async def chunks():  # noqa: ANN202 - no Content-Length: counted while read
                for _ in range(10):
                    yield b" " * 1000

            streamed = await client.post("/v1/sources/x/surveys", content=chunks(),
                                         headers={"content-type": "application/json"})
            assert streamed.status_code == 413

            survey["responses"][0]["ratings"]["nps"] = 11
            survey["responses"][1]["submitted_at"] = "2026-11-23T09:20:31"
            survey["responses"][2]["stage"] = "售后服务"
            bad = await client.post("/v1/sources/survey-tool/surveys", json=survey)
            assert bad.status_code == 422
            locs = [e["loc"] for e in bad.json()["detail"]]
            assert ["body", "responses", 0, "ratings", "nps"] in locs
            assert ["body", "responses", 1, "submitted_at"] in locs
            assert ["body", "responses", 2, "stage"] in locs

            turn = {"speaker": "robot", "start_ms": 0, "end_ms": 1, "text": "喂"}
            call = await client.post("/v1/sources/cc/calls", json={
                "call_id": "c", "started_at": "2026-11-23T10:00:00+08:00",
                "ended_at": "2026-11-23T10:01:00+08:00", "turns": [turn]})
            assert ["body", "turns", 0, "speaker"] in [e["loc"] for e in call.json()["detail"]]

            post = await client.post("/v1/sources/s/social", json={"posts": [
                {"platform": "facebook", "post_id": "1", "text": "好", "likes": -1}]})
            locs = [e["loc"] for e in post.json()["detail"]]
            assert ["body", "posts", 0, "platform"] in locs and ["body", "posts", 0, "likes"] in locs

            mail = await client.post("/v1/sources/m/emails", json={"subject": "无正文"})
            assert mail.status_code == 422
            assert mail.json()["detail"][0]["loc"][0] == "body"
            markup = await client.post("/v1/sources/m/emails", json={"html": "<p> </p>"})
            assert markup.status_code == 422 and "no text" in markup.text

            gbk_json = json.dumps({"events": [{"source": "a", "channel": "app", "touchpoint": "t",
                                               "text": "配送太慢"}]}, ensure_ascii=False)
            undecodable = await client.post("/v1/feedback/batch", content=gbk_json.encode("gbk"),
                                            headers={"content-type": "application/json"})
            assert undecodable.status_code in (400, 422), undecodable.text
            assert "UTF-8" in undecodable.text

            garbage = await client.post("/v1/sources/m/emails",
                                        content=b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
                                        + bytes(range(0x80, 0x100)) * 4,
                                        headers={"content-type": "message/rfc822"})
            assert garbage.status_code == 422 and "charset" in garbage.text

            wrong_type = await client.post("/v1/sources/m/emails", content=b"hello",
                                           headers={"content-type": "text/plain"})
            assert wrong_type.status_code == 415

    run(scenario())
    assert raw_events(broker, settings) == []


async def metric_samples(client: httpx.AsyncClient) -> dict[tuple, float]:
    """The ingest process's Prometheus samples, by (name, sorted labels)."""
    text = (await client.get("/metrics/")).text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_duplicates_are_counted_not_written_twice(broker: LocalBroker,
                                                  settings: Settings) -> None:
    create_topics(settings, broker.bootstrap)

    async def scenario() -> None:
        async with running(settings, ["ingest"], broker.bootstrap) as url, \
                httpx.AsyncClient(base_url=url, timeout=30) as client:
            before = await metric_samples(client)
            for expected in (0, 4):
                answer = await client.post("/v1/sources/survey-tool/surveys",
                                           content=fixture("survey_batch.json"),
                                           headers={"content-type": "application/json"})
                assert answer.json()["duplicates"] == expected
            mail = fixture("gbk_multipart_reply.eml")
            first = await client.post("/v1/sources/mail-gw/emails", content=mail,
                                      headers={"content-type": "message/rfc822"})
            resent = mail.replace(b"X-Mailer: Coremail", b"X-Resent: yes\r\nX-Mailer: Coremail")
            second = await client.post("/v1/sources/mail-gw/emails", content=resent,
                                       headers={"content-type": "message/rfc822"})
            assert first.json()["event_ids"] == second.json()["event_ids"]
            assert second.json()["duplicates"] == 1
            after = await metric_samples(client)

            def grew(name: str, channel: str, source: str) -> float:
                key = (name, (("channel", channel), ("source", source)))
                return after.get(key, 0.0) - before.get(key, 0.0)

            assert grew("voc_ingest_duplicates_total", "survey", "survey-tool") == 4
            assert grew("voc_ingest_duplicates_total", "email", "mail-gw") == 1
            assert grew("voc_ingest_events_total", "survey", "survey-tool") == 4
            assert grew("voc_ingest_events_total", "email", "mail-gw") == 1

    run(scenario())
    assert len(raw_events(broker, settings)) == 5


def readme_curls() -> list[str]:
    """Every `curl -X POST` example in the README and docs/channels.md, continuation lines
    joined (the README's tour indents its examples under a list item)."""
    root = Path(__file__).resolve().parents[2]
    readme = "\n".join((root / name).read_text(encoding="utf-8")
                       for name in ("README.md", "docs/channels.md"))
    commands, current = [], ""
    for block in re.findall(r"```\n(.*?)```", readme, flags=re.S):
        for line in (line.strip() for line in block.splitlines()):
            if line.startswith("curl -X POST"):
                if current:
                    commands.append(current)
                current = line
            elif current and not line.startswith(("KEY=", "echo ")):
                current += "\n" + line
        if current:
            commands.append(current)
            current = ""
    return commands


def test_every_readme_example_is_accepted(broker: LocalBroker, settings: Settings) -> None:
    commands = readme_curls()
    assert len(commands) >= 6
    create_topics(settings, broker.bootstrap)

    async def scenario() -> None:
        async with running(settings, ["ingest"], broker.bootstrap) as url, \
                httpx.AsyncClient(timeout=30) as client:
            for command in commands:
                words = shlex.split(command.replace("\\\n", " "))
                target = words[words.index("-X") + 2].replace("http://127.0.0.1:8000", url)
                headers = dict(h.split(": ", 1) for i, h in enumerate(words)
                               if i and words[i - 1] == "-H")
                if "-d" in words:
                    body = words[words.index("-d") + 1].encode()
                else:
                    path = words[words.index("--data-binary") + 1].removeprefix("@")
                    body = (Path(__file__).resolve().parents[2] / path).read_bytes()
                answer = await client.post(target, content=body, headers=headers)
                assert answer.status_code == 202, (command[:80], answer.text)

    run(scenario())
