"""Fit the NLP stage's shipped calibrations: the stance model and the CEM topic tagger.

Both are fitted on what issue 16 allows: the tuning data of every author
(:func:`bench.voc_eval.read_tuning`: ``voc_eval.jsonl``, the retired ``voc_heldout2.jsonl`` and
``voc_train_*.jsonl``) and the public dev corpora. The held-out sets are separate files that are
never read here, and the restaurant corpus never is (its licence forbids shipping a model
trained on it). ``--hold-author X`` fits without author X's items, which is how
``bench/voc_eval.py --loao`` scores X out of sample.

    python bench/train_nlp.py stance      # services/nlp/model_data/stance.json
    python bench/train_nlp.py topics --data-dir ../shared/data/nlp   # services/nlp/taggers/cem/
    python bench/train_nlp.py stance-loao --c 10 30 100   # compare C by leave-one-author-out

``stance-loao`` scores each author's sentiment and intent by the stance model fitted without
them, for each C given, on feature rows computed once (the sentiment model and the cues are not
refitted per author, as ``bench/voc_eval.py --loao`` would): a cheap way to choose C.

``stance`` fits the stance model's sentiment and intent heads (services/nlp/stance.py) on the
analysed texts and the feature rows the analyzer computes for the tuning data. ``topics`` trains
the CEM tagger with its shipped setting (see :func:`bench.train_topics.fit_topics`, which also
trains the urgency scorer and compares settings by LOAO).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO_ROOT, SHARED_NLP  # noqa: E402
from bench.voc_eval import raw_event, read_tuning  # noqa: E402

MODEL_DATA = REPO_ROOT / "services" / "nlp" / "model_data"
STANCE_VERSION = "2.0.0"
"""2.0.0: char 1-3-gram and cue-feature heads for sentiment and intent, fitted on every author."""


def tuning_items(hold_author: str | None = None) -> list:
    """Every author's tuning data but ``hold_author``'s."""
    items = [item for item in read_tuning() if item.author != hold_author]
    if not items:
        raise SystemExit(f"no tuning items are left without author {hold_author!r}")
    return items


def stance_inputs(items: list) -> tuple[np.ndarray, list[str], list[list[str]]]:
    """The stance model's feature rows, analysed texts and urgency flags of items, as the
    analyzer computes them (with a placeholder stance model, since the features do not use it)."""
    from services.core.settings import load_settings
    from services.nlp.analyzer import Analyzer, load_sentiment
    from services.nlp.cues import load_urgency
    from services.nlp.stance import FEATURES, INTENTS, LABELS, StanceModel
    from services.nlp.taxonomy import load_taxonomy

    settings = load_settings()
    width = len(LABELS) + len(INTENTS)
    placeholder = StanceModel([], np.zeros(0), np.zeros((0, width)), np.zeros((len(FEATURES), width)),
                              np.zeros(width), [("neutral", "other")], 1.0, "0")
    analyzer = Analyzer(load_sentiment(settings.sentiment_backend), load_taxonomy(),
                        load_urgency(), settings.neutral_band, stance=placeholder)
    return analyzer.stance_inputs([raw_event(item) for item in items])


def fit_stance(c: float, min_df: int, intent_weight: float, out: Path,
               hold_author: str | None = None) -> dict[str, object]:
    """Fit and save the stance model (both heads) on every author's items but
    ``hold_author``'s; returns what it was fitted on and its in-sample accuracy (not an
    estimate: ``bench/voc_eval.py --loao`` gives that)."""
    from services.nlp.stance import decide, fit

    items = tuning_items(hold_author)
    rows, texts, flags = stance_inputs(items)
    sentiments = [item.labels["sentiment"] for item in items]
    intents = [item.labels["intent"] for item in items]
    model = fit(rows, texts, sentiments, intents, c=c, min_df=min_df, intent_weight=intent_weight,
                version=STANCE_VERSION)
    model.save(out)
    stances = decide(model, rows, texts, flags)
    authors: dict[str, int] = {}
    for item in items:
        authors[item.author] = authors.get(item.author, 0) + 1
    return {"items": len(items), "authors": authors, "held_author": hold_author, "C": c,
            "min_df": min_df, "intent_weight": intent_weight, "ngrams": len(model.vocabulary),
            "pairs": model.pairs,
            "in_sample_sentiment": float(np.mean([s.label == g for s, g in zip(stances, sentiments, strict=True)])),
            "in_sample_intent": float(np.mean([s.intent == g for s, g in zip(stances, intents, strict=True)]))}


def stance_loao(cs: list[float], min_df: int, intent_weight: float) -> dict[str, object]:
    """Each C's LOAO sentiment and intent accuracy per author and their means (module docstring)."""
    from services.nlp.stance import decide, fit

    items = tuning_items()
    rows, texts, flags = stance_inputs(items)
    authors = np.array([item.author for item in items])
    sentiments = np.array([item.labels["sentiment"] for item in items])
    intents = np.array([item.labels["intent"] for item in items])
    report: dict[str, object] = {"authors": {a: int((authors == a).sum()) for a in sorted(set(authors))},
                                 "candidates": []}
    for c in cs:
        per_author = {}
        for author in sorted(set(authors)):
            rest, mine = np.flatnonzero(authors != author), np.flatnonzero(authors == author)
            model = fit(rows[rest], [texts[k] for k in rest], sentiments[rest].tolist(),
                        intents[rest].tolist(), c=c, min_df=min_df, intent_weight=intent_weight,
                        version=STANCE_VERSION)
            stances = decide(model, rows[mine], [texts[k] for k in mine], [flags[k] for k in mine])
            per_author[author] = {
                "sentiment": float(np.mean([s.label == g for s, g in zip(stances, sentiments[mine], strict=True)])),
                "intent": float(np.mean([s.intent == g for s, g in zip(stances, intents[mine], strict=True)]))}
        entry = {"C": c, "per_author": per_author,
                 "mean_sentiment": float(np.mean([f["sentiment"] for f in per_author.values()])),
                 "mean_intent": float(np.mean([f["intent"] for f in per_author.values()]))}
        report["candidates"].append(entry)  # type: ignore[attr-defined]
        print(json.dumps(entry), flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    stance = sub.add_parser("stance", help="fit services/nlp/model_data/stance.json (+ stance.npz)")
    stance.add_argument("--c", type=float, default=30.0, help="inverse L2 strength")
    stance.add_argument("--min-df", type=int, default=2, help="items an n-gram must occur in")
    stance.add_argument("--intent-weight", type=float, default=1.0,
                        help="weight of log P(intent) against log P(sentiment) when decoding")
    stance.add_argument("--out", type=Path, default=MODEL_DATA / "stance.json")
    stance.add_argument("--hold-author", default=None, help="fit without this author's items")
    loao = sub.add_parser("stance-loao", help="compare stance C values by leave-one-author-out")
    loao.add_argument("--c", type=float, nargs="+", default=[30.0])
    loao.add_argument("--min-df", type=int, default=2)
    loao.add_argument("--intent-weight", type=float, default=1.0)
    loao.add_argument("--json", type=Path, default=None)
    topics = sub.add_parser("topics", help="train the CEM topic tagger")
    topics.add_argument("--data-dir", type=Path, default=SHARED_NLP)
    topics.add_argument("--out", type=Path, default=REPO_ROOT / "services/nlp/taggers/cem")
    topics.add_argument("--hold-author", default=None, help="fit without this author's items")
    args = parser.parse_args(argv)
    if args.what == "stance":
        print(json.dumps(fit_stance(args.c, args.min_df, args.intent_weight, args.out,
                                    args.hold_author), indent=1))
    elif args.what == "stance-loao":
        report = stance_loao(args.c, args.min_df, args.intent_weight)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    else:
        from bench.train_topics import TOPICS_FIT, fit_topics

        print(json.dumps(fit_topics(args.out, args.data_dir, args.hold_author, TOPICS_FIT),
                         indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
