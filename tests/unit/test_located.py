"""Stretches of a batch's texts weighed from one pass over the texts (services/nlp/located.py):
the n-grams found inside a stretch must be those of reading it alone."""

from __future__ import annotations

import functools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from services.nlp.located import locate
from services.nlp.sentiment_model import NgramIndex, normalise
from services.nlp.taxonomy import CLAUSE

ALPHABET = "好差很快递慢质量不错客服态度价格贵便宜屏幕坏ABCabc12.，。！？;,\n \t\u3000İΣσ"


@functools.cache
def index() -> NgramIndex:
    """Every 1-3-gram of the alphabet but a few (so that some windows are unknown), reading at
    most 25 characters of a text."""
    chars = [c.lower() for c in ALPHABET if not c.isspace()] + [" "]
    grams = sorted({a + b + c for a in chars[:12] for b in chars for c in chars[:6]} | set(chars)
                   | {a + b for a in chars for b in chars} - {"好差", "ab"})
    return NgramIndex(grams, 3, 25)


def read_alone(text: str) -> list[tuple[int, int, int]]:
    """(start, length, rank) of every known n-gram of the text read alone, sorted."""
    parts, starts, sizes, ranks = index().located([normalise(text)[:25]])
    return sorted(zip(starts.tolist(), sizes.tolist(), ranks.tolist(), strict=True))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=ALPHABET, max_size=40), min_size=1, max_size=6))
def test_the_ngrams_inside_a_stretch_are_those_of_reading_it_alone(texts: list[str]) -> None:
    """Clauses with white space inside and at their ends, İ (two characters lower-cased) and Σ
    (lower-cased by its neighbours), clauses past the 25 characters read: where a stretch may be
    weighed from the pass, its n-grams are the ones reading it alone finds."""
    located = locate(index(), texts)
    stretches = [(i, m.span()) for i, text in enumerate(texts) for m in CLAUSE.finditer(text)]
    lows, highs, ok = located.sites(stretches)
    fast = np.flatnonzero(ok)
    site, starts, sizes, ranks = located.inside(lows[fast], highs[fast])
    for n, k in enumerate(fast.tolist()):
        i, (a, b) = stretches[k]
        mine = sorted((s, z, r) for s, z, r, at in zip(starts.tolist(), sizes.tolist(), ranks.tolist(),
                                                       site.tolist(), strict=True) if at == n)
        assert mine == read_alone(texts[i][a:b])
    for k in np.flatnonzero(~ok).tolist():
        i, (a, b) = stretches[k]
        text = texts[i]
        assert (not text[a:b].strip() or len(text.lower()) != len(text) or "Σ" in text
                or len(normalise(text[:b])) > 25)


def test_sites_trim_and_move_stretches_as_normalising_does() -> None:
    texts = ["  快递 很慢  ，客服\t\t态度差", "价格贵，质量好", "İ屏幕，坏了", "好" * 30 + "，差"]
    located = locate(index(), texts)
    stretches = [(0, (0, 9)), (0, (10, 17)), (1, (0, 3)), (1, (4, 7)), (2, (0, 3)), (3, (31, 32)), (0, (0, 2))]
    lows, highs, ok = located.sites(stretches)
    assert ok.tolist() == [True, True, True, True, False, False, False]
    for k in range(4):
        i, (a, b) = stretches[k]
        low, high = int(lows[k]) - i * located.stride, int(highs[k]) - i * located.stride
        assert located.heads[i][low:high] == normalise(texts[i][a:b])
