"""Clusters of what the taxonomy misses: negative feedback with no topic, grouped by the
character n-grams of its text (docs/emerging.md, "Clusters").

Chinese needs no segmenter for this: two comments about the same failure share character
pairs and triples (二维, 维码, 扫不出 ...) whatever the segmenter made of them. Each text becomes
a TF-IDF vector of its hanzi/letter 2- and 3-grams, hashed into :data:`DIMENSIONS` buckets
(crc32: the same in every process), L2-normalised. Texts are then taken oldest first and each
joins the cluster whose centroid is most similar (cosine >= ``similarity``) or starts a new
one, at most :data:`MAX_CLUSTERS` (the leader algorithm: one pass, deterministic, no model to
download and nothing kept between calls). Clusters smaller than ``min_size`` are dropped.

Each cluster reports its size, its trend (events per sixth of the period), its top phrases
(the candidate phrases of services/core/phrases.py most frequent in it, ranked by how much more
frequent than in all the texts) and its representative comments (nearest its centroid).
Bounded: at most ``max_events`` texts (the newest), each read up to :data:`MAX_CHARS`.
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from services.core.phrases import display

DIMENSIONS = 2048
MAX_CLUSTERS = 200
MAX_CHARS = 500
TREND_BUCKETS = 6
SHOWN_PHRASES = 5
SHOWN_COMMENTS = 3
LISTED_COMMENTS = 20

_RUN = re.compile(r"[\u4e00-\u9fffA-Za-z0-9]+")
"""A run of hanzi, letters or digits (linear: maximal runs of one character class)."""


@dataclass(frozen=True)
class Text:
    """One untagged negative comment as stored."""

    event_id: str
    touchpoint: str
    occurred_at: datetime
    text: str
    phrases: tuple[str, ...]


@dataclass(frozen=True)
class Cluster:
    size: int
    trend: list[int]
    phrases: list[str]
    representative: list[Text]
    members: list[Text]
    """The newest :data:`LISTED_COMMENTS` members (what "open its comments" shows)."""


def ngrams(text: str) -> list[str]:
    """The character 2- and 3-grams of each run of hanzi, letters or digits (lower-cased)."""
    grams: list[str] = []
    for run in _RUN.findall(text[:MAX_CHARS].lower()):
        for n in (2, 3):
            grams.extend(run[i:i + n] for i in range(len(run) - n + 1))
    return grams


def vectors(texts: Sequence[str]) -> np.ndarray:
    """TF-IDF of the texts' hashed n-grams, one L2-normalised row per text."""
    counts = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
    for row, text in enumerate(texts):
        for gram in ngrams(text):
            counts[row, zlib.crc32(gram.encode("utf-8")) % DIMENSIONS] += 1.0
    present = (counts > 0).sum(axis=0)
    idf = np.log((1 + len(texts)) / (1 + present)) + 1.0
    weighted = np.log1p(counts) * idf
    norms = np.linalg.norm(weighted, axis=1, keepdims=True)
    return weighted / np.where(norms == 0, 1.0, norms)


def _top_phrases(members: Sequence[Text], overall: Counter[str], total: int) -> list[str]:
    """Phrases most frequent in the cluster, weighted by their lift over all texts; a phrase
    inside a shown longer one with as many mentions is not shown again."""
    inside: Counter[str] = Counter(p for m in members for p in set(m.phrases))
    scored = sorted(((-(n * math.log(1 + (n / len(members)) / (overall[p] / total))), p)
                     for p, n in inside.items() if n >= 2), key=lambda x: (x[0], x[1]))
    shown: list[str] = []
    for _, phrase in scored:
        if any(f" {phrase} " in f" {other} " and inside[other] >= inside[phrase]
               for other in shown):
            continue
        shown.append(phrase)
        if len(shown) == SHOWN_PHRASES:
            break
    return [display(p) for p in shown]


def cluster(texts: Sequence[Text], lo: datetime, hi: datetime, *, similarity: float,
            min_size: int) -> list[Cluster]:
    """The clusters of ``texts`` (oldest first) over the period ``[lo, hi)``, largest first."""
    if not texts:
        return []
    matrix = vectors([t.text for t in texts])
    centroids = np.zeros((MAX_CLUSTERS, DIMENSIONS), dtype=np.float32)
    members: list[list[int]] = []
    for i, row in enumerate(matrix):
        if not row.any():
            continue
        if members:
            sims = centroids[:len(members)] @ row
            best = int(np.argmax(sims))
            if sims[best] >= similarity:
                members[best].append(i)
                total = matrix[members[best]].sum(axis=0)
                centroids[best] = total / max(float(np.linalg.norm(total)), 1e-9)
                continue
        if len(members) < MAX_CLUSTERS:
            members.append([i])
            centroids[len(members) - 1] = row
    overall = Counter(p for t in texts for p in set(t.phrases))
    span = max((hi - lo).total_seconds(), 1.0)
    found = []
    for index, member_rows in enumerate(members):
        if len(member_rows) < min_size:
            continue
        group = [texts[i] for i in member_rows]
        trend = [0] * TREND_BUCKETS
        for t in group:
            at = (t.occurred_at - lo).total_seconds() / span
            trend[min(TREND_BUCKETS - 1, max(0, int(at * TREND_BUCKETS)))] += 1
        closeness = matrix[member_rows] @ centroids[index]
        nearest = [group[j] for j in np.argsort(-closeness, kind="stable")[:SHOWN_COMMENTS]]
        newest = sorted(group, key=lambda t: (t.occurred_at, t.event_id),
                        reverse=True)[:LISTED_COMMENTS]
        found.append(Cluster(len(group), trend, _top_phrases(group, overall, len(texts)),
                             nearest, newest))
    return sorted(found, key=lambda c: (-c.size, c.phrases))
