"""A learned multi-label topic (aspect) tagger, and its combination with the keyword taxonomy.

Keyword lists are transparent and editable but miss paraphrases (held-out micro-F1 about 0.75
on the public aspect corpora), while a linear model over n-grams learns them from labelled
examples. The model here is one logistic regression per topic over sublinear TF-IDF character
1-2-grams, normalised as for the sentiment model, plus the words of the rjieba segmenter
(:class:`~services.nlp.segmenter.Segmenter`, shipped dictionary only), each feature scaled for
that topic by its naive Bayes log-count ratio (NB-LR, Wang & Manning 2012), with a per-topic
decision threshold chosen on out-of-fold scores of the training part: a fixed 0.5 cut
under-predicts rare topics and over-predicts near-universal ones. The shipped weights are the mean of the fold
models that produced those scores. These settings were chosen by cross-validation on training
data only (``bench/topics_eval.py --cv``, see docs/model-card.md).

Prediction is numpy only (plus rjieba for the words) and the artifact is plain arrays (``.npz``)
plus JSON, as for the sentiment model, so shipping a tagger never depends on scikit-learn or on
pickles. scikit-learn is needed only by :func:`train_tagger`. Artifacts of version 1.0.0 (char
n-grams only, no ``word_n`` in their JSON) still load and predict as before. The NB ratios are
folded into the saved weights, so NB-LR artifacts (1.2.0) have the same format and prediction
cost as plain ones (1.1.0).

Keywords and the model are combined per topic by late fusion: a keyword hit adds a per-topic
weight to the model's margin, and the weight and the fused threshold are chosen together on the
same out-of-fold scores (weight 0 means the model alone decides; a large weight means a keyword
hit alone suffices), for the micro-F1 of all topics together. A model learns nothing reliable
from a handful of examples, so :meth:`AspectTagger.combine` lets the keyword taxonomy alone
decide every topic whose training support is below ``MIN_EXAMPLES``, and every topic the model
does not know (added to the YAML after training).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.abc import Traversable
from itertools import chain, islice, repeat
from pathlib import Path
from typing import Any

import numpy as np

from services.nlp.located import Located, Stretch, locate
from services.nlp.segmenter import Segmenter
from services.nlp.sentiment_model import (
    NgramIndex,
    char_ngrams,
    counted_pairs,
    normalise,
    read_arrays,
    write_arrays,
)
from services.nlp.word_classes import CLASS_MARK, WordClasses, classes_of

ARTIFACT_WEIGHTS = "aspect_tagger.npz"
ARTIFACT_PARAMS = "aspect_tagger.json"
MODEL_VERSION = "1.2.0"

WORD_JOIN = "\t"
"""Joins the words of a word n-gram: :func:`normalise` turns tabs into spaces, so no word holds one."""

_WORD_MARK = "\n"
"""Marks word n-grams among char n-grams while scikit-learn builds the joint vocabulary (no
normalised text holds a newline); it is stripped before anything is saved."""

MIN_EXAMPLES = 30
"""Topics with fewer positive training examples than this are decided by keywords in
:meth:`AspectTagger.combine`. Below about 30 examples the out-of-fold threshold is set from two or three
positives per fold and the model's figures swing widely; on the makeup corpus this covers
尺寸 (size) and 新鲜度 (freshness), whose keyword lists are nearly exact."""


@dataclass(frozen=True)
class AspectExample:
    """One labelled row of an ``aspect_*_dev.jsonl`` file, with topics already as taxonomy ids."""

    id: str
    text: str
    topics: tuple[str, ...]


def read_aspect_examples(path: str | Path, id_of: Mapping[str, str]) -> list[AspectExample]:
    """Rows of an aspect JSONL file, each dataset aspect name mapped to a topic id by ``id_of``.

    The datasets name aspects in Chinese (价格) or with ids that are not taxonomy ids, while the
    tagger and the taxonomy speak in ids; an aspect missing from ``id_of`` is an error rather
    than silently dropped, so a taxonomy that forgets an aspect cannot inflate the scores.
    """
    examples = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            row = json.loads(line)
            unknown = [a for a in row["aspects"] if a not in id_of]
            if unknown:
                raise ValueError(f"{path}: aspects {unknown} have no topic id")
            topics = tuple(sorted({id_of[a] for a in row["aspects"]}))
            examples.append(AspectExample(id=row["id"], text=row["text"], topics=topics))
    return examples


def word_ngrams(words: Sequence[str], max_n: int) -> list[str]:
    """Word 1..max_n-grams of a segmented, normalised text, whitespace tokens dropped.

    Words add what char n-grams of length 1-3 cannot see: which characters belong together
    (空间 the word, not 空 + 间 across a word boundary) and two-word phrases longer than 3
    characters (后排 空间). Training and prediction both call this one function.
    """
    kept = [w for w in words if not w.isspace()]
    if max_n == 1:
        # The join of one word is the word: the common setting, on the NLP stage's hot path.
        return kept
    return [WORD_JOIN.join(kept[i : i + n]) for n in range(1, max_n + 1) for i in range(len(kept) - n + 1)]


def topic_strata(examples: Sequence[AspectExample]) -> list[str]:
    """Each row's rarest topic ("" for none), the strata of ``holdout_mask`` for topic data.

    Stratifying by the rarest topic keeps topics with a dozen examples represented on both
    sides of the split.
    """
    counts: dict[str, int] = {}
    for ex in examples:
        for t in ex.topics:
            counts[t] = counts.get(t, 0) + 1
    return [min(ex.topics, key=lambda t: (counts[t], t)) if ex.topics else "" for ex in examples]


def f1_scores(gold: Sequence[Iterable[str]], predicted: Sequence[Iterable[str]]) -> dict[str, Any]:
    """Micro-F1, macro-F1 (over topics present in gold or predictions) and per-topic F1."""
    tp: dict[str, int] = {}
    fp: dict[str, int] = {}
    fn: dict[str, int] = {}
    for g, p in zip(gold, predicted, strict=True):
        gs, ps = set(g), set(p)
        for t in gs & ps:
            tp[t] = tp.get(t, 0) + 1
        for t in ps - gs:
            fp[t] = fp.get(t, 0) + 1
        for t in gs - ps:
            fn[t] = fn.get(t, 0) + 1

    def f1(a: int, b: int, c: int) -> float:
        return 2 * a / (2 * a + b + c) if a + b + c else 0.0

    topics = sorted({*tp, *fp, *fn})
    per_topic = {t: f1(tp.get(t, 0), fp.get(t, 0), fn.get(t, 0)) for t in topics}
    micro = f1(sum(tp.values()), sum(fp.values()), sum(fn.values()))
    macro = float(np.mean(list(per_topic.values()))) if per_topic else 0.0
    return {"micro_f1": micro, "macro_f1": macro, "per_topic_f1": per_topic}


EVIDENCE_SHARE = 0.5
"""An n-gram joins a flag's one evidence span (:meth:`AspectTagger.evidence_span`, the urgency
scorer's) when it raises the margin at least this share as much as the strongest one does."""
EVIDENCE_MAX = 32
"""Longest evidence span, in characters, grown from a model-only topic's strongest n-gram."""

EVIDENCE_FIT = {"share": 0.15, "clause_slack": 0.25, "clauses_max": 8}
"""Where a learned topic's evidence goes (:meth:`AspectTagger.evidence_spans` and
services/nlp/taxonomy.py): n-grams contributing at least ``share`` of the clause's strongest,
in the best clause and in every clause the model alone scores at least the topic's fused cut
minus ``clause_slack``, at most ``clauses_max`` clauses. Saved in the artifact; chosen by
``bench/train_topics.py evidence`` (LOAO, docs/model-card.md "Round 4"); an artifact without
them uses these."""

CLAUSE_SPLIT = re.compile(r"[^，。！？；,.!?;~～\n、：:\s]+")
"""A clause the model reads on its own: a run between sentence or clause punctuation, enumeration
commas, colons and white space (a call transcript's pauses are spaces). The one splitter of the
per-clause decision (:meth:`AspectTagger.clause_margins`) and of learned evidence
(services/nlp/taxonomy.py). Linear: each match is a maximal run of one character class."""

SENTENCE_SPLIT = re.compile(r"[^\n，。！？；,.!?;~～]+")
"""A clause between sentence and clause punctuation only: the class of services/nlp/taxonomy.py's
``CLAUSE``, written in another order so that it is a pattern object of its own (``re`` caches
by text) and the linear-time test finds both. Linear, as :data:`CLAUSE_SPLIT`."""

CLAUSE_SPLITS = {"fine": CLAUSE_SPLIT, "sentence": SENTENCE_SPLIT}
"""The clause splitters a per-clause decision may use (``clause_split`` in the artifact):
``fine`` is :data:`CLAUSE_SPLIT`; ``sentence`` splits at sentence and clause punctuation only
(a call turn between pauses stays one clause). Both linear."""

CLAUSE_CAP = 64
"""Most clauses of one text the per-clause decision scores alone (the first ones, in text
order, within the first ``max_chars`` characters the whole-text pass reads): past them a text's
topics rest on its whole-text margin, so a text of thousands of tiny clauses costs what 64
clauses do on top of the whole-text pass, and a long one no more characters than that pass."""

CLAUSE_MIXES = (0.0, 0.25, 0.5, 0.75, 1.0)
"""Candidate shares of the best clause's lead over the whole-text margin (per topic, chosen on
LOAO margins by :func:`services.nlp.cem_tagger.tune_clause_fusion`)."""

KEYWORD_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 100.0)
"""Candidate margin bonuses of a keyword hit, tried per topic on out-of-fold scores."""

KEYWORDS_ONLY = (1e6, 5e5)
"""Bonus and threshold that make a keyword hit the whole decision (margins stay far below
5e5), the last candidate of the fusion: on some topics the hand-written list beats the model."""


@dataclass(frozen=True)
class TextScan:
    """:meth:`AspectTagger.scan` of a batch: its margins, and what its clauses are weighed from:
    its char n-grams (:class:`~services.nlp.located.Located`) and its words, numbered across the
    batch text after text, each word's start and end in the batch's offsets and its columns as
    (word, column) pairs."""

    margins: np.ndarray
    has_evidence: np.ndarray
    located: Located
    word_starts: np.ndarray
    word_ends: np.ndarray
    pair_words: np.ndarray
    pair_columns: np.ndarray
    spelt: np.ndarray
    """Per text: its words spell its head (so its clauses' words are a run of them)."""
    char: tuple[np.ndarray, np.ndarray, np.ndarray]
    """The texts' char n-gram features, unnormalised sublinear TF-IDF as (row, column, value)
    triples (:meth:`NgramIndex.weighed`): what a model with the same char vocabulary and IDF
    reads from these texts (:meth:`services.nlp.stance.StanceModel.reads_grams_of`)."""


@dataclass(frozen=True)
class ClauseScan:
    """:meth:`AspectTagger.read_clauses`: each clause's text and margins, and its n-grams, rows
    ``bounds[k]`` of (start within the clause, end, vocabulary column)."""

    texts: list[str]
    margins: np.ndarray
    bounds: dict[int, tuple[int, int]]
    starts: np.ndarray
    ends: np.ndarray
    columns: np.ndarray


@dataclass(frozen=True)
class GramMap:
    """How one tagger's features are read from another tagger's pass over a batch
    (:meth:`AspectTagger.gram_map`, :meth:`AspectTagger.read_margins`): for each rank of the
    other's char n-gram index this one's rank, and for each word column of the other (less its
    ``n_char``) this one's column; -1 where this one has no such feature."""

    char_ranks: np.ndarray
    word_columns: np.ndarray
    source_chars: int
    """The other tagger's ``n_char``, where its word columns start."""


class AspectTagger:
    """One linear decision per topic over sublinear TF-IDF char and word n-grams, L2-normalised.

    ``vocabulary`` holds the ``n_char`` char n-grams first, then the word n-grams (words joined
    by :data:`WORD_JOIN`; none when ``word_n`` is 0) and, with ``word_classes``, the class tokens
    of the words (services/nlp/word_classes.py). Both kinds share one TF-IDF row and one
    L2 norm, as in training. ``weights`` has one column per topic; on its own the model predicts
    a topic when its margin reaches ``thresholds``. Combined with keywords, a topic is predicted
    when the margin plus ``keyword_weights`` (if a keyword of the topic matched) reaches
    ``fused_thresholds``. ``support`` is the number of positive training examples per topic,
    kept in the artifact so that a loaded model knows which topics it may decide.
    ``at_least_one`` is set when every training text carried a topic (true of the public aspect
    corpora, whose rows were selected because they discuss an aspect): the combined decision
    then never leaves a text untagged but falls back to the learned topic closest to its fused
    threshold.
    """

    name = "char-ngram-ovr-logreg"

    def __init__(
        self,
        topics: list[str],
        vocabulary: list[str],
        idf: np.ndarray,
        weights: np.ndarray,
        intercepts: np.ndarray,
        thresholds: np.ndarray,
        keyword_weights: np.ndarray,
        fused_thresholds: np.ndarray,
        support: Mapping[str, int],
        max_n: int,
        max_chars: int,
        at_least_one: bool = False,
        version: str = MODEL_VERSION,
        word_n: int = 0,
        n_char: int | None = None,
        evidence: Mapping[str, float] | None = None,
        clause_mix: Sequence[float] | None = None,
        clause_cap: int = CLAUSE_CAP,
        clause_split: str = "fine",
        word_classes: Mapping[str, Any] | None = None,
    ) -> None:
        self.topics = list(topics)
        self.vocabulary = list(vocabulary)
        self.idf = np.asarray(idf, dtype=np.float64)
        self.weights = np.asarray(weights, dtype=np.float64).reshape(len(self.vocabulary), len(self.topics))
        self.intercepts = np.asarray(intercepts, dtype=np.float64)
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        self.keyword_weights = np.asarray(keyword_weights, dtype=np.float64)
        self.fused_thresholds = np.asarray(fused_thresholds, dtype=np.float64)
        self.support = {t: int(support.get(t, 0)) for t in self.topics}
        self.max_n = max_n
        self.max_chars = max_chars
        self.at_least_one = at_least_one
        self.version = version
        self.word_n = word_n
        self.n_char = len(self.vocabulary) if n_char is None else n_char
        self._index = NgramIndex(self.vocabulary[: self.n_char], max_n, max_chars)
        self._word_column = {g: self.n_char + j for j, g in enumerate(self.vocabulary[self.n_char:])}
        # Segmentation is the tagger's own (shipped dictionary only), so prediction sees the same
        # words as training whatever user dictionary a deployment loads for its tokens.
        self._segmenter = Segmenter() if word_n else None
        self.evidence = {**EVIDENCE_FIT, **(evidence or {})}
        self.clause_mix = None if clause_mix is None else np.asarray(clause_mix, dtype=np.float64)
        self.clause_cap = clause_cap
        if clause_split not in CLAUSE_SPLITS:
            raise ValueError(f"clause_split={clause_split!r}: choose one of {sorted(CLAUSE_SPLITS)}")
        self.clause_split = clause_split
        if word_classes and not word_n:
            raise ValueError("word_classes needs words: set word_n to 1 or more")
        self.word_classes = dict(word_classes) if word_classes else None
        classes = classes_of(self.word_classes)
        self._class_columns = None if classes is None else classes.columns(self._word_column)
        self._word_and_classes: dict[str, tuple[int, ...]] | None = None
        if self._class_columns is not None and word_n == 1:
            # Single words: a word's own column and its classes' in one look-up (the hot path).
            joint: dict[str, tuple[int, ...]] = {w: (j,) for w, j in self._word_column.items()
                                                 if not w.startswith(CLASS_MARK)}
            for word, cols in self._class_columns.items():
                joint[word] = joint.get(word, ()) + cols
            self._word_and_classes = joint

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        """Margins, shape (len(texts), len(topics)); the intercepts alone for texts with no known n-gram."""
        return self._margins(texts)[0]

    def _word_pairs(self, words: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(word, column) pairs of single words: each word's own column and its classes'
        (word_n 1), looked up in one pass in C."""
        if self._word_and_classes is not None:
            found = list(map(self._word_and_classes.get, words, repeat(())))
            return _pairs(found)
        columns = np.fromiter(map(self._word_column.get, words, repeat(-1)), dtype=np.int64, count=len(words))
        at = np.flatnonzero(columns >= 0)
        if self._class_columns is None:
            return at, columns[at]
        # The columns of the words' class tokens (WordClasses.tokens), one look-up a word.
        class_words, class_columns = _pairs(list(map(self._class_columns.get, words, repeat(()))))
        return np.concatenate((at, class_words)), np.concatenate((columns[at], class_columns))

    def _word_tfidf(self, words_of: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unnormalised sublinear TF-IDF of the known word n-grams, as (row, column, value)
        triples, of texts given by their words (the segmenter's, of texts normalised and cut to
        ``max_chars`` already)."""
        if self.word_n == 1:
            flat = list(chain.from_iterable(words_of))
            words, cols = self._word_pairs(flat)
            return self._word_weighed(np.repeat(np.arange(len(words_of), dtype=np.int64),
                                                [len(w) for w in words_of])[words], cols)
        grams_of = [word_ngrams(words, self.word_n) for words in words_of]
        found = np.fromiter(map(self._word_column.get, chain.from_iterable(grams_of), repeat(-1)),
                            dtype=np.int64)
        known = found >= 0
        rows = np.repeat(np.arange(len(words_of), dtype=np.int64), [len(g) for g in grams_of])[known]
        cols = found[known]
        if self._class_columns is not None:
            class_rows, class_cols = _pairs([list(chain.from_iterable(
                map(self._class_columns.get, words, repeat(())))) for words in words_of])
            rows, cols = np.concatenate((rows, class_rows)), np.concatenate((cols, class_cols))
        return self._word_weighed(rows, cols)

    def _word_weighed(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sublinear TF-IDF triples of (row, word column) pairs: counted sorted (np.unique), so
        the order they were found in is moot."""
        return counted_pairs(rows, cols, len(self.vocabulary), self.idf)

    def gram_map(self, other: AspectTagger) -> GramMap | None:
        """How this tagger's features of a batch are read from ``other``'s pass over it
        (:meth:`scan`), or None when they cannot be. They can when every feature of this one is
        one the pass finds: each char n-gram of this vocabulary is one of ``other``'s, of at most
        its length, cut at the same ``max_chars`` (both read the normalised text); each word is
        one of ``other``'s single words (same segmenter, the shipped dictionary), without word
        classes here. The shipped urgency scorer and topic tagger are fitted on the same texts
        with the same ``min_df``, and the scorer's n-grams are up to 2 characters long, the
        tagger's up to 3: its features are a part of the tagger's."""
        if (self.max_n > other.max_n or self.max_chars != other.max_chars or self.word_n not in (0, 1)
                or (self.word_n and (other.word_n != 1 or self.word_classes is not None))):
            return None
        column = {gram: j for j, gram in enumerate(self.vocabulary[: self.n_char])}
        if not (column.keys() <= set(other.vocabulary[: other.n_char])
                and set(self.vocabulary[self.n_char:]) <= set(other.vocabulary[other.n_char:])):
            return None
        own_rank = np.empty(len(self._index.order), dtype=np.int64)
        own_rank[self._index.order] = np.arange(len(self._index.order))
        char_ranks = np.array([own_rank[j] if (j := column.get(other.vocabulary[c], -1)) >= 0 else -1
                               for c in other._index.order.tolist()], dtype=np.int64)
        word_columns = np.fromiter((self._word_column.get(w, -1) for w in other.vocabulary[other.n_char:]),
                                   dtype=np.int64, count=len(other.vocabulary) - other.n_char)
        return GramMap(char_ranks=char_ranks, word_columns=word_columns, source_chars=other.n_char)

    def read_margins(self, scan: TextScan, grams: GramMap) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_margins` of the texts another tagger scanned (``scan``, its :meth:`scan`), from
        the n-grams and words that pass found, mapped by ``grams`` (:meth:`gram_map`): the same
        features, counted the same way, so the same margins to the bit, without reading,
        normalising, segmenting or looking up the texts again."""
        located = scan.located
        ranks = grams.char_ranks[located.gram_ranks]
        kept = ranks >= 0
        char = self._index.weighed((located.grams_at // located.stride)[kept], ranks[kept], self.idf)
        word = None
        if self.word_n:
            columns = grams.word_columns[scan.pair_columns - grams.source_chars]
            kept = columns >= 0
            # A word's start in the batch's offsets is its text's number times the stride plus
            # its start in the text's head, which is shorter than the stride.
            word = self._word_weighed(scan.word_starts[scan.pair_words[kept]] // located.stride, columns[kept])
        return self._score(len(located.texts), char, word)

    def _margins(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Margins and a has-any-known-n-gram mask per text.

        Features are the sublinear TF-IDF rows of the training vectorizer, L2-normalised, looked
        up for the whole batch at once: char n-grams by the same vectorised index as the
        sentiment model, word n-grams by a dictionary over the segmenter's words.
        """
        # Normalised once for both kinds of n-grams.
        heads = [normalise(t)[: self.max_chars] for t in texts]
        words = None if self._segmenter is None else [self._segmenter.cut(h) for h in heads]
        return self._score(len(texts), self._index.counted(heads, self.idf),
                           None if words is None else self._word_tfidf(words))

    def _score(self, n: int, char: tuple[np.ndarray, np.ndarray, np.ndarray],
               word: tuple[np.ndarray, np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
        """Margins and a has-any-known-n-gram mask of ``n`` rows from their char and word
        (row, column, TF-IDF) triples, each sorted by row."""
        rows, cols, tfidf = char
        if word is not None:
            word_rows, word_cols, word_tfidf = word
            order = np.argsort(np.concatenate((rows, word_rows)), kind="stable")
            rows = np.concatenate((rows, word_rows))[order]
            cols = np.concatenate((cols, word_cols))[order]
            tfidf = np.concatenate((tfidf, word_tfidf))[order]
        norm = np.sqrt(np.bincount(rows, weights=tfidf * tfidf, minlength=n))
        values = tfidf / norm[rows]
        scores = np.zeros((n, len(self.topics)))
        if len(rows):
            # rows are sorted, so each text's n-grams are one contiguous run, starting where the
            # row changes (np.unique would sort the sorted rows again).
            starts = np.flatnonzero(np.concatenate(([True], rows[1:] != rows[:-1])))
            present = rows[starts]
            # Scaled in place: the rows gathered are a fresh array of megabytes per batch, and a
            # second one for the products cost its allocation (the products are the same).
            # ``take`` gathers whole rows about six times faster than indexing with ``[cols]``
            # (numpy 2.4), the same values.
            contributions = self.weights.take(cols, axis=0)
            contributions *= values[:, None]
            scores[present] = np.add.reduceat(contributions, starts, axis=0)
        return scores + self.intercepts, norm > 0

    def scan(self, texts: Sequence[str]) -> TextScan:
        """The whole-text pass of :meth:`combine` over a batch, kept for its clauses: the
        margins, where each known char n-gram and each word sits, and the words' columns, from
        which :meth:`read_clauses` weighs clauses (margins and n-grams) without reading
        them again (the evidence of learned topics scores every clause of most texts; reading,
        segmenting and looking up each clause anew was a quarter of the NLP stage's CPU).
        A tagger without single words (``word_n`` 0 or above 1) reads its clauses anew."""
        located = locate(self._index, texts)
        char = self._index.weighed(located.grams_at // located.stride, located.gram_ranks, self.idf)
        if self._segmenter is None or self.word_n != 1:
            words = None if self._segmenter is None else self._word_tfidf(
                [self._segmenter.cut(h) for h in located.heads])
            margins, has_evidence = self._score(len(texts), char, words)
            none = np.zeros(0, dtype=np.int64)
            return TextScan(margins=margins, has_evidence=has_evidence, located=located, word_starts=none,
                            word_ends=none, pair_words=none, pair_columns=none,
                            spelt=np.zeros(len(texts), dtype=bool), char=char)
        words_of = [self._segmenter.cut(h) for h in located.heads]
        flat = list(chain.from_iterable(words_of))
        counts = np.array([len(w) for w in words_of], dtype=np.int64)
        text_of_word = np.repeat(np.arange(len(texts), dtype=np.int64), counts)
        lengths = np.fromiter(map(len, flat), dtype=np.int64, count=len(flat))
        total = np.concatenate(([0], np.cumsum(lengths)))
        first = total[np.concatenate(([0], np.cumsum(counts)))]
        word_ends = total[1:] - first[text_of_word] + text_of_word * located.stride
        pair_words, pair_columns = self._word_pairs(flat)
        margins, has_evidence = self._score(len(texts), char,
                                            self._word_weighed(text_of_word[pair_words], pair_columns))
        spelt = np.diff(first) == np.fromiter(map(len, located.heads), dtype=np.int64, count=len(texts))
        return TextScan(margins=margins, has_evidence=has_evidence, located=located,
                        word_starts=word_ends - lengths, word_ends=word_ends, pair_words=pair_words,
                        pair_columns=pair_columns, spelt=spelt, char=char)

    @staticmethod
    def _clause_sites(scan: TextScan, clauses: Sequence[Stretch]
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Where each (text, [start, end)) clause sits in the scan, as arrays: its start and end
        in the batch's offsets (:meth:`Located.sites`), its first and last word's numbers, and
        whether it is weighed from the scan at all (:meth:`Located.sites` allows it, and its
        edges are word edges of words that spell its text's head).

        A clause of :data:`CLAUSE_SPLIT` holds no white space, so its char n-grams are the
        head's that lie inside it (services/nlp/located.py). Its words are the head's too: the
        characters it is split at are ones no dictionary word holds, where the segmenter's best
        route must break, so cutting the clause alone gives the words the whole text has there
        (tests/unit/test_learned_tagging.py checks both against reading the clauses, and that the
        dictionaries hold no such word).
        """
        lows, highs, ok = scan.located.sites(clauses)
        words = len(scan.word_starts)
        first = np.searchsorted(scan.word_starts, lows)
        last = np.searchsorted(scan.word_ends, highs)
        texts = np.fromiter((i for i, _ in clauses), dtype=np.int64, count=len(clauses))
        ok &= scan.spelt[texts] & (first < words) & (last < words)
        ok[ok] = (scan.word_starts[first[ok]] == lows[ok]) & (scan.word_ends[last[ok]] == highs[ok])
        return lows, highs, first, last, ok

    def read_clauses(self, scan: TextScan, clauses: Sequence[Stretch]) -> ClauseScan:
        """Each (text, [start, end)) clause of the scanned texts (distinct clauses of
        :data:`CLAUSE_SPLIT`): its :meth:`decision_function` margins and its n-grams as
        :meth:`evidence_spans_batch` reads them, the same bits, weighed from the scan where
        :meth:`_clause_sites` allows and read anew elsewhere."""
        margins = np.empty((len(clauses), len(self.topics)))
        lows, highs, first, last, ok = self._clause_sites(scan, clauses)
        fast = np.flatnonzero(ok)
        texts = [scan.located.texts[i][a:b] for i, (a, b) in clauses]
        bounds: dict[int, tuple[int, int]] = {}
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        done = 0
        if len(fast):
            site, starts, sizes, ranks = scan.located.inside(lows[fast], highs[fast])
            # The words' (word, column) pairs inside each clause's run of words.
            order = np.argsort(first[fast], kind="stable")
            at = np.searchsorted(first[fast][order], scan.pair_words, side="right") - 1
            inside = at >= 0
            inside[inside] = scan.pair_words[inside] <= last[fast][order][at[inside]]
            word = self._word_weighed(order[at[inside]], scan.pair_columns[inside])
            margins[fast] = self._score(len(fast), self._index.weighed(site, ranks, self.idf), word)[0]
            order = np.argsort(site, kind="stable")
            at_site = np.searchsorted(site[order], np.arange(len(fast) + 1)).tolist()
            bounds.update({k: (at_site[n], at_site[n + 1]) for n, k in enumerate(fast.tolist())})
            starts = starts[order]
            parts.append((starts, starts + sizes[order], self._index.order[ranks[order]]))
            done = at_site[-1]
        slow = np.flatnonzero(~ok).tolist()
        if slow:
            margins[slow] = self.decision_function([texts[k] for k in slow])
            rows, starts, ends, columns = self._lowered_grams([texts[k] for k in slow], slow, done)
            bounds.update(rows)
            parts.append((starts, ends, columns))
        empty = np.zeros(0, dtype=np.int64)
        starts, ends, columns = ((np.concatenate(x) for x in zip(*parts, strict=True)) if parts
                                 else (empty, empty, empty))
        return ClauseScan(texts=texts, margins=margins, bounds=bounds, starts=starts, ends=ends, columns=columns)

    def clause_spans(self, read: ClauseScan, requests: Sequence[tuple[int, str]], share: float | None = None,
                     max_len: int = EVIDENCE_MAX) -> list[list[tuple[int, int]]]:
        """:meth:`evidence_spans_batch` of the clauses of ``read`` (:meth:`read_clauses`) for each
        (clause, topic) request, the same spans, from the n-grams read there."""
        return self._weighed_spans(read.texts, requests, read.bounds, read.starts, read.ends, read.columns,
                                   self.evidence["share"] if share is None else share, max_len)

    def clause_margins(self, texts: Sequence[str]) -> tuple[list[list[tuple[int, int]]], np.ndarray, np.ndarray]:
        """Each text's clauses (:data:`CLAUSE_SPLITS` [``clause_split``], the first ``clause_cap``; the whole text
        when it has none), the margins of every clause of the texts that have more than one,
        shape (their clauses, topics), and where each text's run of rows starts (-1 for a text
        of one clause, whose clause is the text and needs no pass of its own)."""
        split = CLAUSE_SPLITS[self.clause_split]
        # Only clauses within the characters the whole-text pass reads (``max_chars``): the
        # clause pass then reads no more characters than the whole-text one.
        clauses = [[m.span() for m in islice(split.finditer(t, 0, self.max_chars), self.clause_cap)]
                   or [(0, len(t))] for t in texts]
        first = np.full(len(texts), -1, dtype=np.int64)
        flat: list[str] = []
        for i, (text, spans) in enumerate(zip(texts, clauses, strict=True)):
            if len(spans) > 1:
                first[i] = len(flat)
                flat.extend(text[a:b] for a, b in spans)
        margins = self.decision_function(flat) if flat else np.zeros((0, len(self.topics)))
        return clauses, margins, first

    def clause_best(self, whole: np.ndarray, clauses: Sequence[Sequence[tuple[int, int]]],
                    margins: np.ndarray, first: np.ndarray) -> np.ndarray:
        """Per text and topic, the highest margin of one of its clauses (:meth:`clause_margins`);
        the whole-text margin for a text of one clause."""
        best = np.array(whole, dtype=np.float64, copy=True)
        multi = np.flatnonzero(first >= 0)
        if len(multi):
            best[multi] = np.maximum.reduceat(margins, first[multi], axis=0)
        return best

    def mixed(self, whole: np.ndarray, best: np.ndarray) -> np.ndarray:
        """The margins the fused decision reads: the whole text's, raised by the topic's
        ``clause_mix`` share of the best clause's lead over it (a topic one clause of a long call
        is about is diluted in the whole-text row); the whole text's alone without a mix."""
        if self.clause_mix is None:
            return whole
        return whole + self.clause_mix * np.maximum(best - whole, 0.0)

    def grams_at(self, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Every known char n-gram of ``text`` as (start, end, vocabulary column) arrays, with
        offsets of ``text`` as given: n-grams are looked up in its lower-cased form, which keeps
        its length for Chinese (None when lower-casing changes the length)."""
        lowered = _lowered_head(text, self.max_chars)
        if lowered is None:
            return None
        _, starts, ends, columns = self._index.located_flat([lowered])
        return starts, ends, columns

    def evidence_span(self, text: str, topic: str, max_len: int = EVIDENCE_MAX) -> tuple[int, int] | None:
        """The stretch of ``text`` whose char n-grams raise ``topic``'s margin most: the n-gram
        with the largest positive contribution (IDF times weight), grown by every overlapping or
        adjacent n-gram contributing at least :data:`EVIDENCE_SHARE` of it, at most ``max_len``
        characters; None when no n-gram of the text raises the margin (or lower-casing changes
        the text's length).

        A topic or flag the model decided without a phrase has no matched phrase to point at;
        this points at the characters that decided it. Word features are left out: a
        segmentation pass per span cost more than it changed the spans.
        """
        grams = self.grams_at(text)
        if grams is None or not len(grams[0]):
            return None
        starts, ends, cols = grams
        value = self.idf[cols] * self.weights[cols, self.topics.index(topic)]
        best = int(np.argmax(value))
        if value[best] <= 0:
            return None
        start, end = int(starts[best]), int(ends[best])
        strong = [(int(starts[k]), int(ends[k])) for k in np.flatnonzero(value >= EVIDENCE_SHARE * value[best])]
        grown = True
        while grown:
            grown = False
            for a, b in strong:
                if a <= end and b >= start and (a < start or b > end) and max(b, end) - min(a, start) <= max_len:
                    start, end, grown = min(a, start), max(b, end), True
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        return (start, end) if start < end else None

    def evidence_spans(self, text: str, topic: str, share: float | None = None,
                       max_len: int = EVIDENCE_MAX) -> list[tuple[int, int]]:
        """Every stretch of ``text`` whose char n-grams raise ``topic``'s margin: the n-grams
        contributing at least ``share`` of the strongest one (IDF times weight, positive only),
        merged where they overlap or touch, each stretch at most ``max_len`` characters, in text
        order; empty when no n-gram raises the margin. ``share`` defaults to the artifact's
        (:data:`EVIDENCE_FIT`).

        One top span (:meth:`evidence_span`) points at the single strongest cue, often the
        topic's noun (师傅, 工作人员), while a person points at what is said about it (走线很干净,
        全程玩手机): several contributing stretches of the clause cover both.
        """
        grams = self.grams_at(text)
        if grams is None or not len(grams[0]):
            return []
        starts, ends, cols = grams
        value = (self.idf[cols] * self.weights[cols, self.topics.index(topic)]).tolist()
        return _stretches(text, starts.tolist(), ends.tolist(), value,
                          self.evidence["share"] if share is None else share, max_len)

    def evidence_spans_batch(self, texts: Sequence[str], requests: Sequence[tuple[int, str]],
                             share: float | None = None, max_len: int = EVIDENCE_MAX
                             ) -> list[list[tuple[int, int]]]:
        """:meth:`evidence_spans` of ``texts[t]`` and ``topic`` for each (t, topic) request,
        the same spans, for texts read on their own: the n-grams of all texts
        (:meth:`NgramIndex.located_flat`, as :meth:`grams_at` finds them) are weighed for every
        request with whole arrays, and each request's runs are then found in plain lists. The
        evidence pass reads clauses of a scan instead (:meth:`read_clauses`, :meth:`clause_spans`),
        which the tests hold to the spans this gives."""
        rows, starts, ends, columns = self._lowered_grams(texts, range(len(texts)), 0)
        return self._weighed_spans(texts, requests, rows, starts, ends, columns,
                                   self.evidence["share"] if share is None else share, max_len)

    def _lowered_grams(self, texts: Sequence[str], keys: Sequence[int], offset: int
                       ) -> tuple[dict[int, tuple[int, int]], np.ndarray, np.ndarray, np.ndarray]:
        """The known char n-grams of each text lower-cased (:func:`_lowered_head`; none where
        that changes its length), as (start, end, column) arrays, and the rows of each text's
        under its key, moved by ``offset``."""
        kept = [(key, low) for key, text in zip(keys, texts, strict=True)
                if (low := _lowered_head(text, self.max_chars)) is not None]
        bounds, starts, ends, columns = self._index.located_flat([low for _, low in kept])
        rows = {key: (offset + bounds[n], offset + bounds[n + 1]) for n, (key, _) in enumerate(kept)}
        return rows, starts, ends, columns

    def _weighed_spans(self, texts: Sequence[str], requests: Sequence[tuple[int, str]],
                       rows: Mapping[int, tuple[int, int]], starts: np.ndarray, ends: np.ndarray,
                       columns: np.ndarray, share: float, max_len: int) -> list[list[tuple[int, int]]]:
        """Each request's stretches (:func:`_stretches`) from the n-grams of its text: rows
        ``rows[t]`` of (start, end, column) for text ``t``."""
        spans: list[list[tuple[int, int]]] = [[] for _ in requests]
        held = [(n, *rows[t], self.topics.index(topic)) for n, (t, topic) in enumerate(requests)
                if t in rows and rows[t][1] > rows[t][0]]
        if not held:
            return spans
        first = np.array([a for _, a, _, _ in held], dtype=np.int64)
        sizes = np.array([b - a for _, a, b, _ in held], dtype=np.int64)
        # Row of every n-gram of every request, request after request.
        at = np.arange(int(sizes.sum()), dtype=np.int64) + np.repeat(first - (np.cumsum(sizes) - sizes), sizes)
        cols = columns[at]
        # One weight per (n-gram, topic) pair: a flat ``take`` of row-major offsets, the
        # values indexing with two arrays reads, several times faster.
        values = self.idf[cols] * self.weights.take(cols * len(self.topics) + np.repeat([k for *_, k in held], sizes))
        # Each request's strongest contribution and the n-grams of at least ``share`` of it, with
        # whole arrays (the same IEEE doubles as in plain floats): only those, a few per clause,
        # are then merged into runs in Python.
        offsets = np.cumsum(sizes) - sizes
        top = np.maximum.reduceat(values, offsets)
        request = np.repeat(np.arange(len(held), dtype=np.int64), sizes)
        strong = np.flatnonzero((values >= (share * top)[request]) & (top > 0)[request])
        lows_at, highs_at = starts[at][strong], ends[at][strong]
        order = np.lexsort((highs_at, lows_at, request[strong]))
        bounds = np.searchsorted(request[strong][order], np.arange(len(held) + 1)).tolist()
        lows: list[int] = lows_at[order].tolist()
        highs: list[int] = highs_at[order].tolist()
        for m, (n, _, _, _) in enumerate(held):
            if bounds[m] < bounds[m + 1]:
                spans[n] = _runs(texts[requests[n][0]], lows[bounds[m]: bounds[m + 1]],
                                 highs[bounds[m]: bounds[m + 1]], max_len)
        return spans

    def predict(self, texts: Sequence[str]) -> list[list[str]]:
        """Topic ids per text, in the tagger's topic order."""
        hits = self.decision_function(texts) >= self.thresholds
        return [[t for t, h in zip(self.topics, row, strict=True) if h] for row in hits]

    def combine(self, texts: Sequence[str], keyword_tags: Sequence[Iterable[str]],
                min_examples: int = MIN_EXAMPLES,
                clauses: tuple[list[list[tuple[int, int]]], np.ndarray, np.ndarray] | None = None,
                read: tuple[np.ndarray, np.ndarray] | None = None) -> list[list[str]]:
        """Topic ids per text from the model and the keyword matches of each text together.

        Topics with at least ``min_examples`` training positives are decided by the fused
        margin; all other topics, including ones the model never saw, by the keywords alone. A
        text with no n-gram the model knows (blank, emoji only) gives the model no evidence, so
        only its keywords count. With a ``clause_mix`` the margin is :meth:`mixed` with the best
        clause's (``clauses``: :meth:`clause_margins` of ``texts`` when the caller has them).
        ``read`` are the margins and has-evidence mask of ``texts`` when the caller has them
        (from :meth:`scan` or :meth:`read_margins`).
        """
        margins, has_evidence = self._margins(texts) if read is None else read
        if self.clause_mix is not None:
            clauses = clauses if clauses is not None else self.clause_margins(texts)
            margins = self.mixed(margins, self.clause_best(margins, *clauses))
        index = {t: k for k, t in enumerate(self.topics)}
        learned = np.array([self.support[t] >= min_examples for t in self.topics], dtype=bool)
        keyword_sets = [set(tags) for tags in keyword_tags]
        hits = np.zeros(margins.shape, dtype=bool)
        for i, keyword_set in enumerate(keyword_sets):
            for t in keyword_set:
                if t in index:
                    hits[i, index[t]] = True
        # The whole batch at once: numpy calls per text cost more than the decision itself.
        fused = margins + self.keyword_weights * hits - self.fused_thresholds
        decided = np.where(learned & has_evidence[:, None], fused >= 0, hits)
        # Each text's decided topics from one pass over the batch (np.nonzero lists them text
        # by text), not a numpy call per text.
        chosen: list[list[str]] = [[] for _ in keyword_sets]
        for i, k in zip(*np.nonzero(decided), strict=True):
            chosen[i].append(self.topics[k])
        result = []
        for i, keyword_set in enumerate(keyword_sets):
            kept = set(chosen[i])
            kept |= {t for t in keyword_set if t not in index}
            if self.at_least_one and has_evidence[i] and not kept and learned.any():
                gap = np.where(learned, fused[i], -np.inf)
                kept.add(self.topics[int(gap.argmax())])
            result.append(sorted(kept))
        return result

    def save(self, out_dir: str | Path) -> None:
        """Write the arrays (:func:`write_arrays`) and the feature parameters as JSON."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_arrays(out / ARTIFACT_WEIGHTS, self.vocabulary, self.idf, self.weights)
        params = {
            "name": self.name,
            "version": self.version,
            "features": "tfidf(sublinear_tf, l2) over char 1..max_n-grams and word 1..word_n-grams "
                        "(rjieba, shipped dictionary) of normalise(text)",
            "max_n": self.max_n,
            "word_n": self.word_n,
            "n_char": self.n_char,
            "max_chars": self.max_chars,
            "topics": self.topics,
            "intercepts": self.intercepts.tolist(),
            "thresholds": self.thresholds.tolist(),
            "keyword_weights": self.keyword_weights.tolist(),
            "fused_thresholds": self.fused_thresholds.tolist(),
            "support": self.support,
            "at_least_one": self.at_least_one,
            "n_features": len(self.vocabulary),
            "evidence": self.evidence,
        }
        if self.clause_mix is not None:
            params["clause_mix"] = self.clause_mix.tolist()
            params["clause_cap"] = self.clause_cap
            params["clause_split"] = self.clause_split
        if self.word_classes is not None:
            params["word_classes"] = self.word_classes
        (out / ARTIFACT_PARAMS).write_text(json.dumps(params, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path | Traversable) -> AspectTagger:
        """Read an artifact written by :meth:`save` (a path or an importlib.resources folder)."""
        folder = Path(directory) if isinstance(directory, str) else directory
        params = json.loads((folder / ARTIFACT_PARAMS).read_text(encoding="utf-8"))
        vocabulary, idf, weights = read_arrays(folder / ARTIFACT_WEIGHTS)
        return cls(
            topics=params["topics"],
            vocabulary=vocabulary,
            idf=idf,
            weights=weights,
            intercepts=np.array(params["intercepts"]),
            thresholds=np.array(params["thresholds"]),
            keyword_weights=np.array(params["keyword_weights"]),
            fused_thresholds=np.array(params["fused_thresholds"]),
            support=params["support"],
            max_n=params["max_n"],
            max_chars=params["max_chars"],
            at_least_one=params["at_least_one"],
            version=params["version"],
            word_n=params.get("word_n", 0),
            n_char=params.get("n_char"),
            evidence=params.get("evidence"),
            clause_mix=params.get("clause_mix"),
            clause_cap=params.get("clause_cap", CLAUSE_CAP),
            clause_split=params.get("clause_split", "fine"),
            word_classes=params.get("word_classes"),
        )


def _lowered_head(text: str, max_chars: int) -> str | None:
    """The first ``max_chars`` characters lower-cased, where the tagger's evidence looks its char
    n-grams up; None when lower-casing changes their length (İ), as offsets would no longer
    be the text's."""
    head = text[:max_chars]
    lowered = head.lower()
    return lowered if len(lowered) == len(head) else None


def _pairs(found: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) arrays of per-row lists of columns."""
    rows = np.repeat(np.arange(len(found), dtype=np.int64), [len(f) for f in found])
    return rows, np.array(list(chain.from_iterable(found)), dtype=np.int64)


def _stretches(text: str, starts: list[int], ends: list[int], values: list[float], share: float,
               max_len: int) -> list[tuple[int, int]]:
    """The stretches of :meth:`AspectTagger.evidence_spans` from a text's n-grams (start, end)
    and their contributions to the topic: those of at least ``share`` of the strongest, merged
    where they overlap or touch up to ``max_len`` characters, white space trimmed."""
    top = max(values)
    if top <= 0:
        return []
    floor = share * top
    strong = sorted([(a, b) for a, b, v in zip(starts, ends, values, strict=True) if v >= floor])
    return _runs(text, [a for a, _ in strong], [b for _, b in strong], max_len)


def _runs(text: str, starts: list[int], ends: list[int], max_len: int) -> list[tuple[int, int]]:
    """The strong n-grams (start, end), sorted, merged where they overlap or touch up to
    ``max_len`` characters, white space trimmed (:func:`_stretches`)."""
    # The run being grown in two locals (this loop runs for every clause of every batch): an
    # n-gram that overlaps or touches it joins it while the run stays within ``max_len``; one
    # reaching further starts the next run where this one ends; one inside it adds nothing.
    runs: list[tuple[int, int]] = []
    low, high = starts[0], ends[0]
    for a, b in zip(starts[1:], ends[1:], strict=True):
        if a <= high and (b if b > high else high) - low <= max_len:
            if b > high:
                high = b
        elif b > high:
            runs.append((low, high))
            low, high = (a if a > high else high), b
    runs.append((low, high))
    spans = []
    for a, b in runs:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if a < b:
            spans.append((a, b))
    return spans


Counts = tuple[int, int, int]
"""(true positives, false positives, false negatives) of the other topics' decisions."""


def _f1(tp: Any, fp: Any, fn: Any) -> Any:
    return np.where(tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)


def _best_threshold(scores: np.ndarray, y: np.ndarray, others: Counts = (0, 0, 0)) -> tuple[float, float]:
    """The margin cut that maximises F1 on out-of-fold scores, and that F1.

    With ``others`` zero the F1 is the topic's own; given the other topics' counts it is the
    micro-F1 of all topics together, which is what the tagger is judged on: a topic the model
    finds hard then gets a stricter cut than its own F1 would choose, because each of its false
    positives costs the other topics' precision too. Candidates are midpoints between
    consecutive distinct scores, so the cut never sits on a training score and small float32
    rounding after saving cannot flip a decision at the cut; a cut above every score (the topic
    never predicted) is a candidate too.
    """
    if not y.any():
        return float("inf"), float(_f1(*others))
    o_tp, o_fp, o_fn = others
    order = np.argsort(-scores)
    s, yy = scores[order], y[order]
    tp = np.cumsum(yy)
    fp = np.cumsum(~yy)
    f1 = _f1(o_tp + tp, o_fp + fp, o_fn + y.sum() - tp)
    last_of_run = np.append(s[1:] != s[:-1], True)
    f1 = np.where(last_of_run, f1, -1.0)
    k = int(np.argmax(f1))
    none = float(_f1(o_tp, o_fp, o_fn + y.sum()))
    if none > f1[k] + 1e-9:
        return float(s[0] + 1.0), none
    return (float((s[k] + s[k + 1]) / 2) if k + 1 < len(s) else float(s[k] - 1.0)), float(f1[k])


def _fusion(scores: np.ndarray, hits: np.ndarray, y: np.ndarray,
            others: Counts = (0, 0, 0)) -> tuple[float, float]:
    """The keyword bonus and fused threshold that maximise out-of-fold F1 (see :func:`_best_threshold`).

    Ties go to the smaller bonus (the candidates are tried in increasing order), so keywords
    change the model's decisions only where that measurably helps.
    """
    best = (-1.0, 0.0, 0.0)
    for weight in KEYWORD_WEIGHTS:
        threshold, f1 = _best_threshold(scores + weight * hits, y, others)
        if f1 > best[0] + 1e-9:
            best = (f1, weight, threshold)
    o_tp, o_fp, o_fn = others
    keywords_only = _f1(o_tp + (hits & y).sum(), o_fp + (hits & ~y).sum(), o_fn + (~hits & y).sum())
    if keywords_only > best[0] + 1e-9:
        return KEYWORDS_ONLY
    return best[1], best[2]


def log_count_ratio(x: Any, y: np.ndarray, alpha: float) -> np.ndarray:
    """The NB log-count ratio r of each feature for one topic (Wang & Manning 2012, NBSVM).

    r = log((p / |p|1) / (q / |q|1)) with p = alpha + the number of positive rows holding the
    feature and q the same over negative rows: how much more often the feature occurs with the
    topic than without it, smoothed by ``alpha``. Occurrence is binary, as in the paper, whatever
    the TF-IDF value of the feature. ``x`` is a (sparse or dense) row matrix, ``y`` boolean rows.
    """
    present = (x > 0).astype(np.float64)
    p = alpha + np.asarray(present[y].sum(axis=0)).ravel()
    q = alpha + np.asarray(present[~y].sum(axis=0)).ravel()
    return np.log((p / p.sum()) / (q / q.sum()))


def fit_topic(x: Any, target: np.ndarray, c: float, nb_alpha: float | None = None,
              sample_weight: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """One topic's logistic regression on rows ``x`` (each row weighted by ``sample_weight``
    when given): weights over the columns of ``x`` and intercept.

    With ``nb_alpha`` the model is NB-LR: it is fitted on the features scaled by their log-count
    ratio (:func:`log_count_ratio`), and the ratio is folded into the returned weights
    (w * r applied to x equals w applied to x * r), so the artifact and prediction stay those of
    a plain linear model over the unscaled features.
    """
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    if target.all() or not target.any():
        # A constant label: a model cannot be fitted, the intercept alone says it all.
        return np.zeros(x.shape[1]), (10.0 if target.all() else -10.0)
    if nb_alpha is None:
        model = LogisticRegression(C=c, max_iter=2000).fit(x, target, sample_weight=sample_weight)
        return model.coef_.ravel(), float(model.intercept_[0])
    r = log_count_ratio(x, target, nb_alpha)
    scaled = sparse.csr_matrix(x) @ sparse.diags(r)
    model = LogisticRegression(C=c, max_iter=2000).fit(scaled, target, sample_weight=sample_weight)
    return model.coef_.ravel() * r, float(model.intercept_[0])


@dataclass(frozen=True)
class Features:
    """Sublinear TF-IDF rows over char 1..max_n-grams then word 1..word_n-grams (the column
    layout :class:`AspectTagger` reads), with what the artifact keeps of the vectorizer."""

    x: Any
    vocabulary: list[str]
    idf: np.ndarray
    n_char: int


def text_features(texts: Sequence[str], max_n: int, word_n: int, min_df: int, max_chars: int,
                  words_of: Mapping[str, Sequence[str]], classes: WordClasses | None = None) -> Features:
    """The tagger's features of ``texts``; ``words_of`` holds each text's words (from the
    tagger's :class:`Segmenter` over the normalised text) when ``word_n`` is not 0, and
    ``classes`` adds their word class tokens among the word features, as
    :meth:`AspectTagger._word_tfidf` does."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    def analyzer(text: str) -> list[str]:
        grams = char_ngrams(text, max_n, max_chars)
        if word_n:
            grams += [_WORD_MARK + g for g in word_ngrams(words_of[text], word_n)]
            if classes is not None:
                grams += [_WORD_MARK + g for g in classes.tokens(words_of[text])]
        return grams

    vectorizer = TfidfVectorizer(analyzer=analyzer, sublinear_tf=True, min_df=min_df)
    x = vectorizer.fit_transform(list(texts))
    grams = [""] * len(vectorizer.vocabulary_)
    for gram, j in vectorizer.vocabulary_.items():
        grams[j] = gram
    # Char n-grams first, then word n-grams: the layout AspectTagger reads.
    layout = np.argsort([g.startswith(_WORD_MARK) for g in grams], kind="stable")
    return Features(x=x[:, layout], vocabulary=[grams[j].removeprefix(_WORD_MARK) for j in layout],
                    idf=vectorizer.idf_[layout],
                    n_char=sum(not grams[j].startswith(_WORD_MARK) for j in layout))


def train_tagger(
    texts: Sequence[str],
    topic_sets: Sequence[Iterable[str]],
    topics: Sequence[str] | None = None,
    keyword_sets: Sequence[Iterable[str]] | None = None,
    c: float = 10.0,
    max_ns: Sequence[int] = (2,),
    word_ns: Sequence[int] = (1,),
    min_df: int = 2,
    max_chars: int = 4000,
    folds: int = 5,
    seed: int = 42,
    average_folds: bool = True,
    joint_thresholds: bool = True,
    nb_alpha: float | None = 1.0,
) -> AspectTagger:
    """Fit one logistic regression per topic and tune its thresholds and keyword bonus by CV.

    The defaults (char 1-2-grams plus words, NB-LR with alpha 1, 5 folds, averaged fold models,
    thresholds for micro-F1) are the settings that ``bench/topics_eval.py --cv`` found best on
    average over the three public aspect corpora, by 5-fold cross-validation of their inner
    training parts.

    Thresholds come from ``folds``-fold out-of-fold margins of the training texts only, so an
    evaluation on a separate hold-out is not tuned on that hold-out. ``keyword_sets`` are the
    taxonomy's keyword matches of each text; with them the keyword bonus and fused threshold of
    each topic are tuned on the same out-of-fold margins (without them the fused decision is the
    model's own). Topics without any positive example get an infinite threshold (never
    predicted) but are still listed, so their support of 0 hands them to the keywords.

    The longest char n-gram and word n-gram (0 for none) are the pair of ``max_ns`` x
    ``word_ns`` whose out-of-fold combined decisions reach the best micro-F1. Word n-grams come
    from the tagger's own :class:`Segmenter` over the normalised text.

    With ``average_folds`` the shipped weights are the mean of the ``folds`` fold models, the
    very models whose out-of-fold margins set the thresholds, instead of one model refitted on
    all rows: a refitted model sees more data and its margins drift away from the thresholds.
    The mean of linear models is one linear model, so prediction costs the same.

    With ``joint_thresholds`` each learned topic's bonus and fused threshold are then tuned
    again, in turn, for the micro-F1 of all topics together instead of the topic's own F1.

    With ``nb_alpha`` each topic's model is NB-LR (:func:`fit_topic`), its log-count ratios
    computed on the rows that model is fitted on, so out-of-fold margins stay out of fold;
    ``None`` fits plain logistic regression on the unscaled features.
    """
    from sklearn.model_selection import KFold

    sets = [set(s) for s in topic_sets]
    topic_list = list(topics) if topics is not None else sorted(set().union(*sets))
    y = np.array([[t in s for t in topic_list] for s in sets], dtype=bool).reshape(len(sets), len(topic_list))
    keyword_hits = np.array([[t in set(s) for t in topic_list] for s in keyword_sets], dtype=bool).reshape(
        len(sets), len(topic_list)) if keyword_sets is not None else np.zeros_like(y)
    support = {t: int(y[:, k].sum()) for k, t in enumerate(topic_list)}
    learned = np.array([support[t] >= MIN_EXAMPLES for t in topic_list], dtype=bool)
    splits = list(KFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(sets))))

    words_of: dict[str, list[str]] = {}
    if any(word_ns):
        segmenter = Segmenter()
        words_of = {t: segmenter.cut(normalise(t)[:max_chars]) for t in set(texts)}

    best: tuple[float, AspectTagger] | None = None
    for max_n, word_n in [(m, w) for m in max_ns for w in word_ns]:
        features = text_features(texts, max_n, word_n, min_df, max_chars, words_of)
        x = features.x

        def fit(rows: np.ndarray, k: int, x: Any = x) -> tuple[np.ndarray, float]:
            return fit_topic(x[rows], y[rows, k], c, nb_alpha)

        weights = np.zeros((x.shape[1], len(topic_list)))
        intercepts = np.zeros(len(topic_list))
        thresholds = np.zeros(len(topic_list))
        keyword_weights = np.zeros(len(topic_list))
        fused_thresholds = np.zeros(len(topic_list))
        oof_decisions = np.zeros_like(y)
        oof_margins = np.zeros(y.shape)
        for k in range(len(topic_list)):
            oof = np.zeros(len(sets))
            for fit_idx, val_idx in splits:
                w, b = fit(fit_idx, k)
                oof[val_idx] = x[val_idx] @ w + b
                if average_folds:
                    weights[:, k] += w / folds
                    intercepts[k] += b / folds
            thresholds[k] = _best_threshold(oof, y[:, k])[0]
            oof_margins[:, k] = oof
            if keyword_sets is None:
                fused_thresholds[k] = thresholds[k]
            else:
                keyword_weights[k], fused_thresholds[k] = _fusion(oof, keyword_hits[:, k], y[:, k])
            fused = oof + keyword_weights[k] * keyword_hits[:, k] >= fused_thresholds[k]
            oof_decisions[:, k] = fused if learned[k] else keyword_hits[:, k]
            if not average_folds:
                weights[:, k], intercepts[k] = fit(np.arange(len(sets)), k)
        if joint_thresholds and keyword_sets is not None:
            # Coordinate ascent on the micro-F1 of all topics: each topic's bonus and cut in turn,
            # given the other topics' current decisions, two passes over the topics.
            for _ in range(2):
                for k in np.flatnonzero(learned).tolist():
                    rest = np.delete(np.arange(len(topic_list)), k)
                    d, t = oof_decisions[:, rest], y[:, rest]
                    others = (int((d & t).sum()), int((d & ~t).sum()), int((~d & t).sum()))
                    keyword_weights[k], fused_thresholds[k] = _fusion(
                        oof_margins[:, k], keyword_hits[:, k], y[:, k], others)
                    oof_decisions[:, k] = (oof_margins[:, k] + keyword_weights[k] * keyword_hits[:, k]
                                           >= fused_thresholds[k])
        tp = (oof_decisions & y).sum()
        micro = 2 * tp / (oof_decisions.sum() + y.sum()) if y.any() or oof_decisions.any() else 0.0

        tagger = AspectTagger(
            topics=topic_list,
            vocabulary=features.vocabulary,
            idf=features.idf,
            weights=weights,
            intercepts=intercepts,
            thresholds=thresholds,
            keyword_weights=keyword_weights,
            fused_thresholds=fused_thresholds,
            support=support,
            max_n=max_n,
            max_chars=max_chars,
            at_least_one=bool(y.any(axis=1).all()),
            word_n=word_n,
            n_char=features.n_char,
        )
        if best is None or micro > best[0] + 1e-9:
            best = (float(micro), tagger)
    if best is None:
        raise ValueError("max_ns or word_ns is empty: give at least one n-gram length of each")
    return best[1]


__all__ = [
    "CLAUSE_CAP",
    "CLAUSE_MIXES",
    "CLAUSE_SPLIT",
    "CLAUSE_SPLITS",
    "MIN_EXAMPLES",
    "WORD_JOIN",
    "AspectExample",
    "AspectTagger",
    "Features",
    "f1_scores",
    "fit_topic",
    "log_count_ratio",
    "read_aspect_examples",
    "text_features",
    "topic_strata",
    "train_tagger",
    "word_ngrams",
]
