"""The clause urgency model (services/nlp/urgency_model.py): counts read as classes, clauses
bounded, multiple-instance fitting, evidence inside the clause that raised a flag, and its
use through the urgency cue file."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from services.nlp.cem_tagger import Fit, Labelled, fit_on
from services.nlp.cues import load_urgency
from services.nlp.urgency_model import (
    MAX_CLAUSES,
    ClauseFit,
    UrgencyClauseModel,
    clause_spans,
    count_classes,
    fit_clause_model,
    instances,
)

FLAGS = ["repeat_contact", "churn_intent"]
REPEAT = ["宽带又断了，这是第四次了", "空调修了三回，还是不制冷", "我打了好几次电话，一直没人管",
          "热水器两个礼拜了还没人来修，已经催了五遍", "路由器第三次坏了，客服态度还行",
          "这周已经打了两通电话，还是没解决"]
LEAVE = ["套餐太贵了，我准备换到别家", "会员到期就不续了，打算换平台", "服务太差，准备携号转网"]
CALM = ["请问账单什么时候出", "快递今天下午送到了，谢谢", "客服回复很及时", "想问一下怎么改地址",
        "包装挺好的，一共三层", "师傅上门很准时", "价格还可以", "下单第二天就到了，一直很满意",
        "一个月前买的，质量不错", "用了两年了，挺好"]


def fitted() -> UrgencyClauseModel:
    texts = REPEAT + LEAVE + CALM
    labels = [{"repeat_contact"} if t in REPEAT else {"churn_intent"} if t in LEAVE else set() for t in texts]
    model = fit_clause_model(texts, labels, [[] for _ in texts], FLAGS, ClauseFit(c=10.0, max_n=3, min_df=1))
    # Cuts at zero margin, no cue bonus: the test does not depend on where a tiny set puts them.
    model.fused_thresholds = np.zeros(len(FLAGS))
    return model


def test_counts_counters_and_time_units_become_classes_and_offsets_map_back() -> None:
    assert count_classes("第四次了")[0] == "第NC了"
    assert count_classes("修了三回")[0] == count_classes("修了两次")[0] == "修了NC"
    assert count_classes("打了好几次电话")[0] == "打了好NC电话"
    assert count_classes("两个礼拜了还没人来")[0] == "N个T了还没人来"
    assert count_classes("三天了")[0] == "NT了"
    # A numeral that counts nothing, and a counter that follows no numeral, stay as they are.
    assert count_classes("一直回复")[0] == "一直回复"
    # Once is no repeat: 第一次 stays apart from 第二次.
    assert count_classes("第一次来")[0] == "第一次来" and count_classes("第二次来")[0] == "第NC来"
    normal, origin = count_classes("等了两个礼拜")
    assert len(origin) == len(normal) and origin[normal.index("T")] == 4


def test_clauses_are_bounded_and_the_whole_text_is_one_more_instance() -> None:
    text = "，".join(f"第{k}句" for k in range(MAX_CLAUSES * 3))
    assert len(clause_spans(text)) == MAX_CLAUSES
    rows = instances(text, [], 3, 4000)
    assert len(rows) == MAX_CLAUSES + 1 and rows[0].whole and not rows[1].whole


def test_hostile_input_stays_linear() -> None:
    model = fitted()
    for text in ("第" * 100_000, "三次，" * 30_000, "两个礼拜" * 25_000):
        began = time.process_time()
        model.decide([text], [[]])
        assert time.process_time() - began < 2.0


def test_a_repeat_in_one_clause_is_raised_and_points_inside_that_clause() -> None:
    model = fitted()
    text = "客服态度还行，网络又断了，已经是第五次了"
    decided = model.decide([text, "快递很快，谢谢"], [[], []])
    assert "repeat_contact" in decided[0] and decided[1] == {}
    span = decided[0]["repeat_contact"]
    assert span is not None
    a, b = span
    clause = next((s, e) for s, e in clause_spans(text) if s <= a < e)
    assert b <= clause[1], "the span stays inside its clause"
    # 第五次 was never seen: its class 第NC was.
    assert "第五次" in text[clause[0]: clause[1]]


def test_the_model_saves_loads_and_decides_through_the_cue_file(tmp_path: Path) -> None:
    model = fitted()
    model.save(tmp_path / "scorer")
    loaded = UrgencyClauseModel.load(tmp_path / "scorer")
    texts = REPEAT + CALM
    assert np.allclose(loaded.margins(texts, [[] for _ in texts])[0],
                       model.margins(texts, [[] for _ in texts])[0], atol=1e-5)
    (tmp_path / "urgency.yaml").write_text(
        "version: 1\nscorer: scorer\nflags:\n  repeat_contact: ['第二次']\n  churn_intent: ['销户']\n",
        encoding="utf-8")
    cues = load_urgency(tmp_path / "urgency.yaml")
    assert isinstance(cues.scorer, UrgencyClauseModel)
    text = "电视又黑屏了，修了四回了"
    decided = cues.decide([text], [cues.find(text)])
    flags = {u.flag: u for u in decided[0]}
    assert "repeat_contact" in flags
    (a, b), = flags["repeat_contact"].evidence
    assert text[a:b] == flags["repeat_contact"].term and a >= text.index("修")


def test_with_the_whole_text_scorer_the_margins_add_and_both_load_from_one_folder(tmp_path: Path) -> None:
    texts = REPEAT + LEAVE + CALM
    items = [Labelled(t, frozenset({"repeat_contact"} if t in REPEAT else {"churn_intent"} if t in LEAVE
                                   else set()), frozenset(), "a") for t in texts]
    scorer = fit_on(([], []), items, FLAGS, Fit(author_weight=1.0, c=10.0, max_n=2, word_n=0, min_df=1))
    scorer.save(tmp_path / "scorer")
    model = fitted()
    alone = model.margins(texts, [[] for _ in texts])[0]
    model.whole_text = scorer
    model.save(tmp_path / "scorer")
    both = UrgencyClauseModel.load(tmp_path / "scorer")
    assert both.whole_text is not None
    assert np.allclose(both.margins(texts, [[] for _ in texts])[0],
                       alone + scorer.decision_function(texts), atol=1e-5)
    # A raised flag still points inside one clause of the text.
    text = "客服态度还行，网络又断了，已经是第五次了"
    span = both.decide([text], [[]])[0]["repeat_contact"]
    assert span is not None
    assert any(s <= span[0] and span[1] <= e for s, e in clause_spans(text))



def test_the_batch_clause_pass_gives_the_margins_of_each_instance_features() -> None:
    """Inference scores clauses in numpy passes over the joined texts (``_clause_margins``);
    training reads each instance's n-grams (:func:`instances`). Both must give one margin."""
    model = fitted()
    texts = [*REPEAT, *LEAVE, *CALM, "服务太差，第四次了。准备换到别家！", "", "。。。"]
    cues = [[("repeat_contact", 0, 2)] if t.startswith("宽带") else [] for t in texts]
    rows, batch = model._clause_margins(texts, cues)
    single = model.instance_margins([inst for text, c in zip(texts, cues, strict=True)
                                     for inst in instances(text, c, model.max_n, model.max_chars)[1:]])
    assert sum(len(r) - 1 for r in rows) == len(batch) == len(single)
    assert np.ptp(batch[:, 0]) > 0.5, "the clauses' margins differ, so the comparison can fail"
    assert np.allclose(batch, single)
