"""The CEM tagger's and the urgency scorer's training by author (LOAO), their precision-floor
cut, and the evidence spans of what a model decides without a phrase or a cue."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core.config_file import ConfigError
from services.nlp.aspect_tagger import EVIDENCE_FIT, AspectTagger
from services.nlp.cem_tagger import (
    Fit,
    Labelled,
    fit_on,
    loao_margins,
    train_urgency,
    tune_for_precision,
)
from services.nlp.cues import load_urgency
from services.nlp.taxonomy import _deciding_spans, _evidence_clauses, _widened

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


def screen_tagger() -> AspectTagger:
    items = [Labelled(t, frozenset({"product_quality"} if "屏幕" in t else set()), frozenset(), "a")
             for t in ["屏幕有坏点", "屏幕一直闪", "屏幕发黄", "快递很快", "客服很好", "价格便宜",
                       "屏幕裂了", "物流慢"]]
    return fit_on(([], []), items, ["product_quality"],
                  Fit(author_weight=1.0, c=10.0, max_n=2, word_n=1, min_df=1))


def test_grams_at_is_a_lookup_of_each_lower_cased_window() -> None:
    """A clause's arrays are those of a dictionary look-up of its lower-cased windows, with its
    own offsets, and None where lower-casing changes the length (İ lower-cases to two
    characters)."""
    tagger = screen_tagger()
    column = {g: j for j, g in enumerate(tagger.vocabulary[: tagger.n_char])}
    clauses = ["新手机屏幕有坏点", "İ屏幕", "", "屏幕一直闪，快递很快", "ABC屏幕"]
    assert tagger.grams_at("İ屏幕") is None
    for clause in clauses:
        single = tagger.grams_at(clause)
        if clause.startswith("İ"):
            continue
        assert single is not None
        low = clause.lower()
        expected = [(i, i + n, column[low[i: i + n]]) for n in range(1, tagger.max_n + 1)
                    for i in range(len(low) - n + 1) if low[i: i + n] in column]
        assert list(zip(*(a.tolist() for a in single), strict=True)) == expected


def test_a_model_only_topic_points_inside_its_clause_at_whole_words() -> None:
    tagger = screen_tagger()
    text = "快递挺快的，但是新手机屏幕有坏点"
    clause = (6, len(text))
    spans = _deciding_spans(clause, tagger.evidence_spans(text[6:], "product_quality"), None)
    assert spans and all(clause[0] <= a < b <= clause[1] for a, b in spans)
    assert any("屏" in text[a:b] or "幕" in text[a:b] for a, b in spans)
    assert _deciding_spans((0, 1), tagger.evidence_spans("好", "product_quality"), None) == [(0, 1)]
    # 手机屏幕 as words 手机 | 屏幕: a stretch that starts inside a word takes the whole word,
    # and never leaves its clause.
    edges = {0, 2, 4, 5}
    assert _widened(1, 3, 0, 5, edges) == (0, 4)
    assert _widened(1, 3, 1, 3, edges) == (1, 3)
    assert _widened(1, 3, 0, 5, None) == (1, 3)


def test_a_learned_topic_points_at_every_clause_that_carries_it_and_not_at_the_others() -> None:
    """Several contributing stretches, in each clause the model alone would tag: the whole of
    what the text says about the topic, not only its strongest n-gram, and nothing of the
    clause about something else."""
    from services.nlp.taxonomy import Taxonomy, TaxonomySpec

    tagger = screen_tagger()
    tagger.support = {"product_quality": 30}
    tagger.keyword_weights = np.array([0.0])
    tagger.fused_thresholds = np.array([0.0])
    tagger.evidence = {"share": 0.15, "clause_slack": 0.0, "clauses_max": 8}
    spec = TaxonomySpec.model_validate(
        {"topics": [{"id": "product_quality", "name": "产品", "keywords": ["质量"]}]})
    text = "屏幕有坏点，快递很快，屏幕一直闪"
    margins = tagger.decision_function(["屏幕有坏点", "快递很快", "屏幕一直闪"])[:, 0]
    assert margins[0] > 0 > margins[1] and margins[2] > 0
    (match,) = Taxonomy(spec, tagger).tag_many([text])[0]
    assert any(b <= 5 for _, b in match.evidence) and any(a >= 11 for a, _ in match.evidence)
    assert not any(a < 10 and 6 < b for a, b in match.evidence)
    tagger.evidence = {**tagger.evidence, "clauses_max": 1}
    (match,) = Taxonomy(spec, tagger).tag_many([text])[0]
    assert len({a >= 11 for a, _ in match.evidence}) == 1


def test_evidence_clauses_are_the_best_and_those_at_the_cut() -> None:
    margins = np.array([0.2, 1.5, -3.0, 0.9])
    assert _evidence_clauses(margins, 1.0, 8) == [1]
    assert _evidence_clauses(margins, 0.5, 8) == [1, 3]
    assert _evidence_clauses(margins, -10.0, 2) == [1, 3]
    assert _evidence_clauses(margins, 1e9, 8) == [1]
    # Of equal margins the earlier clause ranks first, as a stable argsort ranked them.
    tied = np.array([0.4, 1.5, 0.9, 1.5, 0.9])
    assert _evidence_clauses(tied, 1e9, 1) == [1]
    assert _evidence_clauses(tied, -10.0, 3) == [1, 2, 3]
    assert [_evidence_clauses(tied, -10.0, n) for n in range(1, 6)] == [
        sorted(int(c) for c in np.argsort(-tied, kind="stable")[:n]) for n in range(1, 6)]


def test_evidence_spans_of_a_batch_are_each_clause_and_topic_on_its_own() -> None:
    """The evidence pass weighs the n-grams of every chosen clause for each of its topics in
    one batch: each request gets what :meth:`evidence_spans` gives its clause and topic alone,
    a clause asked for by several requests, one without any known n-gram and one whose
    lower-casing changes its length (İ) included."""
    tagger = AspectTagger(topics=["a", "b"], vocabulary=["屏", "幕", "屏幕", "坏", "坏点", "快", "快递", "abc"],
                          idf=np.ones(8), weights=np.array([[2.0, -1.0], [1.0, 0.5], [3.0, -2.0], [1.5, 0.0],
                                                            [2.5, 0.1], [-1.0, 2.0], [-2.0, 3.0], [0.4, 0.4]]),
                          intercepts=np.zeros(2), thresholds=np.zeros(2), keyword_weights=np.zeros(2),
                          fused_thresholds=np.zeros(2), support={"a": 30, "b": 30}, max_n=2, max_chars=6)
    texts = ["新手机屏幕有坏点", "İ屏幕", "", "快递很快", "屏幕坏了快递快", "。。。", "ABC屏幕发黄", "屏 幕 坏"]
    requests = [(t, topic) for t in range(len(texts)) for topic in ("a", "b")] + [(4, "a"), (0, "b")]
    for share in (None, 0.0001, 0.5, 1.0):
        for max_len in (1, 3, 32):
            batch = tagger.evidence_spans_batch(texts, requests, share=share, max_len=max_len)
            assert batch == [tagger.evidence_spans(texts[t], topic, share=share, max_len=max_len)
                             for t, topic in requests]
    batch = tagger.evidence_spans_batch(texts, requests)
    assert batch[0] and batch[1] and batch[2] == [] and batch[6] == [] and batch[7] and batch[9]
    assert tagger.evidence_spans_batch(texts, []) == [] and tagger.evidence_spans_batch([], []) == []


def test_evidence_stretches_merge_runs_as_their_definition_says() -> None:
    """The runs are grown in locals for speed: they must be the runs of the plain definition
    (each strong n-gram in (start, end) order joins the last run when it overlaps or touches it
    and the run stays within ``max_len``, else starts a run where the last one ends, unless it
    lies inside it), on random n-grams, contributions and texts with spaces."""
    from services.nlp.aspect_tagger import _stretches

    def plain(text: str, starts: list[int], ends: list[int], values: list[float], share: float,
              max_len: int) -> list[tuple[int, int]]:
        top = max(values)
        if top <= 0:
            return []
        strong = sorted((a, b) for a, b, v in zip(starts, ends, values, strict=True) if v >= share * top)
        runs: list[tuple[int, int]] = []
        for a, b in strong:
            if runs and a <= runs[-1][1] and max(b, runs[-1][1]) - runs[-1][0] <= max_len:
                runs[-1] = (runs[-1][0], max(b, runs[-1][1]))
            elif not runs or b > runs[-1][1]:
                runs.append((max(a, runs[-1][1]) if runs else a, b))
        trimmed = [(a + len(text[a:b]) - len(text[a:b].lstrip()), b - len(text[a:b]) + len(text[a:b].rstrip()))
                   for a, b in runs]
        return [(a, b) for a, b in trimmed if a < b]

    rng = np.random.default_rng(7)
    for _ in range(3000):
        text = "".join(rng.choice(list("屏幕坏 点"), size=int(rng.integers(1, 20))))
        count = int(rng.integers(1, 15))
        starts = rng.integers(0, len(text), size=count).tolist()
        ends = [min(len(text), a + int(rng.integers(1, 4))) for a in starts]
        values = rng.normal(size=count).round(1).tolist()
        for share, max_len in ((0.15, 32), (0.5, 3), (1.0, 1), (0.0001, 5)):
            assert _stretches(text, starts, ends, values, share, max_len) == plain(
                text, starts, ends, values, share, max_len)


def test_evidence_spans_are_merged_runs_of_contributing_ngrams_and_the_settings_ship(tmp_path: Path) -> None:
    tagger = screen_tagger()
    text = "屏幕有坏点还屏幕发黄"
    spans = tagger.evidence_spans(text, "product_quality", share=0.0001)
    assert spans == sorted(spans) and all(a < b for a, b in spans)
    assert all(b1 <= a2 for (_, b1), (a2, _) in zip(spans, spans[1:]))
    # The strongest n-gram alone, at every place it occurs.
    strongest = tagger.evidence_spans(text, "product_quality", share=1.0)
    assert len(strongest) == 2 and len({text[a:b] for a, b in strongest}) == 1
    assert tagger.evidence_spans("。。。", "product_quality") == []
    assert tagger.evidence == EVIDENCE_FIT
    tagger.evidence = {"share": 0.3, "clause_slack": 0.5, "clauses_max": 2}
    tagger.save(tmp_path / "t")
    assert AspectTagger.load(tmp_path / "t").evidence == tagger.evidence
    params = tmp_path / "t" / "aspect_tagger.json"
    params.write_text(params.read_text(encoding="utf-8").replace('"evidence"', '"old_name"'), encoding="utf-8")
    assert AspectTagger.load(tmp_path / "t").evidence == EVIDENCE_FIT


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
    assert len(match.evidence) >= 2
    assert any(5 <= a < b <= len(text) and "屏" in text[a:b] for a, b in match.evidence[1:])


def test_without_a_clause_mix_the_decision_and_the_artifact_are_the_whole_texts(tmp_path: Path) -> None:
    """The option is absent from artifacts that do not use it (the urgency scorer's), and then
    the margins the decision reads are the whole text's, exactly."""
    tagger = screen_tagger()
    tagger.save(tmp_path / "t")
    params = json.loads((tmp_path / "t" / "aspect_tagger.json").read_text(encoding="utf-8"))
    assert "clause_mix" not in params and "clause_cap" not in params
    loaded = AspectTagger.load(tmp_path / "t")
    assert loaded.clause_mix is None
    whole = loaded.decision_function(["快递很快，屏幕有坏点"])
    assert loaded.mixed(whole, whole + 5.0) is whole
    tagger.clause_mix = np.array([0.5])
    tagger.clause_cap = 7
    tagger.save(tmp_path / "m")
    again = AspectTagger.load(tmp_path / "m")
    assert again.clause_mix is not None and again.clause_mix.tolist() == [0.5] and again.clause_cap == 7


def test_a_topic_of_one_clause_is_decided_by_that_clause() -> None:
    """Diluted among the clauses about other things, 屏幕有坏点 leaves the whole-text margin
    below the cut; read alone, its clause passes it, and with a mix of 1 the topic is kept."""
    tagger = screen_tagger()
    tagger.support = {"product_quality": 30}
    tagger.keyword_weights = np.array([0.0])
    text = "快递很快，客服很好，价格便宜，物流慢，屏幕有坏点"
    clauses = tagger.clause_margins([text, "屏幕有坏点"])
    whole = tagger.decision_function([text, "屏幕有坏点"])
    best = tagger.clause_best(whole, *clauses)
    assert len(clauses[0][0]) == 5 and clauses[2].tolist() == [0, -1]
    assert best[0, 0] > whole[0, 0] and best[1, 0] == whole[1, 0]
    tagger.fused_thresholds = np.array([(best[0, 0] + whole[0, 0]) / 2])
    assert tagger.combine([text], [[]]) == [[]]
    tagger.clause_mix = np.array([1.0])
    assert tagger.combine([text], [[]]) == [["product_quality"]]
    assert tagger.combine([text], [[]], clauses=tagger.clause_margins([text])) == [["product_quality"]]


def test_the_clauses_scored_alone_are_capped() -> None:
    """A hostile text of 200,000 clauses costs the cap's clauses, not one pass per clause;
    past the cap the whole-text margin decides."""
    import time

    tagger = screen_tagger()
    tagger.clause_cap = 16
    text = "屏，" * 100_000
    started = time.process_time()
    clauses, margins, first = tagger.clause_margins([text])
    assert len(clauses[0]) == 16 and margins.shape == (16, 1) and first.tolist() == [0]
    # Long clauses: only those within the characters the whole-text pass reads.
    clauses, _, _ = tagger.clause_margins(["屏幕" * 3000 + "，" + "屏幕" * 3000])
    assert clauses[0] == [(0, tagger.max_chars)]
    assert time.process_time() - started < 1.0


def test_the_clause_mix_is_chosen_only_where_it_helps() -> None:
    from services.nlp.cem_tagger import tune_clause_fusion

    gold = np.array([[True, True], [True, False], [False, True], [False, False]] * 3)
    hits = np.zeros_like(gold)
    # Topic 0: the whole-text margin separates already, the clauses say nothing more: mix 0.
    # Topic 1: the whole text misses its second positive, its best clause does not.
    whole = np.array([[2.0, 2.0], [1.5, -1.0], [-1.0, -2.0], [-2.0, -1.5]] * 3)
    best = np.array([[2.0, 2.0], [1.5, -1.0], [-1.0, 3.0], [-2.0, -1.5]] * 3)
    mix, weights, cuts = tune_clause_fusion(whole, best, gold, hits, np.array([True, True]))
    assert mix.tolist() == [0.0, 0.25] or (mix[0] == 0.0 and mix[1] > 0)
    mixed = whole + mix * np.maximum(best - whole, 0) + weights * hits >= cuts
    assert (mixed == gold).all()


def test_a_topic_decided_by_a_clause_holds_its_evidence_there() -> None:
    from services.nlp.taxonomy import Taxonomy, TaxonomySpec

    tagger = screen_tagger()
    tagger.support = {"product_quality": 30}
    tagger.keyword_weights = np.array([0.0])
    text = "快递很快，客服很好，价格便宜，物流慢，屏幕有坏点"
    whole = tagger.decision_function([text])
    best = tagger.clause_best(whole, *tagger.clause_margins([text]))
    tagger.fused_thresholds = (best[0] + whole[0]) / 2
    tagger.clause_mix = np.array([1.0])
    tagger.evidence = {"share": 0.15, "clause_slack": 0.0, "clauses_max": 8}
    spec = TaxonomySpec.model_validate(
        {"topics": [{"id": "product_quality", "name": "产品", "keywords": ["质量"]}]})
    (match,) = Taxonomy(spec, tagger).tag_many([text])[0]
    start = text.index("屏幕")
    assert match.evidence and all(a >= start for a, _ in match.evidence)


def test_the_flat_estimate_decides_every_item_once_per_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """``train_topics.py loao --flat``: every item is decided for each setting, and a setting
    whose only clause mix is 0 decides exactly as the whole-text fusion does."""
    import services.nlp.aspect_tagger
    from bench.train_topics import _flat_decisions

    # The tiny set's flags are learned (decided by margins), not handed to the cues.
    monkeypatch.setattr(services.nlp.aspect_tagger, "MIN_EXAMPLES", 1)
    items = rows()
    fit = Fit(author_weight=1.0, c=10.0, max_n=2, word_n=0, min_df=1)
    whole, zero = _flat_decisions(([], []), items, FLAGS, fit, [{}, {"clause_mixes": [0.0]}])
    assert set(whole) == set(zero) == set(range(len(items)))
    assert whole == zero
    assert any(whole[k] != items[k].hits for k in whole)


def test_the_sentence_splitter_keeps_a_turn_between_pauses_whole(tmp_path: Path) -> None:
    tagger = screen_tagger()
    text = "快递 很快，屏幕 有坏点"
    assert len(tagger.clause_margins([text])[0][0]) == 4
    tagger.clause_split = "sentence"
    assert tagger.clause_margins([text])[0][0] == [(0, 5), (6, 12)]
    tagger.clause_mix = np.array([0.5])
    tagger.save(tmp_path / "s")
    assert AspectTagger.load(tmp_path / "s").clause_split == "sentence"
    with pytest.raises(ValueError, match="clause_split='words'"):
        AspectTagger(**{**vars_of(tagger), "clause_split": "words"})


def vars_of(tagger: AspectTagger) -> dict[str, object]:
    return {"topics": tagger.topics, "vocabulary": tagger.vocabulary, "idf": tagger.idf,
            "weights": tagger.weights, "intercepts": tagger.intercepts, "thresholds": tagger.thresholds,
            "keyword_weights": tagger.keyword_weights, "fused_thresholds": tagger.fused_thresholds,
            "support": tagger.support, "max_n": tagger.max_n, "max_chars": tagger.max_chars,
            "word_n": tagger.word_n, "n_char": tagger.n_char}


def test_evidence_clause_rows_are_the_clauses_holding_a_gold_phrase() -> None:
    """The clause-row experiment (``loao --flat`` with ``"clause_rows"``) adds each clause that
    holds an item's gold evidence phrase, labelled with those phrases' topics, and nothing for
    a one-clause text (whose clause is the text) or a phrase the text does not hold."""
    from types import SimpleNamespace

    from bench.train_topics import evidence_clause_rows

    text = "快递很快，但是屏幕有坏点，客服也不理人"
    item = SimpleNamespace(labels={"evidence": [
        {"topic": "product_quality", "phrase": "屏幕有坏点"}, {"topic": "service_attitude", "phrase": "不理人"},
        {"topic": "price_fees", "phrase": "太贵"}]})
    row = Labelled(text, frozenset({"product_quality", "service_attitude"}), frozenset(), "a")
    alone = Labelled("屏幕有坏点", frozenset({"product_quality"}), frozenset(), "b")
    extra = evidence_clause_rows([item, item], [row, alone])
    assert {(e.text, e.labels, e.author) for e in extra} == {
        ("但是屏幕有坏点", frozenset({"product_quality"}), "a"), ("客服也不理人", frozenset({"service_attitude"}), "a")}


@functools.cache
def short_screen_tagger() -> AspectTagger:
    """:func:`screen_tagger` reading 30 characters of each text, fitted once."""
    tagger = screen_tagger()
    tagger.max_chars = 30
    tagger._index.max_chars = 30
    return tagger


SCAN_ALPHABET = "屏幕有坏点快递很价格便宜发黄闪手机ABCabc12.，。！？；,!?;~～、：:\n \t\u3000İΣσ"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=SCAN_ALPHABET, max_size=40), min_size=1, max_size=6))
def test_clauses_weighed_from_the_whole_text_pass_are_the_clauses_read_alone(texts: list[str]) -> None:
    """The evidence pass weighs each clause from the whole-text pass (:meth:`AspectTagger.scan`)
    instead of reading it again: its margins and evidence spans must be those of reading the
    clause alone, bit for bit, whatever white space, dots between digits, İ (two characters
    lower-cased) or Σ (lower-cased by its neighbours) the texts hold, and for clauses past the
    characters the model reads (``max_chars`` 30)."""
    from services.nlp.aspect_tagger import CLAUSE_SPLIT

    tagger = short_screen_tagger()
    scan = tagger.scan(texts)
    assert np.array_equal(scan.margins, tagger.decision_function(texts))
    clauses = [(i, m.span()) for i, text in enumerate(texts) for m in CLAUSE_SPLIT.finditer(text)]
    alone = [texts[i][a:b] for i, (a, b) in clauses]
    read = tagger.read_clauses(scan, clauses)
    assert np.array_equal(read.margins, tagger.decision_function(alone).reshape(len(clauses), 1))
    requests = [(k, "product_quality") for k in range(len(clauses))]
    assert tagger.clause_spans(read, requests) == tagger.evidence_spans_batch(alone, requests)


def test_the_shipped_tagger_weighs_clauses_of_real_feedback_as_read_alone() -> None:
    """The same on the shipped CEM tagger (char 1-3-grams, words and their classes) and the
    analysed texts of two authors' labelled items, where nearly every clause is weighed from
    the whole-text pass."""
    from bench.voc_eval import DATA_DIR, raw_event, read_items
    from services.nlp.aspect_tagger import CLAUSE_SPLIT
    from services.nlp.taxonomy import load_taxonomy

    tagger = load_taxonomy().tagger
    assert tagger is not None
    texts = [raw_event(item).analysis_text
             for name in ("voc_train_a.jsonl", "voc_heldout2.jsonl") for item in read_items(DATA_DIR / name)]
    for start in range(0, len(texts), 256):
        batch = texts[start: start + 256]
        scan = tagger.scan(batch)
        clauses = [(i, m.span()) for i, text in enumerate(batch) for m in CLAUSE_SPLIT.finditer(text)]
        alone = [batch[i][a:b] for i, (a, b) in clauses]
        assert (~tagger._clause_sites(scan, clauses)[4]).sum() < len(clauses) / 100
        read = tagger.read_clauses(scan, clauses)
        assert np.array_equal(read.margins, tagger.decision_function(alone))
        requests = [(k, topic) for k in range(len(clauses)) for topic in tagger.topics[::4]]
        assert tagger.clause_spans(read, requests) == tagger.evidence_spans_batch(alone, requests)


def test_no_dictionary_word_holds_a_character_clauses_are_split_at() -> None:
    """Why a clause's words are the whole text's words there: the segmenter's best route must
    break where no dictionary word can span, so cutting a clause alone and cutting the text
    agree on it only while no word of the dictionaries the tagger loads holds a separator."""
    from importlib import resources

    import jieba

    from services.nlp.aspect_tagger import CLAUSE_SPLIT
    from services.nlp.segmenter import _USER_DICT_LINE

    shipped = resources.files("services.nlp").joinpath("user_dict.txt").read_text(encoding="utf-8-sig")
    main = (Path(jieba.__file__).parent / "dict.txt").read_text(encoding="utf-8")
    words = [_USER_DICT_LINE.match(line.strip()).group(1).strip()  # type: ignore[union-attr]
             for line in shipped.splitlines() if line.strip()]
    words += [line.split(" ")[0] for line in main.splitlines() if line.strip()]
    assert len(words) > 300_000
    assert [w for w in words if CLAUSE_SPLIT.fullmatch(w) is None] == []


def test_a_tagger_without_single_words_scans_once_and_reads_its_clauses_alone() -> None:
    """Char n-grams only (``word_n`` 0) and word pairs (``word_n`` 2): the scan's margins are
    :meth:`AspectTagger.decision_function`'s, and every clause is read on its own."""
    from services.nlp.aspect_tagger import CLAUSE_SPLIT

    texts = ["屏幕有坏点，快递很快", "价格便宜。屏幕 一直闪", ""]
    for word_n in (0, 2):
        items = [Labelled(t, frozenset({"product_quality"} if "屏幕" in t else set()), frozenset(), "a")
                 for t in ["屏幕有坏点", "屏幕一直闪", "屏幕发黄", "快递很快", "客服很好", "价格便宜"]]
        tagger = fit_on(([], []), items, ["product_quality"],
                        Fit(author_weight=1.0, c=10.0, max_n=2, word_n=word_n, min_df=1))
        scan = tagger.scan(texts)
        assert np.array_equal(scan.margins, tagger.decision_function(texts))
        clauses = [(i, m.span()) for i, text in enumerate(texts) for m in CLAUSE_SPLIT.finditer(text)]
        read = tagger.read_clauses(scan, clauses)
        alone = [texts[i][a:b] for i, (a, b) in clauses]
        assert not tagger._clause_sites(scan, clauses)[4].any()
        assert np.array_equal(read.margins, tagger.decision_function(alone))
        requests = [(k, "product_quality") for k in range(len(clauses))]
        assert tagger.clause_spans(read, requests) == tagger.evidence_spans_batch(alone, requests)
