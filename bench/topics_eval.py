"""Topic (aspect) tagging quality per dataset: keywords only, learned tagger only, and combined.

Each ``aspect_*_dev.jsonl`` file is split into an inner training part and an inner hold-out
(``holdout_mask`` over ``topic_strata``, seed 42: stratified by each row's rarest topic). The
tagger is trained on the training part only, including its out-of-fold thresholds, and every
figure is measured on the inner hold-out; the true held-out test side is never available to us. The taxonomy of each
dataset is the shipped YAML in ``services/nlp/taxonomies/``, so the keyword figures measure
exactly what a deployment would run. Models trained here are kept in memory and never saved
(the restaurant corpus is licensed for non-commercial research only).

    python bench/topics_eval.py --data-dir ../shared/data/nlp --json build/bench/topics.json

``--cv`` is how the tagger's settings were chosen without looking at the inner hold-out: each
candidate of :data:`CANDIDATES` is trained and scored by 5-fold cross-validation on the inner
training part only (fixed seed), and the hold-out is never read. Each fold trains exactly as
the hold-out run does (its own inner out-of-fold thresholds and fusion), and the out-of-fold
combined decisions of the five folds are pooled into one micro- and macro-F1 per candidate:

    python bench/topics_eval.py --cv --data-dir ../shared/data/nlp --json build/bench/topics_cv.json
"""

from __future__ import annotations

import os

# Pin BLAS to one thread before numpy loads: the machine is shared and figures are per core.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

from bench.common import SHARED_NLP  # noqa: E402
from services.nlp.aspect_tagger import (  # noqa: E402
    AspectExample,
    f1_scores,
    read_aspect_examples,
    topic_strata,
    train_tagger,
)
from services.nlp.sentiment_model import holdout_mask  # noqa: E402
from services.nlp.taxonomy import Taxonomy, dataset_ids, load_taxonomy  # noqa: E402

DATASETS = {
    "makeup": ("aspect_ecom_makeup_dev.jsonl", "makeup.yaml", 0.88),
    "car": ("aspect_car_dev.jsonl", "car.yaml", 0.87),
    "restaurant": ("aspect_restaurant_aic_dev.jsonl", "restaurant.yaml", 0.80),
}
TAXONOMY_DIR = REPO_ROOT / "services" / "nlp" / "taxonomies"

BASE: dict[str, Any] = {"word_ns": (0,), "folds": 3, "average_folds": False, "joint_thresholds": False,
                        "nb_alpha": None}
"""The settings of tagger 1.0.0, from which each candidate changes some."""
CANDIDATES: dict[str, dict[str, Any]] = {
    "char1-2": BASE | {"max_ns": (2,)},
    "char1-3": BASE | {"max_ns": (3,)},
    "char1-2+word1": BASE | {"max_ns": (2,), "word_ns": (1,)},
    "char1-2+word1-2": BASE | {"max_ns": (2,), "word_ns": (2,)},
    "char1-3+word1-2": BASE | {"max_ns": (3,), "word_ns": (2,)},
    "char1-2+word1 C=3": BASE | {"max_ns": (2,), "word_ns": (1,), "c": 3.0},
    "char1-2+word1 C=30": BASE | {"max_ns": (2,), "word_ns": (1,), "c": 30.0},
    "char1-2+word1 folds=5": BASE | {"max_ns": (2,), "word_ns": (1,), "folds": 5},
    "char1-2+word1 folds=5 avg": BASE | {"max_ns": (2,), "word_ns": (1,), "folds": 5, "average_folds": True},
    "char1-2 joint": BASE | {"max_ns": (2,), "joint_thresholds": True},
    "char1-2+word1 joint": BASE | {"max_ns": (2,), "word_ns": (1,), "joint_thresholds": True},
    "char1-2 folds=5 avg": BASE | {"max_ns": (2,), "folds": 5, "average_folds": True},
    "char1-2 folds=5 avg joint": BASE | {"max_ns": (2,), "folds": 5, "average_folds": True,
                                         "joint_thresholds": True},
    "char1-2+word1 folds=5 avg joint": BASE | {"max_ns": (2,), "word_ns": (1,), "folds": 5,
                                               "average_folds": True, "joint_thresholds": True},
    "char1-2+word1 C=3 joint": BASE | {"max_ns": (2,), "word_ns": (1,), "c": 3.0, "joint_thresholds": True},
    "char1-2+word1 folds=5 avg joint nb": BASE | {"max_ns": (2,), "word_ns": (1,), "folds": 5,
                                                  "average_folds": True, "joint_thresholds": True,
                                                  "nb_alpha": 1.0},
}
"""Settings of :func:`train_tagger` compared by ``--cv``, each one fixed configuration: BASE
(C=10, char n-grams only, plain logistic regression, 3 folds, one model refitted on all rows,
per-topic F1 cuts) with some settings changed; "nb" is NB-LR with alpha 1. 1.0.0 chose its
char n-gram length (2 or 3) out of fold and took 2 on all three corpora, so ``char1-2`` is the
old tagger."""
CHOSEN = "char1-2+word1 folds=5 avg joint nb"
"""The candidate with the best mean CV micro-F1 over the three corpora; :func:`train_tagger`'s
defaults are set to it, so the hold-out run and ``voc nlp train-topics`` use exactly these."""
CV_FOLDS = 5
CV_SEED = 0


def inner_split(name: str, data_dir: Path) -> tuple[Taxonomy, list[AspectExample], list[AspectExample]]:
    """The dataset's taxonomy, inner training part and inner hold-out."""
    filename, taxonomy_file, _ = DATASETS[name]
    taxonomy = load_taxonomy(TAXONOMY_DIR / taxonomy_file)
    examples = read_aspect_examples(data_dir / filename, dataset_ids(taxonomy.spec))
    mask = holdout_mask(topic_strata(examples))
    train = [ex for ex, held in zip(examples, mask, strict=True) if not held]
    test = [ex for ex, held in zip(examples, mask, strict=True) if held]
    return taxonomy, train, test


def cross_validate(name: str, data_dir: Path, candidates: list[str]) -> dict[str, Any]:
    """Pooled out-of-fold combined F1 of each candidate on the inner training part only."""
    from sklearn.model_selection import KFold

    taxonomy, train, _ = inner_split(name, data_dir)
    topic_ids = [t.id for t in taxonomy.spec.topics]
    keywords = [[m.id for m in taxonomy.tag(ex.text)] for ex in train]
    splits = list(KFold(CV_FOLDS, shuffle=True, random_state=CV_SEED).split(np.zeros(len(train))))
    gold = [ex.topics for ex in train]
    results: dict[str, Any] = {"dataset": name, "train_rows": len(train), "folds": CV_FOLDS,
                               "seed": CV_SEED, "candidates": {}}
    for candidate in candidates:
        start = time.perf_counter()
        predicted: list[list[str]] = [[] for _ in train]
        fold_micro = []
        for fit_idx, val_idx in splits:
            tagger = train_tagger([train[i].text for i in fit_idx], [gold[i] for i in fit_idx],
                                  topics=topic_ids, keyword_sets=[keywords[i] for i in fit_idx],
                                  **CANDIDATES[candidate])
            fold = tagger.combine([train[i].text for i in val_idx], [keywords[i] for i in val_idx])
            for i, tags in zip(val_idx, fold, strict=True):
                predicted[i] = tags
            fold_micro.append(f1_scores([gold[i] for i in val_idx], fold)["micro_f1"])
        scores = f1_scores(gold, predicted)
        results["candidates"][candidate] = {
            "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in CANDIDATES[candidate].items()},
            "micro_f1": scores["micro_f1"],
            "macro_f1": scores["macro_f1"],
            "fold_micro_f1": fold_micro,
            "seconds": round(time.perf_counter() - start, 1),
        }
        print(f"{name:10} {candidate:28} micro {scores['micro_f1']:.4f} macro {scores['macro_f1']:.4f} "
              f"folds {' '.join(f'{m:.4f}' for m in fold_micro)} "
              f"({results['candidates'][candidate]['seconds']} s)", flush=True)
    return results


def evaluate(name: str, data_dir: Path) -> dict[str, Any]:
    """Train on the inner training part of one dataset and score three taggers on its hold-out."""
    filename, _, target = DATASETS[name]
    taxonomy, train, test = inner_split(name, data_dir)
    topic_ids = [t.id for t in taxonomy.spec.topics]

    start = time.perf_counter()
    tagger = train_tagger([ex.text for ex in train], [ex.topics for ex in train], topics=topic_ids,
                          keyword_sets=[[m.id for m in taxonomy.tag(ex.text)] for ex in train])
    train_s = time.perf_counter() - start

    texts = [ex.text for ex in test]
    gold = [ex.topics for ex in test]
    start = time.perf_counter()
    keyword = [[m.id for m in taxonomy.tag(t)] for t in texts]
    keyword_rate = len(texts) / (time.perf_counter() - start)
    start = time.perf_counter()
    model = tagger.predict(texts)
    model_rate = len(texts) / (time.perf_counter() - start)
    start = time.perf_counter()
    combined = tagger.combine(texts, [[m.id for m in taxonomy.tag(t)] for t in texts])
    combined_rate = len(texts) / (time.perf_counter() - start)

    results = {
        "dataset": name,
        "file": filename,
        "train_rows": len(train),
        "holdout_rows": len(test),
        "target_micro_f1": target,
        "train_seconds": round(train_s, 1),
        "settings": CHOSEN,
        "max_n": tagger.max_n,
        "word_n": tagger.word_n,
        "support": tagger.support,
        "keywords": f1_scores(gold, keyword) | {"msgs_per_s": round(keyword_rate)},
        "model": f1_scores(gold, model) | {"msgs_per_s": round(model_rate)},
        "combined": f1_scores(gold, combined) | {"msgs_per_s": round(combined_rate)},
        "keyword_weights": dict(zip(tagger.topics, tagger.keyword_weights.tolist(), strict=True)),
    }
    return results


def print_report(r: dict[str, Any]) -> None:
    """A readable table per dataset: the three variants, then per-topic F1."""
    met = "met" if r["combined"]["micro_f1"] >= r["target_micro_f1"] else "NOT met"
    print(f"\n{r['dataset']}: train {r['train_rows']} rows, inner hold-out {r['holdout_rows']} rows, "
          f"trained in {r['train_seconds']} s with {r['settings']} (chosen by --cv); "
          f"target micro-F1 >= {r['target_micro_f1']} ({met})")
    print(f"  {'variant':10} {'micro-F1':>9} {'macro-F1':>9} {'msgs/s':>8}")
    for variant in ("keywords", "model", "combined"):
        print(f"  {variant:10} {r[variant]['micro_f1']:9.4f} {r[variant]['macro_f1']:9.4f} "
              f"{r[variant]['msgs_per_s']:8d}")
    print(f"  {'topic':42} {'support':>7} {'keywords':>8} {'model':>6} {'combined':>8}")
    for topic in r["support"]:
        cells = [r[v]["per_topic_f1"].get(topic, 0.0) for v in ("keywords", "model", "combined")]
        print(f"  {topic:42} {r['support'][topic]:7d} {cells[0]:8.3f} {cells[1]:6.3f} {cells[2]:8.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=SHARED_NLP)
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=list(DATASETS))
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--cv", action="store_true",
                        help="compare CANDIDATES by cross-validation on the inner training part (no hold-out)")
    parser.add_argument("--candidates", nargs="+", choices=list(CANDIDATES), default=list(CANDIDATES))
    args = parser.parse_args()

    results = []
    for name in args.datasets:
        if args.cv:
            results.append(cross_validate(name, args.data_dir, args.candidates))
            continue
        result = evaluate(name, args.data_dir)
        print_report(result)
        results.append(result)
    if args.cv:
        print(f"\nmean CV micro-F1 over {', '.join(args.datasets)} (the choice: {CHOSEN})")
        for candidate in sorted(args.candidates, key=lambda c: -sum(
                r["candidates"][c]["micro_f1"] for r in results)):
            print(f"  {candidate:34} {np.mean([r['candidates'][candidate]['micro_f1'] for r in results]):.4f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
