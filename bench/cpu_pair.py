"""The NLP stage's CPU per event in two checkouts, measured side by side batch by batch.

``bench/stage_profile.py`` run in two trees in turn cannot resolve a ratio on a shared machine:
on 2026-12-03 ten interleaved pairs of 7562d41 and main measured main at 1.45x to 2.69x, because
the host's speed moved by more than the difference between runs half a minute apart. Here one
worker process per tree (each with its own code and artifacts, pinned to the same core) holds its
analyzer loaded, and the parent hands both the same batch, one after the other, alternating
which goes first: both sides of every batch ran within milliseconds of each other, so a slow
spell of the host slows both. The step measured is the NLP stage's chain per event as
``stage_profile.py`` times it: parse the wire JSON, redact and derive the analysis text,
analyze, serialize the enriched event (CPU time of the worker, ``time.process_time``). Each
round reads texts neither worker has seen, as fresh traffic does.

The first figure printed is the ratio of the two trees' CPU over all rounds: CPU per event over
the same stream. The median of the rounds' ratios follows. They differ when a tree's cost comes
in lumps: 7562d41's worker does not freeze its loaded models out of the garbage collector
(services/nlp/worker.py does since), so every 2,800-4,000 events a full collection walks them,
about 80 ms (2026-12-04, ``gc.callbacks`` over 14 rounds of 2,000 reviews: 8 rounds with one, at
222-303 µs per event, 6 without, at 169-214). Its rounds with one measure main at about 1.7x, the
others at about 2.0x; with an odd number of rounds the median is one of the latter, and so it
moves with the parity of ``--rounds``.

    python bench/cpu_pair.py --trees /work/wt/base7562 . --rounds 11
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DEV_REVIEWS, REPO_ROOT, write_json  # noqa: E402
from bench.e2e.plan import load_texts  # noqa: E402

WORKER = r"""
import json, os, sys, time
sys.path.insert(0, os.getcwd())
import services
from datetime import UTC, datetime
try:
    from services.core.channels import prepare_raw
except ImportError:  # checkouts before the channel contract kept it in normalize
    from services.core.normalize import prepare_raw
from services.core.events import RawFeedback, stable_event_id
from services.core.settings import load_settings
from services.nlp.worker import build_analyzer

setup = json.loads(sys.stdin.readline())
now = datetime.now(UTC)
wire = [RawFeedback(event_id=stable_event_id("profile", str(i)), source="profile", external_id=str(i),
                    channel="app", touchpoint=f"tp{i % 8}", text=t, occurred_at=now,
                    received_at=now).to_bytes() for i, t in enumerate(setup["texts"])]
size, events = setup["batch_size"], setup["events"]
batches = [wire[r + i: r + min(i + size, events)] for r in range(0, len(wire), events) for i in range(0, events, size)]
analyzer = build_analyzer(load_settings())
warm = [RawFeedback(event_id=stable_event_id("warm", str(i)), source="profile", external_id=str(i),
                    channel="app", touchpoint="tp", text=t, occurred_at=now,
                    received_at=now).to_bytes() for i, t in enumerate(setup["warm"])]
for i in range(0, len(warm), size):
    analyzer.analyze([prepare_raw(RawFeedback.model_validate_json(w)) for w in warm[i: i + size]])
print(json.dumps({"batches": len(batches), "model": analyzer.model_id, "code": services.__file__}), flush=True)
for line in sys.stdin:
    batch = batches[int(line)]
    start = time.process_time()
    raw = [prepare_raw(RawFeedback.model_validate_json(w)) for w in batch]
    for event in analyzer.analyze(raw):
        event.to_bytes()
    print(time.process_time() - start, flush=True)
"""
"""The worker each tree runs: only what every checkout since 7562d41 has (no bench module;
``prepare_raw`` moved from services/core/normalize.py to channels.py since)."""


WARM = 10_000
"""Texts each worker analyzes before the rounds, none of them measured (``--warm``).

More than loading needs: the cue patterns are RE2 automata that build their states lazily, on
the text they meet, and fresh text keeps adding states for its first few thousand events. On
2026-12-03 the stance cue set cost 42, 18, 21, 15, 4.2 and 3.4 µs per text on six successive
2,000-text chunks of reviews it had not seen (1.9-4.9 µs when a chunk was read again), and the
urgency cue set alike. A running stage pays that once; with the old 20 warm-up texts the rounds
measured it, main's more than 7562d41's (whose cues were ``re``). ``--warm 20`` measures a
stage that has just started."""


class Worker:
    """One tree's analyzer in its own process, answering a batch index with its CPU seconds."""

    def __init__(self, tree: Path, texts: list[str], warm: list[str], events: int, batch_size: int,
                 core: int) -> None:
        self.tree = tree
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER], cwd=tree, text=True, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1",
                                         "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(self.proc.pid, {core})
        self._send(json.dumps({"texts": texts, "warm": warm, "batch_size": batch_size, "events": events}))
        ready = self._answer()
        self.batches, self.model = int(ready["batches"]), str(ready["model"])
        if not Path(ready["code"]).resolve().is_relative_to(tree):
            raise SystemExit(f"the worker of {tree} imported {ready['code']} (an installed copy of the "
                             "project shadows the tree's own code)")

    def _send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def _answer(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the worker of {self.tree} stopped (exit {self.proc.wait()}); run "
                             f"stage_profile.py in that tree to see why")
        return json.loads(line)

    def cpu(self, batch: int) -> float:
        self._send(str(batch))
        return float(self._answer())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def measure(trees: list[Path], texts: list[str], warm: list[str], batch_size: int, rounds: int
            ) -> dict[str, Any]:
    """Per round, each of its batches through both trees, the first tree first on even batches
    and second on odd ones; µs per event per tree and the second's ratio to the first, per round.

    Each round reads its own ``len(texts) // rounds`` texts: a text seen before would find its
    words in the segmenters' shared cache (``RecentCuts``), which fresh traffic does not; ``warm``
    (other texts) runs once before, to load what loads lazily."""
    events = len(texts) // rounds
    core = min(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    per_batch = -(-events // batch_size)
    workers: list[Worker] = []
    try:
        for tree in trees:
            workers.append(Worker(tree, texts[: events * rounds], warm, events, batch_size, core))
        if any(worker.batches != per_batch * rounds for worker in workers):
            raise SystemExit(f"a worker cut {[w.batches for w in workers]} batches, expected {per_batch * rounds}")
        per_round = []
        for n in range(rounds):
            spent = [0.0, 0.0]
            for batch in range(n * per_batch, (n + 1) * per_batch):
                order = (0, 1) if batch % 2 == 0 else (1, 0)
                for side in order:
                    spent[side] += workers[side].cpu(batch)
            us = [round(1e6 * s / events, 1) for s in spent]
            per_round.append({"us_per_event": us, "ratio": round(us[1] / us[0], 3)})
    finally:
        for worker in workers:
            worker.close()
    ratios = [r["ratio"] for r in per_round]
    totals = [sum(r["us_per_event"][side] for r in per_round) for side in (0, 1)]
    return {"trees": [str(t) for t in trees], "models": [w.model for w in workers],
            "warm_texts": len(warm), "events_per_round": events, "batch_size": batch_size, "rounds": per_round,
            "ratio_of_totals": round(totals[1] / totals[0], 3),
            "ratio_median": round(statistics.median(ratios), 3), "ratio_min": min(ratios),
            "ratio_max": max(ratios)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", type=Path, nargs=2, required=True, metavar=("BASE", "OTHER"),
                        help="two checkouts (the ratio is OTHER / BASE)")
    parser.add_argument("--data", type=Path, default=DEV_REVIEWS)
    parser.add_argument("--events", type=int, default=2000, help="texts per round, each round its own")
    parser.add_argument("--batch-size", type=int, default=256, help="the NLP stage's batch size")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warm", type=int, default=WARM,
                        help="texts each worker analyzes before the rounds, not measured (other "
                             "texts than the rounds'); 20 for a just-started stage")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "build/bench/cpu_pair.json")
    args = parser.parse_args(argv)
    if not args.data.exists():
        parser.error(f"--data {args.data} does not exist: pass the shared sentiment_dev.csv")
    for tree in args.trees:
        if not (tree / "services" / "nlp").is_dir():
            parser.error(f"--trees: {tree} is not a checkout of this project (no services/nlp)")
    wanted = args.events * args.rounds + args.warm
    positives, negatives = load_texts(args.data, wanted, 5)
    texts = [t for pair in zip(positives, negatives, strict=False) for t in pair][:wanted]
    if len(texts) < wanted:
        parser.error(f"--data {args.data} has {len(texts)} usable texts, fewer than --events x --rounds + --warm")
    result = measure([t.resolve() for t in args.trees], texts[args.warm:], texts[:args.warm], args.batch_size,
                     args.rounds)
    write_json(args.json, {"command": "python bench/cpu_pair.py " + " ".join(
        sys.argv[1:] if argv is None else argv), **result})
    for n, r in enumerate(result["rounds"], 1):
        print(f"round {n}: {r['us_per_event'][0]} and {r['us_per_event'][1]} us per event, ratio {r['ratio']}")
    print(f"ratio {result['ratio_of_totals']} of the CPU of all rounds; {result['ratio_median']} the median "
          f"of {args.rounds} rounds ({result['ratio_min']}-{result['ratio_max']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
