"""Single-process cost of the channel work ingest and NLP add per message.

Prints figures, asserts nothing: email parsing (stdlib ``email`` with policy.default), PII
redaction, survey normalisation, and the largest accepted input, a 2-hour ~1 MB transcript,
through ingest's normalisation and the NLP stage's analysis (with call tone).

    python bench/channels_bench.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from services.core.channels import prepare_raw  # noqa: E402
from services.core.pii import redact  # noqa: E402
from services.core.settings import load_settings  # noqa: E402
from services.ingest.call_transcript import CallIn  # noqa: E402
from services.ingest.channels.calls import call_event  # noqa: E402
from services.ingest.channels.surveys import SurveyBatchIn, survey_event  # noqa: E402
from services.ingest.email_message import parse_rfc822  # noqa: E402
from services.nlp.worker import build_analyzer  # noqa: E402
from tests.e2e.test_channel_e2e import long_call  # noqa: E402

DATA = REPO_ROOT / "tests" / "data" / "channels"


def rate(label: str, count: int, seconds: float) -> None:
    print(f"{label}: {count} in {seconds:.2f} s = {count / seconds:,.0f}/s")


def main() -> None:
    mail = (DATA / "gbk_multipart_reply.eml").read_bytes()
    started = time.perf_counter()
    for _ in range(300):
        parse_rfc822(mail)
    rate("GBK multipart email parsed", 300, time.perf_counter() - started)

    text = ("我的手机是13812345678，身份证11010519491231002X，卡号6222021234567890128，"
            "邮件 a.b@qq.com，订单2026111800123。") * 3
    started = time.perf_counter()
    for _ in range(2000):
        redact(text)
    rate(f"texts of {len(text)} chars redacted", 2000, time.perf_counter() - started)

    answers = SurveyBatchIn.model_validate_json((DATA / "survey_batch.json").read_text())
    items = answers.responses * 250
    started = time.perf_counter()
    for item in items:
        survey_event("bench", item)
    rate("survey answers normalised", len(items), time.perf_counter() - started)

    body = long_call()
    started = time.perf_counter()
    event = call_event("bench", CallIn.model_validate_json(body))
    ingest_s = time.perf_counter() - started
    analyzer = build_analyzer(load_settings())
    started = time.perf_counter()
    enriched = analyzer.analyze([prepare_raw(event)])[0]
    nlp_s = time.perf_counter() - started
    print(f"2-hour transcript: body {len(body) / 1e6:.2f} MB, {event.call.turns} turns; "
          f"ingest {ingest_s * 1000:.0f} ms; raw event {len(event.to_bytes()) / 1e6:.2f} MB; "
          f"NLP {nlp_s:.2f} s; enriched event {len(enriched.to_bytes()) / 1e6:.2f} MB; "
          f"tone {enriched.call_tone.trend if enriched.call_tone else None}")


if __name__ == "__main__":
    main()
