"""`make train` retrains every shipped NLP artifact: each artifact the package ships is written
by a trainer the Makefile's train target runs, in an order where what a model reads is fitted
before it."""

from __future__ import annotations

from pathlib import Path

from bench import voc_eval

ROOT = Path(__file__).resolve().parents[2]
NLP = ROOT / "services" / "nlp"

WRITERS = {
    "model_data/sentiment_char_ngram": "voc nlp train",
    "model_data/stance": "bench/train_nlp.py stance",
    "taggers/cem/aspect_tagger": "bench/train_topics.py topics",
    "taggers/urgency/aspect_tagger": "bench/train_topics.py urgency",
}
"""Each shipped artifact (its weights file, without ``.npz``) and the command that writes it."""


def train_recipe() -> list[str]:
    lines = (ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
    start = lines.index(next(line for line in lines if line.startswith("train:")))
    recipe = []
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return recipe


def test_make_train_runs_the_trainer_of_every_shipped_artifact_in_order() -> None:
    shipped = {str(p.relative_to(NLP).with_suffix("")) for p in NLP.glob("model_data/*.npz")}
    shipped |= {str(p.relative_to(NLP).with_suffix("")) for p in NLP.glob("taggers/*/*.npz")}
    assert shipped == set(WRITERS), "a shipped artifact without its trainer in WRITERS and make train"
    recipe = train_recipe()
    position = {}
    for artifact, command in WRITERS.items():
        found = [k for k, line in enumerate(recipe) if command in line]
        assert found, f"make train does not run `{command}`, which writes {artifact}"
        position[command] = found[0]
    # The stance model reads the sentiment model's scores and is fitted last.
    assert position["voc nlp train"] < position["bench/train_nlp.py stance"]
    assert max(position.values()) == position["bench/train_nlp.py stance"]


def test_every_artifact_voc_eval_refits_per_author_is_retrained_by_make_train() -> None:
    """What LOAO refits without each author is what make train fits on every author."""
    recipe = " ".join(train_recipe())
    for trainer in voc_eval.LOAO_TRAINERS:
        assert any(trainer.out.startswith(a.rsplit("/", 1)[0]) and c.split()[-1] == trainer.args[0]
                   and c in recipe for a, c in WRITERS.items()), trainer
