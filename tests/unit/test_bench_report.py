"""The benchmark page's targets table reads a missing figure as missing, not as a number."""

from __future__ import annotations

from typing import Any

from bench.report import targets


def _run(name: str, rate: float | None, alert_latencies: list[float | None]) -> dict[str, Any]:
    return {"name": name, "offered_rate": rate, "sustained_events_per_s": 900.0,
            "latency_s": {"to_score_row": {"p99": 1.5}}, "alerts": {"latencies_s": alert_latencies},
            "cpu_ms_per_event": {"nlp": 0.4}, "stages": {"nlp (enriched_at)":
                                                         {"finished_after_previous_s": 1.0}}}


def test_an_alert_never_seen_is_a_miss_and_carries_no_unit() -> None:
    rows, _ = targets({"separate": {"runs": [
        _run("http-1000", 1000.0, [1.0, 2.0, None]), _run("kafka-1000", 1000.0, [1.0, 2.0, 3.0]),
        _run("http-allout", None, [])]}})
    alert = {row["run"]: row for row in rows if row["target"].startswith("alert")}
    assert alert["http-1000 (3 bursts)"]["measured"] == "never seen"
    assert not alert["http-1000 (3 bursts)"]["met"]
    assert alert["kafka-1000 (3 bursts)"]["measured"] == "3.000 s"
    assert alert["kafka-1000 (3 bursts)"]["met"]
    score = [row for row in rows if row["target"].startswith("p99")]
    assert [row["measured"] for row in score] == ["1.500 s", "1.500 s"]
