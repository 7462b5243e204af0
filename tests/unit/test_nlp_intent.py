"""Intent and non-evaluative damping on a hand-labelled contact-center sample.

tests/data/contact_center_intent.csv holds 94 short messages written for this test in the
style of contact-center chats and hotline notes (inquiries, complaints, suggestions, praise and
acknowledgements), each labelled with its intent and the sentiment a reader would give it. The
intent cues were refined while writing it, so the figures are a regression guard, not an
unbiased accuracy estimate.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.core.events import EnrichedFeedback, RawFeedback
from services.nlp.analyzer import Analyzer, load_sentiment
from services.nlp.cues import load_urgency
from services.nlp.taxonomy import load_taxonomy

SAMPLE = Path(__file__).parents[1] / "data" / "contact_center_intent.csv"
NOW = datetime(2026, 11, 23, tzinfo=UTC)


@pytest.fixture(scope="module")
def labelled() -> list[tuple[dict[str, str], EnrichedFeedback]]:
    with SAMPLE.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    analyzer = Analyzer(load_sentiment("default"), load_taxonomy(), load_urgency(), neutral_band=0.2)
    events = analyzer.analyze([RawFeedback(event_id=f"cc-{i}", source="t", channel="chat", touchpoint="hotline",
                                           text=row["text"], occurred_at=NOW, received_at=NOW)
                               for i, row in enumerate(rows)])
    return list(zip(rows, events, strict=True))


def test_sample_covers_every_intent(labelled: list[tuple[dict[str, str], EnrichedFeedback]]) -> None:
    counts = {intent: sum(row["intent"] == intent for row, _ in labelled)
              for intent in ("complaint", "inquiry", "praise", "suggestion", "other")}
    assert min(counts.values()) >= 8, counts


def test_intent_accuracy(labelled: list[tuple[dict[str, str], EnrichedFeedback]]) -> None:
    accuracy = sum(row["intent"] == event.intent for row, event in labelled) / len(labelled)
    assert accuracy >= 0.95  # measured 0.968 (stance 2.0.0; 0.989 with the cue rules tuned on it)


def test_inquiries_and_suggestions_are_not_negative_feedback(
        labelled: list[tuple[dict[str, str], EnrichedFeedback]]) -> None:
    """Nearly all: the learned stance model (2.0.0) reads three short questions of this sample
    as complaints (下单后多久能送到？, 我的退款是否已经到账了？, and 验证码收不到怎么办？, which
    reports a problem). Forcing every cue-read question to neutral fixed them but cost 2.4 points
    of leave-one-author-out sentiment accuracy (docs/model-card.md, "Round 3")."""
    calm = [(row, event) for row, event in labelled if row["intent"] in ("inquiry", "suggestion")]
    wrong = [(row["text"], event.sentiment) for row, event in calm if event.sentiment.label != "neutral"]
    assert len(wrong) <= 3, wrong  # measured 3 of 37
    assert all(topic.sentiment.label == "neutral" for _, event in calm for topic in event.topics
               if event.sentiment.label == "neutral")


def test_complaints_and_praise_keep_the_model_polarity(
        labelled: list[tuple[dict[str, str], EnrichedFeedback]]) -> None:
    evaluative = [(row, event) for row, event in labelled if row["intent"] in ("complaint", "praise")]
    agree = sum(row["sentiment"] == event.sentiment.label for row, event in evaluative) / len(evaluative)
    assert agree >= 0.9  # measured 0.98
