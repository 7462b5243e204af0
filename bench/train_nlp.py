"""Fit the NLP stage's shipped calibrations: the stance model and the CEM topic tagger.

Both are fitted on what issue 16 allows: the tuning data of every author
(:func:`bench.voc_eval.read_tuning`: ``voc_eval.jsonl``, the retired ``voc_heldout2.jsonl`` and
``voc_train_*.jsonl``) and the public dev corpora. The held-out sets are separate files that are
never read here, and the restaurant corpus never is (its licence forbids shipping a model
trained on it). ``--hold-author X`` fits without author X's items, which is how
``bench/voc_eval.py --loao`` scores X out of sample.

    python bench/train_nlp.py stance      # services/nlp/model_data/stance.json
    python bench/train_nlp.py topics --data-dir ../shared/data/nlp   # services/nlp/taggers/cem/

``stance`` fits the three-class stance model (services/nlp/stance.py) on the feature rows the
analyzer computes for the tuning data. ``topics`` trains the CEM tagger with its shipped setting (see
:func:`bench.train_topics.fit_topics`, which also trains the urgency scorer and compares settings
by LOAO).
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

from bench.common import REPO_ROOT  # noqa: E402
from bench.voc_eval import fold_of, raw_event, read_tuning  # noqa: E402

MODEL_DATA = REPO_ROOT / "services" / "nlp" / "model_data"
STANCE_VERSION = "1.1.0"
"""1.1.0: fitted on tuning + retired (609 items) with the negation-aware cues."""


def tuning_items(hold_author: str | None = None) -> list:
    """Every author's tuning data but ``hold_author``'s."""
    items = [item for item in read_tuning() if item.author != hold_author]
    if not items:
        raise SystemExit(f"no tuning items are left without author {hold_author!r}")
    return items


def public_reviews(data_dir: Path, count: int, seed: int = 16) -> list[tuple[str, str]]:
    """``count`` reviews (text, positive or negative) from the sentiment model's inner hold-out
    of ``sentiment_dev.csv``, balanced by label: rows the sentiment model never trained on,
    so their scores are as confident as on new feedback, not as on its training rows."""
    from services.nlp.sentiment_model import holdout_mask, read_examples, sentiment_strata

    examples = read_examples(data_dir / "sentiment_dev.csv")
    held = [ex for ex, h in zip(examples, holdout_mask(sentiment_strata(examples), 0.2, 42), strict=True) if h]
    rng = np.random.default_rng(seed)
    chosen: list[tuple[str, str]] = []
    for label, name in ((1, "positive"), (0, "negative")):
        pool = [ex for ex in held if ex.label == label]
        chosen += [(pool[i].text, name) for i in rng.permutation(len(pool))[: count // 2]]
    return chosen


def fit_stance(c: float, out: Path, data_dir: Path, public: int,
               hold_fold: int | None = None, hold_author: str | None = None) -> dict[str, object]:
    """Fit and save the stance model on the tuning items and ``public`` review rows; returns
    the 5-fold cross-validated accuracy of the tuning items (before the intent rules; the folds
    of :func:`bench.voc_eval.fold_of`, overall and per fold) and the accuracy on the rows it was
    fitted on."""
    from services.core.settings import load_settings
    from services.nlp.analyzer import Analyzer, load_sentiment
    from services.nlp.cues import load_urgency
    from services.nlp.stance import FEATURES, LABELS, StanceModel, train
    from services.nlp.taxonomy import load_taxonomy

    settings = load_settings()
    placeholder = StanceModel(np.zeros((len(LABELS), len(FEATURES))), np.zeros(len(LABELS)), "0")
    analyzer = Analyzer(load_sentiment(settings.sentiment_backend), load_taxonomy(),
                        load_urgency(), settings.neutral_band, stance=placeholder)
    from datetime import UTC, datetime

    from services.core.events import RawFeedback
    from services.nlp.stance import decide

    items = tuning_items(hold_author)
    rows, texts, flags = analyzer.stance_inputs([raw_event(item) for item in items])
    labels = [item.labels["sentiment"] for item in items]
    reviews = public_reviews(data_dir, public) if public else []
    now = datetime.now(UTC)
    extra_rows, _, _ = analyzer.stance_inputs([
        RawFeedback(event_id=f"review-{i}", source="train", channel="web", touchpoint="review",
                    text=text, occurred_at=now, received_at=now) for i, (text, _) in enumerate(reviews)])
    all_rows = np.vstack([rows, extra_rows]) if reviews else rows
    all_labels = labels + [label for _, label in reviews]
    folds = np.array([fold_of(item) for item in items])
    hits = decided_hits = intent_hits = 0
    per_fold: dict[int, dict[str, float]] = {}
    for k in range(5):
        keep = np.concatenate([folds != k, np.ones(len(reviews), dtype=bool)])
        fold_model = train(all_rows[keep], [lab for lab, kept in zip(all_labels, keep, strict=True) if kept], c=c)
        part = np.flatnonzero(folds == k)
        predicted = fold_model.probabilities(rows[part]).argmax(axis=1)
        hits += sum(LABELS[p] == labels[i] for p, i in zip(predicted, part, strict=True))
        stances = decide(fold_model, rows[part], [texts[i] for i in part], [flags[i] for i in part])
        fold_sentiment = sum(st.label == labels[i] for st, i in zip(stances, part, strict=True))
        fold_intent = sum(st.intent == items[i].labels["intent"] for st, i in zip(stances, part, strict=True))
        per_fold[k] = {"n": len(part), "sentiment": round(fold_sentiment / len(part), 4),
                       "intent": round(fold_intent / len(part), 4)}
        decided_hits += fold_sentiment
        intent_hits += fold_intent
    # With a held fold the saved model is fitted without it, so that fold can be scored out
    # of sample by bench/voc_eval.py --hold-fold; the shipped model is fitted on every item.
    shipped = np.concatenate([folds != hold_fold, np.ones(len(reviews), dtype=bool)])
    model = train(all_rows[shipped], [lab for lab, kept in zip(all_labels, shipped, strict=True) if kept],
                  c=c, version=STANCE_VERSION)
    model.save(out)
    predicted = model.probabilities(rows).argmax(axis=1)
    fitted = float(np.mean([LABELS[p] == lab for p, lab in zip(predicted, labels, strict=True)]))
    return {"tuning_rows": len(items), "review_rows": len(reviews), "C": c,
            "cv5_accuracy_before_intent_rules": hits / len(items),
            "cv5_sentiment_accuracy": decided_hits / len(items),
            "cv5_intent_accuracy": intent_hits / len(items), "cv5_per_fold": per_fold,
            "fit_accuracy_before_intent_rules": fitted}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    stance = sub.add_parser("stance", help="fit services/nlp/model_data/stance.json")
    stance.add_argument("--c", type=float, default=3.0, help="inverse L2 strength")
    stance.add_argument("--out", type=Path, default=MODEL_DATA / "stance.json")
    stance.add_argument("--data-dir", type=Path, default=REPO_ROOT.parent / "shared/data/nlp")
    stance.add_argument("--hold-fold", type=int, default=None, choices=range(5),
                        help="fit the saved model without this fold (to score it out of sample)")
    stance.add_argument("--hold-author", default=None, help="fit without this author's items")
    stance.add_argument("--public", type=int, default=0,
                        help="review rows of sentiment_dev.csv added to the tuning items")
    topics = sub.add_parser("topics", help="train the CEM topic tagger")
    topics.add_argument("--data-dir", type=Path, default=REPO_ROOT.parent / "shared/data/nlp")
    topics.add_argument("--out", type=Path, default=REPO_ROOT / "services/nlp/taggers/cem")
    topics.add_argument("--hold-author", default=None, help="fit without this author's items")
    args = parser.parse_args(argv)
    if args.what == "stance":
        print(json.dumps(fit_stance(args.c, args.out, args.data_dir, args.public, args.hold_fold,
                                                    args.hold_author), indent=1))
    else:
        from bench.train_topics import TOPICS_FIT, fit_topics

        print(json.dumps(fit_topics(args.out, args.data_dir, args.hold_author, TOPICS_FIT),
                         indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
