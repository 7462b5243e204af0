"""Segmenters of one dictionary share the words of the texts they cut last, and only those."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.nlp import segmenter as segmenter_module
from services.nlp.segmenter import RecentCuts, Segmenter

TEXT = "快递员态度很差，包裹三天还没到"


def test_segmenters_of_one_dictionary_share_recent_cuts() -> None:
    first, second = Segmenter(), Segmenter()
    words = first.cut(TEXT)
    assert first._recent is second._recent
    assert first._recent.get(TEXT) == tuple(words)
    words.append("改了")
    again = second.cut(TEXT)
    assert again == first._jieba.cut(TEXT, False), "a remembered cut is the cut"
    assert "改了" not in again, "each caller gets its own list"


def test_a_deployment_dictionary_has_its_own_recent_cuts(tmp_path: Path) -> None:
    extra = tmp_path / "words.txt"
    extra.write_text("态度很差 100000\n", encoding="utf-8")
    shipped, deployment = Segmenter(), Segmenter(extra)
    assert shipped._recent is not deployment._recent
    assert "态度很差" not in shipped.cut(TEXT)
    assert "态度很差" in deployment.cut(TEXT)


def test_recent_cuts_forget_the_oldest_beyond_their_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segmenter_module, "RECENT_CHARS", 10)
    recent = RecentCuts()
    for text in ("一二三四", "五六七八", "九十百千"):
        recent.put(text, tuple(text))
    assert recent.get("一二三四") is None
    assert recent.get("五六七八") == tuple("五六七八")
    assert recent.get("九十百千") == tuple("九十百千")
    recent.put("太长" * 6, ("太长",) * 6)
    assert recent.get("太长" * 6) is None, "a text over the whole budget is not remembered"
    assert recent.get("九十百千") is not None


def test_a_bench_can_forget_every_recent_cut() -> None:
    """A bench replaying the same texts starts each pass with nothing cut (stage_profile.py)."""
    first = Segmenter()
    first.cut(TEXT)
    assert first._recent.get(TEXT) is not None
    segmenter_module.forget_recent_cuts()
    assert first._recent.get(TEXT) is None and first._recent._chars == 0
    assert first.cut(TEXT) == first._jieba.cut(TEXT, False)
    assert first._recent.get(TEXT) is not None
