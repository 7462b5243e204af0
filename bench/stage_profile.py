"""Where one event's CPU goes inside the NLP and scoring stages, in one process on one core.

The end-to-end bench says which stage limits the pipeline; this says why. It times the same
steps the services run per event (parse the wire JSON, redact and derive the analysis text,
analyze, serialize, map to a table row) and runs cProfile over the analyzer to list the
functions that take the time. No broker and no store: the stage's own Python work only.

Each step is timed in CPU time of this process (``time.process_time``), not wall time, because
the machine's cores are shared with other work; the figure is the median of ``--repeat`` runs.
Each analyze run starts with the segmenters' shared cache of recent cuts emptied
(:func:`~services.nlp.segmenter.forget_recent_cuts`): the runs replay the same texts, and a run
finding the previous run's words would measure traffic that never arrives (until 2026-12-03 it
did, and the analyze step measured 14-18 % cheaper than on fresh texts; docs/model-card.md,
"Round 7"). For a ratio between two checkouts use ``bench/cpu_pair.py``.

    python bench/stage_profile.py --events 2000
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import cProfile  # noqa: E402
import pstats  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DEV_REVIEWS, REPO_ROOT, write_json  # noqa: E402
from bench.e2e.plan import load_texts  # noqa: E402
from services.core.channels import prepare_raw  # noqa: E402
from services.core.events import EnrichedFeedback, RawFeedback, stable_event_id  # noqa: E402
from services.core.settings import load_settings  # noqa: E402


def per_event_us(fn: Callable[[], Any], events: int, repeat: int,
                 before: Callable[[], None] | None = None) -> tuple[Any, float]:
    """fn's output and its median CPU microseconds per event over ``repeat`` runs, ``before``
    called (untimed) ahead of each."""
    spent = []
    for _ in range(repeat):
        if before is not None:
            before()
        start = time.process_time()
        out = fn()
        spent.append(time.process_time() - start)
    return out, round(1e6 * statistics.median(spent) / events, 1)


def package_of(file: str) -> str:
    """Which library (or which of our modules) a profiled function lives in."""
    path = Path(file)
    if "site-packages" in path.parts:
        return path.parts[path.parts.index("site-packages") + 1].split(".")[0]
    if "services" in path.parts:
        return ".".join(path.parts[path.parts.index("services"):]).removesuffix(".py")
    return "python builtins" if file == "~" else path.name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        default=DEV_REVIEWS)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=256, help="the NLP stage's batch size")
    parser.add_argument("--top", type=int, default=12, help="functions listed from cProfile")
    parser.add_argument("--repeat", type=int, default=5, help="runs per step; the median is kept")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "build/bench/profile.json")
    args = parser.parse_args(argv)
    if not args.data.exists():
        parser.error(f"--data {args.data} does not exist: pass the shared sentiment_dev.csv "
                     "(../shared/data/nlp/ from the checkout) or tests/data/sentiment_sample.csv")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    from services.nlp.segmenter import forget_recent_cuts
    from services.nlp.worker import build_analyzer
    from services.scoring.sink import feedback_row

    positives, negatives = load_texts(args.data, args.events, 5)
    texts = [t for pair in zip(positives, negatives) for t in pair][: args.events]
    now = datetime.now(UTC)
    wire = [RawFeedback(event_id=stable_event_id("profile", str(i)), source="profile",
                        external_id=str(i), channel="app", touchpoint=f"tp{i % 8}", text=t,
                        occurred_at=now, received_at=now).to_bytes()
            for i, t in enumerate(texts)]
    n = len(wire)
    analyzer = build_analyzer(load_settings())
    analyzer.analyze([RawFeedback.model_validate_json(w) for w in wire[:20]])

    def analyze_all(raw: list[RawFeedback]) -> list[EnrichedFeedback]:
        out: list[EnrichedFeedback] = []
        for i in range(0, len(raw), args.batch_size):
            out.extend(analyzer.analyze(raw[i: i + args.batch_size]))
        return out

    steps: dict[str, dict[str, float]] = {"nlp": {}, "scoring": {}}
    r = args.repeat
    parsed_raw, steps["nlp"]["parse raw JSON"] = per_event_us(
        lambda: [RawFeedback.model_validate_json(w) for w in wire], n, r)
    raw, steps["nlp"]["redact PII, analysis text"] = per_event_us(
        lambda: [prepare_raw(e) for e in parsed_raw], n, r)
    enriched, steps["nlp"]["analyze (all NLP)"] = per_event_us(
        lambda: analyze_all(raw), n, r, before=forget_recent_cuts)
    out, steps["nlp"]["serialize enriched JSON"] = per_event_us(
        lambda: [e.to_bytes() for e in enriched], n, r)
    parsed, steps["scoring"]["parse enriched JSON"] = per_event_us(
        lambda: [EnrichedFeedback.model_validate_json(b) for b in out], n, r)
    _, steps["scoring"]["map to feedback row"] = per_event_us(
        lambda: [feedback_row(e, 0) for e in parsed], n, r)
    for stage in steps.values():
        stage["total"] = round(sum(stage.values()), 1)

    forget_recent_cuts()
    profiler = cProfile.Profile()
    profiler.enable()
    analyze_all(raw)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    rows = []
    for (file, line, name), (_cc, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{package_of(file)}:{line}({name})", "calls": calls,
                     "self_us_per_event": round(1e6 * tottime / n, 1),
                     "cumulative_us_per_event": round(1e6 * cumtime / n, 1),
                     "self_share": round(tottime / total, 3) if total else 0.0})
    rows.sort(key=lambda r: r["self_us_per_event"], reverse=True)
    by_package: dict[str, float] = {}
    for (file, _line, _name), (_cc, _calls, tottime, _cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        by_package[package_of(file)] = by_package.get(package_of(file), 0.0) + tottime
    payload = {
        "command": "python bench/stage_profile.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "events": n, "batch_size": args.batch_size, "model": analyzer.model_id,
        "timing": f"CPU time (time.process_time), median of {args.repeat} runs",
        "us_per_event": steps,
        "single_core_events_per_s": {k: round(1e6 / v["total"], 0) for k, v in steps.items()},
        "analyze_self_share_by_package": {k: round(v / total, 3) for k, v in sorted(
            by_package.items(), key=lambda kv: kv[1], reverse=True) if v / total >= 0.01},
        "analyze_top_functions_by_self_time": rows[: args.top],
    }
    write_json(args.json, payload)
    for stage, figures in steps.items():
        print(f"{stage}: " + ", ".join(f"{k} {v} us" for k, v in figures.items()))
    print("analyze self time by package: " + ", ".join(
        f"{k} {v:.0%}" for k, v in payload["analyze_self_share_by_package"].items()))
    for r in rows[: args.top]:
        print(f"  {r['self_us_per_event']:>8} us/event self  {r['function']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
