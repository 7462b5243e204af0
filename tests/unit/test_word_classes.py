"""Word class features of the topic tagger (services/nlp/word_classes.py, round 6)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from services.nlp.aspect_tagger import AspectTagger
from services.nlp.cem_tagger import Fit, fit_linear
from services.nlp.segmenter import Segmenter
from services.nlp.sentiment_model import normalise
from services.nlp.word_classes import CLASS_MARK, WordClasses, read_table, shipped_classes
from tests.unit.test_aspect_tagger import reference_margins

SHIPPED = Path(__file__).resolve().parents[2] / "services" / "nlp" / "model_data" / "word_clusters.txt"
TOPICS = ["noise", "delivery"]


def fitted(texts: list[str] | None = None, **setting: object) -> AspectTagger:
    texts = texts or ["半夜楼上噪音吵得睡不着", "隔壁装修噪音太大", "快递三天还没到", "物流太慢了"]
    labels = [{"noise"}, {"noise"}, {"delivery"}, {"delivery"}]
    fit = Fit(**{"author_weight": 1.0, "c": 10.0, "max_n": 2, "word_n": 1, "min_df": 1, **setting})  # type: ignore[arg-type]
    return fit_linear(texts * 8, labels * 8, TOPICS, np.ones(8 * len(texts)), fit)


def test_the_table_is_read_as_each_words_codes_and_a_word_gets_its_class_at_each_level() -> None:
    codes = read_table("Zz07A01= 噪音 动静\nZz07B01= 声响\nZz08A01= 物流")
    assert codes == {"噪音": ["Zz07A01="], "动静": ["Zz07A01="], "声响": ["Zz07B01="], "物流": ["Zz08A01="]}
    classes = WordClasses(codes, [3, 4])
    assert classes.tokens(["噪音", "未收录", "声响"]) == [
        CLASS_MARK + "Zz07", CLASS_MARK + "Zz07A", CLASS_MARK + "Zz07", CLASS_MARK + "Zz07B"]
    assert WordClasses(codes, [4]).tokens(["动静", "噪音"]) == [CLASS_MARK + "Zz07A"] * 2
    with pytest.raises(ValueError, match="levels"):
        WordClasses(codes, [5])


def unseen_pair(avoid: str) -> tuple[str, str]:
    """Two words of one shipped fine cluster that share no character, the second none of
    ``avoid`` either (the first such pair)."""
    for words in (line.split()[1:] for line in SHIPPED.read_text(encoding="utf-8").splitlines()):
        long = [w for w in words if len(w) > 1 and w.isalpha()]
        for seen in long:
            for unseen in long:
                if not set(unseen) & set(seen + avoid):
                    return seen, unseen
    raise AssertionError("no cluster holds two words without a common character")


def test_an_unseen_word_of_a_known_class_raises_its_topic() -> None:
    # The probe shares no character with the trained word and never occurs in training; only
    # its class does.
    frame = ["就是", "的问题", "还是", "快递三天还没到", "物流太慢了"]
    seen, unseen = unseen_pair("".join(frame))
    texts = [f"就是{seen}的问题", f"还是{seen}", "快递三天还没到", "物流太慢了"]
    plain, with_classes = fitted(texts), fitted(texts, word_classes=(4,))
    assert not set(unseen) & set("".join(texts))
    noise = TOPICS.index("noise")
    assert (plain.decision_function([unseen]) == plain.intercepts).all()
    lead = with_classes.decision_function([unseen])[0] - with_classes.intercepts
    assert lead[noise] > 0 > lead[1 - noise]


def reference_with_classes(tagger: AspectTagger, texts: list[str]) -> np.ndarray:
    """Margins the slow, obvious way: each text's char n-grams, words and class tokens counted,
    sublinear TF-IDF, L2, dot product."""
    from services.nlp.aspect_tagger import word_ngrams
    from services.nlp.sentiment_model import char_ngrams

    segmenter = Segmenter()
    assert tagger.word_classes is not None
    classes = shipped_classes(tuple(tagger.word_classes["levels"]))
    char_column = {g: j for j, g in enumerate(tagger.vocabulary[: tagger.n_char])}
    word_column = {g: tagger.n_char + j for j, g in enumerate(tagger.vocabulary[tagger.n_char:])}
    expected = np.tile(tagger.intercepts, (len(texts), 1))
    for i, text in enumerate(texts):
        words = segmenter.cut(normalise(text)[: tagger.max_chars])
        grams = char_ngrams(text, tagger.max_n, tagger.max_chars)
        cols = [char_column[g] for g in grams if g in char_column]
        grams = [*word_ngrams(words, tagger.word_n), *classes.tokens(words)]
        cols += [word_column[g] for g in grams if g in word_column]
        if cols:
            found, counts = np.unique(cols, return_counts=True)
            v = (1 + np.log(counts)) * tagger.idf[found]
            expected[i] += (v / np.linalg.norm(v)) @ tagger.weights[found]
    return expected


@pytest.mark.parametrize("word_n", [1, 2])
def test_the_artifact_keeps_its_classes_and_gives_the_same_margins(word_n: int, tmp_path: Path) -> None:
    tagger = fitted(word_classes=(3, 4), word_n=word_n)
    tagger.save(tmp_path)
    params = json.loads((tmp_path / "aspect_tagger.json").read_text(encoding="utf-8"))
    assert params["word_classes"] == {"levels": [3, 4]}
    assert any(v.startswith(CLASS_MARK) for v in tagger.vocabulary[tagger.n_char:])
    loaded = AspectTagger.load(tmp_path)
    probe = ["楼上声响很大", "物流", "", "声响"]
    np.testing.assert_allclose(loaded.decision_function(probe), tagger.decision_function(probe), atol=1e-5)
    np.testing.assert_allclose(tagger.decision_function(probe), reference_with_classes(tagger, probe), atol=1e-9)


def test_without_the_option_the_tagger_and_its_artifact_are_the_old_ones(tmp_path: Path) -> None:
    tagger = fitted()
    assert tagger.word_classes is None
    assert not any(v.startswith(CLASS_MARK) for v in tagger.vocabulary)
    tagger.save(tmp_path)
    assert "word_classes" not in json.loads((tmp_path / "aspect_tagger.json").read_text(encoding="utf-8"))
    probe = ["楼上声响很大", "物流太慢", "噪音", ""]
    np.testing.assert_allclose(tagger.decision_function(probe), reference_margins(tagger, probe), atol=1e-9)


def test_classes_need_words() -> None:
    with pytest.raises(ValueError, match="word_n"):
        fitted(word_classes=(4,), word_n=0)


def test_the_shipped_table_gives_a_known_word_its_coarse_and_fine_class() -> None:
    tokens = shipped_classes((3, 4)).tokens(["物流"])
    assert len(tokens) == 2 and tokens[0].startswith(CLASS_MARK + "Zz") and tokens[1].startswith(tokens[0])
    assert shipped_classes((3, 4)).tokens(["未收录的词"]) == []


# Words of the same contexts (快递 and 物流 here) have the same vector: k-means says so.
@pytest.mark.filterwarnings("ignore:Number of distinct clusters")
def test_the_cluster_builder_puts_each_frequent_word_in_one_fine_cluster_of_its_coarse_one() -> None:
    from bench.train_topics import word_cluster_lines

    texts = ["快递 很 慢", "物流 很 慢", "快递 太 慢", "物流 太 慢",
             "客服 态度 差", "售后 态度 差", "客服 服务 差", "售后 服务 差"] * 3
    setting = {"min_count": 3, "window": 1, "contexts": 50, "dims": 3, "coarse": 2, "per_fine": 2}
    lines = word_cluster_lines(texts, setting)
    senses = read_table("\n".join(lines))
    assert set(senses) == {"快递", "物流", "客服", "售后", "态度", "服务", "很", "太", "慢", "差"}
    assert all(len(codes) == 1 and codes[0][:2] == "Zz" and codes[0][-3:] == "01=" for codes in senses.values())
    assert len({codes[0][:4] for codes in senses.values()}) == 2
