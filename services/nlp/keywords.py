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
    """TF-IDF ranking of an event's tokens against jieba's bundled IDF table.

    A token counts when it has at least two characters, a letter or hanzi, and is not a stop
    word (compared lower-cased). Whether each word of the IDF table counts is decided once
    here, so the per-event work is a dictionary look-up per distinct token; only tokens the
    table lacks (numbers, codes, new words) are checked one by one, and they get the median IDF.
    """

    def __init__(self, top_k: int = 5) -> None:
        tfidf = jieba.analyse.TFIDF()
        self.median_idf: float = tfidf.median_idf
        self.stop_words: set[str] = set(tfidf.stop_words)
        self.top_k = top_k
        self._weight: dict[str, float] = {}
        self._ignored: set[str] = set()
        for word, idf in tfidf.idf_freq.items():
            if self._counts(word):
                self._weight[word] = idf
            else:
                self._ignored.add(word)

    def _counts(self, token: str) -> bool:
        return (len(token) >= 2 and _WORDLIKE.search(token) is not None
                and token.lower() not in self.stop_words)

    def extract(self, tokens: Sequence[str]) -> list[str]:
        """The ``top_k`` most salient words, best first (ties broken alphabetically)."""
        weight, ignored = self._weight, self._ignored
        ranked = []
        for word, count in Counter(tokens).items():
            idf = weight.get(word)
            if idf is None:
                if word in ignored or not self._counts(word):
                    continue
                idf = self.median_idf
            ranked.append((-count * idf, word))
        ranked.sort()
        return [word for _, word in ranked[: self.top_k]]
