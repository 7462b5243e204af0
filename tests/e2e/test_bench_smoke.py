"""The bench scripts keep working: tiny runs of each, then the combined report.

These check structure and that every figure is present and positive, never how fast anything
is (timing targets belong to ``make bench`` and docs/benchmarks.md, not to assertions).
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import percentiles

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "tests" / "data" / "sentiment_sample.csv"


def _run(script: str, *args: str, timeout: int = 300, **settings: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **settings}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"


def test_percentiles_count_unseen_events_as_unbounded() -> None:
    assert percentiles([0.1] * 99 + [math.inf]) == {
        "n": 100, "missing": 1, "p50": 0.1, "p95": 0.1, "p99": 0.1, "max": None}
    assert percentiles([0.1] * 98 + [math.inf] * 2)["p99"] is None
    assert percentiles([3.0, 1.0, 2.0])["p50"] == 2.0


def _dev_shaped_sample(path: Path) -> Path:
    """The test sample in the dev file's columns (it lacks the SnowNLP-overlap flag)."""
    with open(SAMPLE, newline="", encoding="utf-8") as src, \
            open(path, "w", newline="", encoding="utf-8") as dst:
        writer = csv.DictWriter(dst, ["id", "domain", "text", "label", "source_cat",
                                      "in_snownlp_train"])
        writer.writeheader()
        for row in csv.DictReader(src):
            writer.writerow({**row, "source_cat": "", "in_snownlp_train": "0"})
    return path


def test_nlp_and_sink_bench_then_report(tmp_path: Path) -> None:
    data = _dev_shaped_sample(tmp_path / "sample.csv")
    _run("nlp_bench.py", "--data", str(data), "--limit-snownlp", "20",
         "--json", str(tmp_path / "nlp.json"))
    _run("sink_bench.py", "--data", str(SAMPLE), "--batch-sizes", "10,50", "--rows", "100",
         "--json", str(tmp_path / "sink.json"))
    _run("stage_profile.py", "--data", str(data), "--events", "100",
         "--json", str(tmp_path / "profile.json"))
    profile = json.loads((tmp_path / "profile.json").read_text())
    assert all(rate > 0 for rate in profile["single_core_events_per_s"].values())
    assert profile["analyze_top_functions_by_self_time"]
    sink = json.loads((tmp_path / "sink.json").read_text())
    assert {(r["backend"], r["batch_size"]) for r in sink["results"]} == {
        ("chdb", 10), ("clickhouse-server", 10), ("chdb", 50), ("clickhouse-server", 50)}
    assert all(r["rows_per_s"] > 0 for r in sink["results"])
    assert sink["machine"]["cpu_count"] >= 1 and sink["machine"]["python"].startswith("3.")

    out = tmp_path / "benchmarks.md"
    _run("report.py", "--dir", str(tmp_path), "--out", str(out))
    text = out.read_text()
    for heading in ("# Benchmarks", "## Machine", "## Headline ratios", "## NLP", "## Sink",
                    "## Stage profile"):
        assert heading in text
    assert "clickhouse-server / chdb" in text and "default model / SnowNLP" in text
    combined = json.loads((tmp_path / "benchmarks.json").read_text())
    assert combined["nlp"]["speed_ratio_default_over_snownlp"] > 0


@pytest.mark.slow
def test_e2e_bench_tiny_run_and_report(tmp_path: Path) -> None:
    _run("e2e_bench.py", "--data", str(SAMPLE), "--rates", "100", "--duration", "3",
         "--allout-events", "300", "--bursts", "1", "--burst-len", "25",
         "--drain-timeout", "90", "--json", str(tmp_path / "e2e.json"), timeout=500)
    e2e = json.loads((tmp_path / "e2e.json").read_text())
    runs = {r["name"]: r for r in e2e["separate"]["runs"]}
    assert set(runs) == {"http-100", "kafka-100", "http-allout", "kafka-allout"}
    for run in runs.values():
        assert run["stored"] == run["events"], run["name"]
        assert run["sustained_events_per_s"] > 0
        for latency in run["latency_s"].values():
            assert latency["missing"] == 0 and latency["p99"] > 0, (run["name"], latency)
        assert all(v["events_per_s"] > 0 for v in run["stages"].values())
        assert run["cpu_s"]["nlp"] > 0 and run["cpu_s"]["scoring"] > 0
        assert all(mb > 0 for mb in run["peak_rss_mb"].values())
    fixed = runs["http-100"]["alerts"]
    assert fixed["bursts"] == 1 and fixed["n"] == 1 and fixed["p95"] > 0
    embedded = e2e["embedded"]
    assert embedded["scored"] == embedded["events"] and embedded["peak_rss_mb"] > 0

    out = tmp_path / "benchmarks.md"
    _run("report.py", "--dir", str(tmp_path), "--out", str(out))
    text = out.read_text()
    for heading in ("## Targets", "### Bottleneck", "## End to end", "## Memory",
                    "## Definitions"):
        assert heading in text
    assert "http-allout" in text and "sustained end to end" in text


@pytest.mark.slow
def test_cluster_and_broker_loss_benches_tiny_runs_and_report(tmp_path: Path) -> None:
    _run("cluster_bench.py", "--data", str(SAMPLE), "--rate", "100", "--duration", "3",
         "--allout-events", "400", "--drain-timeout", "120", "--e2e-json",
         str(tmp_path / "absent.json"), "--json", str(tmp_path / "cluster.json"), timeout=500)
    cluster = json.loads((tmp_path / "cluster.json").read_text())
    runs = {r["name"]: r for r in cluster["runs"]}
    assert set(runs) == {"cluster-100", "cluster-allout"}
    for run in runs.values():
        assert run["stored"] == run["events"] and run["sustained_events_per_s"] > 0, run
        assert run["latency_to_enriched_row_s"]["missing"] == 0
        assert {"nlp-1", "nlp-2", "scoring-1", "scoring-2", "zookeeper",
                "clickhouse s1r1", "clickhouse s2r2"} <= set(run["cpu_s"])
        assert run["cpu_s"]["scoring-1"] + run["cpu_s"]["scoring-2"] > 0
    _run("broker_loss.py", "--rates", "100", "--seconds", "3", "--json",
         str(tmp_path / "broker_loss.json"), timeout=300)
    [loss] = json.loads((tmp_path / "broker_loss.json").read_text())["runs"]
    assert loss["acknowledged"] > 0 and loss["stored"] + loss["lost"] == loss["acknowledged"]
    assert loss["children_left_running_15s_after"] == []

    out = tmp_path / "benchmarks.md"
    _run("report.py", "--dir", str(tmp_path), "--out", str(out))
    text = out.read_text()
    assert "## cluster.json" in text and "| HTTP all-out | sustained events/s |" in text
    assert "## broker_loss.json" in text and "| 100 |" in text


def test_emerging_bench_tiny_run(tmp_path: Path) -> None:
    """The bench through chdb on a few texts: 1 % of a 100 events/s stream at the injected
    touchpoint is too thin to alert within 10 minutes, so this checks the run and its report,
    not the figures."""
    data = tmp_path / "nlp"
    data.mkdir()
    with open(SAMPLE, newline="", encoding="utf-8") as src, \
            open(data / "sentiment_dev.csv", "w", newline="", encoding="utf-8") as dst:
        writer = csv.DictWriter(dst, ["id", "domain", "text", "label", "source_cat"])
        writer.writeheader()
        for n, row in enumerate(csv.DictReader(src)):
            domain = ("waimai", "hotel", "ecommerce")[n % 3]
            writer.writerow({"id": row["id"], "domain": domain, "text": row["text"],
                             "label": row["label"], "source_cat": ""})
    for name in ("aspect_ecom_makeup_dev.jsonl", "aspect_car_dev.jsonl",
                 "aspect_restaurant_aic_dev.jsonl"):
        (data / name).write_text('{"id": "a1", "text": "动力很足，油耗也低"}\n', encoding="utf-8")
    out = tmp_path / "emerging.json"
    _run("emerging_bench.py", "--data-dir", str(data), "--rate", "20", "--days", "0.02",
         "--baseline-s", "600", "--tick-s", "600", "--inject-minutes", "3", "--json", str(out),
         VOC_EMERGING_BUCKET_S="600")
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["store"] == "chdb" and result["touchpoints"] == 6
    # the warm-up baseline and the two whole 600 s buckets of 0.02 days, at night: at least
    # half the mean rate by the day curve, less a tenth of noise
    assert result["events"] > 0.45 * 20 * (600 + 2 * 600)
    assert result["evaluations"] > 0 and result["false_per_day"] >= 0
    assert "| figure | target | measured |" in result["markdown"]
    # the full-resolution pass evaluated every minute end, each touchpoint and overall, and
    # its decision on the SQL's counts was the kind's in every sampled window
    full, tie = result["full"], result["tie"]
    assert full["scopes"] == 7 and full["ticks"] == 2 * 600 // 60
    assert full["evaluations"] == full["ticks"] * full["scopes"]
    assert tie["windows"] > 0 and tie["agree"] == tie["windows"]
