"""``voc feedback send`` as a contact center would use it: a real ``voc`` process posting an
export to the real ingest API (or producing to the real broker), with the broker's topic read
back to prove what was written."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from services.cli_send import Progress, Tally, _indexed_errors, read_lines, retry_after
from services.core.access import key_hash
from services.core.broker import LocalBroker, free_port
from services.core.events import stable_event_id
from services.core.kafka import create_topics
from services.core.settings import Settings
from tests.conftest import run
from tests.pipeline_harness import read_topic, running

VOC = str(Path(sys.executable).with_name("voc"))


def item(external_id: str | None, source: str = "cc-export", **extra: object) -> dict:
    line = {"source": source, "channel": "call", "touchpoint": "hotline",
            "text": "等了半小时没人接，太失望了", "occurred_at": "2026-11-23T10:00:00+08:00",
            **extra}
    if external_id is not None:
        line["external_id"] = external_id
    return line


def jsonl(*values: object) -> bytes:
    return b"".join((v if isinstance(v, bytes) else json.dumps(v, ensure_ascii=False).encode())
                    + b"\n" for v in values)


async def voc_send(*args: str, stdin: bytes | None = None,
                   env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        VOC, "feedback", "send", *args, env={**os.environ, **(env or {})},
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(stdin), 180)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def test_read_lines_bounds_each_line_and_reads_the_rest() -> None:
    data = (b"\xef\xbb\xbf{\"a\": 1}\n" + b"x" * 50 + b"\n" + b"y" * 10 + b"\n"
            + b"z" * 3000 + b"\n" + b"last-no-newline")
    lines = list(read_lines(io.BytesIO(data), max_bytes=20))
    assert [(n, chunk) for n, chunk, _ in lines] == [
        (1, b'{"a": 1}\n'), (2, None), (3, b"y" * 10 + b"\n"), (4, None), (5, b"last-no-newline")]
    assert lines[-1][2] == len(data)
    exact = list(read_lines(io.BytesIO(b"a" * 20 + b"\n" + b"b" * 21), max_bytes=20))
    assert [chunk for _, chunk, _ in exact] == [b"a" * 20 + b"\n", None]


def test_a_huge_line_without_newlines_costs_linear_time_and_one_line_of_memory() -> None:
    started = time.perf_counter()
    lines = list(read_lines(io.BytesIO(b"{" * 20_000_000), max_bytes=2048))
    assert lines == [(1, None, 20_000_000)]
    assert time.perf_counter() - started < 5  # generous: about 0.1 s; quadratic would be hours


def test_retry_after_reads_seconds_and_dates() -> None:
    assert retry_after("3") == 3.0
    assert retry_after("0.5") == 0.5
    assert retry_after("-4") == 0.0
    assert retry_after(None) is None and retry_after("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < (retry_after(later) or 0) <= 30


@pytest.mark.parametrize("member", ["errors", "detail"], ids=["one-shape", "older-api"])
def test_422_errors_are_placed_on_their_batch_lines(member: str) -> None:
    class Answer:
        def json(self) -> dict:
            return {member: [
                {"loc": ["body", "events", 2, "text"], "msg": "too long"},
                {"loc": ["body", "events", 2, "channel"], "msg": "bad"},
                {"loc": ["body", "events", 9], "msg": "out of this batch"},
                {"loc": ["event", "occurred_at"], "msg": "too old"}]}

    assert _indexed_errors(Answer(), size=5) == {2: "text: too long"}


def test_progress_reports_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    progress = Progress(total_bytes=1000, enabled=True)
    progress.EVERY_S = 0.0
    progress.update(Tally(lines=10, accepted=7, duplicates=2, rejected=1), 10, 500)
    err = capsys.readouterr().err
    assert "line 10 (50%): 7 accepted, 2 duplicate, 1 rejected" in err
    silent = Progress(total_bytes=None, enabled=False)
    silent.EVERY_S = 0.0
    silent.update(Tally(), 1, 1)
    assert capsys.readouterr().err == ""


def test_backfill_reports_accepted_duplicate_and_rejected_lines(
        broker: LocalBroker, settings: Settings, tmp_path: Path) -> None:
    create_topics(settings, broker.bootstrap)
    export = tmp_path / "export.jsonl"
    export.write_bytes(jsonl(
        item("r-1"),                                   # 1 accepted
        item("r-2", text="客服态度很好，问题当场解决"),      # 2 accepted
        b"{\"source\": \"cc-export\", \"text\": ",     # 3 not JSON
        b"   ",                                        # 4 blank: skipped, not counted
        item("r-1"),                                   # 5 duplicate of line 1
        [1, 2, 3],                                     # 6 not an object
        item("r-3", channel="fax"),                    # 7 bad channel
        item("r-4", text="长" * 40000),                # 8 longer than the line bound
        item(None, text="没有外部编号的一条"),              # 9 accepted (no external_id)
        item("r-1", source="app-cn"),                  # 10 accepted: same id, other source
    ))
    env = {"VOC_INGEST_MAX_BODY_BYTES": "65536"}

    async def scenario() -> None:
        async with running(settings, ["ingest"], broker.bootstrap) as url:
            code, out, err = await voc_send(str(export), "--url", url, "--json", env=env)
            assert code == 1, err
            summary = json.loads(out)
            assert {k: summary[k] for k in ("lines", "accepted", "duplicates", "rejected",
                                            "without_external_id", "stopped_at_line")} == {
                "lines": 9, "accepted": 4, "duplicates": 1, "rejected": 4,
                "without_external_id": 1, "stopped_at_line": None}
            reasons = {r["line"]: r["reason"] for r in summary["rejected_lines"]}
            assert sorted(reasons) == [3, 6, 7, 8]
            assert reasons[3].startswith("not JSON")
            assert reasons[6] == "expected a JSON object, got list"
            assert reasons[7].startswith("channel:")
            assert reasons[8].startswith("longer than 65,522 bytes")
            for number in (3, 6, 7, 8):
                assert f"line {number}: rejected: " in err
            assert "失望" not in err + out, "customer text is never echoed"
            # A re-run of the same export adds only the line that has no external_id.
            code, out, err = await voc_send("--url", url, stdin=export.read_bytes(), env=env)
            assert code == 1, err
            assert "stdin: 9 lines: 1 accepted, 4 duplicate, 4 rejected" in out
            assert "1 accepted lines have no external_id" in out

    run(scenario())
    written = read_topic(broker.bootstrap, settings.topic("feedback.raw"))
    ids = sorted(event["event_id"] for _, event in written)
    assert len(ids) == 5
    assert {stable_event_id("cc-export", "r-1"), stable_event_id("cc-export", "r-2"),
            stable_event_id("app-cn", "r-1")} <= set(ids)
    assert sum(event.get("external_id") is None for _, event in written) == 2


def test_429_is_retried_after_retry_after_and_413_batches_are_split(
        broker: LocalBroker, settings: Settings) -> None:
    create_topics(settings, broker.bootstrap)
    limited = settings.model_copy(update={"api_rate_limit": "2/second", "ingest_batch_max": 3})
    lines = jsonl(*(item(f"q-{n}") for n in range(7)))

    async def scenario() -> None:
        async with running(limited, ["ingest"], broker.bootstrap) as url:
            code, out, err = await voc_send("--url", url, "--batch-size", "7", "--json",
                                            stdin=lines)
            assert code == 0, err
            assert json.loads(out)["accepted"] == 7
            assert "429" in err and "retrying" in err

    run(scenario())
    assert len(read_topic(broker.bootstrap, settings.topic("feedback.raw"))) == 7


def test_an_api_that_never_answers_stops_with_the_line_to_resume_from(tmp_path: Path) -> None:
    export = tmp_path / "export.jsonl"
    export.write_bytes(jsonl(item("s-1"), item("s-2")))

    async def scenario() -> None:
        code, out, err = await voc_send(str(export), "--url", f"http://127.0.0.1:{free_port()}",
                                        "--max-attempts", "2", "--json")
        assert code == 3, err
        summary = json.loads(out)
        assert summary["stopped_at_line"] == 1 and summary["accepted"] == 0
        assert "after 2 tries" in summary["stopped_because"]
        code, out, _ = await voc_send(str(export), "--url", f"http://127.0.0.1:{free_port()}",
                                      "--max-attempts", "1", "--from-line", "2")
        assert code == 3 and "stopped at line 2" in out and "--from-line 2" in out

    run(scenario())


def test_the_api_key_is_sent_when_keys_are_configured(
        broker: LocalBroker, settings: Settings, tmp_path: Path) -> None:
    create_topics(settings, broker.bootstrap)
    keys = tmp_path / "keys.yaml"
    keys.write_text(f"cc-export: {key_hash('s3cret-key')}\n")
    guarded = settings.model_copy(update={"ingest_api_keys_file": keys})
    lines = jsonl(item("k-1"), item("k-2"))

    async def scenario() -> None:
        async with running(guarded, ["ingest"], broker.bootstrap) as url:
            code, out, err = await voc_send("--url", url, stdin=lines)
            assert code == 3, err
            assert "refused the key (401" in out and "VOC_API_KEY" in out
            code, out, err = await voc_send("--url", url, "--json", stdin=lines,
                                            env={"VOC_API_KEY": "s3cret-key"})
            assert code == 0, err
            assert json.loads(out)["accepted"] == 2

    run(scenario())


def test_raw_records_go_straight_to_the_topic(broker: LocalBroker, settings: Settings,
                                              tmp_path: Path) -> None:
    create_topics(settings, broker.bootstrap)
    now = datetime.now(UTC).isoformat()

    def raw(event_id: str, **extra: object) -> dict:
        return {"schema": "feedback.raw.v2", "event_id": event_id, "source": "dw",
                "channel": "web", "touchpoint": "returns", "text": "退货很顺利",
                "occurred_at": now, "received_at": now, **extra}

    export = tmp_path / "raw.jsonl"
    export.write_bytes(jsonl(raw("e-1"), raw("e-1"), raw("e-2"),
                             raw("e-3", occurred_at="2020-01-01T00:00:00Z"),
                             {"schema": "feedback.raw.v2", "event_id": "e-4"}))
    env = {"VOC_KAFKA_BOOTSTRAP": broker.bootstrap, "VOC_TOPIC_PREFIX": settings.topic_prefix}

    async def scenario() -> None:
        code, out, err = await voc_send(str(export), "--raw", "--json", env=env)
        assert code == 1, err
        summary = json.loads(out)
        assert (summary["accepted"], summary["duplicates"], summary["rejected"]) == (2, 1, 2)
        reasons = {r["line"]: r["reason"] for r in summary["rejected_lines"]}
        assert "VOC_MAX_EVENT_AGE_S" in reasons[4] and "Field required" in reasons[5]

    run(scenario())
    written = read_topic(broker.bootstrap, settings.topic("feedback.raw"))
    assert sorted(event["event_id"] for _, event in written) == ["e-1", "e-2"]
    assert {key for key, _ in written} == {b"returns"}
