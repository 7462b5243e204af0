"""The learned tagger of the default CEM taxonomy, trained without labelling anything by hand.

No corpus is labelled with the CEM topics, but two public ones are labelled with aspects that
map onto them, and the taxonomy's own phrases can label the rest weakly:

- the makeup reviews (Zhijiang Cup 2019): 使用体验, 功效, 气味, 包装, 真伪, 成分, 尺寸, 新鲜度 and
  整体 (the product overall) are ``product_quality``, 价格 ``price_fees``, 物流
  ``logistics_delivery``, 服务 ``service_attitude``; 其他 maps to nothing;
- the car forum posts (CCF BDCI 2018): 动力, 油耗, 操控, 舒适性, 配置, 安全性, 内饰, 外观 and
  空间 are ``product_quality``, 价格 ``price_fees``;
- the topics a corpus does not annotate, and every topic of a sample of the shopping, hotel and
  food-delivery reviews of ``sentiment_dev.csv``, are labelled weakly by the taxonomy's keywords
  (with its packs and exclusions), so the model learns the words that come with them.

The restaurant corpus is never read: its licence is non-commercial, and this tagger ships.

The model is :class:`~services.nlp.aspect_tagger.AspectTagger` (NB-LR over char 1-2-grams and
words, 5 averaged fold models), trained by :func:`~services.nlp.aspect_tagger.train_tagger`.
Its out-of-fold fusion with keywords would be tuned against weak labels that are the keywords
themselves, so the fusion (each topic's keyword bonus and threshold, for the micro-F1 of all
topics together) is tuned on the tuning data (``tuning`` + ``retired``) of the multi-channel
evaluation set instead, whose labels are a person's: margins there are out of sample, since none of it is trained on.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from services.nlp.aspect_tagger import (
    KEYWORD_WEIGHTS,
    MIN_EXAMPLES,
    _fusion,
    f1_scores,
    train_tagger,
)

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
"""Reviews of sentiment_dev.csv labelled weakly; more add training time, not topics."""


def _mapped(path: Path, mapping: dict[str, str | None]) -> list[tuple[str, set[str]]]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                rows.append((row["text"], {t for a in row["aspects"] if (t := mapping[a])}))
    return rows


def training_rows(data_dir: Path, taxonomy: Any, seed: int = 16) -> tuple[list[str], list[set[str]], dict[str, Any]]:
    """Texts and their topic sets: mapped gold where a corpus annotates a topic, keywords elsewhere."""
    topics = [t.id for t in taxonomy.spec.topics]
    texts: list[str] = []
    labels: list[set[str]] = []
    sources: dict[str, Any] = {}
    for name, file, mapping in (("makeup", "aspect_ecom_makeup_dev.jsonl", MAKEUP),
                                ("car", "aspect_car_dev.jsonl", CAR)):
        annotated = {t for t in mapping.values() if t}
        rows = _mapped(data_dir / file, mapping)
        for text, gold in rows:
            weak = {m.id for m in taxonomy.tag(text)} - annotated
            texts.append(text)
            labels.append(gold | weak)
        sources[name] = {"rows": len(rows), "gold_topics": sorted(annotated)}
    with (data_dir / "sentiment_dev.csv").open(encoding="utf-8", newline="") as fh:
        reviews = [row["text"] for row in csv.DictReader(fh)]
    rng = np.random.default_rng(seed)
    picked = [reviews[i] for i in sorted(rng.permutation(len(reviews))[:REVIEW_SAMPLE])]
    for text in picked:
        texts.append(text)
        labels.append({m.id for m in taxonomy.tag(text)})
    sources["sentiment_dev_reviews"] = {"rows": len(picked), "gold_topics": []}
    sources["support"] = {t: sum(t in s for s in labels) for t in topics}
    return texts, labels, sources


def tune_fusion(tagger: Any, texts: Sequence[str], gold: Sequence[set[str]],
                keyword_sets: Sequence[set[str]]) -> dict[str, Any]:
    """Set each learned topic's keyword bonus and fused threshold for the micro-F1 of all topics
    on labelled texts the tagger was not trained on (two passes of coordinate ascent, as
    ``train_tagger`` does out of fold)."""
    margins = tagger.decision_function(list(texts))
    topics = tagger.topics
    y = np.array([[t in g for t in topics] for g in gold], dtype=bool)
    hits = np.array([[t in k for t in topics] for k in keyword_sets], dtype=bool)
    learned = np.array([tagger.support[t] >= MIN_EXAMPLES for t in topics])
    decisions = hits.copy()
    weights = np.full(len(topics), KEYWORD_WEIGHTS[-1])
    cuts = np.zeros(len(topics))
    for _ in range(2):
        for k in np.flatnonzero(learned):
            rest = np.delete(np.arange(len(topics)), k)
            d, t = decisions[:, rest], y[:, rest]
            others = (int((d & t).sum()), int((d & ~t).sum()), int((~d & t).sum()))
            weights[k], cuts[k] = _fusion(margins[:, k], hits[:, k], y[:, k], others)
            decisions[:, k] = margins[:, k] + weights[k] * hits[:, k] >= cuts[k]
    tagger.keyword_weights = weights
    tagger.fused_thresholds = cuts
    return {"keywords_only": f1_scores(gold, [sorted(k) for k in keyword_sets]),
            "combined_on_tuning": f1_scores(gold, tagger.combine(list(texts), [sorted(k) for k in keyword_sets]))}


def train_cem_tagger(data_dir: Path, out: Path, tuning_texts: Sequence[str],
                     tuning_topics: Sequence[set[str]]) -> dict[str, Any]:
    """Train the CEM tagger, tune its fusion on the tuning data's analysed texts and topics,
    and save it to ``out``; returns what it was trained on and its tuning figures."""
    from services.nlp.segmenter import Segmenter
    from services.nlp.taxonomy import Taxonomy, load_taxonomy

    taxonomy = Taxonomy(load_taxonomy().spec)
    texts, labels, sources = training_rows(data_dir, taxonomy)
    tagger = train_tagger(texts, labels, topics=[t.id for t in taxonomy.spec.topics], seed=16)
    tagger.at_least_one = False
    segmenter = Segmenter()
    keyword_sets = [{m.id for m in taxonomy.tag(text, segmenter.cut(text))} for text in tuning_texts]
    figures = tune_fusion(tagger, tuning_texts, tuning_topics, keyword_sets)
    tagger.save(out)
    return {"sources": sources, "tuning_items": len(tuning_texts), **figures,
            "keyword_weights": dict(zip(tagger.topics, tagger.keyword_weights.tolist(), strict=True)),
            "fused_thresholds": dict(zip(tagger.topics, tagger.fused_thresholds.tolist(), strict=True))}
