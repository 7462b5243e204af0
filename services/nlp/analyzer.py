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

from bisect import bisect_right
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from pydantic import TypeAdapter, ValidationError

from services.core.events import (
    MAX_EVIDENCE,
    MAX_TERM,
    MAX_TOKEN_CHARS,
    MAX_TOKENS,
    MAX_TOPIC_TAGS,
    MAX_URGENCY,
    NAME_RULE,
    AspectSentiment,
    EnrichedFeedback,
    Name,
    RawFeedback,
    Sentiment,
    SentimentLabel,
    Span,
    TopicTag,
    UrgencyFlag,
    trusted,
    utc_now,
)
from services.nlp.call_tone import call_tones
from services.nlp.cues import NON_EVALUATIVE_DAMPING, UrgencyCues, intent_of, is_evaluative
from services.nlp.keywords import KeywordExtractor
from services.nlp.segmenter import Segmenter
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


def clause_of(text: str, clauses: list[Span], starts: list[int], position: int) -> Span:
    """The clause holding ``position``; the whole text when it sits on punctuation.

    ``clauses`` are in text order and ``starts`` are their starts: a binary search, because a
    long text has tens of thousands of clauses and as many evidence spans (scanning the
    clauses for each span took 9 minutes for a 1 MB email).
    """
    index = bisect_right(starts, position) - 1
    if index >= 0 and position < clauses[index][1]:
        return clauses[index]
    return (0, len(text))


class Analyzer:
    """Enriches raw events with tokens, sentiment, aspect topics, intent, urgency and keywords.

    Each event's ``analysis_text`` (simplified, markup-free, customer-only) is what is analysed
    when present, while the enriched event keeps the original text; evidence spans point into
    the analysed text. Call events also get the trend of the customer's tone.

    The enriched events are assembled without validating them again (see
    :func:`services.core.events.trusted`): every part comes from a validated raw event or from
    this code, whose output is checked against the schema file by the tests, and re-validating
    cost more CPU per event than all of the analysis did once segmentation moved to Rust.
    """

    def __init__(self, sentiment: SentimentModel, taxonomy: Taxonomy, urgency: UrgencyCues,
                 neutral_band: float, user_dict: Path | None = None) -> None:
        _check_names(taxonomy)
        self.sentiment = sentiment
        self.taxonomy = taxonomy
        self.urgency = urgency
        self.neutral_band = neutral_band
        self.model_id = f"{sentiment.name}-{sentiment.version}"
        self.segmenter = Segmenter(user_dict)
        self.keywords = KeywordExtractor()

    def analyze(self, events: Sequence[RawFeedback]) -> list[EnrichedFeedback]:
        """One enriched event per input event, in the same order.

        The texts and their topic clauses are scored in one model call, because the models
        vectorise over the whole batch.
        """
        if not events:
            return []
        texts = [e.analysis_text or e.text for e in events]
        words = [self.segmenter.cut(text) for text in texts]
        matches = self.taxonomy.tag_many(texts, words)
        clause_spans = [self._topic_clauses(text, found) if found else []
                        for text, found in zip(texts, matches, strict=True)]
        clause_texts = sorted({text[a:b] for text, per_topic in zip(texts, clause_spans, strict=True)
                               for spans in per_topic for a, b in spans})
        scores = self._predict(texts + clause_texts)
        clause_score = dict(zip(clause_texts, scores[len(texts):], strict=True))
        tones = call_tones(events, self.sentiment.predict)
        band = self.neutral_band
        now = utc_now()
        enriched = []
        for event, text, tokens, score, found, per_topic, tone in zip(
                events, texts, words, scores[: len(texts)], matches, clause_spans, tones, strict=True):
            urgency = self.urgency.find(text)
            intent = intent_of(text, label_for(score, band), [u.flag for u in urgency])
            urgency = _bounded_urgency(urgency)
            damping = 1.0 if is_evaluative(intent) else NON_EVALUATIVE_DAMPING
            score *= damping
            topics = [self._topic_tag(text, match, spans, clause_score, damping)
                      for match, spans in zip(found, per_topic, strict=True)]
            keywords = [k[:MAX_TOKEN_CHARS] for k in self.keywords.extract(tokens)]
            fields = event.__dict__.copy()
            fields.update(
                schema_="feedback.enriched.v2",
                sentiment=trusted(Sentiment, score=score, label=label_for(score, band),
                                  model=self.model_id),
                topics=topics[:MAX_TOPIC_TAGS],
                intent=intent,
                urgency=urgency,
                keywords=keywords,
                tokens=[t[:MAX_TOKEN_CHARS] for t in tokens[:MAX_TOKENS]],
                enriched_at=now,
                call_tone=tone,
            )
            enriched.append(trusted(EnrichedFeedback, **fields))
        return enriched

    def _predict(self, texts: list[str]) -> list[float]:
        return [max(-1.0, min(1.0, float(s))) for s in self.sentiment.predict(texts)]

    @staticmethod
    def _topic_clauses(text: str, found: list[TopicMatch]) -> list[list[Span]]:
        """Per topic, the distinct clauses holding its evidence, in text order."""
        clauses = [m.span() for m in CLAUSE.finditer(text)]
        starts = [start for start, _ in clauses]
        return [sorted({clause_of(text, clauses, starts, start) for start, _ in match.evidence})
                for match in found]

    def _topic_tag(self, text: str, match: TopicMatch, spans: list[Span],
                   clause_score: dict[str, float], damping: float) -> TopicTag:
        score = damping * sum(clause_score[text[a:b]] for a, b in spans) / len(spans)
        return trusted(TopicTag, id=match.id, name=match.name,
                       sentiment=trusted(AspectSentiment, score=score,
                                         label=label_for(score, self.neutral_band)),
                       evidence=match.evidence[:MAX_EVIDENCE])


def _bounded_urgency(found: list[UrgencyFlag]) -> list[UrgencyFlag]:
    """Urgency flags within the enriched event's bounds (services/core/events.py): a text that
    repeats a cue thousands of times keeps its first spans, a cue pattern that matched a long
    stretch keeps the start of it, so the event still fits and validates downstream."""
    return [flag if len(flag.term) <= MAX_TERM and len(flag.evidence) <= MAX_EVIDENCE else
            trusted(UrgencyFlag, flag=flag.flag, term=flag.term[:MAX_TERM],
                    evidence=flag.evidence[:MAX_EVIDENCE])
            for flag in found[:MAX_URGENCY]]


def _check_names(taxonomy: Taxonomy) -> None:
    """Topic ids and names travel on every enriched event and reach the dashboard: a taxonomy
    whose names are no names (markup, over 128 characters) is refused when the stage starts,
    not event by event downstream."""
    adapter = TypeAdapter(Name)
    for topic in taxonomy.spec.topics:
        for what, value in (("id", topic.id), ("name", topic.name)):
            try:
                adapter.validate_python(value)
            except ValidationError as exc:
                raise ValueError(f"taxonomy topic {topic.id!r}: {what} {value[:80]!r} is not a "
                                 f"usable name ({exc.errors()[0]['msg']}); {NAME_RULE}") from None
