"""The NLP stage's work on a batch of raw events: tokens, sentiment, topics.

It is plain synchronous code over whole batches: the models vectorise over many texts at once,
and the stream processor runs it off the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import jieba

from services.core.events import EnrichedFeedback, RawFeedback, Sentiment, SentimentLabel, utc_now
from services.nlp.taxonomy import Taxonomy


class SentimentModel(Protocol):
    """What the analyzer needs of a sentiment backend."""

    name: str
    version: str

    def predict(self, texts: list[str]) -> list[float]:
        """Graded polarity in [-1, 1] per text."""
        ...


def label_for(score: float, neutral_band: float) -> SentimentLabel:
    """negative at or below -band, positive at or above +band, neutral in between."""
    if score <= -neutral_band:
        return "negative"
    if score >= neutral_band:
        return "positive"
    return "neutral"


def load_sentiment(backend: str) -> SentimentModel:
    """The sentiment backend named by ``VOC_SENTIMENT_BACKEND``."""
    from services.nlp import sentiment_model

    if backend == "default":
        return sentiment_model.load_default()
    if backend == "snownlp":
        return sentiment_model.SnowNLPSentiment()
    raise ValueError(f"VOC_SENTIMENT_BACKEND={backend!r} is not a known backend")


class Analyzer:
    """Enriches raw events with tokens, sentiment and taxonomy topics."""

    def __init__(self, sentiment: SentimentModel, taxonomy: Taxonomy, neutral_band: float) -> None:
        self.sentiment = sentiment
        self.taxonomy = taxonomy
        self.neutral_band = neutral_band
        self.model_id = f"{sentiment.name}-{sentiment.version}"
        jieba.setLogLevel(30)
        jieba.initialize()

    def analyze(self, events: Sequence[RawFeedback]) -> list[EnrichedFeedback]:
        """One enriched event per input event, in the same order."""
        if not events:
            return []
        scores = self.sentiment.predict([e.text for e in events])
        now = utc_now()
        enriched = []
        for event, score in zip(events, scores, strict=True):
            clipped = max(-1.0, min(1.0, float(score)))
            enriched.append(EnrichedFeedback(
                **event.model_dump(exclude={"schema_"}),
                sentiment=Sentiment(score=clipped, label=label_for(clipped, self.neutral_band),
                                    model=self.model_id),
                topics=self.taxonomy.tag(event.text),
                tokens=jieba.lcut(event.text, HMM=False),
                enriched_at=now,
            ))
        return enriched
