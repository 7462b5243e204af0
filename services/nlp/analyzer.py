"""The NLP stage's work on a batch of raw events: tokens, sentiment, topics, intent, urgency.

It is plain synchronous code over whole batches: the models vectorise over many texts at once,
and the stream processor runs it off the event loop. Aspect-level polarity scores the clauses
that hold each topic's evidence, all clauses of a batch in the same model call as the texts, so
a mixed review ("菜很好吃，但是配送太慢") gives food a positive and delivery a negative tag.

Questions, suggestions and acknowledgements without grievance cues are not evaluative, but the
review-trained sentiment model has no neutral class and scores them strongly (see
:data:`services.nlp.cues.NON_EVALUATIVE_DAMPING`): their event and aspect scores are damped
towards neutral so that "请问什么时候发货？" does not count as negative feedback.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Protocol

import jieba

from services.core.events import (
    AspectSentiment,
    EnrichedFeedback,
    RawFeedback,
    Sentiment,
    SentimentLabel,
    Span,
    TopicTag,
    utc_now,
)
from services.nlp.cues import NON_EVALUATIVE_DAMPING, UrgencyCues, intent_of, is_evaluative
from services.nlp.keywords import KeywordExtractor
from services.nlp.taxonomy import CLAUSE, Taxonomy, TopicMatch


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


def clause_of(text: str, clauses: list[Span], position: int) -> Span:
    """The clause holding ``position``; the whole text when it sits on punctuation."""
    for start, end in clauses:
        if start <= position < end:
            return (start, end)
    return (0, len(text))


def load_user_dicts(extra: Path | None = None) -> None:
    """Load the shipped domain dictionary into jieba, then a deployment's own (``VOC_JIEBA_USER_DICT``).

    jieba's default dictionary splits contact-center words (12315, 消协, 闪退, 快递员) or does
    not know them, which degrades tokens and keywords. jieba keeps one global dictionary, so
    loading again is harmless: a word's entry is simply overwritten.
    """
    shipped = resources.files(__package__).joinpath("user_dict.txt")
    with resources.as_file(shipped) as path:
        jieba.load_userdict(str(path))
    if extra is not None:
        if not extra.is_file():
            raise ValueError(f"VOC_JIEBA_USER_DICT={extra} is not a file; point it at a jieba "
                             "user dictionary (one `word [freq] [tag]` per line)")
        jieba.load_userdict(str(extra))


class Analyzer:
    """Enriches raw events with tokens, sentiment, aspect topics, intent, urgency and keywords."""

    def __init__(self, sentiment: SentimentModel, taxonomy: Taxonomy, urgency: UrgencyCues,
                 neutral_band: float, user_dict: Path | None = None) -> None:
        self.sentiment = sentiment
        self.taxonomy = taxonomy
        self.urgency = urgency
        self.neutral_band = neutral_band
        self.model_id = f"{sentiment.name}-{sentiment.version}"
        jieba.setLogLevel(30)
        jieba.initialize()
        load_user_dicts(user_dict)
        self.keywords = KeywordExtractor()

    def analyze(self, events: Sequence[RawFeedback]) -> list[EnrichedFeedback]:
        """One enriched event per input event, in the same order."""
        if not events:
            return []
        matches = self.taxonomy.tag_many([e.text for e in events])
        clause_spans = [self._topic_clauses(e.text, m) for e, m in zip(events, matches, strict=True)]
        clause_texts = sorted({e.text[a:b] for e, per_topic in zip(events, clause_spans, strict=True)
                               for spans in per_topic for a, b in spans})
        scores = self._predict([e.text for e in events] + clause_texts)
        clause_score = dict(zip(clause_texts, scores[len(events):], strict=True))
        now = utc_now()
        enriched = []
        for event, score, found, per_topic in zip(events, scores[: len(events)], matches,
                                                  clause_spans, strict=True):
            urgency = self.urgency.find(event.text)
            intent = intent_of(event.text, label_for(score, self.neutral_band), [u.flag for u in urgency])
            damping = 1.0 if is_evaluative(intent) else NON_EVALUATIVE_DAMPING
            score *= damping
            topics = [self._topic_tag(event.text, match, spans, clause_score, damping)
                      for match, spans in zip(found, per_topic, strict=True)]
            tokens = jieba.lcut(event.text, HMM=False)
            enriched.append(EnrichedFeedback(
                **event.model_dump(exclude={"schema_"}),
                sentiment=Sentiment(score=score, label=label_for(score, self.neutral_band),
                                    model=self.model_id),
                topics=topics,
                intent=intent,
                urgency=urgency,
                keywords=self.keywords.extract(tokens),
                tokens=tokens,
                enriched_at=now,
            ))
        return enriched

    def _predict(self, texts: list[str]) -> list[float]:
        return [max(-1.0, min(1.0, float(s))) for s in self.sentiment.predict(texts)]

    @staticmethod
    def _topic_clauses(text: str, found: list[TopicMatch]) -> list[list[Span]]:
        """Per topic, the distinct clauses holding its evidence, in text order."""
        clauses = [m.span() for m in CLAUSE.finditer(text)]
        return [sorted({clause_of(text, clauses, start) for start, _ in match.evidence})
                for match in found]

    def _topic_tag(self, text: str, match: TopicMatch, spans: list[Span],
                   clause_score: dict[str, float], damping: float) -> TopicTag:
        score = damping * sum(clause_score[text[a:b]] for a, b in spans) / len(spans)
        return TopicTag(id=match.id, name=match.name,
                        sentiment=AspectSentiment(score=score, label=label_for(score, self.neutral_band)),
                        evidence=match.evidence)
