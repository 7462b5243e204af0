"""The learned tagger of the default CEM taxonomy, and the learned urgency scorer, fitted on
several authors' labelled feedback and judged leave-one-author-out.

Round 3 of issue 16 showed that what is fitted to one author's phrasing does not carry to the
next author's (docs/model-card.md, "Round 3"), so both models here are trained on the labelled
items of every author the set has (``bench/voc_eval.py``'s tuning data, one author per file)
and every setting that is chosen from labelled data is chosen on **leave-one-author-out**
(LOAO) margins: each author's items are scored by a model fitted without them.

Topics: a text's topics are those the fused decision of :class:`AspectTagger` keeps (the
model's margin plus a per-topic bonus when a phrase of the taxonomy matched, against a per-topic
cut). The model is NB-LR over char 1-2-grams and words (the 1.2.0 features), fitted on

- the authors' items, whose topic labels are a person's (sample weight ``author_weight``);
- optionally the public aspect corpora, whose aspect labels map onto CEM topics (makeup:
  使用体验 功效 气味 包装 真伪 成分 尺寸 新鲜度 整体 → ``product_quality``, 价格 →
  ``price_fees``, 物流 → ``logistics_delivery``, 服务 → ``service_attitude``, 其他 → none; car:
  动力 油耗 操控 舒适性 配置 安全性 内饰 外观 空间 → ``product_quality``, 价格 → ``price_fees``),
  the topics a corpus does not annotate labelled weakly by the taxonomy's phrases, and a sample
  of ``sentiment_dev.csv`` reviews labelled weakly by the phrases (``public="all"``).

The restaurant corpus is never read: its licence is non-commercial, and this tagger ships.

Each topic's keyword bonus and cut are tuned, for the micro-F1 of all topics together, on the
pooled LOAO margins of the training authors (:func:`loao_margins`), never on margins of items
the model was fitted on. Urgency works the same way with the four flags as topics, char 1-3-grams
only, the urgency cue matches in place of the phrases, and each flag's bonus and cut chosen for
the highest recall at a precision floor (:func:`tune_for_precision`).
"""

from __future__ import annotations

import copy
import csv
import json
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.nlp.aspect_tagger import (
    CLAUSE_CAP,
    CLAUSE_MIXES,
    KEYWORD_WEIGHTS,
    KEYWORDS_ONLY,
    MIN_EXAMPLES,
    AspectTagger,
    _fusion,
    fit_topic,
    text_features,
)
from services.nlp.word_classes import classes_of

MAKEUP: dict[str, str | None] = {
    "使用体验": "product_quality", "功效": "product_quality", "气味": "product_quality",
    "包装": "product_quality", "真伪": "product_quality", "成分": "product_quality",
    "尺寸": "product_quality", "新鲜度": "product_quality", "整体": "product_quality",
    "价格": "price_fees", "物流": "logistics_delivery", "服务": "service_attitude", "其他": None}
CAR: dict[str, str | None] = {
    "动力": "product_quality", "油耗": "product_quality", "操控": "product_quality",
    "舒适性": "product_quality", "配置": "product_quality", "安全性": "product_quality",
    "内饰": "product_quality", "外观": "product_quality", "空间": "product_quality",
    "价格": "price_fees"}
REVIEW_SAMPLE = 12_000
"""Reviews of sentiment_dev.csv labelled weakly when ``public="all"``."""
PUBLIC_CHOICES = ("none", "aspects", "all")


@dataclass(frozen=True)
class Labelled:
    """One author's labelled item: the analysed text, its gold labels and what the phrases
    (or cues) matched in it."""

    text: str
    labels: frozenset[str]
    hits: frozenset[str]
    author: str


@dataclass(frozen=True)
class Fit:
    """How a linear tagger is fitted (chosen by LOAO, see docs/model-card.md)."""

    author_weight: float = 3.0
    c: float = 3.0
    max_n: int = 2
    word_n: int = 1
    min_df: int = 2
    word_classes: tuple[int, ...] = ()
    """Levels of the word classes whose tokens join the words (services/nlp/word_classes.py);
    none by default."""


def _mapped(path: Path, mapping: dict[str, str | None]) -> list[tuple[str, set[str]]]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                rows.append((row["text"], {t for a in row["aspects"] if (t := mapping[a])}))
    return rows


def training_rows(data_dir: Path, taxonomy: Any, seed: int = 16, public: str = "all"
                  ) -> tuple[list[str], list[set[str]], dict[str, Any]]:
    """Public texts and their topic sets: mapped gold where a corpus annotates a topic, the
    taxonomy's phrases elsewhere (``public``: "none", "aspects" for the makeup and car corpora,
    "all" for those and a sample of reviews)."""
    if public not in PUBLIC_CHOICES:
        raise ValueError(f"public={public!r}: choose one of {PUBLIC_CHOICES}")
    texts: list[str] = []
    labels: list[set[str]] = []
    sources: dict[str, Any] = {}
    if public == "none":
        return texts, labels, sources
    for name, file, mapping in (("makeup", "aspect_ecom_makeup_dev.jsonl", MAKEUP),
                                ("car", "aspect_car_dev.jsonl", CAR)):
        annotated = {t for t in mapping.values() if t}
        rows = _mapped(data_dir / file, mapping)
        for text, gold in rows:
            weak = {m.id for m in taxonomy.tag(text)} - annotated
            texts.append(text)
            labels.append(gold | weak)
        sources[name] = {"rows": len(rows), "gold_topics": sorted(annotated)}
    if public == "all":
        with (data_dir / "sentiment_dev.csv").open(encoding="utf-8", newline="") as fh:
            reviews = [row["text"] for row in csv.DictReader(fh)]
        rng = np.random.default_rng(seed)
        picked = [reviews[i] for i in sorted(rng.permutation(len(reviews))[:REVIEW_SAMPLE])]
        for text in picked:
            texts.append(text)
            labels.append({m.id for m in taxonomy.tag(text)})
        sources["sentiment_dev_reviews"] = {"rows": len(picked), "gold_topics": []}
    return texts, labels, sources


def fit_linear(texts: Sequence[str], labels: Sequence[AbstractSet[str]],
               topics: Sequence[str], sample_weight: np.ndarray, fit: Fit,
               max_chars: int = 4000) -> AspectTagger:
    """One NB-LR model per topic (:func:`fit_topic`) over sublinear TF-IDF char
    1..max_n-grams and words (word_n 0: none; :func:`text_features`), with per-row weights;
    thresholds and fusion left at zero (set by :func:`tune_fusion` or
    :func:`tune_for_precision` from LOAO margins)."""
    from services.nlp.segmenter import Segmenter
    from services.nlp.sentiment_model import normalise

    segmenter = Segmenter() if fit.word_n else None
    words = ({t: segmenter.cut(normalise(t)[:max_chars]) for t in set(texts)}
             if segmenter is not None else {})
    setting = {"levels": list(fit.word_classes)} if fit.word_classes else None
    features = text_features(texts, fit.max_n, fit.word_n, fit.min_df, max_chars, words, classes_of(setting))
    y = np.array([[t in s for t in topics] for s in labels], dtype=bool).reshape(len(texts), len(topics))
    weights = np.zeros((features.x.shape[1], len(topics)))
    intercepts = np.zeros(len(topics))
    for k in range(len(topics)):
        weights[:, k], intercepts[k] = fit_topic(features.x, y[:, k], fit.c, 1.0, sample_weight)
    zeros = np.zeros(len(topics))
    return AspectTagger(
        topics=list(topics), vocabulary=features.vocabulary, idf=features.idf, weights=weights,
        intercepts=intercepts, thresholds=zeros, keyword_weights=zeros, fused_thresholds=zeros,
        support={t: int(y[:, k].sum()) for k, t in enumerate(topics)}, max_n=fit.max_n,
        max_chars=max_chars, word_n=fit.word_n, n_char=features.n_char, word_classes=setting)


def fit_on(public: tuple[Sequence[str], Sequence[set[str]]], items: Sequence[Labelled],
           topics: Sequence[str], fit: Fit) -> AspectTagger:
    """The linear tagger fitted on the public rows (weight 1) and the items (``author_weight``)."""
    texts = [*public[0], *(i.text for i in items)]
    labels = [*public[1], *(i.labels for i in items)]
    weight = np.concatenate([np.ones(len(public[0])), np.full(len(items), fit.author_weight)])
    return fit_linear(texts, labels, topics, weight, fit)


def loao_margins(public: tuple[Sequence[str], Sequence[set[str]]], items: Sequence[Labelled],
                 topics: Sequence[str], fit: Fit) -> np.ndarray:
    """Each item's margins from a model fitted without its author's items (and with the public
    rows), shape (len(items), len(topics)); NaN for an author who leaves nothing to fit on."""
    return _loao(public, items, topics, fit, clauses=False)[0]


def loao_clause_margins(public: tuple[Sequence[str], Sequence[set[str]]], items: Sequence[Labelled],
                        topics: Sequence[str], fit: Fit, clause_cap: int = CLAUSE_CAP,
                        clause_split: str = "fine") -> tuple[np.ndarray, np.ndarray]:
    """:func:`loao_margins` and, from the same models, each item's best clause margins
    (:meth:`AspectTagger.clause_best`, at most ``clause_cap`` clauses per item, split by
    ``clause_split``)."""
    margins, best = _loao(public, items, topics, fit, clauses=True, clause_cap=clause_cap,
                          clause_split=clause_split)
    assert best is not None
    return margins, best


def _loao(public: tuple[Sequence[str], Sequence[set[str]]], items: Sequence[Labelled],
          topics: Sequence[str], fit: Fit, clauses: bool, clause_cap: int = CLAUSE_CAP,
          clause_split: str = "fine") -> tuple[np.ndarray, np.ndarray | None]:
    authors = np.array([i.author for i in items])
    margins = np.full((len(items), len(topics)), np.nan)
    best = np.full((len(items), len(topics)), np.nan) if clauses else None
    for author in sorted(set(authors)):
        mine = np.flatnonzero(authors == author)
        rest = [i for i in items if i.author != author]
        if not rest and not public[0]:
            continue
        model = fit_on(public, rest, topics, fit)
        texts = [items[int(k)].text for k in mine]
        margins[mine] = model.decision_function(texts)
        if best is not None:
            model.clause_cap, model.clause_split = clause_cap, clause_split
            best[mine] = model.clause_best(margins[mine], *model.clause_margins(texts))
    return margins, best


def _matrix(sets: Sequence[frozenset[str]], topics: Sequence[str]) -> np.ndarray:
    return np.array([[t in s for t in topics] for s in sets], dtype=bool).reshape(len(sets), len(topics))


def tune_fusion(margins: np.ndarray, gold: np.ndarray, hits: np.ndarray, learned: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Each learned topic's keyword bonus and cut for the micro-F1 of all topics together on
    out-of-sample margins (two passes of coordinate ascent, as ``train_tagger`` does out of
    fold); the other topics are decided by their phrases (bonus and cut of "keywords only")."""
    topics = gold.shape[1]
    decisions = hits.copy()
    weights = np.full(topics, KEYWORDS_ONLY[0])
    cuts = np.full(topics, KEYWORDS_ONLY[1])
    for _ in range(2):
        for k in np.flatnonzero(learned):
            rest = np.delete(np.arange(topics), k)
            d, t = decisions[:, rest], gold[:, rest]
            others = (int((d & t).sum()), int((d & ~t).sum()), int((~d & t).sum()))
            weights[k], cuts[k] = _fusion(margins[:, k], hits[:, k], gold[:, k], others)
            decisions[:, k] = margins[:, k] + weights[k] * hits[:, k] >= cuts[k]
    return weights, cuts


def tune_clause_fusion(margins: np.ndarray, best: np.ndarray, gold: np.ndarray, hits: np.ndarray,
                       learned: np.ndarray, mixes: Sequence[float] = CLAUSE_MIXES
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`tune_fusion` over the mixed margins (:meth:`AspectTagger.mixed`): each learned
    topic's clause mix (of ``mixes``), keyword bonus and cut together, for the micro-F1 of all
    topics, on out-of-sample whole-text ``margins`` and best clause margins ``best``. Ties go to
    the smaller mix, so the best clause changes a topic's decisions only where that measurably
    helps; a mix of 0 everywhere is :func:`tune_fusion`'s result."""
    topics = gold.shape[1]
    decisions = hits.copy()
    mix = np.zeros(topics)
    weights = np.full(topics, KEYWORDS_ONLY[0])
    cuts = np.full(topics, KEYWORDS_ONLY[1])
    lead = np.maximum(best - margins, 0.0)
    for _ in range(2):
        for k in np.flatnonzero(learned):
            rest = np.delete(np.arange(topics), k)
            d, t = decisions[:, rest], gold[:, rest]
            others = (int((d & t).sum()), int((d & ~t).sum()), int((~d & t).sum()))
            chosen: tuple[float, float, float, float] | None = None
            for m in mixes:
                score = margins[:, k] + m * lead[:, k]
                w, c = _fusion(score, hits[:, k], gold[:, k], others)
                got = score + w * hits[:, k] >= c
                tp = others[0] + int((got & gold[:, k]).sum())
                fp = others[1] + int((got & ~gold[:, k]).sum())
                fn = others[2] + int((~got & gold[:, k]).sum())
                f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
                if chosen is None or f1 > chosen[0] + 1e-9:
                    chosen = (f1, m, w, c)
            assert chosen is not None
            _, mix[k], weights[k], cuts[k] = chosen
            decisions[:, k] = margins[:, k] + mix[k] * lead[:, k] + weights[k] * hits[:, k] >= cuts[k]
    return mix, weights, cuts


def tune_for_precision(margins: np.ndarray, gold: np.ndarray, hits: np.ndarray,
                       floor: float) -> tuple[float, float, dict[str, float]]:
    """One flag's cue bonus and cut: the highest recall whose precision on out-of-sample
    margins is at least ``floor`` (ties: the higher precision, then the smaller bonus); the
    cue alone when no setting reaches the floor. Returns (bonus, cut, figures)."""
    positives = int(gold.sum())

    def figures(decided: np.ndarray) -> dict[str, float]:
        tp = int((decided & gold).sum())
        got = int(decided.sum())
        return {"precision": tp / got if got else 1.0, "recall": tp / positives if positives else 0.0,
                "predicted": got}

    best = (KEYWORDS_ONLY[0], KEYWORDS_ONLY[1], figures(hits))
    best_key = (best[2]["recall"], best[2]["precision"]) if best[2]["precision"] >= floor else (-1.0, 0.0)
    for bonus in KEYWORD_WEIGHTS if len(margins) else ():
        fused = margins + bonus * hits
        order = np.argsort(-fused, kind="stable")
        ranked = fused[order]
        tp = np.cumsum(gold[order])
        got = np.arange(1, len(ranked) + 1)
        for k in np.flatnonzero(np.append(ranked[1:] != ranked[:-1], True)):
            precision, recall = tp[k] / got[k], (tp[k] / positives if positives else 0.0)
            if precision >= floor and (recall, precision) > best_key:
                cut = float((ranked[k] + ranked[k + 1]) / 2) if k + 1 < len(ranked) else float(ranked[k] - 1.0)
                best_key = (recall, precision)
                best = (bonus, cut, figures(fused >= cut))
    return best


def train_topics(public: tuple[Sequence[str], Sequence[set[str]]], items: Sequence[Labelled],
                 topics: Sequence[str], fit: Fit, clause_mixes: Sequence[float] | None = None,
                 clause_split: str = "fine") -> tuple[AspectTagger, dict[str, Any]]:
    """The CEM tagger fitted on every given author's items (and the public rows), its fusion
    tuned on their pooled LOAO margins; with the LOAO figures the fusion was tuned on.

    With ``clause_mixes`` each topic is decided per clause too (:meth:`AspectTagger.mixed`):
    its clause mix is chosen among them with its bonus and cut (:func:`tune_clause_fusion`) on
    the same LOAO models' whole-text and best-clause margins, and saved in the artifact.
    """
    return train_topic_variants(public, items, topics, fit, [clause_mixes], clause_split)[0]


def train_topic_variants(public: tuple[Sequence[str], Sequence[set[str]]], items: Sequence[Labelled],
                         topics: Sequence[str], fit: Fit, variants: Sequence[Sequence[float] | None],
                         clause_split: str = "fine") -> list[tuple[AspectTagger, dict[str, Any]]]:
    """:func:`train_topics` for each of ``variants`` (its ``clause_mixes``), from one set of
    fitted models: the variants differ only in how their decision is tuned on the same margins,
    so a comparison fits each model once."""
    if all(v is None for v in variants):
        loao, best = loao_margins(public, items, topics, fit), None
    else:
        loao, best = loao_clause_margins(public, items, topics, fit, clause_split=clause_split)
    kept = np.isfinite(loao).all(axis=1)
    whole, gold, hits = _tuning_rows(loao, items, topics)
    fitted = fit_on(public, items, topics, fit)
    learned = np.array([fitted.support[t] >= MIN_EXAMPLES for t in topics])
    result = []
    for mixes in variants:
        tagger = copy.copy(fitted)
        report: dict[str, Any] = {}
        margins = whole
        if mixes is None or best is None:
            weights, cuts = tune_fusion(margins, gold, hits, learned)
        else:
            mix, weights, cuts = tune_clause_fusion(margins, best[kept], gold, hits, learned, mixes)
            tagger.clause_mix, tagger.clause_split = mix, clause_split
            margins = tagger.mixed(margins, best[kept])
            report["clause_mix"] = dict(zip(topics, mix.tolist(), strict=True))
        tagger.keyword_weights, tagger.fused_thresholds = weights, cuts
        tagger.thresholds = np.zeros(len(topics))
        decided = np.where(learned, margins + weights * hits >= cuts, hits)
        result.append((tagger, {
            "items": len(items), "tuned_on": len(gold), "authors": sorted({i.author for i in items}),
            "public_rows": len(public[0]), "fit": fit.__dict__,
            "keywords_only": _micro(hits, gold), "fused_on_loao_margins": _micro(decided, gold),
            "keyword_weights": dict(zip(topics, weights.tolist(), strict=True)),
            "fused_thresholds": dict(zip(topics, cuts.tolist(), strict=True)), **report}))
    return result


def train_urgency(items: Sequence[Labelled], flags: Sequence[str], fit: Fit,
                  floor: float) -> tuple[AspectTagger, dict[str, Any]]:
    """The urgency scorer fitted on every given author's items, each flag's cue bonus and cut
    chosen on their pooled LOAO margins for the highest recall at precision ``floor``."""
    none: tuple[list[str], list[set[str]]] = ([], [])
    margins, gold, hits = _tuning_rows(loao_margins(none, items, flags, fit), items, flags)
    scorer = fit_on(none, items, flags, fit)
    per_flag: dict[str, Any] = {}
    weights, cuts = np.zeros(len(flags)), np.zeros(len(flags))
    for k, flag in enumerate(flags):
        weights[k], cuts[k], per_flag[flag] = tune_for_precision(margins[:, k], gold[:, k], hits[:, k], floor)
        per_flag[flag]["cues_alone"] = tune_for_precision(
            np.zeros(len(gold)), gold[:, k], hits[:, k], 2.0)[2]
    scorer.keyword_weights, scorer.fused_thresholds = weights, cuts
    scorer.thresholds = np.zeros(len(flags))
    decided = margins + weights * hits >= cuts
    return scorer, {"items": len(items), "authors": sorted({i.author for i in items}),
                    "fit": fit.__dict__, "precision_floor": floor, "per_flag": per_flag,
                    "pooled_loao": _precision_recall(decided, gold),
                    "cues_alone": _precision_recall(hits, gold)}


def _tuning_rows(margins: np.ndarray, items: Sequence[Labelled], topics: Sequence[str]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The LOAO margins, gold and hits of the items that have margins (all of them, unless
    one author alone is left and there are no public rows)."""
    kept = np.isfinite(margins).all(axis=1)
    gold, hits = _matrix([i.labels for i in items], topics), _matrix([i.hits for i in items], topics)
    return margins[kept], gold[kept], hits[kept]


def _micro(decided: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    figures = _precision_recall(decided, gold)
    tp2 = 2 * figures["precision"] * figures["recall"]
    figures["micro_f1"] = tp2 / (figures["precision"] + figures["recall"]) if tp2 else 0.0
    return figures


def _precision_recall(decided: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    tp = int((decided & gold).sum())
    return {"precision": tp / max(int(decided.sum()), 1), "recall": tp / max(int(gold.sum()), 1)}


def labelled(texts: Sequence[str], labels: Sequence[Sequence[str]], authors: Sequence[str],
             matcher: Callable[[str], set[str]]) -> list[Labelled]:
    """Items as :class:`Labelled`, their hits found by ``matcher`` on the analysed text."""
    return [Labelled(text, frozenset(label), frozenset(matcher(text)), author)
            for text, label, author in zip(texts, labels, authors, strict=True)]
