"""The emerging-topic detector (services/core/phrases.py, services/alerting/emerging.py).

Without I/O: candidate phrases (content words and runs of two or three, stop words left out,
bounded per event and linear in its tokens), Dunning's G² against a known value, and the
decision: a surging phrase rises, a steady one does not, a never-seen phrase needs enough
customers, a taxonomy keyword is never emerging, a cohesive phrase stands for its words, a
thin baseline decides nothing.

On the real broker and both store backends: enriched events go through the scoring stage,
which stores their phrases, the baseline hour is rolled up into phrase_counts, and the
store's per-window counts find the injected phrase at its touchpoint and overall, and nothing
at the touchpoint that kept talking as usual.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

import pytest

from services.alerting import emerging, phrase_rollup, queries
from services.alerting.emerging import (
    Count,
    Excluded,
    Thresholds,
    Window,
    corrected,
    detect,
    llr,
)
from services.core.events import EnrichedFeedback, Sentiment, utc_now
from services.core.kafka import create_topics
from services.core.phrases import MAX_PHRASES, candidate_phrases, display
from services.core.settings import Settings
from services.nlp.taxonomy import load_taxonomy_spec, load_terms
from tests.conftest import run
from tests.pipeline_harness import running, store_and_producer
from tests.waiting import eventually

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
NONE = Excluded([])
T = Thresholds()


# --- candidate phrases ------------------------------------------------------------------------

def test_candidates_are_content_words_and_their_runs() -> None:
    tokens = ["我", "的", "优惠券", "用不了", "，", "客服", "说", "系统", "升级"]
    assert candidate_phrases(tokens) == [
        "优惠券", "优惠券 用不了", "用不了", "客服", "系统", "系统 升级", "升级"]
    assert display("优惠券 用不了") == "优惠券用不了"
    assert display("app 闪退") == "app 闪退"
    assert candidate_phrases(["电池", "鼓包", "严重", "发热"])[:3] == [
        "电池", "电池 鼓包", "电池 鼓包 严重"], "runs of two and three words"


@pytest.mark.serial
def test_candidates_are_bounded_and_linear() -> None:
    tokens = [f"词{i:05d}" for i in range(10_000)]
    began = time.perf_counter()
    found = candidate_phrases(tokens)
    assert len(found) == MAX_PHRASES
    assert time.perf_counter() - began < 1.0
    assert candidate_phrases(["a" * 30]) == [], "longer than a phrase may be"


# --- the test ---------------------------------------------------------------------------------

def test_llr_matches_a_worked_value_and_is_signed() -> None:
    # scipy.stats.chi2_contingency([[10, 990], [10, 9990]], correction=False,
    #                              lambda_="log-likelihood") gives 22.2122
    assert llr(10, 1000, 10, 10_000) == pytest.approx(22.2122, abs=1e-3)
    assert llr(1, 1000, 100, 10_000) < 0, "below its baseline share: falling"
    assert llr(5, 1000, 50, 10_000) == pytest.approx(0.0, abs=1e-9)


def counts(*rows: tuple[str, int, int, int]) -> list[Count]:
    return [Count(*row) for row in rows]


def test_a_surging_phrase_rises_and_a_steady_one_does_not() -> None:
    found = detect(counts(("退款", 30, 25, 40), ("物流", 50, 40, 1000)), 500, 10_000, T, NONE)
    assert [r.phrase for r in found] == ["退款"]
    [r] = found
    assert r.mentions == 30 and r.baseline == 40 and not r.new and r.lift > 3
    assert r.llr >= T.min_llr


def test_a_never_seen_phrase_needs_enough_customers() -> None:
    lone = detect(counts(("电池 鼓包", 12, 2, 0)), 500, 10_000, T, NONE)
    assert lone == [], "twelve mentions from two customers is one angry customer"
    many = detect(counts(("电池 鼓包", 12, 9, 0)), 500, 10_000, T, NONE)
    assert [r.phrase for r in many] == ["电池 鼓包"] and many[0].new
    few = detect(counts(("电池 鼓包", 7, 7, 0)), 500, 10_000, T, NONE)
    assert few == [], "below new_min_mentions"


def test_taxonomy_keywords_are_never_emerging() -> None:
    keyword = load_taxonomy_spec().topics[0].keywords[0]
    excluded = Excluded(load_terms())
    found = detect(counts((keyword, 40, 30, 0), (f"{keyword} 很差", 40, 30, 0),
                          ("蓝牙 断连", 40, 30, 0)), 500, 10_000, T, excluded)
    assert [r.phrase for r in found] == ["蓝牙 断连"]


def test_the_words_of_a_known_phrase_are_known_too() -> None:
    rows = counts(("二维码", 14, 9, 0), ("扫不出", 12, 8, 0), ("二维码 扫不出", 12, 8, 0))
    known = Excluded(["二维码扫不出"])
    assert detect(rows, 500, 10_000, T, known) == [], \
        "both words are (mostly) the keyword: nothing new"
    alone = counts(("二维码", 40, 30, 0), ("二维码 扫不出", 12, 8, 0))
    assert [r.phrase for r in detect(alone, 500, 10_000, T, known)] == ["二维码"], \
        "二维码 said mostly elsewhere is news of its own"


def test_a_cohesive_phrase_stands_for_its_words() -> None:
    rows = counts(("电池", 40, 30, 5), ("鼓包", 36, 30, 0), ("电池 鼓包", 35, 29, 0),
                  ("发热", 60, 50, 2), ("电池 发热", 6, 6, 0))
    found = detect(rows, 500, 10_000, T, NONE)
    assert [r.phrase for r in found] == ["发热", "电池 鼓包"], \
        "电池 鼓包 holds most mentions of both words; 电池 发热 is no phrase (6 of 40)"


def test_the_bar_grows_with_the_phrases_tested() -> None:
    # the one-sided chi-square tail of 30 (1 df) is 2.15e-8; divided by 500 it is the tail
    # of 42.11 (scipy.stats.chi2.isf(2 * norm.sf(sqrt(30)) / 500, 1))
    assert corrected(30, 1) == 30 and corrected(30, 0) == 30
    assert corrected(30, 500) == pytest.approx(42.11, abs=0.01)
    bars = [corrected(30, m) for m in (2, 10, 100, 1000, 10**6)]
    assert bars == sorted(bars) and bars[0] > 30
    assert corrected(3000, 100) == pytest.approx(3000 + 2 * math.log(100)), \
        "past the float range of the tail: its asymptote"
    # a phrase at G² 33 passes when it is the only one tested, not among 500
    row = ("退款", 17, 15, 40)
    g2 = llr(17, 500, 40, 10_000)
    assert 30 < g2 < corrected(30, 500)
    alone = detect(counts(row), 500, 10_000, T, NONE)
    assert [(r.phrase, r.tested) for r in alone] == [("退款", 1)]
    assert detect(counts(row), 500, 10_000, T, NONE, tested=500) == []
    crowd = counts(row, *((f"词{i}", 5, 5, 100) for i in range(499)))
    assert detect(crowd, 500, 10_000, T, NONE) == [], "every phrase listed counts as tested"


def test_a_thin_baseline_decides_nothing() -> None:
    assert detect(counts(("退款", 30, 25, 0)), 500, 100, T, NONE) == []
    assert detect(counts(("退款", 30, 25, 0)), 0, 10_000, T, NONE) == []


# --- on the broker and the store --------------------------------------------------------------

BACKGROUND = [["物流", "很", "快"], ["客服", "态度", "不错"], ["价格", "便宜"],
              ["包装", "完好"], ["质量", "一般"]]


def enriched(n: int, touchpoint: str, at: datetime, tokens: list[str],
             customer: str) -> EnrichedFeedback:
    now = utc_now()
    return EnrichedFeedback(
        event_id=f"{touchpoint}-{n}", source="test", channel="app", touchpoint=touchpoint,
        text="".join(tokens), occurred_at=at, received_at=now, customer_id=customer,
        sentiment=Sentiment(score=-0.5, label="negative", model="test"), topics=[],
        intent="complaint", urgency=[], keywords=[], tokens=tokens, enriched_at=now)


def stream() -> list[EnrichedFeedback]:
    """An hour of background at two touchpoints, then five minutes in which 12 of checkout's
    60 events from 8 customers say 二维码 扫不出."""
    events = []
    for n in range(600):
        at = T0 + timedelta(seconds=6 * n)
        for tp in ("checkout", "delivery"):
            events.append(enriched(n, tp, at, BACKGROUND[n % 5], f"c{n % 97}"))
    for n in range(60):
        at = T0 + timedelta(hours=1, seconds=5 * n)
        tokens = ["二维码", "扫不出", "。"] if n % 5 == 0 else BACKGROUND[n % 5]
        events.append(enriched(1000 + n, "checkout", at, tokens, f"k{n % 8}"))
        events.append(enriched(1000 + n, "delivery", at, BACKGROUND[n % 5], f"d{n}"))
    return events


def test_the_window_counts_find_the_injected_phrase(settings: Settings, broker,
                                                    store_url: str) -> None:
    settings = settings.model_copy(update={"sink_batch_wait_s": 0.2})
    events = stream()
    window = Window(T0 + timedelta(hours=1, minutes=5), 300, 3600, 100)

    create_topics(settings, broker.bootstrap)

    async def scenario() -> dict:
        async with store_and_producer(store_url, broker.bootstrap) as (store, producer):
            async with running(settings, ["scoring"], broker.bootstrap, store=store):
                await producer.send_many(settings.topic("feedback.enriched"),
                                         [(e.touchpoint.encode(), e.to_bytes()) for e in events])

                async def stored() -> bool:
                    rows = await store.query("SELECT count() AS n FROM feedback")
                    return int(rows[0]["n"]) == len(events)

                await eventually(stored, 60, "every event stored")
            # the baseline hour is rolled up, so the detector reads it from phrase_counts
            rolled = await phrase_rollup.roll_up(store, bucket_s=3600, horizon=3600,
                                                 now=window.end)
            limited = await queries.phrase_counts(
                store, touchpoints=None, lo=window.lo, start=window.start, hi=window.end,
                min_mentions=1, limit=2)
            return {"per_touchpoint": await emerging.rising(store, window, T, NONE),
                    "overall": await emerging.rising(store, window, T, NONE, overall=True),
                    "only_delivery": await emerging.rising(store, window, T, NONE,
                                                           touchpoints=["delivery"]),
                    "limited": limited, "rolled": rolled.rolled}

    found = run(scenario())
    assert found["rolled"] == (int(T0.timestamp()),), "the baseline is read rolled up"
    checkout = found["per_touchpoint"]["checkout"].rising
    assert [(r.phrase, r.text) for r in checkout] == [("二维码 扫不出", "二维码扫不出")], \
        "the phrase stands for its two words, which only occur in it"
    [r] = checkout
    assert (r.mentions, r.customers, r.baseline, r.new) == (12, 8, 0, True)
    assert (r.volume, r.baseline_volume) == (60, 600)
    assert found["per_touchpoint"]["delivery"].rising == []
    [overall] = found["overall"][""].rising
    assert (overall.phrase, overall.volume, overall.baseline_volume) == ("二维码 扫不出", 120,
                                                                         1200)
    assert found["only_delivery"] == {"delivery": emerging.Detection(60, 600, [])}
    per_tp: dict[str, int] = {}
    for c in found["limited"]:
        per_tp[c.touchpoint] = per_tp.get(c.touchpoint, 0) + 1
    assert per_tp == {"checkout": 2, "delivery": 2}, "the limit applies per touchpoint"
