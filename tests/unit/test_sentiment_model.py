"""Guards for the shipped sentiment model: it loads offline, stays calibrated to [-1, 1] and
does not regress below 0.90 accuracy on a labelled sample of the inner hold-out."""

from __future__ import annotations

import csv
import math
import re
import sys
from pathlib import Path

import pytest

from services.nlp.sentiment_model import CharNgramSentiment, char_ngrams, load_default, normalise

SAMPLE = Path(__file__).parents[1] / "data" / "sentiment_sample.csv"


@pytest.fixture(scope="module")
def model() -> CharNgramSentiment:
    return load_default()


@pytest.fixture(scope="module")
def sample() -> list[dict[str, str]]:
    with SAMPLE.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_shipped_model_loads(model: CharNgramSentiment) -> None:
    assert model.name == "char-ngram-linear"
    assert model.version
    assert len(model.vocabulary) > 10_000


def test_scores_are_graded_and_bounded(model: CharNgramSentiment, sample: list[dict[str, str]]) -> None:
    scores = model.predict([r["text"] for r in sample])
    assert len(scores) == len(sample)
    assert all(isinstance(s, float) and math.isfinite(s) and -1.0 <= s <= 1.0 for s in scores)
    # A calibrated score uses the range, not just its two ends.
    assert len({round(s, 2) for s in scores}) > 50


def test_obvious_polarity(model: CharNgramSentiment) -> None:
    pos, neg = model.predict(["质量很好，物流很快，非常满意！", "太差了，送来的菜全凉了，再也不点了"])
    assert pos > 0.5
    assert neg < -0.5


def test_sample_accuracy_at_least_090(model: CharNgramSentiment, sample: list[dict[str, str]]) -> None:
    scores = model.predict([r["text"] for r in sample])
    hits = [(s > 0) == (r["label"] == "1") for s, r in zip(scores, sample, strict=True)]
    accuracy = sum(hits) / len(hits)
    assert accuracy >= 0.90, f"accuracy {accuracy:.3f} on {len(hits)} hold-out rows"


def test_batch_and_single_agree(model: CharNgramSentiment, sample: list[dict[str, str]]) -> None:
    texts = [r["text"] for r in sample[:60]] + ["", "好"]
    batch = model.predict(texts)
    single = [model.predict([t])[0] for t in texts]
    assert batch == pytest.approx(single, abs=1e-9)


def test_vectorised_features_match_reference_ngrams(model: CharNgramSentiment) -> None:
    """The numpy look-up must see exactly the n-grams that training saw via char_ngrams."""
    index = {g: j for j, g in enumerate(model.vocabulary)}
    text = "房间  很干净\n服务ABC很好！！🙂"
    counts: dict[int, int] = {}
    for g in char_ngrams(text, model.max_n, model.max_chars):
        if g in index:
            counts[index[g]] = counts.get(index[g], 0) + 1
    tfidf = {j: (1 + math.log(c)) * float(model.idf[j]) for j, c in counts.items()}
    norm = math.sqrt(sum(v * v for v in tfidf.values()))
    expected = sum(v * float(model.weights[j]) for j, v in tfidf.items()) / norm + model.intercept
    assert model.decision_function([text])[0] == pytest.approx(expected, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "\x00", "\U0010fffd\U0010fffd", "a"])
def test_texts_without_evidence_are_neutral(model: CharNgramSentiment, text: str) -> None:
    if text == "a":
        (score,) = model.predict([text])
        assert -1.0 <= score <= 1.0
    else:
        assert model.predict([text]) == [0.0]


def test_empty_batch(model: CharNgramSentiment) -> None:
    assert model.predict([]) == []


def test_very_long_text(model: CharNgramSentiment) -> None:
    long_text = "房间干净，服务周到。" * 50_000
    scores = model.predict([long_text, "差评"])
    assert -1.0 <= scores[0] <= 1.0
    assert scores[1] == pytest.approx(model.predict(["差评"])[0])


def test_normalise_collapses_exactly_the_whitespace_of_the_regex_it_replaced() -> None:
    """``normalise`` joins ``str.split()`` pieces; it must equal substituting ``\\s+`` runs with
    one space and stripping (the shipped artifacts were trained on that), for every code point
    ``\\s`` or ``isspace`` accepts and for runs at the ends and inside."""
    pattern = re.compile(r"\s")
    spaces = [chr(c) for c in range(sys.maxunicode + 1) if pattern.fullmatch(chr(c)) or chr(c).isspace()]
    assert len(spaces) > 20
    for ch in spaces:
        assert (pattern.fullmatch(ch) is not None) == ch.isspace()
    regex = re.compile(r"\s+")
    samples = ["", " ", "质量\u3000很差", "  A\tB\n\n 退款 \u00a0 慢\r\n", "ＡＢＣ\u2028客服\u200b好 ", *spaces,
               "".join(spaces) + "快递" + "".join(reversed(spaces)) + "太慢" + spaces[0]]
    for text in samples:
        assert normalise(text) == regex.sub(" ", text.lower()).strip()
