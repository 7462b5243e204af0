"""Guards for topic tagging quality and the learned tagger's plumbing.

The samples are 500 rows each of the makeup and car DEV files (never the restaurant corpus,
whose licence forbids redistribution, and never held-out data). Each test trains on the
sample's inner training part and scores its inner hold-out, so the thresholds (just below the
measured figures) guard the keyword lists, the trainer, the fusion and the numpy prediction
together; the full-size figures come from bench/topics_eval.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.nlp.aspect_tagger import (
    WORD_JOIN,
    AspectExample,
    AspectTagger,
    f1_scores,
    read_aspect_examples,
    topic_strata,
    train_tagger,
    word_ngrams,
)
from services.nlp.sentiment_model import holdout_mask
from services.nlp.taxonomy import Taxonomy, dataset_ids, load_taxonomy

DATA = Path(__file__).parents[1] / "data"
TAXONOMIES = Path(__file__).parents[2] / "services" / "nlp" / "taxonomies"

# dataset: (keywords-only micro-F1 floor, combined micro-F1 floor) on the sample's inner hold-out
FLOORS = {"makeup": (0.83, 0.85), "car": (0.83, 0.85)}  # measured 0.845/0.862, 0.846/0.876


def split(name: str) -> tuple[Taxonomy, list[AspectExample], list[AspectExample]]:
    taxonomy = load_taxonomy(TAXONOMIES / f"{name}.yaml")
    examples = read_aspect_examples(DATA / f"aspect_{name}_sample.jsonl", dataset_ids(taxonomy.spec))
    mask = holdout_mask(topic_strata(examples))
    return (taxonomy, [e for e, h in zip(examples, mask, strict=True) if not h],
            [e for e, h in zip(examples, mask, strict=True) if h])


def keyword_ids(taxonomy: Taxonomy, texts: list[str]) -> list[list[str]]:
    return [[m.id for m in taxonomy.tag(t)] for t in texts]


@pytest.fixture(scope="module", params=sorted(FLOORS))
def trained(request: pytest.FixtureRequest) -> tuple[str, Taxonomy, AspectTagger, list[AspectExample]]:
    taxonomy, train, test = split(request.param)
    texts = [e.text for e in train]
    tagger = train_tagger(texts, [e.topics for e in train], topics=[t.id for t in taxonomy.spec.topics],
                          keyword_sets=keyword_ids(taxonomy, texts))
    return request.param, taxonomy, tagger, test


def test_topic_f1_does_not_regress(trained: tuple[str, Taxonomy, AspectTagger, list[AspectExample]]) -> None:
    name, taxonomy, tagger, test = trained
    texts = [e.text for e in test]
    gold = [e.topics for e in test]
    keywords = f1_scores(gold, keyword_ids(taxonomy, texts))
    combined = f1_scores(gold, tagger.combine(texts, keyword_ids(taxonomy, texts)))
    keyword_floor, combined_floor = FLOORS[name]
    assert keywords["micro_f1"] >= keyword_floor, keywords
    assert combined["micro_f1"] >= combined_floor, combined
    assert combined["micro_f1"] > keywords["micro_f1"]


def test_saved_tagger_predicts_the_same(trained: tuple[str, Taxonomy, AspectTagger, list[AspectExample]],
                                        tmp_path: Path) -> None:
    _, taxonomy, tagger, test = trained
    tagger.save(tmp_path)
    loaded = AspectTagger.load(tmp_path)
    texts = [e.text for e in test]
    np.testing.assert_allclose(loaded.decision_function(texts), tagger.decision_function(texts), atol=1e-3)
    assert loaded.combine(texts, keyword_ids(taxonomy, texts)) == tagger.combine(texts, keyword_ids(taxonomy, texts))


def test_rare_and_unknown_topics_are_left_to_keywords() -> None:
    texts = ["物流很快"] * 40 + ["包装很好"] * 40
    topic_sets = [["logistics"]] * 40 + [["packaging"]] * 39 + [["packaging", "size"]]
    tagger = train_tagger(texts, topic_sets, topics=["logistics", "packaging", "size"], min_df=1)
    assert tagger.support["size"] == 1
    assert tagger.combine(["包装很好"], [["size", "new_topic"]]) == [["new_topic", "packaging", "size"]]
    assert tagger.combine(["包装很好"], [[]]) == [["packaging"]]


def test_untagged_text_gets_its_closest_topic_only_when_training_texts_always_had_one() -> None:
    texts = ["物流很快"] * 40 + ["包装很好"] * 40
    topic_sets = [["logistics"]] * 40 + [["packaging"]] * 40
    always = train_tagger(texts, topic_sets, min_df=1)
    assert always.at_least_one
    assert len(always.combine(["你好"], [[]])[0]) == 1
    assert always.combine(["  "], [[]]) == [[]]
    sometimes = train_tagger([*texts, "你好"], [*topic_sets, []], min_df=1)
    assert not sometimes.at_least_one
    assert sometimes.combine(["你好"], [[]]) == [[]]


def test_f1_scores_micro_and_macro() -> None:
    scores = f1_scores([["a"], ["a", "b"], []], [["a"], ["a"], ["b"]])
    assert scores["per_topic_f1"] == {"a": 1.0, "b": 0.0}
    assert scores["micro_f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert scores["macro_f1"] == pytest.approx(0.5)


def test_unknown_dataset_aspect_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"id": "1", "text": "x", "aspects": ["火星"]}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="火星"):
        read_aspect_examples(path, {"价格": "price"})


def test_taxonomy_naming_a_tagger_combines_it_with_keywords(
        trained: tuple[str, Taxonomy, AspectTagger, list[AspectExample]], tmp_path: Path) -> None:
    name, _, tagger, test = trained
    tagger.save(tmp_path / "tagger")
    yaml_path = tmp_path / "taxonomy.yaml"
    yaml_path.write_text((TAXONOMIES / f"{name}.yaml").read_text(encoding="utf-8") + "tagger: tagger\n",
                         encoding="utf-8")
    taxonomy = load_taxonomy(yaml_path)
    assert taxonomy.tagger is not None
    texts = [e.text for e in test]
    tagged = taxonomy.tag_many(texts)
    expected = tagger.combine(texts, keyword_ids(taxonomy, texts))
    assert [sorted(m.id for m in found) for found in tagged] == expected
    model_only = 0
    for text, found in zip(texts, tagged, strict=True):
        keyword = {m.id: m.evidence for m in taxonomy.tag(text)}
        for match in found:
            assert match.evidence and all(0 <= a < b <= len(text) for a, b in match.evidence)
            # The phrase spans, then the stretches the model read the topic from that overlap
            # none of them, each inside one clause (round 4: several, not one).
            spans = keyword.get(match.id, [])
            assert match.evidence[: len(spans)] == spans
            model = match.evidence[len(spans):]
            assert not any(a < d and c < b for a, b in spans for c, d in model)
            for a, b in model:
                assert not any(ch in "，。！？；,.!?;、：: \n" for ch in text[a:b])
            if match.id not in keyword:
                model_only += 1
                assert model
    assert model_only > 0


def test_tagger_for_another_taxonomy_is_refused(tmp_path: Path) -> None:
    tagger = train_tagger(["物流很快"] * 5 + ["包装很好"] * 5, [["logistics"]] * 5 + [["packaging"]] * 5,
                          min_df=1, folds=2)
    tagger.save(tmp_path / "tagger")
    path = tmp_path / "t.yaml"
    path.write_text("tagger: tagger\ntopics:\n  - {id: logistics, name: 物流, keywords: [物流]}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="packaging"):
        load_taxonomy(path)


def reference_margins(tagger: AspectTagger, texts: list[str]) -> np.ndarray:
    """Margins computed the slow, obvious way: count each text's n-grams, TF-IDF, L2, dot product."""
    from services.nlp.segmenter import Segmenter
    from services.nlp.sentiment_model import char_ngrams, normalise

    segmenter = Segmenter()
    char_column = {gram: j for j, gram in enumerate(tagger.vocabulary[: tagger.n_char])}
    word_column = {gram: tagger.n_char + j for j, gram in enumerate(tagger.vocabulary[tagger.n_char:])}
    expected = np.tile(tagger.intercepts, (len(texts), 1))
    for i, text in enumerate(texts):
        columns = [char_column[g] for g in char_ngrams(text, tagger.max_n, tagger.max_chars) if g in char_column]
        if tagger.word_n:
            words = segmenter.cut(normalise(text)[: tagger.max_chars])
            columns += [word_column[g] for g in word_ngrams(words, tagger.word_n) if g in word_column]
        counts: dict[int, int] = {}
        for j in columns:
            counts[j] = counts.get(j, 0) + 1
        if counts:
            cols = np.array(list(counts))
            v = (1 + np.log(np.array(list(counts.values()), dtype=float))) * tagger.idf[cols]
            expected[i] += (v / np.linalg.norm(v)) @ tagger.weights[cols]
    return expected


def test_vectorised_margins_match_the_reference_features(
        trained: tuple[str, Taxonomy, AspectTagger, list[AspectExample]]) -> None:
    _, _, tagger, test = trained
    texts = [e.text for e in test[:20]] + ["", "😀", "Hello  World 后排空间"]
    np.testing.assert_allclose(tagger.decision_function(texts), reference_margins(tagger, texts), atol=1e-9)


def test_word_ngrams_join_consecutive_words_and_skip_whitespace() -> None:
    assert word_ngrams(["后排", " ", "空间", "大"], 2) == [
        "后排", "空间", "大", f"后排{WORD_JOIN}空间", f"空间{WORD_JOIN}大"]
    assert word_ngrams(["后排", "空间"], 1) == ["后排", "空间"]
    assert word_ngrams([], 2) == []


@pytest.mark.parametrize("word_n", [0, 1, 2])
def test_word_features_are_looked_up_apart_from_char_ngrams(word_n: int, tmp_path: Path) -> None:
    # 空间 is both a char 2-gram and a word: the two features must keep their own weights.
    texts = ["后排空间很大", "空间宽敞", "动力很足", "加速动力强"] * 10
    topic_sets = [["space"], ["space"], ["power"], ["power"]] * 10
    tagger = train_tagger(texts, topic_sets, min_df=1, max_ns=(2,), word_ns=(word_n,), folds=2)
    assert tagger.word_n == word_n
    words = tagger.vocabulary[tagger.n_char:]
    assert ("空间" in words) == (word_n > 0) and "空间" in tagger.vocabulary[: tagger.n_char]
    assert any(WORD_JOIN in w for w in words) == (word_n == 2)
    probe = ["后排空间", "动力", "空间动力", "", "未见过的字"]
    np.testing.assert_allclose(tagger.decision_function(probe), reference_margins(tagger, probe), atol=1e-9)
    tagger.save(tmp_path)
    loaded = AspectTagger.load(tmp_path)
    assert (loaded.word_n, loaded.n_char) == (tagger.word_n, tagger.n_char)
    np.testing.assert_allclose(loaded.decision_function(probe), tagger.decision_function(probe), atol=1e-5)


def test_artifact_of_version_1_0_without_word_fields_loads_as_char_only(tmp_path: Path) -> None:
    import json

    tagger = train_tagger(["物流很快", "包装很好"] * 10, [["logistics"], ["packaging"]] * 10,
                          min_df=1, max_ns=(2,), word_ns=(0,), folds=2)
    tagger.save(tmp_path)
    params_path = tmp_path / "aspect_tagger.json"
    params = json.loads(params_path.read_text(encoding="utf-8"))
    del params["word_n"], params["n_char"]
    params_path.write_text(json.dumps(params), encoding="utf-8")
    loaded = AspectTagger.load(tmp_path)
    assert loaded.word_n == 0 and loaded.n_char == len(loaded.vocabulary)
    np.testing.assert_allclose(loaded.decision_function(["物流很快"]), tagger.decision_function(["物流很快"]),
                               atol=1e-5)


def test_train_topics_command_writes_a_tagger_the_taxonomy_can_name(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from services.cli import main

    out = tmp_path / "makeup_tagger"
    result = CliRunner().invoke(main, [
        "nlp", "train-topics", "--taxonomy", str(TAXONOMIES / "makeup.yaml"),
        "--data", str(DATA / "aspect_makeup_sample.jsonl"), "--out", str(out), "--holdout", "0.2"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{"):])
    assert report["holdout_rows"] > 0 and report["holdout_combined"]["micro_f1"] > 0.8
    yaml_path = tmp_path / "makeup.yaml"
    yaml_path.write_text((TAXONOMIES / "makeup.yaml").read_text(encoding="utf-8") + "tagger: makeup_tagger\n",
                         encoding="utf-8")
    assert load_taxonomy(yaml_path).tagger is not None


def test_thresholds_for_micro_f1_are_stricter_for_a_topic_weaker_than_the_rest() -> None:
    from services.nlp.aspect_tagger import _best_threshold

    rng = np.random.default_rng(0)
    y = rng.random(2000) < 0.2
    scores = y + rng.normal(0, 0.8, len(y))
    own_cut, own_f1 = _best_threshold(scores, y)
    predicted = scores >= own_cut
    assert own_f1 == pytest.approx(f1_scores([["t"] if g else [] for g in y],
                                             [["t"] if p else [] for p in predicted])["micro_f1"])
    # Other topics at F1 0.8: this topic's false positives now cost more than its recall gains.
    joint_cut, joint_f1 = _best_threshold(scores, y, (800, 100, 100))
    assert joint_cut > own_cut

    def micro_at(cut: float) -> float:
        tp, fp = int((y & (scores >= cut)).sum()), int((~y & (scores >= cut)).sum())
        return 2 * (800 + tp) / (2 * (800 + tp) + 100 + fp + 100 + int(y.sum()) - tp)

    assert joint_f1 == pytest.approx(micro_at(joint_cut)) and joint_f1 > micro_at(own_cut)
    # Others as weak as this topic: its own best cut is no longer too loose.
    assert _best_threshold(scores, y, (300, 300, 300))[0] <= own_cut


def test_joint_thresholds_change_only_the_fused_decision(
        trained: tuple[str, Taxonomy, AspectTagger, list[AspectExample]]) -> None:
    name, taxonomy, tagger, _ = trained
    _, train, _ = split(name)
    texts = [e.text for e in train]
    own = train_tagger(texts, [e.topics for e in train], topics=[t.id for t in taxonomy.spec.topics],
                         keyword_sets=keyword_ids(taxonomy, texts), joint_thresholds=False)
    assert tagger.word_n == own.word_n == 1
    np.testing.assert_array_equal(own.thresholds, tagger.thresholds)
    np.testing.assert_allclose(own.weights, tagger.weights)


def test_averaged_fold_models_are_the_mean_of_the_fold_models() -> None:
    texts = ["物流很快", "包装很好", "物流慢", "包装破了", "快递很快", "盒子很好"] * 6
    topic_sets = [["logistics"], ["packaging"]] * 18
    refit = train_tagger(texts, topic_sets, min_df=1, folds=3, average_folds=False)
    averaged = train_tagger(texts, topic_sets, min_df=1, folds=3, average_folds=True)
    assert refit.vocabulary == averaged.vocabulary
    np.testing.assert_array_equal(refit.thresholds, averaged.thresholds)
    assert not np.allclose(refit.weights, averaged.weights)
    assert averaged.predict(["物流很快", "包装很好"]) == [["logistics"], ["packaging"]]


def test_cv_choice_of_the_benchmark_is_what_train_tagger_does_by_default() -> None:
    import inspect

    from bench.topics_eval import CANDIDATES, CHOSEN

    defaults = {k: p.default for k, p in inspect.signature(train_tagger).parameters.items()}
    assert {k: defaults[k] for k in CANDIDATES[CHOSEN]} == CANDIDATES[CHOSEN]


def test_log_count_ratio_matches_a_hand_computation() -> None:
    from scipy import sparse

    from services.nlp.aspect_tagger import log_count_ratio

    x = np.array([[1.0, 0.0, 0.5], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 2.0]])
    y = np.array([True, True, False, False])
    # alpha 1, binary occurrence: p = 1 + (2, 1, 1), |p| = 7; q = 1 + (0, 1, 1), |q| = 5.
    expected = np.log([(3 / 7) / (1 / 5), (2 / 7) / (2 / 5), (2 / 7) / (2 / 5)])
    np.testing.assert_allclose(log_count_ratio(sparse.csr_matrix(x), y, 1.0), expected)
    np.testing.assert_allclose(log_count_ratio(x, y, 1.0), expected)
    # More smoothing pulls every ratio towards 0.
    assert np.all(np.abs(log_count_ratio(x, y, 10.0)) < np.abs(expected) + 1e-12)


def test_nb_ratio_folded_into_the_weights_gives_the_scores_of_scaled_features() -> None:
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    from services.nlp.aspect_tagger import fit_topic, log_count_ratio

    rng = np.random.default_rng(0)
    x = sparse.random(200, 40, density=0.15, random_state=1, format="csr")
    y = np.asarray(x[:, :5].sum(axis=1)).ravel() + rng.normal(0, 0.3, 200) > 0.4
    w, b = fit_topic(x, y, 10.0, nb_alpha=1.0)
    r = log_count_ratio(x, y, 1.0)
    scaled = LogisticRegression(C=10.0, max_iter=2000).fit(x @ sparse.diags(r), y)
    np.testing.assert_allclose(x @ w + b, scaled.decision_function(x @ sparse.diags(r)), atol=1e-6)
    plain_w, _ = fit_topic(x, y, 10.0)
    assert not np.allclose(w, plain_w)


def test_nb_tagger_is_a_plain_linear_artifact(tmp_path: Path) -> None:
    texts = ["物流很快", "包装很好", "物流慢", "包装破了", "快递很快", "盒子很好"] * 6
    topic_sets = [["logistics"], ["packaging"]] * 18
    plain = train_tagger(texts, topic_sets, min_df=1, folds=3, nb_alpha=None)
    nb = train_tagger(texts, topic_sets, min_df=1, folds=3, nb_alpha=1.0)
    assert nb.vocabulary == plain.vocabulary and not np.allclose(nb.weights, plain.weights)
    nb.save(tmp_path)
    loaded = AspectTagger.load(tmp_path)
    probe = ["物流很快", "包装很好", "盒子破了"]
    np.testing.assert_allclose(loaded.decision_function(probe), nb.decision_function(probe), atol=1e-5)
    assert loaded.predict(["物流很快", "包装很好"]) == [["logistics"], ["packaging"]]
