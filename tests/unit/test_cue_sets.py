"""The RE2 sets that screen every text for cues (services/nlp/matching.py ``screen``): each
says exactly which of its patterns a text holds, and bench/cue_sets.py measures them.

A set whose automaton runs out of memory does not raise: RE2 answers "no match", and a cue
would be lost without a word. So the sets are held here to a search with each pattern on the
texts the stage reads (the tuning items and the sample reviews), long and short.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from bench import cue_sets
from bench.voc_eval import raw_event, read_tuning
from services.nlp.matching import screen

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sentiment_sample.csv"


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """The analysed texts of the tuning items (as the stage reads them, channel by channel),
    the sample reviews, and one long text of 400 of them."""
    with open(SAMPLE, newline="", encoding="utf-8") as handle:
        reviews = [row["text"] for row in csv.DictReader(handle)]
    # Every third tuning item: all channels and authors, in a third of the time.
    tuning = [event.analysis_text or event.text for event in map(raw_event, read_tuning()[::3])]
    return reviews + tuning + ["\n".join(tuning[:400])]


@pytest.mark.parametrize("name", list(cue_sets.shipped_sets()))
def test_a_shipped_set_finds_what_its_patterns_find_one_by_one(name: str, texts: list[str]) -> None:
    patterns = cue_sets.shipped_sets()[name]
    found = screen(patterns)
    for text in texts:
        expected = sorted(k for k, pattern in enumerate(patterns) if pattern.search(text) is not None)
        assert sorted(found.Match(text) or ()) == expected, (name, text[:80])
    assert any(found.Match(text) for text in texts), f"{name}: no text holds a cue, so nothing was checked"


def test_the_bench_writes_both_budgets_chunk_by_chunk_for_every_set(tmp_path: Path) -> None:
    out = tmp_path / "cue_sets.json"
    assert cue_sets.main(["--data", str(SAMPLE), "--texts", "120", "--chunk", "50", "--json", str(out)]) == 0
    payload = json.loads(out.read_text(encoding="utf-8"))
    assert payload["texts_per_pass"] == 120
    assert set(payload["sets"]) == set(cue_sets.shipped_sets())
    for figures in payload["sets"].values():
        runs = figures["us_per_text_by_chunk"]
        assert len(runs) == 2
        # Two passes of three chunks (50, 50, 20 texts).
        assert all(len(us) == 6 and all(u > 0 for u in us) for us in runs.values())
        assert all(v > 0 for v in figures["second_pass_us_per_text"].values())
