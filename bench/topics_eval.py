"""Topic (aspect) tagging quality per dataset: keywords only, learned tagger only, and combined.

Each ``aspect_*_dev.jsonl`` file is split into an inner training part and an inner hold-out
(``holdout_mask``, seed 42, stratified by each row's rarest topic). The tagger is trained on the
training part only, including its out-of-fold thresholds, and every figure is measured on the
inner hold-out; the true held-out test side is never available to us. The taxonomy of each
dataset is the shipped YAML in ``services/nlp/taxonomies/``, so the keyword figures measure
exactly what a deployment would run. Models trained here are kept in memory and never saved
(the restaurant corpus is licensed for non-commercial research only).

    python bench/topics_eval.py --data-dir ../shared/data/nlp --json build/bench/topics.json
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

from services.nlp.aspect_tagger import (  # noqa: E402
    f1_scores,
    holdout_mask,
    read_aspect_examples,
    train_tagger,
)
from services.nlp.taxonomy import dataset_ids, load_taxonomy  # noqa: E402

DATASETS = {
    "makeup": ("aspect_ecom_makeup_dev.jsonl", "makeup.yaml", 0.88),
    "car": ("aspect_car_dev.jsonl", "car.yaml", 0.87),
    "restaurant": ("aspect_restaurant_aic_dev.jsonl", "restaurant.yaml", 0.80),
}
TAXONOMY_DIR = REPO_ROOT / "services" / "nlp" / "taxonomies"


def evaluate(name: str, data_dir: Path) -> dict[str, Any]:
    """Train on the inner training part of one dataset and score three taggers on its hold-out."""
    filename, taxonomy_file, target = DATASETS[name]
    taxonomy = load_taxonomy(TAXONOMY_DIR / taxonomy_file)
    examples = read_aspect_examples(data_dir / filename, dataset_ids(taxonomy.spec))
    mask = holdout_mask(examples)
    train = [ex for ex, held in zip(examples, mask, strict=True) if not held]
    test = [ex for ex, held in zip(examples, mask, strict=True) if held]
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
        "max_n": tagger.max_n,
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
          f"trained in {r['train_seconds']} s (char 1-{r['max_n']}-grams chosen out of fold); "
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
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "nlp")
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=list(DATASETS))
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()

    results = []
    for name in args.datasets:
        result = evaluate(name, args.data_dir)
        print_report(result)
        results.append(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
