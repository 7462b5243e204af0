"""The stance model and the urgency scorer read the topic tagger's pass over a batch instead of
the texts, when the tagger's pass finds their features (services/nlp/stance.py ``reads_grams_of``,
services/nlp/aspect_tagger.py ``gram_map``), and score exactly as reading the texts themselves;
with other features they read the texts themselves."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core.events import RawFeedback
from services.nlp.analyzer import Analyzer, load_sentiment
from services.nlp.aspect_tagger import AspectTagger
from services.nlp.cem_tagger import Fit, Labelled, fit_on
from services.nlp.cues import load_urgency
from services.nlp.stance import FEATURES, StanceModel
from services.nlp.taxonomy import Taxonomy, load_taxonomy

DATA = Path(__file__).parents[1] / "data"
NOW = datetime(2026, 12, 4, tzinfo=UTC)


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer(load_sentiment("default"), load_taxonomy(), load_urgency(), neutral_band=0.2)


def sample_texts() -> list[str]:
    texts = []
    for name in ("contact_center_intent.csv", "sentiment_sample.csv"):
        with open(DATA / name, newline="", encoding="utf-8") as handle:
            texts += [row["text"] for row in csv.DictReader(handle)]
    # Blank, emoji only, white space runs, lower-casing that changes a length, past max_chars.
    return texts + ["", "👍👍", "  网速   很慢  \n 客服 不理人 ", "İstanbul 的门店ΣΑΣ", "信号差" * 2000]


def other_stance(model: StanceModel) -> StanceModel:
    """The shipped stance model less its last n-gram: features no tagger has."""
    return StanceModel(model.vocabulary[:-1], model.idf[:-1], model.ngram_weights[:-1], model.dense_weights,
                       model.intercepts, model.pairs, model.intent_weight, model.version)


def test_the_shipped_stance_model_reads_the_shipped_taggers_pass(analyzer: Analyzer) -> None:
    """Both are fitted on the same texts with the same min_df. A refit that breaks this costs
    the stage a reading of every text (about 12 µs an event): refit both alike, or record the
    cost in the model card and drop this test."""
    tagger = analyzer.taxonomy.tagger
    assert tagger is not None
    assert analyzer.stance.reads_grams_of(tagger.vocabulary[: tagger.n_char], tagger.idf[: tagger.n_char],
                                          tagger.max_n, tagger.max_chars)


def test_given_the_taggers_grams_the_stance_model_scores_as_reading_the_texts(analyzer: Analyzer) -> None:
    tagger = analyzer.taxonomy.tagger
    assert tagger is not None
    texts = sample_texts()
    rows = np.random.default_rng(7).uniform(-1, 1, (len(texts), len(FEATURES)))
    for start in range(0, len(texts), 256):
        batch, batch_rows = texts[start: start + 256], rows[start: start + 256]
        read = analyzer.stance.probabilities(batch_rows, batch)
        handed = analyzer.stance.probabilities(batch_rows, batch, tagger.scan(batch).char)
        assert all(np.array_equal(a, b) for a, b in zip(read, handed, strict=True))


def test_a_stance_model_with_other_ngrams_reads_the_texts_itself(
        analyzer: Analyzer, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    original = StanceModel.probabilities

    def spy(self: StanceModel, rows: np.ndarray, texts: list[str], grams: Any = None) -> Any:
        seen.append(grams)
        return original(self, rows, texts, grams)

    monkeypatch.setattr(StanceModel, "probabilities", spy)
    events = [RawFeedback(event_id=f"e{i}", source="test", channel="web", touchpoint="tp", text=text,
                          occurred_at=NOW, received_at=NOW) for i, text in enumerate(sample_texts()[:40])]
    shipped = analyzer.analyze(events)
    other = Analyzer(load_sentiment("default"), analyzer.taxonomy, load_urgency(), neutral_band=0.2,
                     stance=other_stance(analyzer.stance))
    other.analyze(events)
    assert seen[0] is not None and seen[1] is None
    # A taxonomy without a learned tagger has no pass to hand over; the shipped one again has.
    analyzer.use_taxonomy(Taxonomy(analyzer.taxonomy.spec))
    assert analyzer._tagging[1:] == (False, None)
    analyzer.analyze(events)
    analyzer.use_taxonomy(load_taxonomy())
    assert analyzer._tagging[1] and analyzer._tagging[2] is not None
    again = analyzer.analyze(events)
    assert seen[2] is None and seen[3] is not None
    assert [e.model_dump(exclude={"enriched_at"}) for e in again] == \
        [e.model_dump(exclude={"enriched_at"}) for e in shipped]


def test_the_shipped_urgency_scorer_reads_the_shipped_taggers_pass_to_the_bit(analyzer: Analyzer) -> None:
    """Its n-grams (up to 2 characters) and words are among the tagger's (up to 3), both fitted
    on the same texts with the same min_df. A refit that breaks this costs the stage a reading
    of every text (about 18 µs an event): refit both alike, or record the cost in the model
    card and drop the first assertion."""
    tagger, scorer = analyzer.taxonomy.tagger, analyzer.urgency.scorer
    assert tagger is not None and isinstance(scorer, AspectTagger)
    grams = scorer.gram_map(tagger)
    assert grams is not None
    texts = sample_texts()
    for start in range(0, len(texts), 256):
        batch = texts[start: start + 256]
        read = scorer.read_margins(tagger.scan(batch), grams)
        assert all(np.array_equal(a, b) for a, b in zip(read, scorer._margins(batch), strict=True))
    # The other way round the scorer lacks the tagger's 3-character n-grams.
    assert tagger.gram_map(scorer) is None


WORDS = ["屏幕有坏点", "屏幕一直闪", "屏幕发黄", "快递很快", "客服很好", "价格便宜", "屏幕裂了", "物流慢"]


def tagger_of(texts: list[str], max_n: int) -> AspectTagger:
    items = [Labelled(t, frozenset({"product_quality"} if "屏幕" in t else set()), frozenset(), "a")
             for t in texts]
    return fit_on(([], []), items, ["product_quality"], Fit(author_weight=1.0, c=10.0, max_n=max_n, word_n=1,
                                                             min_df=1))


SMALL = tagger_of(WORDS, 2)
LARGE = tagger_of([*WORDS, "手机屏幕很亮", "快递员态度差"], 3)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(alphabet="屏幕有坏点快递很价格便宜发黄闪手机亮员态度差AB ab12。，！\n\tİΣ", max_size=40),
                min_size=1, max_size=6))
def test_margins_read_from_a_larger_taggers_pass_are_the_margins_of_reading_the_texts(texts: list[str]) -> None:
    grams = SMALL.gram_map(LARGE)
    assert grams is not None
    read = SMALL.read_margins(LARGE.scan(texts), grams)
    assert all(np.array_equal(a, b) for a, b in zip(read, SMALL._margins(texts), strict=True))


def test_a_tagger_whose_features_another_pass_misses_reads_the_texts_itself() -> None:
    # 坏点 and 发黄 are no n-grams of a tagger fitted without those texts.
    assert SMALL.gram_map(tagger_of(WORDS[3:], 3)) is None
    # Longer n-grams than the other pass reads.
    assert LARGE.gram_map(SMALL) is None
