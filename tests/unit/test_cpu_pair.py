"""bench/cpu_pair.py: both trees see every batch, in alternating order, and the ratio is the
second tree's CPU over the first's (the workers are replaced; the real ones load each tree's
models, which bench runs do)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import cpu_pair


def test_every_batch_runs_in_both_trees_alternately_and_the_ratio_is_other_over_base(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple[str, int]] = []

    class Fake:
        def __init__(self, tree: Path, texts: list[str], warm: list[str], events: int, batch_size: int,
                     core: int) -> None:
            assert len(texts) == 20 and events == 10 and warm == ["w"]
            self.tree, self.model, self.batches = tree, "m", 6

        def cpu(self, batch: int) -> float:
            calls.append((self.tree.name, batch))
            return 0.001 if self.tree.name == "base" else 0.0025

        def close(self) -> None:
            calls.append((self.tree.name, -1))

    monkeypatch.setattr(cpu_pair, "Worker", Fake)
    result = cpu_pair.measure([tmp_path / "base", tmp_path / "other"], ["x"] * 21, ["w"], 4, rounds=2)
    # Each round reads its own ten texts: batches 0-2 in the first round, 3-5 in the second.
    assert calls == [("base", 0), ("other", 0), ("other", 1), ("base", 1), ("base", 2), ("other", 2),
                     ("other", 3), ("base", 3), ("base", 4), ("other", 4), ("other", 5), ("base", 5),
                     ("base", -1), ("other", -1)]
    assert result["ratio_median"] == 2.5 and len(result["rounds"]) == 2
    assert result["rounds"][0]["us_per_event"] == [300.0, 750.0] and result["events_per_round"] == 10
    assert result["ratio_of_totals"] == 2.5


def test_the_ratio_of_totals_counts_a_lump_the_median_of_rounds_passes_over(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A tree whose cost comes in lumps (a full garbage collection every few rounds): the median
    of three rounds' ratios is a round without the lump, the ratio of totals counts it."""
    class Fake:
        def __init__(self, tree: Path, texts: list[str], warm: list[str], events: int, batch_size: int,
                     core: int) -> None:
            self.tree, self.model, self.batches = tree, "m", 3

        def cpu(self, batch: int) -> float:
            if self.tree.name == "base":
                return 0.004 if batch == 1 else 0.001
            return 0.002

        def close(self) -> None:
            pass

    monkeypatch.setattr(cpu_pair, "Worker", Fake)
    result = cpu_pair.measure([tmp_path / "base", tmp_path / "other"], ["x"] * 30, [], 10, rounds=3)
    assert [r["ratio"] for r in result["rounds"]] == [2.0, 0.5, 2.0]
    assert result["ratio_median"] == 2.0 and result["ratio_of_totals"] == 1.0
