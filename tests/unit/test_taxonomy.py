"""Topic tagging from the YAML taxonomy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from services.nlp.taxonomy import load_taxonomy


def test_shipped_taxonomy_tags_with_spans() -> None:
    taxonomy = load_taxonomy()
    text = "快递太慢了，等了三天，客服态度也差"
    tags = {t.id: t for t in taxonomy.tag(text)}
    assert {"logistics_delivery", "waiting_time", "service_attitude"} <= set(tags)
    for tag in tags.values():
        for start, end in tag.evidence:
            assert text[start:end]
    start, end = tags["logistics_delivery"].evidence[0]
    assert text[start:end] == "快递"


def test_longest_keyword_wins_and_parents_are_tagged(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "topics:\n"
        "  - {id: pay, name: 支付, keywords: [支付]}\n"
        "  - {id: pay_fail, name: 支付失败, keywords: [支付失败], parent: pay}\n")
    tags = {t.id: t.evidence for t in load_taxonomy(path).tag("今天支付失败了")}
    assert tags == {"pay_fail": [(2, 6)], "pay": [(2, 6)]}


def test_no_topics_on_unrelated_text() -> None:
    assert load_taxonomy().tag("你好") == []


@pytest.mark.parametrize(("body", "message"), [
    ("topics:\n  - {id: a, name: A, keywords: [x], parent: zz}", "parent"),
    ("topics:\n  - {id: a, name: A, keywords: [x]}\n  - {id: a, name: B, keywords: [y]}", "duplicate"),
    ("topics:\n  - {id: a, name: A, keywords: []}", "keywords"),
    ("topics:\n  - {id: a, name: A, keywords: [x], stage: 其他}", "stage"),
    ("topics:\n  - id: a\n    name: A\n    keywords:\n      - x\n      - ''",
     ":6: topic a has a blank entry in keywords"),
    ("topics:\n  - {id: a, name: A, keywords: [x]}\n  - {id: b, name: B, keywords: [y], synonyms: [' ']}",
     ":3: topic b has a blank entry in synonyms"),
])
def test_bad_taxonomy_is_refused_with_the_reason(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(body)
    with pytest.raises(ValueError, match=message):
        load_taxonomy(path)


@pytest.mark.parametrize(("text", "topic"), [
    ("电话一直打不通，转人工也没人接", "service_attitude"),
    ("包裹显示已签收但是我没收到", "logistics_delivery"),
    ("会员自动续费乱扣费", "price_fees"),
    ("登不上去，APP白屏", "account_app_system"),
    ("申请退款一个星期了还没退", "waiting_time"),
    ("坏了要返厂检测，三包期内能换吗", "after_sales_returns"),
    ("吃完拉肚子，怀疑变质了", "product_quality"),
])
def test_default_taxonomy_covers_contact_center_language(text: str, topic: str) -> None:
    assert topic in {m.id for m in load_taxonomy().tag(text)}


@pytest.mark.parametrize(("text", "topic"), [
    ("希望贵司能开通微信支付", "price_fees"),
    ("麻烦了", "convenience_process"),
    ("我的订单号是20261123001", "logistics_delivery"),
])
def test_default_taxonomy_avoids_polite_and_id_false_positives(text: str, topic: str) -> None:
    assert topic not in {m.id for m in load_taxonomy().tag(text)}


def test_keyword_matching_is_literal_leftmost_longest_with_character_spans(tmp_path: Path) -> None:
    """Keywords are text, not regular expressions; a longer keyword wins where both start,
    and spans are character offsets even after astral emoji."""
    path = tmp_path / "t.yaml"
    path.write_text("topics:\n  - {id: a, name: A, keywords: ['物流', '(.*)+']}\n"
                    "  - {id: b, name: B, keywords: ['物流很慢', '慢']}\n", encoding="utf-8")
    taxonomy = load_taxonomy(path)
    text = "😡😡物流很慢，物流(.*)+慢"
    found = {m.id: m.evidence for m in taxonomy.tag(text)}
    assert found == {"b": [(2, 6), (14, 15)], "a": [(7, 9), (9, 14)]}
    assert all(text[start:end] in ("物流", "(.*)+", "物流很慢", "慢")
               for spans in found.values() for start, end in spans)


# --- hot reload of the taxonomy and its lexicon packs --------------------------------------

PACKED = """
version: 1
packs: [shop.yaml]
topics:
  - {id: price, name: 价格, keywords: [价格]}
"""


def _pack(*keywords: str) -> str:
    return f"industry: shop\ntopics:\n  price: {{keywords: [{', '.join(keywords)}]}}\n"


def _touch_later(path: Path, text: str) -> None:
    """Rewrite ``path`` with an mtime surely after the previous one (coarse filesystem clocks
    could give an edit within the same tick the same mtime)."""
    before = path.stat().st_mtime_ns
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_a_lexicon_pack_edit_reloads_the_stage_the_names_and_the_exclusions(
        tmp_path: Path) -> None:
    from services.alerting import emerging
    from services.nlp.taxonomy import TaxonomyFile, TaxonomyNames

    taxonomy = tmp_path / "taxonomy.yaml"
    taxonomy.write_text(PACKED, encoding="utf-8")
    pack = tmp_path / "shop.yaml"
    pack.write_text(_pack("贵"), encoding="utf-8")
    stage, names = TaxonomyFile(taxonomy), TaxonomyNames(taxonomy)
    assert emerging.current_exclusions(taxonomy)("运费 太高") is False
    assert stage.reload_if_changed() is None, "nothing edited yet"

    _touch_later(pack, _pack("贵", "运费太高"))
    reloaded = stage.reload_if_changed()
    assert reloaded is not None, "a pack edit reloads the taxonomy"
    assert [m.id for m in reloaded.tag("这次运费太高了")] == ["price"]
    assert emerging.current_exclusions(taxonomy)("运费 太高") is True, \
        "the pack's new keyword is no longer emerging"
    assert stage.reload_if_changed() is None, "once per edit"

    _touch_later(pack, "industry: shop\ntopics: {nope: {keywords: [x]}}\n")
    assert stage.reload_if_changed() is None, "a broken pack keeps the previous taxonomy"
    assert emerging.current_exclusions(taxonomy)("运费 太高") is True, \
        "and the previous keywords"

    _touch_later(taxonomy, PACKED.replace("name: 价格", "name: 价格与运费"))
    assert names.current().topics[0].name == "价格与运费", "names follow the file"
    _touch_later(taxonomy, "topics: []\n")
    assert names.current().topics[0].name == "价格与运费", "a broken edit keeps the names"


def test_restore_puts_back_the_file_before_the_last_change(tmp_path: Path) -> None:
    from services.nlp.taxonomy import add_to_taxonomy, restore_taxonomy

    taxonomy = tmp_path / "taxonomy.yaml"
    taxonomy.write_text(PACKED, encoding="utf-8")
    (tmp_path / "shop.yaml").write_text(_pack("贵"), encoding="utf-8")
    assert add_to_taxonomy(taxonomy, topic="lid", name="餐盒盖子", keywords=["盖子"])
    assert "lid" in taxonomy.read_text(encoding="utf-8")
    restore_taxonomy(taxonomy)
    assert taxonomy.read_text(encoding="utf-8") == PACKED
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "shop.yaml", "taxonomy.yaml", "taxonomy.yaml.bak"], "no temporary file left"
