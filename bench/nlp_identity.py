"""Are the NLP stage's enriched events byte for byte what another tree's are?

A change made for CPU alone (a cache, fewer allocations, a vectorised loop) must not move one
byte of the output. This serialises the enriched event of every tuning item (as ingest builds
it on its channel, :func:`bench.voc_eval.raw_event`) and of ``--reviews`` dev reviews through
the analyzer the worker builds, in the stage's batches, with ``enriched_at`` and ``received_at`` pinned (the
fields that depend on the clock), and writes them to one file; run it in both trees and
compare the files:

    python bench/nlp_identity.py --out /tmp/before.jsonl      # in the reference tree
    python bench/nlp_identity.py --out /tmp/after.jsonl --against /tmp/before.jsonl
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import DEV_REVIEWS  # noqa: E402
from bench.e2e.plan import load_texts  # noqa: E402
from bench.voc_eval import raw_event, read_tuning  # noqa: E402
from services.core.channels import prepare_raw  # noqa: E402
from services.core.events import RawFeedback, stable_event_id  # noqa: E402
from services.core.settings import load_settings  # noqa: E402

PINNED = datetime(2026, 1, 1, tzinfo=UTC)


def enriched_lines(reviews: Path, count: int, batch_size: int) -> list[bytes]:
    """One serialised enriched event per tuning item, then per dev review, in that order."""
    from services.nlp import analyzer as analyzer_module
    from services.nlp.worker import build_analyzer

    analyzer_module.utc_now = lambda: PINNED  # type: ignore[assignment]
    raws = [prepare_raw(raw_event(item).model_copy(update={"received_at": PINNED}))
            for item in read_tuning()]
    positives, negatives = load_texts(reviews, (count + 1) // 2, 5)
    texts = [t for pair in zip(positives, negatives) for t in pair][:count]
    raws += [prepare_raw(RawFeedback(event_id=stable_event_id("identity", str(i)), source="identity",
                                     external_id=str(i), channel="app", touchpoint=f"tp{i % 8}",
                                     text=t, occurred_at=PINNED, received_at=PINNED))
             for i, t in enumerate(texts)]
    analyzer = build_analyzer(load_settings())
    return [e.to_bytes() for i in range(0, len(raws), batch_size)
            for e in analyzer.analyze(raws[i: i + batch_size])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reviews", type=Path,
                        default=DEV_REVIEWS)
    parser.add_argument("--count", type=int, default=4000, help="dev reviews after the tuning items")
    parser.add_argument("--batch-size", type=int, default=256, help="the NLP stage's batch size")
    parser.add_argument("--out", type=Path, required=True, help="where the enriched events go, one a line")
    parser.add_argument("--against", type=Path, help="a file this script wrote in another tree")
    args = parser.parse_args(argv)
    lines = enriched_lines(args.reviews, args.count, args.batch_size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(b"".join(line + b"\n" for line in lines))
    print(f"{len(lines)} enriched events written to {args.out}")
    if args.against is None:
        return 0
    before = args.against.read_bytes().splitlines()
    differ = [i for i, (a, b) in enumerate(zip(before, lines, strict=False)) if a != b]
    if len(before) != len(lines) or differ:
        print(f"DIFFERENT: {len(before)} against {len(lines)} events, {len(differ)} differ "
              f"(first at {differ[:5]})")
        return 1
    print(f"identical to {args.against}: {len(lines)} events, byte for byte")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
