"""Keywords per event from the tokens the analyzer already has, weighted by jieba's IDF table.

``jieba.analyse.extract_tags`` would segment every text a second time (the slowest step of the
NLP stage); reusing the analyzer's tokens with the same IDF table and stop words gives the same
TF-IDF ranking at a fraction of the cost.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import jieba.analyse

from services.core.pii import mask_placeholders

_WORDLIKE = re.compile(r"[\u4e00-\u9fffA-Za-z]")


UNKNOWN_CACHE = 65_536
"""Tokens outside the IDF table whose decision is remembered; the map starts over when full, so
a stream of new tokens (order numbers, codes) cannot grow it."""


class KeywordExtractor:
    """TF-IDF ranking of an event's tokens against jieba's bundled IDF table.

    A token counts when it has at least two characters, a letter or hanzi, and is not a stop
    word (compared lower-cased). Whether each word of the IDF table counts is decided once
    here, into one table (its IDF, or 0 for a word that does not count), so the per-event work
    is a dictionary look-up per distinct token of two characters or more; a token the table
    lacks (numbers, codes, new words) is checked once and remembered (at most
    :data:`UNKNOWN_CACHE` of them), and gets the median IDF.
    """

    def __init__(self, top_k: int = 5) -> None:
        tfidf = jieba.analyse.TFIDF()
        self.median_idf: float = tfidf.median_idf
        self.stop_words: set[str] = set(tfidf.stop_words)
        self.top_k = top_k
        self._idf: dict[str, float] = {word: idf if self._counts(word) else 0.0
                                       for word, idf in tfidf.idf_freq.items()}
        self._unknown: dict[str, float] = {}

    def _counts(self, token: str) -> bool:
        return (len(token) >= 2 and _WORDLIKE.search(token) is not None
                and token.lower() not in self.stop_words)

    def _unknown_idf(self, word: str) -> float:
        """The IDF of a token the table lacks: the median when it counts, else 0."""
        idf = self._unknown.get(word)
        if idf is None:
            idf = self.median_idf if self._counts(word) else 0.0
            if len(self._unknown) >= UNKNOWN_CACHE:
                self._unknown.clear()
            self._unknown[word] = idf
        return idf

    def extract(self, tokens: Sequence[str]) -> list[str]:
        """The ``top_k`` most salient words, best first (ties broken alphabetically); a
        redaction placeholder is none of them."""
        tokens = mask_placeholders(tokens)
        known = self._idf.get
        # Counted in a plain dict, single characters skipped (they never count, and they are
        # most tokens): less work per event than a Counter of every token.
        counts: dict[str, int] = {}
        for word in tokens:
            if len(word) > 1:
                counts[word] = counts.get(word, 0) + 1
        ranked = []
        for word, count in counts.items():
            idf = known(word)
            if idf is None:
                idf = self._unknown_idf(word)
            if idf:
                ranked.append((-count * idf, word))
        ranked.sort()
        return [word for _, word in ranked[: self.top_k]]
