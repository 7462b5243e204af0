"""A batch's char n-grams with where each sits, so that stretches of its texts (clauses) are
weighed from one pass instead of being read again.

The topic tagger scores every clause of a text it decided a learned topic for, to place that
topic's evidence. Read alone, a clause is normalised, encoded, hashed, looked up and segmented
again, which cost as much as the whole text did (the sentiment model's clauses, which need no
segmentation, gain nothing from this: docs/model-card.md, "Round 8").

Normalising (:func:`~services.nlp.sentiment_model.normalise`: lower-case, white space runs
collapsed to one space and dropped at either end) moves a character only by the white space
collapsed before it, so a stretch without white space at its ends is, in the
normalised text, the same characters with its inner runs collapsed as reading it alone collapses
them, and its n-grams are the whole text's that lie inside it. Where that cannot be carried over
exactly (lower-casing that changes a length, as İ does, or depends on the neighbours, as Σ does;
a stretch past the ``max_chars`` the model reads) :meth:`Located.sites` says so and the caller
reads that stretch alone.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from services.nlp.sentiment_model import NgramIndex, normalise

Stretch = tuple[int, tuple[int, int]]
"""A stretch of text ``i``: (i, (start, end)) in the text's own offsets."""

_NON_SPACE = re.compile(r"\S+")
"""A run normalising keeps as it is. Linear: each match is a maximal run of one class."""


@dataclass(frozen=True)
class Located:
    """:func:`locate` of a batch. Offsets are the batch's: head ``i``'s offset ``o`` is
    ``i * stride + o``."""

    texts: Sequence[str]
    heads: list[str]
    """Each text normalised and cut to ``max_chars``, as the model read it."""
    stride: int
    grams_at: np.ndarray
    gram_sizes: np.ndarray
    gram_ranks: np.ndarray
    """Each known n-gram's start, length and rank (:class:`NgramIndex`)."""
    plain: np.ndarray
    """Per text: no white space, so its head's offsets are its own."""
    mappable: np.ndarray
    """Per text: lower-casing keeps every character's place (no İ, no Σ)."""

    def sites(self, stretches: Sequence[Stretch]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Where each stretch, trimmed of white space at its ends, sits in the heads: [lows,
        highs) in the batch's offsets, and whether it may be weighed from the pass (a mappable
        text, a stretch that is not blank and ends inside the head)."""
        count = len(stretches)
        texts = np.fromiter((i for i, _ in stretches), dtype=np.int64, count=count)
        starts = np.fromiter((a for _, (a, _) in stretches), dtype=np.int64, count=count)
        ends = np.fromiter((b for _, (_, b) in stretches), dtype=np.int64, count=count)
        ok = self.mappable[texts] & (starts < ends)
        # A text without white space keeps its offsets; the others' stretches are trimmed and
        # moved one by one (calls and e-mails, a few per batch).
        runs: dict[int, tuple[list[int], list[int]]] = {}
        for k in np.flatnonzero(ok & ~self.plain[texts]).tolist():
            i, (a, b) = stretches[k]
            text = self.texts[i]
            if i not in runs:
                runs[i] = _run_shifts(text)
            run_starts, shifts = runs[i]
            while a < b and text[a].isspace():
                a += 1
            while b > a and text[b - 1].isspace():
                b -= 1
            if a == b:
                ok[k] = False
                continue
            starts[k] = a + shifts[bisect_right(run_starts, a) - 1]
            ends[k] = b + shifts[bisect_right(run_starts, b - 1) - 1]
        heads = np.fromiter(map(len, self.heads), dtype=np.int64, count=len(self.heads))
        ok &= ends <= heads[texts]
        return texts * self.stride + starts, texts * self.stride + ends, ok

    def inside(self, lows: np.ndarray, highs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The n-grams inside each of the disjoint stretches [lows, highs) of the batch's
        offsets: (stretch, start within it, length, rank), stretch by stretch as the pass found
        them (length by length, each in text order)."""
        order = np.argsort(lows, kind="stable")
        at = np.searchsorted(lows[order], self.grams_at, side="right") - 1
        inside = at >= 0
        inside[inside] = self.grams_at[inside] + self.gram_sizes[inside] <= highs[order][at[inside]]
        site = order[at[inside]]
        return site, self.grams_at[inside] - lows[site], self.gram_sizes[inside], self.gram_ranks[inside]


def locate(index: NgramIndex, texts: Sequence[str]) -> Located:
    """Every known n-gram of ``index`` in the normalised texts (cut to its ``max_chars``), with
    where each sits."""
    heads = [normalise(t)[: index.max_chars] for t in texts]
    parts, starts, sizes, ranks = index.located(heads)
    stride = index.max_chars + 1
    mappable = np.array([len(t.lower()) == len(t) and "Σ" not in t for t in texts], dtype=bool)
    plain = mappable & np.array([h == t.lower() and " " not in h for h, t in zip(heads, texts, strict=True)],
                                dtype=bool)
    return Located(texts=texts, heads=heads, stride=stride, grams_at=parts * stride + starts,
                   gram_sizes=sizes, gram_ranks=ranks, plain=plain, mappable=mappable)


def _run_shifts(text: str) -> tuple[list[int], list[int]]:
    """Where each run of non-space characters of ``text`` starts, and how far normalising moves
    it (white space runs become one space, none at either end)."""
    starts, moves = [], []
    at = 0
    for m in _NON_SPACE.finditer(text):
        starts.append(m.start())
        moves.append(at - m.start())
        at += m.end() - m.start() + 1
    return starts, moves
