"""Key experiences, topic impact and derived importance: pure arithmetic, hand-checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.scoring.drivers import (
    Factor,
    derived_importance,
    experience_0_10,
    impact,
    quadrant,
    quadrant_cuts,
    rank_key_experiences,
)
from services.scoring.expectations import load_expectations


def test_worked_example_convenience_is_the_key_experience() -> None:
    """The domain's worked example: a retailer's customers rate convenience importance 9 and
    it falls 2 points short of expectation, so its weighted score is 9 x -2 = -18, the worst
    of the retailer's factors, and it is listed first."""
    factors = [
        Factor(topic="price", importance=6, gap=-1),          # -6
        Factor(topic="product_quality", importance=8, gap=1),  # +8
        Factor(topic="convenience", importance=9, gap=-2),     # -18
        Factor(topic="service", importance=7, gap=-0.5),       # -3.5
    ]
    ranked = rank_key_experiences(factors)
    assert ranked[0].topic == "convenience"
    assert ranked[0].weighted == -18
    assert [f.weighted for f in ranked] == [-18, -6, -3.5, 8]


def test_equal_weighted_scores_put_the_more_important_factor_first() -> None:
    ranked = rank_key_experiences([Factor(topic="a", importance=2, gap=-3),
                                   Factor(topic="b", importance=6, gap=-1)])
    assert [f.topic for f in ranked] == ["b", "a"]


# Five events: e1 +0.8 (NPS 10), e2 -0.6 (NPS 3), e3 -0.9, e4 0.0 (NPS 8), e5 +0.5 (NPS 9).
TOTAL = {"volume": 5, "positive_count": 2, "negative_count": 2, "sentiment_sum": -0.2,
         "nps_responses": 4, "nps_promoters": 2, "nps_detractors": 1, "csat_responses": 0,
         "csat_satisfied": 0, "complaint_count": 2}
# logistics_delivery is mentioned by e1, e2 and e5.
LOGISTICS = {"mentions": 3, "positive_count": 2, "negative_count": 1, "sentiment_sum": 0.7,
             "nps_responses": 3, "nps_promoters": 2, "nps_detractors": 1, "csat_responses": 0,
             "csat_satisfied": 0, "complaint_count": 1}


def test_impact_is_overall_minus_score_without_the_topic() -> None:
    # mean sentiment overall -0.2 / 5 = -0.04; without e1, e2, e5: (-0.9 + 0) / 2 = -0.45.
    assert impact("mean_sentiment", TOTAL, LOGISTICS) == {
        "metric": "mean_sentiment", "overall": -0.04, "without_topic": -0.45,
        "impact": pytest.approx(0.41)}
    # NPS overall 100 x (2 - 1) / 4 = 25; without: only e4 (8, passive) -> 0. Impact +25.
    assert impact("nps", TOTAL, LOGISTICS)["impact"] == pytest.approx(25)
    # negative share 2/5 = 0.4; without: e3 of (e3, e4) = 0.5. Impact -0.1.
    assert impact("negative_share", TOTAL, LOGISTICS)["impact"] == pytest.approx(-0.1)
    # CSAT has no responses on either side: no impact rather than a made-up zero.
    assert impact("csat", TOTAL, LOGISTICS)["impact"] is None


def test_derived_importance_shows_its_sample() -> None:
    # with logistics: 0.7 / 3 = 0.2333; without: -0.45; difference 0.6833 -> 5 x = 3.4167.
    value, sample = derived_importance(TOTAL, LOGISTICS, "sentiment")
    assert value == pytest.approx(5 * (0.7 / 3 + 0.45))
    assert sample == {"with_topic": 3, "without_topic": 2}
    # NPS with: 100 x (2 - 1) / 3 = 33.3; without (e4 only): 0 -> |33.3| / 20 = 1.667.
    value, sample = derived_importance(TOTAL, LOGISTICS, "nps")
    assert value == pytest.approx(100 / 3 / 20)
    assert sample == {"with_topic": 3, "without_topic": 1}
    everything = {**TOTAL, "mentions": 5}
    assert derived_importance(TOTAL, everything, "sentiment")[0] is None, \
        "a topic in every event has no 'without' side to compare with"


def test_experience_scale() -> None:
    assert (experience_0_10(-1), experience_0_10(0), experience_0_10(1)) == (0, 5, 10)


def test_expectations_file_merges_touchpoint_over_defaults(tmp_path: Path) -> None:
    path = tmp_path / "e.yaml"
    path.write_text("defaults:\n  targets: {nps: 30, csat: 80}\n  factor_expectation: 7\n"
                    "touchpoints:\n  hotline:\n    targets: {nps: 10}\n"
                    "    factor_expectations: {waiting_time: 8}\n"
                    "    importance: {waiting_time: 9}\n", encoding="utf-8")
    loaded = load_expectations(path)
    assert loaded.targets("hotline") == {"nps": 10, "csat": 80}
    assert loaded.targets("other") == {"nps": 30, "csat": 80}
    assert loaded.factor_expectation("hotline", "waiting_time") == 8
    assert loaded.factor_expectation("hotline", "price_fees") == 7
    assert loaded.importance("hotline", "waiting_time") == 9
    assert loaded.importance("hotline", "price_fees") is None


def test_shipped_expectations_cover_the_demo_touchpoints() -> None:
    from services.ingest.demo_feed import TOUCHPOINTS

    shipped = load_expectations()
    for touchpoint in TOUCHPOINTS:
        assert shipped.targets(touchpoint.name), touchpoint.name
        assert shipped.touchpoints[touchpoint.name].importance, touchpoint.name


def test_bad_expectations_file_names_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "e.yaml"
    path.write_text("defaults:\n  targets: {nsp: 30}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="nsp") as caught:
        load_expectations(path)
    assert str(path) in str(caught.value) and "VOC_EXPECTATIONS_PATH" in str(caught.value)


def test_quadrants_divide_at_the_mean_importance_and_performance() -> None:
    """Importance-performance analysis: cuts at the means of the topics with an importance
    (here (9 + 8 + 3 + 2) / 4 = 5.5 and (3 + 8 + 2 + 9) / 4 = 5.5); a topic without an
    importance is in no quadrant and does not move the cuts."""
    points = {"convenience": (9.0, 3.0), "quality": (8.0, 8.0), "packaging": (3.0, 2.0),
              "gift_wrap": (2.0, 9.0), "unrated": (None, 0.0)}
    cuts = quadrant_cuts(points.values())
    assert cuts is not None and (cuts.importance, cuts.performance) == (5.5, 5.5)
    assert {t: quadrant(i, p, cuts) for t, (i, p) in points.items()} == {
        "convenience": "concentrate", "quality": "keep_up", "packaging": "low_priority",
        "gift_wrap": "overkill", "unrated": None}
    assert quadrant(5.5, 5.5, cuts) == "keep_up", "on a cut counts as important and at par"
    assert quadrant_cuts([(None, 4.0)]) is None
