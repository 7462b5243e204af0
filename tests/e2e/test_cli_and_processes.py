"""The ``voc`` command and the process hygiene of ``voc up`` (real child processes)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import schemas
from services.core.broker import free_port, pid_alive
from tests.waiting import eventually_sync, stays_true_sync

VOC = str(Path(sys.executable).with_name("voc"))


@pytest.mark.parametrize("command", [
    [], ["up"], ["ingest"], ["nlp"], ["nlp", "train"], ["scoring"], ["alerting"],
    ["topics", "create"], ["db", "migrate"], ["alerts", "tail"], ["cases", "tail"],
    ["feedback", "send"],
])
def test_help_everywhere(command: list[str]) -> None:
    done = subprocess.run([VOC, *command, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout


def test_scoring_refuses_chdb_with_advice(tmp_path: Path) -> None:
    env = {**os.environ, "VOC_CLICKHOUSE_URL": f"chdb://{tmp_path}"}
    done = subprocess.run([VOC, "scoring"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode != 0
    assert "voc up" in done.stderr and "ClickHouse server" in done.stderr


def test_the_stages_on_a_clickhouse_server_do_not_load_chdb() -> None:
    """chdb maps about 200 MiB into a process that imports it (the Memory table of
    docs/benchmarks.md: ingest, scoring and alerting held about 400 MiB each with it); the
    one-process-per-service stages, which run against a ClickHouse server, must not."""
    code = ("import sys, services.pipeline, services.ingest.app, services.nlp.worker, "
            "services.scoring.worker, services.alerting.worker; print(sorted(m for m in sys.modules "
            "if m.split('.')[0] == 'chdb'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_bad_setting_is_a_clear_error() -> None:
    env = {**os.environ, "VOC_TOPIC_PARTITIONS": "many"}
    done = subprocess.run([VOC, "topics", "create"], capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.returncode != 0 and "topic_partitions" in done.stderr


def test_db_migrate_on_chdb(tmp_path: Path) -> None:
    env = {**os.environ, "VOC_CLICKHOUSE_URL": f"chdb://{tmp_path / 'db'}"}
    first = subprocess.run([VOC, "db", "migrate"], capture_output=True, text=True, env=env,
                           timeout=120)
    assert first.returncode == 0, first.stderr
    every = [m.version for m in schemas.migrations()]
    assert f"applied migrations: {every}" in first.stdout
    again = subprocess.run([VOC, "db", "migrate"], capture_output=True, text=True, env=env,
                           timeout=120)
    assert "up to date" in again.stdout


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _start_up(tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], Path]:
    log = tmp_path / "up.log"
    env = {**os.environ, "VOC_DATA_DIR": str(tmp_path / "data"), "VOC_HTTP_PORT": str(free_port()),
           "VOC_DEMO_RATE": "10", "VOC_LOCAL_BROKER_PORT": "0"}
    env.pop("VOC_KAFKA_BOOTSTRAP", None)
    env.pop("VOC_CLICKHOUSE_URL", None)
    with open(log, "w") as out:
        process = subprocess.Popen([VOC, "up", *args], env=env, stdout=out,
                                   stderr=subprocess.STDOUT, text=True)
    return process, log


def _wait_for(log: Path, text: str, timeout_s: float) -> float:
    return eventually_sync(lambda: text in log.read_text(), timeout_s,
                           lambda: f"{text!r} in the log:\n{log.read_text()[-5000:]}")


def _alerts(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if "alert_id=" in line]


def _only_delivery_alerts(log: Path, attempt: str, for_s: float) -> None:
    """The degrading touchpoint alerts, and no other starts to for ``for_s`` seconds."""
    stays_true_sync(lambda: all("touchpoint=delivery" in line for line in _alerts(log)), for_s,
                    lambda: f"{attempt} run: alerts only on delivery {_alerts(log)}")


def _children_exit(children: list[int], timeout_s: float) -> None:
    eventually_sync(lambda: not any(pid_alive(pid) for pid in children), timeout_s,
                    lambda: f"no orphaned child processes: {children}", interval_s=0.2)


def _demo_fills_the_people_views(log: Path) -> None:
    """Cheap reads of what the running demo has stored by its first alert (issue 19): calls per
    agent and queue, feedback per segment and per demo dimension, effort-flagged comments with
    their cues, NPS detractors among the recurring customers, and the callback case the default
    `detractor-callback` rule opens for one of them, carrying the customer and the channel."""
    found = re.search(r"API:\s+(\S+)", log.read_text())
    assert found, log.read_text()[-2000:]
    url = found.group(1)

    def read(path: str, **params: str) -> dict:
        answer = httpx.get(f"{url}{path}", params=params, timeout=10)
        assert answer.status_code == 200, (path, answer.text)
        return answer.json()

    def called_back() -> bool:
        return any(c.get("kind") == "callback" and (c.get("customer_id") or "").startswith(
                   "c-demo-") and c.get("channels") == ["survey"]
                   for c in httpx.get(f"{url}/v1/cases", params={"limit": "50"},
                                      timeout=10).json())

    def filled() -> bool:
        agents = read("/v1/contact-center/agent")["values"]
        queues = read("/v1/contact-center/queue")["values"]
        segments = {v["value"] for v in read("/v1/dimensions/segment")["values"]}
        cities = read("/v1/dimensions/city")["values"]
        effort = read("/v1/feedback", effort="true", page_size="5")["items"]
        surveys = read("/v1/feedback", q="不会再推荐", page_size="50")["items"]
        return (len(agents) >= 3 and len(queues) >= 2 and {"VIP", "新客"} <= segments
                and len(cities) >= 3 and bool(effort) and all(i["effort"]["cues"] for i in effort)
                and any((i["ratings"]["nps"] or 10) <= 6 for i in surveys)
                and called_back())

    eventually_sync(filled, 30, lambda: "agents, queues, segments, cities, effort and "
                    "detractors in the demo's store, and a callback case")


@pytest.mark.slow
def test_voc_up_demo_alerts_on_the_degrading_touchpoint_and_stops_cleanly(tmp_path: Path) -> None:
    for attempt in ("first", "second"):  # a re-run must alert again, not sit in a cooldown
        process, log = _start_up(tmp_path)
        try:
            _wait_for(log, "Tingjian (听见) is running", 90)
            seconds = _wait_for(log, "alert_id=", 60)
            _only_delivery_alerts(log, attempt, for_s=3)
            assert seconds < 60
            if attempt == "first":
                _demo_fills_the_people_views(log)
            children = _children(process.pid)
            assert children, "voc up should run the local broker as a child"
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=40) == 0
            assert "pipeline stopped" in log.read_text()
            _children_exit(children, 10)
        finally:
            if process.poll() is None:
                process.kill()


def test_killed_voc_up_leaves_no_broker_behind(tmp_path: Path) -> None:
    process, log = _start_up(tmp_path, "--no-demo")
    try:
        _wait_for(log, "local broker started", 60)
        children = _children(process.pid)
        assert children
        process.kill()
        process.wait(timeout=10)
        _children_exit(children, 10)
    finally:
        if process.poll() is None:
            process.kill()
