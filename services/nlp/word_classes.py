"""Word classes learned from unlabelled reviews: features that let the topic tagger read words
its labelled items never used.

Char n-grams and words learned from a few thousand labelled items know only the words those
items used (docs/model-card.md, "Round 5": most topic misses are vocabulary no other author
wrote). Words that occur in the same contexts of unlabelled text mean related things (死机 黑屏
卡顿 失灵; 退货 换货 补发 退款), so the tagger can add, for each word of a text, the class the
word falls in: a word never seen in training still carries the class its seen neighbours taught
the model. The classes are clusters of the tagger's own words (its segmenter) in the public
review corpora (``bench/train_topics.py word-clusters``: PPMI of co-occurrence, truncated SVD,
two-level k-means), shipped as ``model_data/word_clusters.txt``, one line a fine cluster: its code
``Zz`` + coarse cluster (2 digits) + fine cluster (a letter) + ``01=``, then its words. Level 3
is the coarse cluster (``Zz07``), level 4 the fine one (``Zz07C``). Figures, data and cost:
docs/model-card.md, "Round 6: topics from word classes".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from importlib import resources

CLASS_MARK = "\t"
"""Starts a class token among the tagger's word features: no word holds a tab (the text is
normalised) and a word n-gram joined by tabs never starts with one, so a class token cannot
collide with a word."""

LEVEL_LENGTH = {3: 4, 4: 5}
"""Characters of a class code that name its class at each level: 3 the coarse cluster
(``Zz07``), 4 the fine one (``Zz07C``)."""

TABLE = "word_clusters.txt"


def read_table(text: str) -> dict[str, list[str]]:
    """Each word's class codes from the table's lines (``code word word ...``)."""
    codes: dict[str, list[str]] = {}
    for line in text.splitlines():
        code, *words = line.split()
        for word in words:
            codes.setdefault(word, []).append(code)
    return codes


class WordClasses:
    """The class tokens of words at some levels of a class table, one dictionary look-up a word."""

    def __init__(self, codes: Mapping[str, Sequence[str]], levels: Iterable[int]) -> None:
        self.levels = tuple(sorted(set(levels)))
        if not self.levels or any(level not in LEVEL_LENGTH for level in self.levels):
            raise ValueError(f"levels={self.levels}: choose some of {sorted(LEVEL_LENGTH)}")
        lengths = [LEVEL_LENGTH[level] for level in self.levels]
        self._tokens = {word: tuple(sorted({CLASS_MARK + code[:n] for code in found for n in lengths}))
                        for word, found in codes.items()}

    def tokens(self, words: Iterable[str]) -> list[str]:
        """The class tokens of ``words`` in order; a word the table lacks gives none. One look-up
        per word, so linear in the words."""
        found: list[str] = []
        get = self._tokens.get
        for word in words:
            found.extend(get(word, ()))
        return found

    def columns(self, column: Mapping[str, int]) -> dict[str, tuple[int, ...]]:
        """Each word's class tokens as the columns ``column`` gives them (tokens it lacks left
        out, words left with none dropped): the tagger's look-up table, so that a word's classes
        cost it one dictionary look-up and no token string."""
        found = {word: tuple(column[t] for t in tokens if t in column) for word, tokens in self._tokens.items()}
        return {word: cols for word, cols in found.items() if cols}


@lru_cache(maxsize=1)
def _shipped_codes() -> dict[str, list[str]]:
    return read_table(resources.files("services.nlp.model_data").joinpath(TABLE).read_text(encoding="utf-8"))


@lru_cache(maxsize=4)
def shipped_classes(levels: tuple[int, ...]) -> WordClasses:
    """The shipped word classes at ``levels`` (the table read once per process)."""
    return WordClasses(_shipped_codes(), levels)


def classes_of(setting: Mapping[str, object] | None) -> WordClasses | None:
    """The :class:`WordClasses` an artifact's ``word_classes`` setting names (its ``levels``),
    or None without one."""
    if not setting:
        return None
    levels = setting.get("levels", ())
    assert isinstance(levels, Iterable)
    return shipped_classes(tuple(int(level) for level in levels))
