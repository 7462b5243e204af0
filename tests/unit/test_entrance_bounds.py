"""The entrance bounds as pure logic: event time against the clock with the default settings,
invisible characters, lone surrogate escapes, email structure budgets and bounded 422s.

The same bounds through the running pipeline are in tests/e2e/test_hostile_inputs.py.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from services.core.bounds import entrance_problem, without_invisibles
from services.core.events import RawFeedback
from services.core.settings import load_settings
from services.ingest.channels.generic import FeedbackIn
from services.ingest.email_message import EmailTooComplex, parse_rfc822
from services.ingest.guards import error_details, lone_surrogate
from tests import factories

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
DEFAULTS = load_settings()


def _event(occurred: datetime, received: datetime = NOW) -> RawFeedback:
    return factories.raw(channel="web", touchpoint="t", text="x", occurred_at=occurred,
                         received_at=received)


@pytest.mark.parametrize(("occurred", "received", "field", "says"), [
    (NOW - timedelta(days=30, seconds=1), NOW, "occurred_at", "backfill"),
    (NOW + timedelta(seconds=301), NOW, "occurred_at", "VOC_MAX_CLOCK_SKEW_S"),
    (datetime(9999, 12, 31, 23, 59, 30, tzinfo=UTC), NOW, "occurred_at", "future"),
    (NOW, NOW + timedelta(days=1), "received_at", "VOC_MAX_CLOCK_SKEW_S"),
])
def test_event_time_out_of_bounds_names_the_field_and_the_way_out(
        occurred: datetime, received: datetime, field: str, says: str) -> None:
    problem = entrance_problem(_event(occurred, received), DEFAULTS, NOW)
    assert problem is not None and problem[0] == field and says in problem[1]


def test_event_time_within_bounds_passes() -> None:
    for occurred in (NOW - timedelta(days=30), NOW, NOW + timedelta(seconds=300)):
        assert entrance_problem(_event(occurred), DEFAULTS, NOW) is None


def test_a_time_in_year_10000_utc_is_a_validation_error_not_an_overflow() -> None:
    with pytest.raises(ValidationError, match="outside the years"):
        RawFeedback.model_validate({**json.loads(_event(NOW).to_bytes()),
                                    "occurred_at": "9999-12-31T23:59:59-01:00"})
    with pytest.raises(ValidationError, match="outside the years"):
        FeedbackIn.model_validate({"source": "s", "channel": "web", "touchpoint": "t",
                                   "text": "x", "occurred_at": "0001-01-01T00:00:00+01:00"})


def test_invisible_characters_leave_texts_and_names_refuse_them() -> None:
    assert without_invisibles("a\x00b\u200bc\u202ed\ufeffe\tf\ng\rh😡") == "abcde\tf\ng\rh😡"
    item = FeedbackIn.model_validate({"source": "s", "channel": "web", "touchpoint": "配送",
                                      "text": "1\u200b2315\x00", "metadata": {"城市": "上\x00海"}})
    assert (item.text, item.metadata) == ("12315", {"城市": "上海"})
    for bad in ({"text": "\u200b\x00"}, {"touchpoint": "配\u200b送"}, {"segment": "V\x00IP"},
                {"metadata": {"k\u200b": "v"}}):
        with pytest.raises(ValidationError):
            FeedbackIn.model_validate({"source": "s", "channel": "web", "touchpoint": "t",
                                       "text": "x", **bad})


@pytest.mark.parametrize(("body", "offset"), [
    (rb'{"t": "\ud83d\ude21"}', None), (rb'{"t": "\u4e2d"}', None), (b'{"t": "plain"}', None),
    (rb'{"t": "\\ud800"}', None), (rb'{"t": "\udc80"}', 7), (rb'{"t": "\ud83d"}', 7),
    (rb'{"t": "\ud83dx\ude21"}', 7), (rb'{"t": "\ud83d\ud83d\ude21"}', 7),
    (rb'{"t": "\\\ud800"}', 9), (rb'{"t": "ok", "u": "\uDC80"}', 18),
])
def test_lone_surrogate_escapes_are_found_in_json_bodies(body: bytes, offset: int | None) -> None:
    assert lone_surrogate(body.decode()) == offset
    if offset is None:
        json.loads(body).get("t", "").encode("utf-8")


@pytest.mark.serial
def test_lone_surrogate_search_is_linear() -> None:
    body = '{"t": "' + r"\ud83d\ude21" * 150_000 + '"}'
    started = time.perf_counter()
    assert lone_surrogate(body) is None
    assert time.perf_counter() - started < 1.0


def _nested(levels: int) -> bytes:
    head = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
                    for i in range(levels))
    tail = b"".join(b"--b%d--\r\n" % i for i in reversed(range(levels)))
    return b"Subject: x\r\n" + head + b"Content-Type: text/plain\r\n\r\nhello\r\n" + tail


@pytest.mark.serial
@pytest.mark.parametrize(("raw", "limit"), [
    (_nested(2000), "mime_parts"), (_nested(900), "mime_parts"), (_nested(17), "mime_depth"),
    (b'Subject: x\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
     + b"--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n" * 20_000 + b"--b--\r\n", "mime_parts"),
    (b"Subject: x\r\n" + b"X-H: y\r\n" * 10_000 + b"\r\nbody", "header_bytes"),
])
def test_email_structure_budgets_refuse_before_the_parser_pays(raw: bytes, limit: str) -> None:
    started = time.perf_counter()
    with pytest.raises(EmailTooComplex) as refused:
        parse_rfc822(raw)
    assert refused.value.limit == limit
    assert time.perf_counter() - started < 1.0, "2,000 nested parts overflowed the stack, " \
                                                "900 took 6.6 s, 20,000 siblings 9 s"


def test_email_within_the_budgets_parses() -> None:
    assert parse_rfc822(_nested(16)).body == "hello"
    many = (b'Subject: x\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
            + b"--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n" * 200 + b"--b--\r\n")
    assert parse_rfc822(many).body == "hi"


def test_422_details_stay_small_whatever_the_input() -> None:
    deep: object = []
    for _ in range(900):
        deep = [deep]
    errors = [{"loc": ("body", "x", i), "msg": "bad", "type": "t",
               "input": {"deep": deep, "long": "x" * 100_000, "nan": float("nan"),
                         "many": list(range(10_000)), "bytes": b"\xff", "lone": "\udc80"}}
              for i in range(1000)]
    details = error_details(errors)
    assert len(details) == 100
    encoded = json.dumps(details, allow_nan=False).encode("utf-8")
    assert len(encoded) < 200_000
