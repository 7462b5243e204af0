"""Keywords per event from the tokens the analyzer already has, weighted by jieba's IDF table.

``jieba.analyse.extract_tags`` would segment every text a second time (the slowest step of the
NLP stage); reusing the analyzer's tokens with the same IDF table and stop words gives the same
TF-IDF ranking at a fraction of the cost.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import jieba.analyse

_WORDLIKE = re.compile(r"[\u4e00-\u9fffA-Za-z]")


class KeywordExtractor:
    """TF-IDF ranking of an event's tokens against jieba's bundled IDF table."""

    def __init__(self, top_k: int = 5) -> None:
        tfidf = jieba.analyse.TFIDF()
        self.idf: dict[str, float] = tfidf.idf_freq
        self.median_idf: float = tfidf.median_idf
        self.stop_words: set[str] = set(tfidf.stop_words)
        self.top_k = top_k

    def extract(self, tokens: Sequence[str]) -> list[str]:
        """The ``top_k`` most salient words, best first (ties broken alphabetically)."""
        counts = Counter(t for t in tokens
                         if len(t) >= 2 and _WORDLIKE.search(t) and t.lower() not in self.stop_words)
        ranked = sorted(counts, key=lambda w: (-counts[w] * self.idf.get(w, self.median_idf), w))
        return ranked[: self.top_k]
