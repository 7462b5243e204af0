"""The NLP stage's work on a batch of raw events: tokens, sentiment, topics, intent, urgency.

It is plain synchronous code over whole batches: the models vectorise over many texts at once,
and the stream processor runs it off the event loop. Aspect-level polarity scores the clauses
that hold each topic's evidence, all clauses of a batch in the same model call as the texts, so
a mixed review ("菜很好吃，但是配送太慢") gives food a positive and delivery a negative tag.

The event's sentiment and intent are decided by the stance model (services/nlp/stance.py),
which learns the neutral class: the review-trained sentiment model has none and scores
"请问什么时候发货？" strongly negative, so its scores are only some of the stance model's inputs.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
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
from services.nlp.aspect_tagger import GramMap
from services.nlp.call_tone import call_tones
from services.nlp.cues import UrgencyCues
from services.nlp.effort import read_effort
from services.nlp.keywords import KeywordExtractor
from services.nlp.segmenter import Segmenter
from services.nlp.stance import FEATURES as STANCE_FEATURES
from services.nlp.stance import (
    REFERENCE_BAND,
    Cues,
    Stance,
    StanceModel,
    cues_of,
    decide,
    kept_clauses,
)
from services.nlp.stance import features as stance_features
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
    """Enriches raw events with tokens, sentiment, aspect topics, intent, urgency, effort
    (services/nlp/effort.py) and keywords.

    Each event's ``analysis_text`` (simplified, markup-free, customer-only) is what is analysed
    when present, while the enriched event keeps the original text; evidence spans point into
    the analysed text. Call events also get the trend of the customer's tone.

    The enriched events are assembled without validating them again (see
    :func:`services.core.events.trusted`): every part comes from a validated raw event or from
    this code, whose output is checked against the schema file by the tests, and re-validating
    cost more CPU per event than all of the analysis did once segmentation moved to Rust.
    """

    def __init__(self, sentiment: SentimentModel, taxonomy: Taxonomy, urgency: UrgencyCues,
                 neutral_band: float, user_dict: Path | None = None,
                 stance: StanceModel | None = None) -> None:
        _check_names(taxonomy)
        self.stance = stance or StanceModel.load()
        self.sentiment = sentiment
        self.urgency = urgency
        self._tagging = self._tagging_with(taxonomy)
        self.neutral_band = neutral_band
        self.model_id = f"{sentiment.name}-{sentiment.version}"
        self.segmenter = Segmenter(user_dict)
        self.keywords = KeywordExtractor()

    @property
    def taxonomy(self) -> Taxonomy:
        """The taxonomy the next batch is tagged with (:meth:`use_taxonomy` replaces it)."""
        return self._tagging[0]

    def use_taxonomy(self, taxonomy: Taxonomy) -> None:
        """Tag with ``taxonomy`` from the next batch on (a reloaded taxonomy file)."""
        _check_names(taxonomy)
        self._tagging = self._tagging_with(taxonomy)

    def _tagging_with(self, taxonomy: Taxonomy) -> tuple[Taxonomy, bool, GramMap | None]:
        """The taxonomy, with what of its learned tagger's pass over a batch the other models
        read instead of the texts (docs/model-card.md, "Round 13"): whether the stance model's
        n-gram features are the tagger's char n-gram features
        (:meth:`StanceModel.reads_grams_of`), and how the urgency scorer's are found in it
        (:meth:`UrgencyCues.gram_map`). Each is one reading of every text less."""
        tagger = taxonomy.tagger
        stance_reads = tagger is not None and self.stance.reads_grams_of(
            tagger.vocabulary[: tagger.n_char], tagger.idf[: tagger.n_char], tagger.max_n, tagger.max_chars)
        return taxonomy, stance_reads, self.urgency.gram_map(tagger)

    def analyze(self, events: Sequence[RawFeedback]) -> list[EnrichedFeedback]:
        """One enriched event per input event, in the same order.

        The texts, their clauses and their topic clauses are scored in one model call, because
        the models vectorise over the whole batch. An email reply is analysed without its
        subject line (see :func:`own_start`); every span still indexes the whole analysed text.
        """
        if not events:
            return []
        full = [e.analysis_text or e.text for e in events]
        starts = [own_start(e, text) for e, text in zip(events, full, strict=True)]
        texts = [text[start:] for text, start in zip(full, starts, strict=True)]
        words = [self.segmenter.cut(text) for text in texts]
        # The taxonomy and what the other models read of its tagger's pass, as one tuple: a
        # reload (use_taxonomy) meanwhile cannot mix one taxonomy with another's.
        taxonomy, stance_reads_tagger, urgency_grams = self._tagging
        matches, scan = taxonomy.tag_scanned(texts, words)
        found_urgency = [self.urgency.find(text) for text in texts]
        clause_spans = [[m.span() for m in CLAUSE.finditer(text)] for text in texts]
        topic_spans = [self._topic_clauses(text, clauses, found) if found else []
                       for text, clauses, found in zip(texts, clause_spans, matches, strict=True)]
        read_spans = [kept_clauses(clauses) for clauses in clause_spans]
        text_scores, clause_score = self._score(texts, read_spans, topic_spans)
        flags: list[list[str]] = [[u.flag for u in found] for found in found_urgency]
        cues = [cues_of(text) for text in texts]
        rows = _stance_rows(texts, text_scores, read_spans, clause_score, flags, cues)
        stances = decide(self.stance, rows, texts, flags, cues,
                         scan.char if scan is not None and stance_reads_tagger else None)
        # The stance model is fitted on the cue matches (stance_inputs); the scorer's
        # decision is what the event carries.
        found_urgency = self.urgency.decide(texts, found_urgency, scan, urgency_grams)
        tones = call_tones(events, self.sentiment.predict)
        now = utc_now()
        enriched = []
        for event, text, start, tokens, stance, found, per_topic, urgency, tone in zip(
                events, texts, starts, words, stances, matches, topic_spans, found_urgency, tones,
                strict=True):
            topics = [self._topic_tag(text, start, match, spans, clause_score, stance)
                      for match, spans in zip(found, per_topic, strict=True)]
            keywords = [k[:MAX_TOKEN_CHARS] for k in self.keywords.extract(tokens)]
            fields = event.__dict__.copy()
            fields.update(
                schema_="feedback.enriched.v2",
                sentiment=trusted(Sentiment, score=stance.score,
                                  label=label_for(stance.score, self.neutral_band),
                                  model=self.model_id),
                topics=topics[:MAX_TOPIC_TAGS],
                intent=stance.intent,
                urgency=_bounded_urgency(_shifted_urgency(urgency, start)),
                keywords=keywords,
                tokens=_bounded_tokens(tokens),
                enriched_at=now,
                call_tone=tone,
                effort=read_effort(text, start),
            )
            enriched.append(trusted(EnrichedFeedback, **fields))
        return enriched

    def stance_inputs(self, events: Sequence[RawFeedback]) -> tuple[np.ndarray, list[str], list[list[str]]]:
        """The stance model's feature rows for events, with their analysed texts and urgency
        flags, computed as :meth:`analyze` computes them (for fitting the stance model)."""
        texts = [(e.analysis_text or e.text)[own_start(e, e.analysis_text or e.text):] for e in events]
        flags: list[list[str]] = [[u.flag for u in self.urgency.find(text)] for text in texts]
        read_spans = [kept_clauses([m.span() for m in CLAUSE.finditer(text)]) for text in texts]
        text_scores, clause_score = self._score(texts, read_spans, [[] for _ in texts])
        cues = [cues_of(text) for text in texts]
        return _stance_rows(texts, text_scores, read_spans, clause_score, flags, cues), texts, flags

    def _score(self, texts: list[str], read_spans: list[list[Span]], topic_spans: list[list[list[Span]]]
               ) -> tuple[list[float], dict[str, float]]:
        """The model's score of each text and of each clause read or holding topic evidence, in
        one call. A text of one clause is scored as a whole already; its clause is not scored
        again, and :meth:`analyze` and :meth:`stance_inputs` share this so the stance model is
        fitted on the scores it is applied to."""
        clause_texts = sorted({text[a:b] for text, per_topic, read in zip(
            texts, topic_spans, read_spans, strict=True)
            for a, b in [*(read if len(read) > 1 else ()), *(span for spans in per_topic for span in spans)]
            if len(read) > 1 or (a, b) not in read})
        single = {text[a:b]: i for i, (text, read) in enumerate(zip(texts, read_spans, strict=True))
                  if len(read) == 1 for a, b in read}
        scores = self._predict(texts + clause_texts)
        clause_score = {clause: scores[i] for clause, i in single.items()}
        clause_score.update(zip(clause_texts, scores[len(texts):], strict=True))
        return scores[: len(texts)], clause_score

    def _predict(self, texts: list[str]) -> list[float]:
        scores: list[float] = np.clip(np.asarray(self.sentiment.predict(texts), dtype=np.float64),
                                      -1.0, 1.0).tolist()
        return scores

    @staticmethod
    def _topic_clauses(text: str, clauses: list[Span], found: list[TopicMatch]) -> list[list[Span]]:
        """Per topic, the distinct clauses holding its evidence, in text order."""
        starts = [start for start, _ in clauses]
        return [sorted({clause_of(text, clauses, starts, start) for start, _ in match.evidence})
                for match in found]

    def _topic_tag(self, text: str, start: int, match: TopicMatch, spans: list[Span],
                   clause_score: dict[str, float], stance: Stance) -> TopicTag:
        """A topic with its own polarity: the mean score of the clauses holding its evidence.

        The polarity of a clause counts as much as the event is evaluative (1 - P(neutral) of
        the stance model), and a non-evaluative event's topics stay inside the neutral band:
        请问什么时候发货 says nothing good or bad about delivery. In a sarcastic complaint the
        clause's praise words are read as the complaint they are.
        """
        score = sum(clause_score[text[a:b]] for a, b in spans) / len(spans)
        weight = 1.0 - stance.neutral
        if stance.label == "neutral":
            weight = min(weight, 0.999 * REFERENCE_BAND)
        score *= weight
        if stance.intent == "complaint" and stance.sarcasm:
            score = -abs(score)
        return trusted(TopicTag, id=match.id, name=match.name,
                       sentiment=trusted(AspectSentiment, score=score,
                                         label=label_for(score, self.neutral_band)),
                       evidence=[(a + start, b + start) for a, b in match.evidence[:MAX_EVIDENCE]]
                       if start else match.evidence[:MAX_EVIDENCE])


_REPLY_SUBJECT = re.compile(r"^\s*(?:回复|回覆|回復|答复|答覆|Re|RE|re|Fw|FW|Fwd|FWD|fwd|转发|轉寄|轉發)\s*[:：]")


def own_start(event: RawFeedback, text: str) -> int:
    """Where the customer's own words start in an event's analysed text.

    Ingest puts an email's subject on the first line of its analysed text, which is right for
    a new message (主题：快递丢件 / 如题) but not for a reply: 回复：宽带故障多次报修未解决 over
    已受理，请等待 is the old complaint's subject, and read with it the acknowledgement became
    a complaint with four topics. So a reply's or forward's subject line is skipped.
    """
    if event.email is None or not _REPLY_SUBJECT.match(event.email.subject):
        return 0
    line, newline, rest = text.partition("\n")
    return len(line) + 1 if newline and rest.strip() else 0


def _stance_rows(texts: Sequence[str], scores: Sequence[float], read_spans: Sequence[list[Span]],
                 clause_score: dict[str, float], flags: Sequence[list[str]],
                 cues: Sequence[Cues]) -> np.ndarray:
    rows = []
    for text, score, read, flagged, kind in zip(texts, scores, read_spans, flags, cues, strict=True):
        clauses = [text[a:b] for a, b in read]
        rows.append(stance_features(text, score, clauses, [clause_score.get(c, score) for c in clauses],
                                    any(f != "churn_intent" for f in flagged), kind))
    return np.array(rows, dtype=np.float64) if rows else np.zeros((0, len(STANCE_FEATURES)))


def _bounded_tokens(tokens: list[str]) -> list[str]:
    """The first :data:`MAX_TOKENS` tokens, each cut to :data:`MAX_TOKEN_CHARS`; one pass in C
    finds that none is too long, as in nearly every event."""
    kept = tokens[:MAX_TOKENS]
    if not kept or max(map(len, kept)) <= MAX_TOKEN_CHARS:
        return kept
    return [t[:MAX_TOKEN_CHARS] for t in kept]


def _shifted_urgency(found: list[UrgencyFlag], start: int) -> list[UrgencyFlag]:
    if not start:
        return found
    return [trusted(UrgencyFlag, flag=flag.flag, term=flag.term,
                    evidence=[(a + start, b + start) for a, b in flag.evidence]) for flag in found]


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
