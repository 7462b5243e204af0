"""The NLP worker's analyzer leaves what it loaded out of the garbage collector's passes, and
the youngest generation is collected less often."""

from __future__ import annotations

import gc

import pytest

from services.core.settings import load_settings
from services.nlp import worker


class Loaded:
    """Stands for a loaded model: an object the collector tracks."""


def test_build_analyzer_freezes_the_loaded_and_collects_the_young_less_often(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "load_sentiment", lambda backend: Loaded())
    monkeypatch.setattr(worker, "load_taxonomy", lambda path: Loaded())
    monkeypatch.setattr(worker, "load_urgency", lambda path: Loaded())
    made: list[Loaded] = []

    def analyzer(*parts: object) -> Loaded:
        made.append(Loaded())
        return made[-1]

    monkeypatch.setattr(worker, "Analyzer", analyzer)
    before = gc.get_threshold()
    gc.unfreeze()
    try:
        worker.build_analyzer(load_settings())
        assert gc.get_threshold() == (worker.YOUNG_THRESHOLD, *before[1:])
        assert gc.get_freeze_count() > 0
        tracked = gc.get_objects()
        assert not any(o is made[0] for o in tracked)
        del tracked
        garbage = [Loaded()]
        assert any(o is garbage for o in gc.get_objects())
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
