"""What each shipped RE2 cue set costs per text on a long stream of fresh text, with RE2's
default memory budget and with the one :func:`services.nlp.matching.screen` gives it.

A set's automaton builds its states from the texts it meets and throws them all away when they
outgrow two thirds of its budget, so its cost per text depends on how long it has run: a short
bench measures its warm-up and a budget too small shows only as a cost that never settles. Here
each set reads the dev reviews twice over, ``--chunk`` texts at a time (its second pass reads
texts it has met), and the figure kept is the mean of the second pass, what a stage that has
run for a while pays. The two budgets run in one process, chunk by chunk in turn, so a slow
spell of a shared host slows both.

    python bench/cue_sets.py
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import re2  # noqa: E402

from bench.common import DEV_REVIEWS, REPO_ROOT, write_json  # noqa: E402
from bench.e2e.plan import load_texts  # noqa: E402
from services.nlp import effort, stance  # noqa: E402
from services.nlp.cues import load_urgency  # noqa: E402
from services.nlp.matching import SCREEN_MEMORY, screen  # noqa: E402

DEFAULT_MEMORY: int = re2.Options().max_mem
"""RE2's own budget, which :func:`screen` used before it was given :data:`SCREEN_MEMORY`."""


def shipped_sets() -> dict[str, list[Any]]:
    """The compiled patterns of every cue set the NLP stage scans each text with."""
    return {"stance cues": list(stance.KIND_PATTERNS),
            "urgency cues": list(load_urgency(with_scorer=False).patterns.values()),
            "effort cues": list(effort.CUES.values())}


def chunk_us(match: Callable[[str], Any], texts: list[str]) -> float:
    """CPU µs per text of ``match`` over ``texts``."""
    start = time.process_time()
    for text in texts:
        match(text)
    return 1e6 * (time.process_time() - start) / len(texts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEV_REVIEWS)
    parser.add_argument("--texts", type=int, default=50_000, help="texts of one pass (at most the file's)")
    parser.add_argument("--chunk", type=int, default=10_000)
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "build/bench/cue_sets.json")
    args = parser.parse_args(argv)
    if not args.data.exists():
        parser.error(f"--data {args.data} does not exist: pass the shared sentiment_dev.csv")
    positives, negatives = load_texts(args.data, args.texts, 5)
    texts = [t for pair in zip(positives, negatives) for t in pair][: args.texts]
    chunks = [texts[i: i + args.chunk] for i in range(0, len(texts), args.chunk)] * 2
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if cores is not None:
        os.sched_setaffinity(0, {min(cores)})
    try:
        results = measure(chunks)
    finally:
        if cores is not None:
            os.sched_setaffinity(0, cores)
    payload = {"command": "python bench/cue_sets.py " + " ".join(sys.argv[1:] if argv is None else argv),
               "texts_per_pass": len(texts), "chunk": args.chunk,
               "timing": "CPU time (time.process_time), one core",
               "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
               "sets": results}
    write_json(args.json, payload)
    return 0


def measure(chunks: list[list[str]]) -> dict[str, Any]:
    """Per shipped set, its CPU per text on each chunk with either budget, chunk by chunk in
    turn, and the second pass's mean (the second half of ``chunks``)."""
    results: dict[str, Any] = {}
    for name, patterns in shipped_sets().items():
        sets = {f"RE2 default ({DEFAULT_MEMORY >> 20} MiB)": screen(patterns, DEFAULT_MEMORY),
                f"shipped ({SCREEN_MEMORY >> 20} MiB)": screen(patterns)}
        runs: dict[str, list[float]] = {label: [] for label in sets}
        for chunk in chunks:
            for label, found in sets.items():
                runs[label].append(round(chunk_us(found.Match, chunk), 2))
        second = {label: round(sum(us[len(us) // 2:]) / (len(us) - len(us) // 2), 2)
                  for label, us in runs.items()}
        default, shipped = second.values()
        results[name] = {"patterns": len(patterns), "us_per_text_by_chunk": runs,
                         "second_pass_us_per_text": second,
                         "default_over_shipped": round(default / shipped, 2)}
        print(f"{name} ({len(patterns)} patterns), µs a text, chunk by chunk:")
        for label, us in runs.items():
            print(f"  {label:22s} " + " ".join(f"{u:5.1f}" for u in us) + f"  second pass {second[label]}")
        print(f"  default / shipped, second pass: {default / shipped:.2f}")
    return results


if __name__ == "__main__":
    raise SystemExit(main())
