"""The analyzer's fast paths must give what the plain, validated ones give.

Enriched events are assembled without validation (``services.core.events.trusted``), keywords
are ranked from a precomputed weight table, and n-grams are looked up in a hash table: each is
checked here against the schema file or against the straightforward computation it replaces.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from jsonschema import Draft202012Validator

import schemas
from services.core.channels import prepare_raw
from services.core.events import EnrichedFeedback, Ratings, RawFeedback, Sentiment, trusted
from services.core.phrases import candidate_phrases
from services.core.pii import mask_placeholders, redact
from services.nlp import keywords
from services.nlp.analyzer import Analyzer, load_sentiment
from services.nlp.cues import load_urgency
from services.nlp.keywords import _WORDLIKE, KeywordExtractor
from services.nlp.sentiment_model import NgramIndex, char_ngrams
from services.nlp.taxonomy import load_taxonomy
from tests.unit.test_channel_contract import CALL_EVENT

NOW = datetime(2026, 11, 23, tzinfo=UTC)
TEXTS = ["菜很好吃，但是配送太慢", "第三次打电话了还没人处理，再不退款我就投诉到12315",
         "请问会员积分怎么兑换？", "😀", "收到了", "APP闪退了，快递员也联系不上，我要打12315找消协",
         "@京東客服 快遞三天還沒到😡 #物流太慢# http://t.cn/abc", "孩子吃了以后食物中毒住院，客服态度差"]


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer(load_sentiment("default"), load_taxonomy(), load_urgency(), neutral_band=0.2)


def events() -> list[RawFeedback]:
    channels = ["web", "social", "chat", "app", "survey"]
    plain = [prepare_raw(RawFeedback(
        event_id=f"e{i}", source="t", external_id=str(i), channel=channels[i % len(channels)],
        touchpoint="tp", text=text, occurred_at=NOW, received_at=NOW, stage="售后",
        segment="VIP", ratings=Ratings(nps=3, csat=2), metadata={"order": "A1"}))
        for i, text in enumerate(TEXTS)]
    return [*plain, prepare_raw(CALL_EVENT)]


def test_output_stays_within_the_enriched_bounds_whatever_the_text(analyzer: Analyzer) -> None:
    """A text built to overflow every derived list (a cue and a topic keyword repeated
    thousands of times, one token of 60,000 letters, 30,000 one-character tokens) still gives
    an enriched event the schema and the model accept, so scoring never refuses NLP output."""
    validator = Draft202012Validator(schemas.topic_schema("feedback.enriched.v2"),
                                     format_checker=Draft202012Validator.FORMAT_CHECKER)
    texts = ["配送太慢12315，" * 3000, "a" * 60_000, "，".join("好" * 30_000)]
    raw = [prepare_raw(RawFeedback(event_id=f"h{i}", source="t", channel="web", touchpoint="tp",
                                   text=text, occurred_at=NOW, received_at=NOW))
           for i, text in enumerate(texts)]
    enriched = analyzer.analyze(raw)
    assert max(len(t.evidence) for e in enriched for t in e.topics) == 100
    assert max(len(u.evidence) for e in enriched for u in e.urgency) == 100
    assert max(len(e.tokens) for e in enriched) == 10_000
    assert max(len(t) for e in enriched for t in e.tokens) == 64
    for event in enriched:
        validator.validate(json.loads(event.to_bytes()))
        EnrichedFeedback.model_validate_json(event.to_bytes())


@pytest.mark.serial
def test_topic_clauses_of_a_long_text_cost_linear_time(analyzer: Analyzer) -> None:
    """100,000 characters (300 KB) of short clauses that all mention a topic: each evidence
    span finds its clause by binary search. Scanning the clauses for each span took 9 minutes
    for a 1 MB email."""
    text = "配送太慢了，" * 17_000
    raw = prepare_raw(RawFeedback(event_id="long", source="t", channel="web", touchpoint="tp",
                                  text=text, occurred_at=NOW, received_at=NOW))
    started = time.perf_counter()
    [enriched] = analyzer.analyze([raw])
    assert time.perf_counter() - started < 3.0
    assert enriched.topics and enriched.topics[0].sentiment.label == "negative"


def test_a_taxonomy_whose_names_are_markup_is_refused_at_start(tmp_path: Path) -> None:
    bad = tmp_path / "taxonomy.yaml"
    bad.write_text("topics:\n  - id: xss\n    name: \"<img src=x onerror=alert(1)>\"\n"
                   "    keywords: [配送]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="taxonomy topic 'xss': name"):
        Analyzer(load_sentiment("default"), load_taxonomy(bad), load_urgency(), neutral_band=0.2)


def test_enriched_events_validate_against_the_schema_file(analyzer: Analyzer) -> None:
    validator = Draft202012Validator(schemas.topic_schema("feedback.enriched.v2"),
                                     format_checker=Draft202012Validator.FORMAT_CHECKER)
    enriched = analyzer.analyze(events())
    assert any(e.topics for e in enriched) and any(e.urgency for e in enriched)
    assert enriched[-1].call_tone is not None, "the call gets its tone trend"
    for event in enriched:
        validator.validate(json.loads(event.to_bytes()))
        assert EnrichedFeedback.model_validate_json(event.to_bytes()) == event
        assert EnrichedFeedback.model_validate(event.model_dump()) == event


def test_analysis_text_is_analysed_and_original_text_kept(analyzer: Analyzer) -> None:
    [social] = analyzer.analyze([events()[6]])
    assert social.text.startswith("@京東客服")
    assert social.analysis_text is not None and "京东" not in social.analysis_text
    assert "快递" in social.tokens, "tokens come from the simplified analysis text"
    for topic in social.topics:
        for start, end in topic.evidence:
            assert social.analysis_text[start:end], "evidence points into the analysed text"


def test_trusted_needs_exactly_the_model_fields() -> None:
    assert trusted(Sentiment, score=0.5, label="positive", model="m") == Sentiment(
        score=0.5, label="positive", model="m")
    with pytest.raises(TypeError, match=r"missing \['model'\]"):
        trusted(Sentiment, score=0.5, label="positive")
    with pytest.raises(TypeError, match=r"unknown \['extra'\]"):
        trusted(Sentiment, score=0.5, label="positive", model="m", extra=1)


def test_keywords_rank_as_plain_tf_idf(analyzer: Analyzer) -> None:
    extractor = KeywordExtractor()
    import jieba.analyse

    tfidf = jieba.analyse.TFIDF()

    def reference(tokens: list[str]) -> list[str]:
        counts = Counter(t for t in tokens if len(t) >= 2 and _WORDLIKE.search(t)
                         and t.lower() not in tfidf.stop_words)
        return sorted(counts, key=lambda w: (-counts[w] * tfidf.idf_freq.get(w, tfidf.median_idf), w))[:5]

    texts = [*TEXTS, "iPhone13 The 手机 手机 电池 AB12 ok OK 一个 一个 了了", "快递快递快递 物流 物流"]
    for text in texts:
        tokens = analyzer.segmenter.cut(text)
        assert extractor.extract(tokens) == reference(tokens), text


def test_a_redaction_placeholder_is_no_keyword_and_no_phrase(analyzer: Analyzer) -> None:
    """Every contact who gave a number or an address would otherwise have PHONE or EMAIL among
    its keywords and emerging-topic phrases; a "<" the customer typed stays a token."""
    text = redact("发票一直没开，邮箱abc@163.com，电话13812345678，身份证11010519491231002X，价格<100>快点处理")
    tokens = analyzer.segmenter.cut(text)
    assert "PHONE" in tokens and "EMAIL" in tokens
    found = KeywordExtractor(top_k=20).extract(tokens)
    assert "发票" in found and not {"PHONE", "EMAIL", "ID", "CARD"} & set(found)
    phrases = candidate_phrases(tokens)
    assert "发票" in phrases and not [p for p in phrases if {"phone", "email", "card"} & set(p.split())]
    assert "邮箱 电话" not in phrases
    assert mask_placeholders(["价格", "<", "100", ">", "<"]) == ["价格", "<", "100", ">", "<"]
    assert mask_placeholders(["卡号", "<", "BANK", "_", "CARD", ">", "了"]) == ["卡号", "", "了"]


def test_keywords_remember_a_bounded_number_of_unknown_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """Order numbers and codes are new tokens in every event: the remembered decisions start
    over at the bound, and a token decided before or after that ranks the same."""
    monkeypatch.setattr(keywords, "UNKNOWN_CACHE", 8)
    extractor = KeywordExtractor(top_k=3)
    first = extractor.extract(["SF100", "SF100", "快递"])
    for n in range(50):
        extractor.extract([f"SF{n:04d}", "的", "，"])
        assert len(extractor._unknown) <= 8
    assert extractor.extract(["SF100", "SF100", "快递"]) == first == ["SF100", "快递"]


def test_ngram_hash_lookup_finds_exactly_the_vocabulary() -> None:
    rng = np.random.default_rng(7)
    alphabet = list("好差快递慢服务态度ab1 ，")
    vocabulary = sorted({"".join(rng.choice(alphabet, size=n)) for n in (1, 2, 3) for _ in range(300)} - {""})
    index = NgramIndex(vocabulary, max_n=3, max_chars=4000)
    texts = ["".join(rng.choice([*alphabet, "X", "中"], size=int(rng.integers(0, 40)))) for _ in range(200)]
    idf = np.arange(1.0, len(vocabulary) + 1.0)
    rows, cols, values = index.tfidf(texts, idf)
    position = {gram: j for j, gram in enumerate(vocabulary)}
    expected: dict[tuple[int, int], int] = {}
    for i, text in enumerate(texts):
        for gram in char_ngrams(text, 3, 4000):
            if gram in position:
                key = (i, position[gram])
                expected[key] = expected.get(key, 0) + 1
    got = {(int(r), int(c)): v for r, c, v in zip(rows, cols, values, strict=True)}
    assert set(got) == set(expected)
    for (i, j), count in expected.items():
        assert got[(i, j)] == pytest.approx((1 + np.log(count)) * idf[j])


def test_ngram_occurrences_take_the_parts_as_they_are() -> None:
    """``occurrences`` (shared with the urgency clause model) reads each part unnormalised and
    uncut, one (part, rank) pair per occurrence; ``order`` maps a rank to its column."""
    vocabulary = ["a", "A", "ab", "b c", "快递", "递慢"]
    index = NgramIndex(vocabulary, max_n=3, max_chars=2)
    parts, ranks = index.occurrences(["Aab", "", "b c", "快递慢快递"])
    found = sorted((int(p), vocabulary[int(index.order[r])]) for p, r in zip(parts, ranks, strict=True))
    assert found == [(0, "A"), (0, "a"), (0, "ab"), (2, "b c"), (3, "快递"), (3, "快递"), (3, "递慢")]
    empty = index.occurrences([])
    assert len(empty[0]) == len(empty[1]) == 0


def test_ngram_lookup_follows_probe_chains_to_every_known_key_and_no_unknown_one() -> None:
    """Keys that share a home slot probe on (``_ranks``): in a table with long probe chains every
    known n-gram is found at its own column and no unknown one is."""
    chars = [chr(0x4E00 + k) for k in range(70)]
    vocabulary = [a + b for a in chars for b in chars][::2] + chars
    index = NgramIndex(vocabulary, max_n=2, max_chars=10)
    assert index._max_probe >= 1
    unknown = [a + b for a in chars for b in chars][1::2]
    parts, ranks = index.occurrences([gram for gram in vocabulary if len(gram) == 2] + unknown)
    found = {(int(p), vocabulary[int(index.order[r])]) for p, r in zip(parts, ranks, strict=True)}
    twos = [gram for gram in vocabulary if len(gram) == 2]
    assert {(p, g) for p, g in found if len(g) == 2} == set(enumerate(twos))


def test_ngram_located_finds_what_a_lookup_of_every_window_finds_in_order() -> None:
    """``located_flat`` (the topic tagger's batched evidence look-up) gives per part, between
    its bounds, the (start, end, column) of every known n-gram, shorter first and each length in
    text order, exactly what looking up every window in a dictionary of the vocabulary gives;
    unknown characters and parts of the batch never join an n-gram."""
    vocabulary = ["a", "A", "ab", "b c", "快递", "递慢", "慢", "快递慢", "c"]
    index = NgramIndex(vocabulary, max_n=3, max_chars=2)
    column = {g: j for j, g in enumerate(vocabulary)}
    parts = ["Aab", "", "b c", "快递慢快递", "x快递慢?慢", "c", "ab"]
    bounds, starts, ends, columns = index.located_flat(parts)
    assert len(bounds) == len(parts) + 1
    for part, a, b in zip(parts, bounds, bounds[1:], strict=False):
        expected = [(i, i + n, column[part[i: i + n]]) for n in range(1, 4)
                    for i in range(len(part) - n + 1) if part[i: i + n] in column]
        assert list(zip(starts[a:b].tolist(), ends[a:b].tolist(), columns[a:b].tolist(), strict=True)) == expected
    assert index.located_flat([])[0] == [0]
