"""The CEM tagger's and the urgency scorer's training by author (LOAO), their precision-floor
cut, and the evidence spans of what a model decides without a phrase or a cue."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.core.config_file import ConfigError
from services.nlp.aspect_tagger import AspectTagger
from services.nlp.cem_tagger import (
    Fit,
    Labelled,
    fit_on,
    loao_margins,
    train_urgency,
    tune_for_precision,
)
from services.nlp.cues import load_urgency
from services.nlp.taxonomy import _deciding_span

FLAGS = ["safety", "churn_intent"]
SAFE = ["家里燃气灶有股怪怪的气味一直散不掉", "热水器插头冒出蓝色的光还有焦糊的气味",
        "燃气灶旁边有股怪怪的气味不敢开火", "插头冒出火星子还有焦糊的气味", "小孩吃了以后浑身起了红点",
        "吃完以后浑身起了红点很痒"]
LEAVE = ["这个号码我不打算继续用了准备去隔壁那家", "会员到期就不打算继续了", "以后就去隔壁那家了",
         "我准备不打算继续用你们家的了"]
CALM = ["请问这个月的账单什么时候出", "快递今天下午送到了谢谢", "客服回复很及时", "想问一下怎么修改收货地址",
        "包装挺好的", "师傅上门很准时", "价格还可以", "下单以后第二天就到了"]


def rows() -> list[Labelled]:
    """Three authors, each with every kind of item, so each LOAO model has seen all kinds."""
    items = []
    for k, text in enumerate(SAFE + LEAVE + CALM):
        labels = frozenset({"safety"} if text in SAFE else {"churn_intent"} if text in LEAVE else set())
        hits = frozenset({"safety"} if "冒出" in text else set())
        items.append(Labelled(text, labels, hits, "abc"[k % 3]))
    return items


def test_the_cut_gives_the_most_recall_that_keeps_the_precision_floor() -> None:
    margins = np.array([3.0, 2.5, 2.0, 1.5, 1.0, 0.5, 0.0])
    gold = np.array([True, True, False, True, True, False, True])
    hits = np.zeros(7, dtype=bool)
    bonus, cut, figures = tune_for_precision(margins, gold, hits, 0.75)
    # Down to 1.0 four of five predicted are right (0.8); one more would make it 4/6.
    assert bonus == 0.0 and 0.5 < cut < 1.0
    assert figures["recall"] == pytest.approx(0.8) and figures["precision"] == pytest.approx(0.8)


def test_without_any_setting_above_the_floor_the_cues_alone_decide() -> None:
    margins = np.array([1.0, 2.0, 3.0])
    gold = np.array([True, False, False])
    hits = np.array([True, False, False])
    bonus, cut, figures = tune_for_precision(margins, gold, hits, 0.9)
    assert (bonus, cut) == (1e6, 5e5)
    assert figures == {"precision": 1.0, "recall": 1.0, "predicted": 1}


def test_loao_margins_come_from_models_fitted_without_the_author() -> None:
    items = rows()
    fit = Fit(author_weight=1.0, c=10.0, max_n=2, word_n=0, min_df=1)
    margins = loao_margins(([], []), items, FLAGS, fit)
    inside = fit_on(([], []), items, FLAGS, fit).decision_function([i.text for i in items])
    # An item's own n-grams raise its in-sample margin above its LOAO margin.
    positives = [k for k, i in enumerate(items) if "safety" in i.labels]
    assert all(inside[k, 0] > margins[k, 0] for k in positives)
    alone = loao_margins(([], []), [i for i in items if i.author == "a"], FLAGS, fit)
    assert np.isnan(alone).all()


def test_a_flag_raised_without_a_cue_points_at_the_characters_that_raised_it(tmp_path: Path) -> None:
    scorer, report = train_urgency(rows(), FLAGS, Fit(author_weight=1.0, c=10.0, max_n=2, word_n=0, min_df=1), 0.5)
    assert report["authors"] == ["a", "b", "c"]
    text = "家里燃气灶有股怪怪的气味"
    span = scorer.evidence_span(text, "safety")
    assert span is not None
    a, b = span
    assert 0 <= a < b <= len(text) and text[a:b].strip()
    # 气 occurs in every gas item and in no calm one: the strongest n-grams hold it.
    assert "气" in text[a:b]
    assert scorer.evidence_span("。。。", "safety") is None


def test_the_scorer_confirms_cues_and_adds_flags_with_spans_on_the_text(tmp_path: Path) -> None:
    folder = tmp_path / "scorer"
    items = rows()
    scorer, _ = train_urgency(items, FLAGS, Fit(author_weight=1.0, c=10.0, max_n=2, word_n=0, min_df=1), 0.5)
    # Force every learned flag to be decided by the margin with a low cut, so the test does not
    # depend on where the tiny set put the cuts.
    scorer.support = dict.fromkeys(FLAGS, 30)
    scorer.keyword_weights = np.zeros(len(FLAGS))
    scorer.fused_thresholds = scorer.decision_function([i.text for i in items]).min(axis=0) + 1e-3
    scorer.save(folder)
    (tmp_path / "urgency.yaml").write_text(
        "version: 1\nscorer: scorer\nflags:\n  safety: ['冒烟']\n  churn_intent: ['销户']\n", encoding="utf-8")
    cues = load_urgency(tmp_path / "urgency.yaml")
    assert cues.scorer is not None
    texts = ["热水器插头冒出蓝色的光还有焦糊的气味"]
    decided = cues.decide(texts, [cues.find(t) for t in texts])
    flags = {u.flag: u for u in decided[0]}
    assert "safety" in flags
    (a, b), = flags["safety"].evidence
    assert texts[0][a:b] == flags["safety"].term
    without = load_urgency(tmp_path / "urgency.yaml", with_scorer=False)
    assert without.scorer is None
    found = [without.find("马上给我销户")]
    assert without.decide(["马上给我销户"], found) == found


def test_a_scorer_that_does_not_load_or_knows_other_flags_is_refused(tmp_path: Path) -> None:
    (tmp_path / "urgency.yaml").write_text(
        "version: 1\nscorer: missing\nflags:\n  safety: ['冒烟']\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="scorer missing does not load"):
        load_urgency(tmp_path / "urgency.yaml")
    scorer, _ = train_urgency(rows(), FLAGS, Fit(author_weight=1.0, c=10.0, max_n=2, word_n=0, min_df=1), 0.5)
    scorer.save(tmp_path / "scorer")
    (tmp_path / "urgency.yaml").write_text(
        "version: 1\nscorer: scorer\nflags:\n  safety: ['冒烟']\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="churn_intent"):
        load_urgency(tmp_path / "urgency.yaml")


def test_a_model_only_topic_points_inside_its_clause(tmp_path: Path) -> None:
    items = [Labelled(t, frozenset({"product_quality"} if "屏幕" in t else set()), frozenset(), "a")
             for t in ["屏幕有坏点", "屏幕一直闪", "屏幕发黄", "快递很快", "客服很好", "价格便宜",
                       "屏幕裂了", "物流慢"]]
    tagger: AspectTagger = fit_on(([], []), items, ["product_quality"],
                                  Fit(author_weight=1.0, c=10.0, max_n=2, word_n=1, min_df=1))
    text = "快递挺快的，但是新手机屏幕有坏点"
    clause = (6, len(text))
    a, b = _deciding_span(tagger, text, clause, "product_quality")
    assert clause[0] <= a < b <= clause[1]
    assert "屏" in text[a:b] or "幕" in text[a:b]
    assert _deciding_span(tagger, "好。", (0, 1), "product_quality") == (0, 1)


def test_a_topic_kept_by_its_phrase_also_points_where_the_model_read_it() -> None:
    from services.nlp.taxonomy import Taxonomy, TaxonomySpec

    items = [Labelled(t, frozenset({"product_quality"} if "屏幕" in t else set()), frozenset(), "a")
             for t in ["屏幕有坏点", "屏幕一直闪", "屏幕发黄", "快递很快", "客服很好", "价格便宜",
                       "屏幕裂了", "物流慢"]]
    tagger = fit_on(([], []), items, ["product_quality"],
                    Fit(author_weight=1.0, c=10.0, max_n=2, word_n=1, min_df=1))
    tagger.support = {"product_quality": 30}
    tagger.keyword_weights = np.array([100.0])
    tagger.fused_thresholds = np.array([50.0])
    spec = TaxonomySpec.model_validate(
        {"topics": [{"id": "product_quality", "name": "产品", "keywords": ["质量"]}]})
    text = "质量一般，新买的屏幕有坏点"
    (match,) = Taxonomy(spec, tagger).tag_many([text])[0]
    assert match.evidence[0] == (0, 2)
    assert len(match.evidence) == 2
    a, b = match.evidence[1]
    assert 5 <= a < b <= len(text) and "屏" in text[a:b]
