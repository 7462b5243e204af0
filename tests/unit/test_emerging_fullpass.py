"""The emerging bench's full-resolution pass (bench/emerging_bench.py FullPass) on a tiny
week: two hours at a low rate, every minute evaluated through the kind's decision code. It
must count the alert an injected new phrase fires, and none on a flat background."""

from __future__ import annotations

from bench.emerging_bench import FullPass
from services.alerting.emerging import Excluded
from services.alerting.kinds.emerging_topic import EmergingTopicRule

POOL = [("waimai", ["送餐", "送餐 很快"]), ("waimai", ["味道", "味道 不错"]),
        ("waimai", ["包装"]), ("waimai", ["米饭"]),
        ("hotel", ["房间", "房间 干净"]), ("hotel", ["早餐"]), ("hotel", ["前台"])]
INJECTED = [["餐盒", "盖子", "餐盒 盖子"], ["餐盒 盖子", "餐盒", "盖子", "裂"]]


def _pass(seed: int = 3) -> FullPass:
    rule = EmergingTopicRule.model_validate(
        {"id": "new", "type": "emerging_topic", "baseline_s": 1800})
    return FullPass(POOL, [], rule, Excluded([]), rate=3.0, batch_s=600, seed=seed,
                    injected=INJECTED, audit_every=1)


def test_a_flat_background_fires_nothing_in_any_minute() -> None:
    result = _pass().run(warmup_s=1800, background_s=7200)
    # every minute end of the two hours, the two touchpoints and overall
    assert result["ticks"] == 120
    assert result["evaluations"] == 120 * 3
    assert result["false_alerts"] == 0 and result["breached"] == 0
    # the shortcut that skips the detector was checked against it at every evaluation
    assert result["audited"] == result["evaluations"] and result["audit_differ"] == 0
    assert result["false_per_day_upper95"] > 0


def test_an_injected_phrase_fires_its_alert_within_minutes() -> None:
    result = _pass().run(warmup_s=1800, background_s=7200, inject_at=9000 + 30, share=0.3,
                         inject_minutes=20)
    found = result["detection"]
    assert found is not None, result["during_injection"]
    assert found["top_phrase"] == "餐盒盖子"
    assert 0 < found["seconds"] <= 600
    assert result["false_alerts"] == 0
