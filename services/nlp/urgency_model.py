"""Urgency flags read per clause, with counts and time words as classes (issue 16, round 5).

The round-4 urgency scorer reads the whole text's char 1-2-grams. What it misses most is
said in one clause with a count or a plan: 第四次了, 修了三回, 打了好几次电话, 两个礼拜了还没人来,
准备换到别家. Whole-text n-grams of two characters see 三回 and 四次 as unrelated strings and
lose the verb that goes with them among every other n-gram of the text. This model reads each
clause as one instance:

- **Count classes.** A run of numerals (digits, 一二三…十百千两几, 好几 keeps its 好) followed
  by a counter or a time unit becomes ``N`` (a lone 一 before a counter stays: once is no
  repeat); the counters 次 回 遍 趟 通 after it become ``C``
  and the time units (天 周 月 年 礼拜 星期 小时 钟头 分钟) ``T``; 第 + numerals is always
  ``第N``. So 修了三回 and 修了两次 are both 修了NC, 两个礼拜了 and 三天了 are N个T了 and NT了.
  A numeral not followed by either (一直, 一下) is left as it is.
- **Features of a clause**: sublinear TF-IDF over the clause's char 1..``max_n``-grams of
  that normalised text, its neighbours' char 1..2-grams (marked as context), and the cue flags
  matched in the clause and in the whole text (services/nlp/urgency.yaml), one row, L2-normed.
  With ``whole`` the whole text is one more instance (the same features as a clause's, a
  whole-text marker and every cue flag); the shipped model has none.
- **Decision**: per flag a linear margin per clause; the item's margin is the best clause's
  plus, when the artifact holds one, the round-4 whole-text scorer's margin
  (:class:`~services.nlp.aspect_tagger.AspectTagger`, same folder), plus a bonus when a cue of
  the flag matched, against a cut; bonus and cut chosen on leave-one-author-out margins of
  that sum for the highest recall at precision 0.9 (``bench/train_topics.py urgency-clause``,
  :func:`services.nlp.cem_tagger.tune_for_precision`). The clause reads what is said in one
  clause; the whole-text scorer, with words, what is spread over the text.
- **Evidence**: a raised flag points inside its best clause: the stretch whose n-grams raise
  the flag's clause margin most, mapped back to the analysed text's offsets; when none does
  (the whole-text margin carried it), the whole-text scorer's strongest stretch, cut at the
  end of the clause it starts in.

Training is multiple-instance: an item labelled with a flag says that some clause (or the
whole text) says it, not which. The first fit takes as positives every clause of a positive
item (with ``whole``: the whole text and the clauses where a cue of the flag matched); each
later fit takes the best-scoring instance of each positive item under the previous fit.
Instances of items without the flag are negatives. The labelled data name no urgency evidence
phrases, so no clause is labelled directly.

Not the shipped scorer: on nineteen authors it finds 1.5 points more urgency recall
leave-one-author-out than the whole-text scorer alone, within the noise and at a lower
precision, and reading every clause costs CPU the NLP stage has no room for (docs/model-card.md,
"Round 5" and "Round 6"; a gate reading only clauses with a count or a cue lost the gain). A
deployment names a folder written by ``bench/train_topics.py urgency-clause`` as the cue file's
``scorer:`` to use it.

Bounded: at most :data:`MAX_CLAUSES` clauses of a text are scored one by one (the first ones);
past the cap the rest is read only by the whole-text scorer (and the whole-text instance),
both cut at ``max_chars``. Inference is numpy and dict look-ups; the artifact is arrays plus JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.abc import Traversable
from pathlib import Path

import numpy as np

from services.nlp.aspect_tagger import AspectTagger
from services.nlp.sentiment_model import NgramIndex, counted_pairs, read_arrays, write_arrays

ARTIFACT_WEIGHTS = "urgency_model.npz"
ARTIFACT_PARAMS = "urgency_model.json"
MODEL_VERSION = "1.0.0"

MAX_CLAUSES = 48
"""Clauses of one text scored one by one (the first ones); the rest are read in the whole-text
instance only. Labelled items have at most a few dozen clauses; a long email has thousands."""
MAX_CLAUSE_CHARS = 200
"""Characters of one clause read (a clause with no punctuation can be a whole transcript)."""
CONTEXT_N = 2
"""Longest char n-gram read from a neighbouring clause."""
EVIDENCE_SHARE = 0.5
"""An n-gram joins the evidence stretch when it raises the margin at least this share of the strongest."""
EVIDENCE_MAX = 32

CLAUSE = re.compile(r"[^，。！？；,.!?;~～\n]+")
"""A clause: a maximal run between clause punctuation (linear: no nested quantifier)."""

NUMERALS = frozenset("0123456789０１２３４５６７８９一二三四五六七八九十百千两几")
COUNTERS = frozenset("次回遍趟通")
TIME_UNITS = ("礼拜", "星期", "小时", "钟头", "分钟", "天", "周", "月", "年")
NEIGHBOUR = "\x01"
CUE_IN_CLAUSE = "\x02"
CUE_IN_TEXT = "\x03"
WHOLE = "\x04"


def count_classes(text: str) -> tuple[str, list[int]]:
    """``text`` lower-cased with counts as classes (module docstring), and for each character
    of the result the offset in ``text`` it came from. One left-to-right pass, so linear."""
    if NUMERALS.isdisjoint(text):
        low = text.lower()
        # str.lower is the per-character lower-casing below except where a character's lower
        # case is longer (İ) or depends on context (final sigma): those take the slow path.
        if len(low) == len(text) and "ς" not in low:
            return low, list(range(len(text)))
    out: list[str] = []
    origin: list[int] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in NUMERALS:
            j = i
            while j < n and text[j] in NUMERALS:
                j += 1
            k = j + 1 if j < n and text[j] in "个多" else j
            unit = next((u for u in TIME_UNITS if text.startswith(u, k)), None)
            counted = j < n and text[j] in COUNTERS
            ordinal = i > 0 and text[i - 1] == "第"
            if text[i:j] == "一" and not unit:
                # 一次 / 第一次 is once, the opposite of a repeat: kept apart from the counts.
                counted = ordinal = False
            if counted or unit is not None or ordinal:
                out.append("N")
                origin.append(i)
                if counted:
                    out.append("C")
                    origin.append(j)
                    i = j + 1
                    continue
                if unit is not None:
                    for m in range(j, k):
                        out.append(text[m])
                        origin.append(m)
                    out.append("T")
                    origin.append(k)
                    i = k + len(unit)
                    continue
                i = j
                continue
        low = ch.lower()
        out.append(low if len(low) == 1 else ch)
        origin.append(i)
        i += 1
    return "".join(out), origin


MARKS = frozenset((NEIGHBOUR, CUE_IN_CLAUSE, CUE_IN_TEXT, WHOLE))


_UNIT_HEADS = frozenset(u[0] for u in TIME_UNITS)
_NUMERAL_RUN = re.compile("[" + "".join(sorted(NUMERALS)) + "]+")
"""A maximal run of numerals (one character class under one quantifier: linear)."""


def _lower(text: str) -> str:
    """Each character lower-cased on its own, as :func:`count_classes` does."""
    low = text.lower()
    if len(low) == len(text) and "ς" not in low:
        return low
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


def classed(text: str) -> str:
    """``count_classes(text)[0]`` without the offsets, by regular-expression runs instead of a
    loop over characters: what the model reads of every clause on the hot path."""
    pieces: list[str] = []
    at = 0
    for match in _NUMERAL_RUN.finditer(text):
        i, j = match.span()
        counted = j < len(text) and text[j] in COUNTERS
        k = j + 1 if j < len(text) and text[j] in "个多" else j
        unit = (next((u for u in TIME_UNITS if text.startswith(u, k)), None)
                if k < len(text) and text[k] in _UNIT_HEADS else None)
        ordinal = i > 0 and text[i - 1] == "第"
        if text[i:j] == "一" and not unit:
            counted = ordinal = False
        if not (counted or unit is not None or ordinal):
            continue
        pieces.append(_lower(text[at:i]))
        if counted:
            pieces.append("NC")
            at = j + 1
        elif unit is not None:
            pieces.append("N" + text[j:k] + "T")
            at = k + len(unit)
        else:
            pieces.append("N")
            at = j
    pieces.append(_lower(text[at:]))
    return "".join(pieces)


def _grams(text: str, max_n: int, mark: str = "") -> list[str]:
    return [mark + text[i: i + m] for m in range(1, max_n + 1) for i in range(len(text) - m + 1)]


@dataclass(slots=True)
class Instance:
    """One clause (or the whole text) of an item: its span in the text and its features."""

    start: int
    end: int
    grams: list[str]
    whole: bool


def clause_spans(text: str) -> list[tuple[int, int]]:
    """The first :data:`MAX_CLAUSES` clauses of ``text`` that hold a non-space character."""
    spans = []
    for match in CLAUSE.finditer(text):
        if match.group().strip():
            spans.append(match.span())
            if len(spans) >= MAX_CLAUSES:
                break
    return spans


def instances(text: str, cue_spans: Sequence[tuple[str, int, int]], max_n: int,
              max_chars: int, whole: bool = True) -> list[Instance]:
    """The whole-text instance then one per clause (``cue_spans``: (flag, start, end) of each
    cue match in ``text``). Without ``whole`` the whole-text instance has no features (a model
    that does not read it skips their cost; training always builds them, as they count in the
    n-grams' document frequencies)."""
    head = text[:max_chars]
    flags = sorted({f for f, _, _ in cue_spans})
    # A clause holds no line break; the whole text's n-grams across one are left out (the
    # artifact stores its vocabulary one n-gram a line).
    grams = ([g for g in _grams(count_classes(head)[0], max_n) if "\n" not in g]
             + [WHOLE, *(CUE_IN_TEXT + f for f in flags)]) if whole else []
    result = [Instance(0, len(head), grams, True)]
    spans = clause_spans(head)
    normal = [count_classes(head[a: min(b, a + MAX_CLAUSE_CHARS)])[0] for a, b in spans]
    for k, (a, b) in enumerate(spans):
        grams = _grams(normal[k], max_n)
        for side in (k - 1, k + 1):
            if 0 <= side < len(spans):
                grams += _grams(normal[side], CONTEXT_N, NEIGHBOUR)
        grams += [CUE_IN_CLAUSE + f for f in sorted({f for f, s, e in cue_spans if s < b and e > a})]
        grams += [CUE_IN_TEXT + f for f in flags]
        result.append(Instance(a, b, grams, False))
    return result


class UrgencyClauseModel:
    """Per flag one linear margin over each instance's TF-IDF row; the item's is the best one."""

    name = "urgency-clause-mil"

    def __init__(self, flags: list[str], vocabulary: list[str], idf: np.ndarray, weights: np.ndarray,
                 intercepts: np.ndarray, keyword_weights: np.ndarray, fused_thresholds: np.ndarray,
                 max_n: int, max_chars: int, version: str = MODEL_VERSION, whole: bool = True,
                 whole_text: AspectTagger | None = None) -> None:
        self.flags = list(flags)
        self.vocabulary = list(vocabulary)
        self.idf = np.asarray(idf, dtype=np.float64)
        self.weights = np.asarray(weights, dtype=np.float64).reshape(len(self.vocabulary), len(self.flags))
        self.intercepts = np.asarray(intercepts, dtype=np.float64)
        self.keyword_weights = np.asarray(keyword_weights, dtype=np.float64)
        self.fused_thresholds = np.asarray(fused_thresholds, dtype=np.float64)
        self.max_n = max_n
        self.max_chars = max_chars
        self.version = version
        self.whole = whole
        self.whole_text = whole_text
        self._column = {g: j for j, g in enumerate(self.vocabulary)}
        # One n-gram index over the clause's own n-grams and the neighbours' (marker dropped):
        # a look-up gives both columns, -1 where the vocabulary has no such feature.
        own = {g: j for j, g in enumerate(self.vocabulary) if g and g[0] not in MARKS}
        near = {g[1:]: j for j, g in enumerate(self.vocabulary) if g.startswith(NEIGHBOUR)}
        grams = sorted(own.keys() | near.keys())
        self._index = NgramIndex(grams, max(max_n, CONTEXT_N), max_chars)
        by_rank = [grams[j] for j in self._index.order]
        self._own = np.array([own.get(g, -1) for g in by_rank], dtype=np.int64)
        self._near = np.array([near.get(g, -1) for g in by_rank], dtype=np.int64)

    def instance_margins(self, rows: Sequence[Instance]) -> np.ndarray:
        """Margins of instances, shape (len(rows), len(flags)): the whole batch in a few numpy
        calls, as :class:`~services.nlp.aspect_tagger.AspectTagger` does (a call per instance
        cost more than the features)."""
        lookup = self._column.get
        index: list[int] = []
        cols: list[int] = []
        for i, row in enumerate(rows):
            found = [j for j in map(lookup, row.grams) if j is not None]
            index.extend([i] * len(found))
            cols.extend(found)
        return self._row_margins(np.array(index, dtype=np.int64), np.array(cols, dtype=np.int64), len(rows))

    def _clause_margins(self, texts: Sequence[str], cue_spans: Sequence[Sequence[tuple[str, int, int]]]
                        ) -> tuple[list[list[Instance]], np.ndarray]:
        """The clauses of every text (as instances without their features) and their margins,
        the features of :func:`instances` computed for the whole batch in numpy passes: the
        clauses' count-classed texts are looked up in one
        :class:`~services.nlp.sentiment_model.NgramIndex` pass; a clause's neighbours' n-grams
        are found once and added to the clauses on either side. The cue tokens alone take a
        loop, over texts with cues. A clause without a numeral skips :func:`classed`."""
        rows: list[list[Instance]] = []
        normals: list[str] = []
        text_of: list[int] = []
        for t, text in enumerate(texts):
            head = text[: self.max_chars]
            spans = clause_spans(head)
            rows.append([Instance(0, len(head), [], True)] + [Instance(a, b, [], False) for a, b in spans])
            # A clause without a numeral has no class: its classed text is its slice of the
            # lower-cased text (lower-casing is per character, :func:`_lower`), one call a text.
            low = _lower(head)
            for a, b in spans:
                end = min(b, a + MAX_CLAUSE_CHARS)
                numeral = _NUMERAL_RUN.search(head, a, end) is not None
                normals.append(classed(head[a:end]) if numeral else low[a:end])
            text_of.extend([t] * len(spans))
        n = len(normals)
        owner = np.array(text_of, dtype=np.int64)
        first = np.concatenate(([0], np.cumsum([len(r) - 1 for r in rows])))
        found_rows: list[np.ndarray] = []
        found_cols: list[np.ndarray] = []
        if n:
            at, ranks = self._index.occurrences(normals)
            plain, context = self._own[ranks], self._near[ranks]
            found_rows.append(at[plain >= 0])
            found_cols.append(plain[plain >= 0])
            source, cols = at[context >= 0], context[context >= 0]
            for step in (-1, 1):
                target = source + step
                inside = (target >= 0) & (target < n)
                inside[inside] &= owner[target[inside]] == owner[source[inside]]
                found_rows.append(target[inside])
                found_cols.append(cols[inside])
        cue_rows: list[int] = []
        cue_cols: list[int] = []
        for t, cues in enumerate(cue_spans):
            if not cues:
                continue
            everywhere = [self._column.get(CUE_IN_TEXT + f) for f in sorted({f for f, _, _ in cues})]
            for k, row in enumerate(rows[t][1:]):
                here = {f for f, a, b in cues if a < row.end and b > row.start}
                for j in everywhere + [self._column.get(CUE_IN_CLAUSE + f) for f in sorted(here)]:
                    if j is not None:
                        cue_rows.append(int(first[t]) + k)
                        cue_cols.append(j)
        found_rows.append(np.array(cue_rows, dtype=np.int64))
        found_cols.append(np.array(cue_cols, dtype=np.int64))
        return rows, self._row_margins(np.concatenate(found_rows), np.concatenate(found_cols), n)

    def _row_margins(self, rows: np.ndarray, cols: np.ndarray, n: int) -> np.ndarray:
        """Margins of ``n`` rows from their (row, column) feature occurrences: sublinear TF-IDF,
        L2-normed, times the weights, plus the intercepts."""
        out = np.tile(self.intercepts, (n, 1))
        if not len(cols):
            return out
        r, c, tfidf = counted_pairs(rows, cols, len(self.vocabulary), self.idf)
        norm = np.sqrt(np.bincount(r, weights=tfidf * tfidf, minlength=n))
        present, starts = np.unique(r, return_index=True)
        out[present] += np.add.reduceat((tfidf / norm[r])[:, None] * self.weights.take(c, axis=0), starts, axis=0)
        return out

    def margins(self, texts: Sequence[str], cue_spans: Sequence[Sequence[tuple[str, int, int]]]
                ) -> tuple[np.ndarray, list[list[Instance]], list[np.ndarray]]:
        """Each text's best-instance margin per flag, with its instances and their margins (a
        model without the whole-text instance gives that instance the intercepts)."""
        if not self.whole:
            rows, clause_margins = self._clause_margins(texts, cue_spans)
            flat = np.empty((len(clause_margins) + len(rows), len(self.flags)))
            whole_at = np.cumsum([0] + [len(r) for r in rows])[:-1]
            flat[whole_at] = self.intercepts
            flat[np.setdiff1d(np.arange(len(flat)), whole_at)] = clause_margins
        else:
            rows = [instances(text, cues, self.max_n, self.max_chars)
                    for text, cues in zip(texts, cue_spans, strict=True)]
            flat = self.instance_margins([inst for r in rows for inst in r])
        bounds = np.cumsum([0] + [len(r) for r in rows])
        per_text = [flat[bounds[i]: bounds[i + 1]] for i in range(len(rows))]
        best = np.full((len(texts), len(self.flags)), -np.inf)
        if len(flat):
            # Every text has its whole-text instance first, so each text's rows are one
            # non-empty run of ``flat``: one reduceat gives every text's best.
            read = flat.copy()
            if not self.whole:
                read[bounds[:-1]] = -np.inf
            best = np.maximum.reduceat(read, bounds[:-1], axis=0)
        # A text without a clause (punctuation only) has the intercepts alone.
        best = np.where(np.isfinite(best), best, self.intercepts)
        if self.whole_text is not None:
            best = best + self.whole_text.decision_function(list(texts))[
                :, [self.whole_text.topics.index(f) for f in self.flags]]
        return best, rows, per_text

    def decide(self, texts: Sequence[str], cue_spans: Sequence[Sequence[tuple[str, int, int]]]
               ) -> list[dict[str, tuple[int, int] | None]]:
        """Per text the flags raised, each with an evidence span inside its best clause (None
        when neither model's n-grams there raise the flag's margin)."""
        hits = np.array([[any(f == flag for f, _, _ in spans) for flag in self.flags] for spans in cue_spans],
                        dtype=bool).reshape(len(texts), len(self.flags))
        best, rows, margins = self.margins(texts, cue_spans)
        raised = best + self.keyword_weights * hits >= self.fused_thresholds
        return [{self.flags[k]: self._evidence(texts[i], rows[i], margins[i][:, k], k)
                 for k in np.flatnonzero(raised[i]).tolist()} for i in range(len(texts))]

    def _evidence(self, text: str, rows: list[Instance], margins: np.ndarray, k: int) -> tuple[int, int] | None:
        """The stretch of the best clause that raised flag ``k``; when none of its n-grams
        raises it (the whole-text model carried the decision), the whole-text model's own
        strongest stretch, cut to the clause it starts in."""
        clauses = [j for j, r in enumerate(rows) if not r.whole]
        if not clauses:
            return None
        row = rows[max(clauses, key=lambda j: margins[j])]
        span = self.evidence_span(text, row.start, row.end, k)
        if span is not None or self.whole_text is None:
            return span
        found = self.whole_text.evidence_span(text, self.flags[k])
        if found is None:
            return None
        a, b = found
        end = next((e for r in rows if not r.whole and r.start <= a < (e := r.end)), b)
        return (a, min(b, end))

    def evidence_span(self, text: str, start: int, end: int, k: int) -> tuple[int, int] | None:
        """The stretch of ``text[start:end]`` whose own n-grams raise flag ``k`` most (the
        strongest n-gram grown by overlapping ones of at least :data:`EVIDENCE_SHARE` of it)."""
        clause = text[start: min(end, start + MAX_CLAUSE_CHARS)]
        normal, origin = count_classes(clause)
        found = []
        for m in range(1, self.max_n + 1):
            for a in range(len(normal) - m + 1):
                j = self._column.get(normal[a: a + m])
                if j is not None:
                    found.append((a, a + m, self.idf[j] * self.weights[j, k]))
        if not found or max(v for _, _, v in found) <= 0:
            return None
        top = max(found, key=lambda g: g[2])
        a, b = top[0], top[1]
        strong = [(s, e) for s, e, v in found if v >= EVIDENCE_SHARE * top[2]]
        grown = True
        while grown:
            grown = False
            for s, e in strong:
                if s <= b and e >= a and (s < a or e > b) and max(e, b) - min(s, a) <= EVIDENCE_MAX:
                    a, b, grown = min(s, a), max(e, b), True
        ends = origin[1:] + [len(clause)]
        lo, hi = start + origin[a], start + ends[b - 1]
        while lo < hi and text[lo].isspace():
            lo += 1
        while hi > lo and text[hi - 1].isspace():
            hi -= 1
        return (lo, hi) if lo < hi else None

    def save(self, out_dir: str | Path) -> None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_arrays(out / ARTIFACT_WEIGHTS, self.vocabulary, self.idf, self.weights)
        params = {"name": self.name, "version": self.version, "flags": self.flags,
                  "features": "tfidf(sublinear_tf, l2) per clause: char 1..max_n-grams of the "
                              "count-classed clause, its neighbours' char 1..2-grams, cue flags "
                              "in the clause and the text; with whole, the whole text is one more instance; "
                              "with adds_whole_text_scorer, the folder's aspect_tagger margin is added",
                  "max_n": self.max_n, "max_chars": self.max_chars, "whole": self.whole,
                  "adds_whole_text_scorer": self.whole_text is not None,
                  "max_clauses": MAX_CLAUSES,
                  "intercepts": self.intercepts.tolist(), "keyword_weights": self.keyword_weights.tolist(),
                  "fused_thresholds": self.fused_thresholds.tolist(), "n_features": len(self.vocabulary)}
        (out / ARTIFACT_PARAMS).write_text(json.dumps(params, ensure_ascii=False, indent=2) + "\n",
                                           encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path | Traversable) -> UrgencyClauseModel:
        folder = Path(directory) if isinstance(directory, str) else directory
        params = json.loads((folder / ARTIFACT_PARAMS).read_text(encoding="utf-8"))
        vocabulary, idf, weights = read_arrays(folder / ARTIFACT_WEIGHTS)
        whole_text = AspectTagger.load(folder) if params["adds_whole_text_scorer"] else None
        return cls(flags=params["flags"], vocabulary=vocabulary, idf=idf, weights=weights,
                   intercepts=np.array(params["intercepts"]),
                   keyword_weights=np.array(params["keyword_weights"]),
                   fused_thresholds=np.array(params["fused_thresholds"]),
                   max_n=params["max_n"], max_chars=params["max_chars"], version=params["version"],
                   whole=params["whole"], whole_text=whole_text)


def has_artifact(folder: Path | Traversable) -> bool:
    """Whether ``folder`` holds a clause model (rather than a round-4 whole-text scorer alone)."""
    return (folder / ARTIFACT_PARAMS).is_file()


# --- training (scikit-learn) -------------------------------------------------------------

@dataclass(frozen=True)
class ClauseFit:
    """How the clause model is fitted (chosen by LOAO, docs/model-card.md "Round 5")."""

    c: float = 3.0
    max_n: int = 3
    rounds: int = 2
    min_df: int = 2
    whole: bool = True
    """Whether the whole text is an instance (without it, the first fit takes every clause of
    a positive item as positive)."""


def fit_clause_model(texts: Sequence[str], labels: Sequence[Iterable[str]],
                     cue_spans: Sequence[Sequence[tuple[str, int, int]]], flags: Sequence[str],
                     fit: ClauseFit, max_chars: int = 4000) -> UrgencyClauseModel:
    """The per-flag multiple-instance fits (module docstring); cuts left at zero."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from services.nlp.aspect_tagger import fit_topic

    rows = [instances(t, c, fit.max_n, max_chars) for t, c in zip(texts, cue_spans, strict=True)]
    owner = np.array([i for i, r in enumerate(rows) for _ in r])
    flat = [inst for r in rows for inst in r]
    vectorizer = TfidfVectorizer(analyzer=lambda inst: inst.grams, sublinear_tf=True, min_df=fit.min_df)
    x = vectorizer.fit_transform(flat).tocsr()
    vocab = [""] * len(vectorizer.vocabulary_)
    for g, j in vectorizer.vocabulary_.items():
        vocab[j] = g
    gold = np.array([[f in set(s) for f in flags] for s in labels], dtype=bool).reshape(len(texts), len(flags))
    weights = np.zeros((x.shape[1], len(flags)))
    intercepts = np.zeros(len(flags))
    whole = np.array([inst.whole for inst in flat])
    for k, flag in enumerate(flags):
        positive_item = gold[owner, k]
        cue_clause = np.array([CUE_IN_CLAUSE + flag in inst.grams for inst in flat])
        chosen = positive_item & ((whole | cue_clause) if fit.whole else ~whole)
        for step in range(fit.rounds + 1):
            keep = (~positive_item | chosen) & (fit.whole | ~whole)
            w, b = fit_topic(x[keep], chosen[keep], fit.c, 1.0)
            if step == fit.rounds:
                break
            margin = x @ w + b
            best = np.full(len(texts), -np.inf)
            np.maximum.at(best, owner, margin)
            chosen = positive_item & (margin >= best[owner])
        weights[:, k], intercepts[k] = w, b
    zeros = np.zeros(len(flags))
    return UrgencyClauseModel(list(flags), vocab, vectorizer.idf_, weights, intercepts, zeros, zeros,
                              fit.max_n, max_chars, whole=fit.whole)


__all__ = ["MAX_CLAUSES", "ClauseFit", "Instance", "UrgencyClauseModel", "clause_spans", "count_classes",
           "fit_clause_model", "has_artifact", "instances"]
