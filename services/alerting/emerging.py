"""The emerging-topic detector: phrases whose share of a touchpoint's feedback rose far above
their baseline, or that were never said before by enough people (docs/emerging.md).

The store counts (queries.phrase_counts): for each candidate phrase mentioned at least
``min_mentions`` times in the window, its mentions there, its distinct customers there and
its mentions in the baseline period before; with the window's and the baseline's event totals
(queries.phrase_volumes). Deciding is then a pure function of those counts (:func:`detect`):

1. a phrase holding a taxonomy keyword is left out: the taxonomy already names it; so is a
   phrase inside such a phrase that holds most of its mentions (二维码 when most of it is
   二维码扫不出, a keyword);
2. a phrase of several words counts only if it is *cohesive*: it is mentioned in at least
   ``cohesion`` of the events mentioning its rarest word in the window (电池 鼓包 when most
   鼓包 is about batteries, not 电池 ... 鼓包 by chance);
3. a phrase seen in the baseline rises when its window share exceeds its baseline share with
   Dunning's log-likelihood ratio G² >= ``min_llr`` corrected for the phrases tested in the
   window (:func:`corrected`: Bonferroni, so the chance that any of them passes by chance is
   the one ``min_llr`` gives a single phrase; a test sound for small counts, where a z-test
   is not), a lift of at least ``min_lift`` and ``min_mentions`` mentions from
   ``min_customers`` customers; a phrase never seen needs ``new_min_mentions`` from
   ``new_min_customers`` (one angry customer repeating a word is no trend);
4. a rising phrase inside a longer rising one that holds most of its mentions is left out, so
   the alert names 优惠券 用不了 rather than 优惠券 and 用不了 as well.

Nothing here keeps state: each detection reads at most ``max_phrases`` phrases per touchpoint
and returns at most that many.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from statistics import NormalDist

import ahocorasick_rs
import structlog

from services.alerting import queries
from services.core.phrases import display, words
from services.core.settings import Settings
from services.core.store import Store
from services.nlp.taxonomy import TaxonomyWatch, load_terms

log = structlog.get_logger(__name__)

COHESION = 0.5
"""Share of its rarest word's window mentions a multi-word phrase must hold to count as one
phrase, and share of a shorter phrase's mentions a longer rising phrase must hold to stand for
it."""


@dataclass(frozen=True)
class Thresholds:
    """When a phrase is rising (docs/emerging.md has each one's reasoning)."""

    min_mentions: int = 5
    min_customers: int = 3
    new_min_mentions: int = 8
    new_min_customers: int = 5
    min_llr: float = 30.0
    min_lift: float = 5.0
    min_baseline_volume: int = 200

    @classmethod
    def of(cls, settings: Settings) -> Thresholds:
        """The deployment's defaults (``VOC_EMERGING_*``)."""
        return cls(settings.emerging_min_mentions, settings.emerging_min_customers,
                   settings.emerging_new_min_mentions, settings.emerging_new_min_customers,
                   settings.emerging_min_llr, settings.emerging_min_lift,
                   settings.emerging_min_baseline_volume)


@dataclass(frozen=True)
class Count:
    """One phrase's counts in a window and its baseline (queries.PhraseCount's figures)."""

    phrase: str
    mentions: int
    customers: int
    baseline: int


@dataclass(frozen=True)
class Rising:
    """A phrase found rising, with the figures that decided it."""

    phrase: str
    text: str
    """The phrase as written (services/core/phrases.display)."""
    mentions: int
    customers: int
    baseline: int
    volume: int
    baseline_volume: int
    llr: float
    lift: float
    new: bool
    tested: int = 1
    """Phrases tested in the window it was found in: its G² is held to
    ``corrected(min_llr, tested)``."""


_NORMAL = NormalDist()


def corrected(min_llr: float, tested: int) -> float:
    """The G² a phrase needs when ``tested`` phrases of one window are tested, so that the
    chance that any of them passes by chance is at most the chance ``min_llr`` leaves one
    phrase (Bonferroni). A rising G² above x has the one-sided chi-square tail P(Z >= sqrt(x))
    (1 degree of freedom), so the bar is the square of the normal quantile of that tail
    divided by ``tested``: 30 for one phrase, about 37 for 50, 42 for 500 (nearly 2 ln tested
    more). Without it, the hundreds of phrases tested in each of the 1,440 windows a day of
    each touchpoint let a few pass 30 by chance every day (docs/emerging.md, "Measured")."""
    if tested <= 1 or min_llr <= 0:
        return min_llr
    tail = _NORMAL.cdf(-math.sqrt(min_llr)) / tested
    if tail <= 0.0:  # past the float range of the tail: its exponential asymptote
        return min_llr + 2 * math.log(tested)
    return _NORMAL.inv_cdf(tail) ** 2


def _xlogx(x: float) -> float:
    return x * math.log(x) if x > 0 else 0.0


def llr(mentions: int, volume: int, baseline: int, baseline_volume: int) -> float:
    """Dunning's G² of the 2x2 table (mentions or not) x (window or baseline), signed: negative
    when the window's share is below the baseline's."""
    a, b = mentions, volume - mentions
    c, d = baseline, baseline_volume - baseline
    n = a + b + c + d
    if min(a, b, c, d) < 0 or n == 0:
        raise ValueError(f"inconsistent counts: {mentions} of {volume} against {baseline} of "
                         f"{baseline_volume}")
    g2 = 2 * (_xlogx(a) + _xlogx(b) + _xlogx(c) + _xlogx(d) + _xlogx(n)
              - _xlogx(a + b) - _xlogx(c + d) - _xlogx(a + c) - _xlogx(b + d))
    g2 = max(g2, 0.0)
    rising = volume and (not baseline_volume or a / volume >= c / baseline_volume)
    return g2 if rising else -g2


def lift(mentions: int, volume: int, baseline: int, baseline_volume: int) -> float:
    """The window's share over the baseline's, one mention added to the baseline (a
    never-seen phrase's lift is finite and grows with the baseline's size)."""
    return (mentions / volume) / ((baseline + 1) / max(baseline_volume, 1))


class Excluded:
    """Whether a phrase holds one of the taxonomy's keywords or synonyms (one Aho-Corasick
    automaton: linear in the phrase whatever the number of terms)."""

    def __init__(self, terms: Collection[str]) -> None:
        kept = sorted({t.lower() for t in terms if t.strip()})
        self._automaton = ahocorasick_rs.AhoCorasick(kept) if kept else None

    def __call__(self, phrase: str) -> bool:
        if self._automaton is None:
            return False
        return any(self._automaton.find_matches_as_indexes(text)
                   for text in {phrase, display(phrase)})


def _cohesive(count: Count, by_phrase: dict[str, Count]) -> bool:
    parts = words(count.phrase)
    if len(parts) == 1:
        return True
    known = [by_phrase[w].mentions for w in parts if w in by_phrase]
    return not known or count.mentions >= COHESION * min(known)


def _covering(phrases: Sequence[tuple[str, int]]) -> dict[str, int]:
    """For every shorter run of words inside one of ``phrases`` (phrase, mentions), the most
    mentions of a phrase holding it: one look-up then tells whether a longer phrase stands
    for a shorter one (linear in the phrases, a phrase having at most three words)."""
    most: dict[str, int] = {}
    for phrase, mentions in phrases:
        parts = words(phrase)
        for n in range(1, len(parts)):
            for i in range(len(parts) - n + 1):
                run = " ".join(parts[i:i + n])
                most[run] = max(most.get(run, 0), mentions)
    return most


def detect(counts: Sequence[Count], volume: int, baseline_volume: int, t: Thresholds,
           excluded: Excluded, *, tested: int | None = None) -> list[Rising]:
    """The rising phrases of one touchpoint's window, most significant first (module
    docstring, steps 1 to 4). ``tested``: the phrases the window's test covers, for the
    correction (default: ``counts``, every phrase the store listed; a caller handing over
    only those that can matter passes the number listed)."""
    if volume <= 0 or baseline_volume < t.min_baseline_volume:
        return []
    listed = max(len(counts) if tested is None else tested, 1)
    bar = corrected(t.min_llr, listed)
    by_phrase = {c.phrase: c for c in counts}
    known = {c.phrase for c in counts if excluded(c.phrase)}
    in_known = _covering([(c.phrase, c.mentions) for c in counts if c.phrase in known])
    found: list[Rising] = []
    for c in counts:
        new = c.baseline == 0
        if (c.mentions < (t.new_min_mentions if new else t.min_mentions)
                or c.customers < (t.new_min_customers if new else t.min_customers)
                or c.phrase in known or not _cohesive(c, by_phrase)
                or in_known.get(c.phrase, 0) >= COHESION * c.mentions):
            continue
        g2 = llr(c.mentions, volume, c.baseline, baseline_volume)
        up = lift(c.mentions, volume, c.baseline, baseline_volume)
        if g2 >= bar and up >= t.min_lift:
            found.append(Rising(c.phrase, display(c.phrase), c.mentions, c.customers,
                                c.baseline, volume, baseline_volume, g2, up, new, listed))
    in_found = _covering([(r.phrase, r.mentions) for r in found])
    kept = [r for r in found if in_found.get(r.phrase, 0) < COHESION * r.mentions]
    return sorted(kept, key=lambda r: (-r.llr, r.phrase))


@dataclass(frozen=True)
class Detection:
    """One touchpoint's window: its events, its baseline's, and its rising phrases."""

    volume: int
    baseline_volume: int
    rising: list[Rising]


@dataclass(frozen=True)
class Window:
    """Where a detection looks: the window ``[end - window_s, end)`` against the baseline
    ``baseline_s`` before it, reading at most ``max_phrases`` phrases per touchpoint; the
    baseline's whole buckets of ``bucket_s`` (VOC_EMERGING_BUCKET_S) that are rolled up are
    read from ``phrase_counts`` (0: every event from ``feedback``)."""

    end: datetime
    window_s: int
    baseline_s: int
    max_phrases: int
    bucket_s: int = 3600

    @property
    def start(self) -> datetime:
        return self.end - timedelta(seconds=self.window_s)

    @property
    def lo(self) -> datetime:
        return self.start - timedelta(seconds=self.baseline_s)


async def rising(store: Store, window: Window, t: Thresholds, excluded: Excluded, *,
                 touchpoints: Collection[str] | None = None,
                 overall: bool = False) -> dict[str, Detection]:
    """The rising phrases of each touchpoint (or, with ``overall``, of all together under
    touchpoint '') in one window: which baseline buckets are rolled up, the counts and the
    volumes (three queries), then :func:`detect` per touchpoint."""
    minimum = min(t.min_mentions, t.new_min_mentions)
    rolled = None
    if window.bucket_s:
        rolled = await queries.rolled_buckets(store, bucket_s=window.bucket_s, lo=window.lo,
                                              start=window.start)
    counts = await queries.phrase_counts(
        store, touchpoints=touchpoints, lo=window.lo, start=window.start, hi=window.end,
        min_mentions=minimum, limit=window.max_phrases, overall=overall, rolled=rolled)
    volumes = await queries.phrase_volumes(
        store, touchpoints=touchpoints, lo=window.lo, start=window.start, hi=window.end,
        overall=overall, rolled=rolled)
    by_touchpoint: dict[str, list[Count]] = {}
    for c in counts:
        by_touchpoint.setdefault(c.touchpoint, []).append(
            Count(c.phrase, c.mentions, c.customers, c.baseline))
    return {v.touchpoint: Detection(v.volume, v.baseline, detect(
        by_touchpoint.get(v.touchpoint, []), v.volume, v.baseline, t, excluded))
        for v in volumes}


_EXCLUDED: dict[Path | None, tuple[TaxonomyWatch, Excluded]] = {}


def current_exclusions(configured: Path | None) -> Excluded:
    """The keywords of the taxonomy at ``configured`` (VOC_TAXONOMY_PATH; None: the shipped
    one) and its lexicon packs as the NLP stage has them now: read again when one of the files
    changed (a topic added from an emerging phrase stops it being emerging), one entry kept. A
    broken edit keeps the previous keywords, as the NLP stage keeps its previous taxonomy."""
    held = _EXCLUDED.get(configured)
    if held is not None and not held[0].changed():
        return held[1]
    watch = held[0] if held is not None else TaxonomyWatch(configured)
    try:
        excluded = Excluded(load_terms(configured))
    except ValueError:
        if held is None:
            raise
        log.error("taxonomy keywords NOT reloaded; the previous ones stay",
                  path=str(configured))
        return held[1]
    _EXCLUDED.clear()
    _EXCLUDED[configured] = (watch, excluded)
    return excluded
