"""The multi-channel evaluation set, its bench (bench/voc_eval.py) and the floors it guards.

The floors are on the first author's tuning data (``voc_eval.jsonl``: the ``tuning`` and
``retired`` splits), just below what was measured there. The held-out sets are separate files
(bench/data/voc_heldout10*.jsonl) scored by ``make bench``, never read or asserted on here, so no
test run can become a way of tuning against them.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import get_args

import pytest

from bench import voc_eval
from bench.report import render
from services.core.events import Intent, UrgencyFlagName
from services.core.normalize import to_simplified
from services.nlp.taxonomy import load_taxonomy

ITEMS = voc_eval.read_items()


def test_the_set_is_realistic_in_size_channels_scripts_and_industries() -> None:
    assert len(ITEMS) >= 500
    channels = Counter(item.channel for item in ITEMS)
    assert {"survey", "chat", "call", "email", "social", "app", "web"} <= set(channels)
    assert min(channels[c] for c in ("survey", "chat", "call", "email", "social")) >= 60
    traditional = sum(item.row["script"] == "traditional" for item in ITEMS) / len(ITEMS)
    assert 0.18 <= traditional <= 0.25
    assert len({item.row["industry"] for item in ITEMS}) >= 9
    assert {item.row["email"]["charset"] for item in ITEMS if item.channel == "email"} == {"gbk", "big5", "utf-8"}
    assert len({item.row["platform"] for item in ITEMS if item.channel == "social"}) == 4


def test_the_split_is_fixed_and_the_retired_half_is_at_least_half_of_every_stratum() -> None:
    """The retired split is the first held-out half as drawn (half of each stratum, rounded up);
    the file holds no held-out item any more."""
    strata: dict[tuple[str, str], Counter[str]] = {}
    for item in ITEMS:
        strata.setdefault((item.channel, item.row["script"]), Counter())[item.row["split"]] += 1
    for stratum, counts in strata.items():
        assert set(counts) <= set(voc_eval.TUNABLE)
        assert counts["retired"] >= counts["tuning"], stratum
        assert counts["retired"] - counts["tuning"] <= 1, stratum


def test_folds_are_fixed_by_id_and_roughly_even() -> None:
    folds = Counter(voc_eval.fold_of(item) for item in ITEMS)
    assert set(folds) == set(range(voc_eval.FOLDS))
    assert min(folds.values()) >= len(ITEMS) / voc_eval.FOLDS * 0.8
    assert voc_eval.fold_of(voc_eval.Item({"id": "voc-0001"})) == voc_eval.fold_of(ITEMS[0])


def test_every_label_is_a_known_value_and_every_evidence_and_pii_is_in_its_item() -> None:
    topics = {t.id for t in load_taxonomy().spec.topics}
    for item in ITEMS:
        labels = item.labels
        assert labels["sentiment"] in ("negative", "neutral", "positive"), item.id
        assert labels["intent"] in get_args(Intent), item.id
        assert set(labels["topics"]) <= topics, item.id
        assert set(labels["urgency"]) <= set(get_args(UrgencyFlagName)), item.id
        row = item.row
        written = row.get("text") or "\n".join(
            [row["email"]["subject"], row["email"]["body"]] if "email" in row
            else [t["text"] for t in row["turns"]])
        for evidence in labels["evidence"]:
            assert evidence["topic"] in labels["topics"], item.id
            assert evidence["phrase"] in written, item.id
        for value in row["pii"]:
            assert value in written, item.id


def test_span_and_pii_checks_catch_what_they_claim_to() -> None:
    record = {"text": "t", "analysis_text": "快递太慢了，打12315",
              "topics": [{"id": "logistics_delivery", "evidence": [[0, 2]]}],
              "urgency": [{"flag": "escalation_threat", "term": "12315", "evidence": [[7, 12]]}]}
    assert voc_eval.span_problems(record) == []
    record["topics"][0]["evidence"] = [[5, 40]]
    record["urgency"][0]["evidence"] = [[6, 11]]
    assert len(voc_eval.span_problems(record)) == 2
    item = voc_eval.Item({"id": "x", "pii": ["１３９　１２３４　５６７８"], "labels": {}})
    assert voc_eval.pii_leaks(item, {"text": "电话13912345678"}) == ["１３９　１２３４　５６７８"]
    assert voc_eval.pii_leaks(item, {"text": "电话<PHONE>"}) == []
    assert voc_eval.phrase_spans("帐单多了", "帳單") == [(0, 2)] and to_simplified("帳單") == "帐单"


def test_evidence_is_counted_over_returned_and_gold_topics_with_the_share_the_spans_cover() -> None:
    """A phrase whose topic was not returned is a miss over gold topics and not counted over
    returned ones; spans covering the whole text cover every phrase, and the span share says so."""
    text = "快递太慢了，客服也不理人"
    item = voc_eval.Item({"id": "x", "channel": "chat", "labels": {
        "sentiment": "negative", "intent": "complaint", "urgency": [],
        "topics": ["logistics_delivery", "service_attitude"],
        "evidence": [{"topic": "logistics_delivery", "phrase": "太慢了"},
                     {"topic": "service_attitude", "phrase": "不理人"}]}})
    record = {"text": text, "analysis_text": text, "sentiment": {"label": "negative"},
              "intent": "complaint", "urgency": [],
              "topics": [{"id": "logistics_delivery", "evidence": [[0, 2], [2, 5]]}]}
    figures = voc_eval.score([item], [record])
    assert figures["evidence_hit_rate"] == 1.0 and figures["evidence_gold_hit_rate"] == 0.5
    assert figures["evidence_span_share"] == pytest.approx(5 / len(text))
    record["topics"][0]["evidence"] = [[0, 2]]
    assert voc_eval.score([item], [record])["evidence_hit_rate"] == 0.0
    record["topics"][0]["evidence"] = [[0, len(text)]]
    assert voc_eval.score([item], [record])["evidence_span_share"] == 1.0


@pytest.fixture(scope="module")
def tuning_figures() -> dict:
    items = [item for item in ITEMS if item.row["split"] in voc_eval.TUNABLE]
    records, _ = voc_eval.enrich(items)
    return voc_eval.score(items, records)


def test_tuning_split_floors(tuning_figures: dict) -> None:
    """Floors just below the figures measured on the tuning data (docs/model-card.md)."""
    f = tuning_figures
    assert f["sentiment_accuracy"] >= 0.89
    assert f["intent_accuracy"] >= 0.89
    assert f["topic_micro_f1"] >= 0.83 and f["topic_recall"] >= 0.84
    assert f["product_quality_recall"] >= 0.88
    assert f["urgency_recall"] >= 0.90 and f["urgency_precision"] >= 0.90
    assert f["span_validity"] == 1.0
    assert f["records_with_raw_pii"] == 0


def test_the_bench_writes_every_figure_per_split_and_channel_and_the_report_shows_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Tuning, retired and held-out files each get their figures; only the first two's errors
    are listed, and a held-out item is scored as held-out whatever its file calls it. A held
    fold is left out of the errors and scored apart from the other folds."""
    sample = tmp_path / "sample.jsonl"
    chosen = [item.row for item in ITEMS][::10]
    # One item labelled against its text, outside the held fold, so that an error is listed
    # whatever the shipped models get right.
    first = chosen[0]
    flipped = "negative" if first["labels"]["sentiment"] != "negative" else "positive"
    candidates = ({**first, "id": f"voc-wrong-{k}", "labels": {**first["labels"], "sentiment": flipped}}
                  for k in range(100))
    wrong = next(row for row in candidates if voc_eval.fold_of(voc_eval.Item(row)) != 2)
    chosen.append(wrong)
    sample.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in chosen), encoding="utf-8")
    heldout = tmp_path / "heldout.jsonl"
    kept = [{**item.row, "id": f"h-{item.id}", "split": "tuning"} for item in ITEMS[5::40]]
    heldout.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept), encoding="utf-8")
    second = tmp_path / "heldout_b.jsonl"
    second.write_text(json.dumps({**ITEMS[7].row, "id": "h2-x"}, ensure_ascii=False) + "\n", encoding="utf-8")
    out = tmp_path / "bench"
    out.mkdir()
    assert voc_eval.main(["--data", str(sample), "--heldout", str(heldout), str(second), "--no-snownlp",
                          "--errors", "--hold-fold", "2", "--json", str(out / "voc_eval.json")]) == 0
    listed = capsys.readouterr().out
    assert wrong["id"] in listed and "h-voc-" not in listed and "h2-x" not in listed
    result = json.loads((out / "voc_eval.json").read_text(encoding="utf-8"))
    in_fold = [r for r in chosen if voc_eval.fold_of(voc_eval.Item(r)) == 2]
    assert in_fold and result["folds"]["fold 2 (tuning + retired)"]["all"]["n"] == len(in_fold)
    assert result["folds"]["other folds (tuning + retired)"]["all"]["n"] == len(chosen) - len(in_fold)
    assert not any(f"{r['id']} [" in listed for r in in_fold)
    assert set(result["splits"]) == {"tuning", "retired", "heldout"}
    assert result["splits"]["heldout"]["all"]["n"] == len(kept) + 1
    assert result["authors"] == {"v1": len(chosen)}
    for figures in result["splits"].values():
        for key in ("sentiment_accuracy", "intent_accuracy", "topic_micro_f1", "topic_precision",
                    "topic_recall", "product_quality_recall", "urgency_recall", "urgency_precision",
                    "evidence_hit_rate", "evidence_gold_hit_rate", "evidence_span_share",
                    "span_validity", "records_with_raw_pii"):
            assert key in figures["all"], key
    assert {"call", "email", "social"} <= set(result["splits"]["tuning"]["channels"])
    text, _ = render(out, "make bench", "benchmarks.json")
    assert "## voc_eval.json" in text and "| sentiment, 3 classes | ≥ 0.88 |" in text
    assert "**heldout** (n = " in text and "**retired** (n = " in text
    assert "; by author v1 " in voc_eval.markdown(result)
    alone = {**result, "authors": {}, "splits": {"heldout": result["splits"]["heldout"]}}
    assert voc_eval.markdown(alone).startswith(f"Data: no tuning data ({result['items']} items; heldout ")


def test_every_tuning_file_counts_with_its_author_and_a_retired_held_out_file_is_retired() -> None:
    """Held-out v2 to v9 had their scorings and are tuning data now; held-out v10 files are
    only ever named here (by the default glob), never read."""
    files = {p.name for p in voc_eval.tuning_files()}
    assert {"voc_eval.jsonl", "voc_heldout2.jsonl", "voc_heldout3a.jsonl", "voc_heldout3b.jsonl",
            "voc_heldout4h.jsonl", "voc_heldout4i.jsonl", "voc_heldout5p.jsonl", "voc_heldout5q.jsonl",
            "voc_heldout6r.jsonl", "voc_heldout6s.jsonl", "voc_heldout7w.jsonl",
            "voc_heldout7x.jsonl", "voc_heldout8ab.jsonl", "voc_heldout8ac.jsonl",
            "voc_heldout9ae.jsonl", "voc_heldout9af.jsonl", "voc_heldout9ag.jsonl",
            "voc_heldout9ah.jsonl"} <= files
    assert not any(name.startswith("voc_heldout10") for name in files)
    assert voc_eval.HELDOUT_GLOB == "voc_heldout10*.jsonl"
    assert all(p.name.startswith("voc_heldout10") for p in voc_eval.default_heldout())
    items = voc_eval.read_tuning()
    by_author = Counter(item.author for item in items)
    assert by_author["v1"] == len(ITEMS) and by_author["v2"] >= 300
    retired = ("d", "e", "h", "i", "p", "q", "r", "s", "w", "x", "ab", "ac")
    assert all(by_author[author] >= 260 for author in retired)
    assert all(by_author[author] == 130 for author in ("ae", "af", "ag", "ah"))
    retired += ("ae", "af", "ag", "ah")
    assert {item.row["split"] for item in items if item.author in ("v2", *retired)} == {"retired"}
    assert voc_eval.author_of_file(Path("x/voc_train_b.jsonl")) == "b"


def test_loao_scores_each_author_with_models_fitted_without_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every trainer is called once per author with --hold-author that author and an output in
    a scratch copy of services/nlp, and the author's items are scored by an analyzer read from
    that copy: a stance model made to call everything praise shows in that author alone."""
    calls: list[list[str]] = []

    class Fake:
        @staticmethod
        def main(argv: list[str]) -> int:
            calls.append(argv)
            out = Path(argv[argv.index("--out") + 1])
            assert out.parent.parent.name == "nlp" and out.parent.parent != voc_eval.NLP_DIR
            if argv[argv.index("--hold-author") + 1] == "b":
                params = json.loads(out.read_text(encoding="utf-8"))
                params["dense_weights"] = [[0.0] * len(params["intercepts"])] * len(params["features"])
                params["intercepts"] = [-50.0, -50.0, 50.0, -50.0, -50.0, -50.0, 50.0, -50.0]
                out.write_text(json.dumps(params), encoding="utf-8")
            return 0

    monkeypatch.setitem(__import__("sys").modules, "fake_trainer", Fake)
    items = [voc_eval.Item({**item.row, "author": author})
             for author, part in (("a", ITEMS[:12]), ("b", ITEMS[12:24])) for item in part]
    trainer = voc_eval.Trainer("fake_trainer", ("stance",), "model_data/stance.json")
    records = voc_eval.loao(items, [trainer], tmp_path)
    assert [c[c.index("--hold-author") + 1] for c in calls] == ["a", "b"]
    assert all(c[:1] == ["stance"] and "--data-dir" not in c for c in calls)
    shipped, _ = voc_eval.enrich(items)

    def positive(got: list[dict], author: str) -> int:
        return sum(r["sentiment"]["score"] > 0 for i, r in zip(items, got, strict=True) if i.author == author)

    assert [r["sentiment"] for r in records[:12]] == [r["sentiment"] for r in shipped[:12]]
    assert positive(records, "b") > positive(shipped, "b")
    figures = voc_eval.loao_figures(items, records, with_snownlp=False)
    assert set(figures["authors"]) == {"a", "b"} and figures["pooled"]["all"]["n"] == 24
    mean = figures["mean"]["sentiment_accuracy"]
    assert mean == pytest.approx(sum(f["all"]["sentiment_accuracy"] for f in figures["authors"].values()) / 2)
    lines = "\n".join(voc_eval.loao_markdown(figures))
    assert "| a (n = 12) | b (n = 12) | mean | pooled |" in lines


def test_a_data_file_with_held_out_items_is_refused(tmp_path: Path) -> None:
    """Held-out items live in their own files: one marked held-out in a tuning file would be
    scored without the guard on its errors, and no file is both."""
    sample = tmp_path / "sample.jsonl"
    sample.write_text(json.dumps({**ITEMS[0].row, "split": "heldout"}, ensure_ascii=False) + "\n",
                      encoding="utf-8")
    with pytest.raises(SystemExit, match="not one of the tuning splits"):
        voc_eval.run([sample], with_snownlp=False)
    with pytest.raises(SystemExit, match="both as tuning data and as held out"):
        voc_eval.run([voc_eval.DATA], with_snownlp=False, heldout=[voc_eval.DATA])


def test_held_out_errors_are_never_listed(tmp_path: Path) -> None:
    source = tmp_path / "heldout.jsonl"
    source.write_text(json.dumps({**ITEMS[0].row, "split": "tuning"}, ensure_ascii=False) + "\n",
                      encoding="utf-8")
    held = voc_eval.read_heldout(source)
    with pytest.raises(AssertionError, match="held-out errors are never shown"):
        voc_eval.errors(held, [{"text": "x", "sentiment": {"label": "neutral", "score": 0.0},
                                "intent": "other", "topics": [], "urgency": []}])


def test_a_big5_email_with_hong_kong_characters_is_sent_as_big5_hkscs() -> None:
    """攞 is in Big5-HKSCS, not Big5: such an item is sent as a Hong Kong mailer would send it,
    and ingest reads it back."""
    row = {"id": "t-1", "channel": "email", "split": "tuning", "script": "traditional",
           "email": {"subject": "查詢", "charset": "Big5", "body": "想出發前攞到部機，唔該。"},
           "labels": {"sentiment": "neutral", "intent": "inquiry", "topics": [], "urgency": [],
                      "evidence": []}, "pii": []}
    event = voc_eval.raw_event(voc_eval.Item(row))
    assert "攞到部机" in (event.analysis_text or event.text)
    assert voc_eval._sendable_charset("Big5", "多謝") == "Big5"


def test_a_post_from_a_forum_ingest_has_no_id_for_is_sent_as_other() -> None:
    """Authors name the forum a post came from (ptt, lihkg); ingest lists a few platforms and
    ``other``, so such a post goes in as ``other`` with its text intact, and a listed one as
    itself."""
    row = {"id": "t-2", "channel": "social", "platform": "ptt", "split": "tuning",
           "script": "traditional", "text": "超商取貨等了一個禮拜還沒到",
           "labels": {"sentiment": "negative", "intent": "complaint", "topics": [], "urgency": [],
                      "evidence": []}, "pii": []}
    event = voc_eval.raw_event(voc_eval.Item(row))
    assert event.social is not None and event.social.platform == "other"
    assert "超商取货" in (event.analysis_text or event.text)
    assert voc_eval._sendable_platform("weibo") == "weibo"


def test_the_shared_corpora_are_found_from_a_worktree_of_the_checkout(tmp_path: Path) -> None:
    """A bench run from ``git worktree add`` (whose .git is a file naming the main checkout's
    .git/worktrees/NAME) reads ../shared beside the main checkout, not beside the worktree."""
    from bench.common import _main_checkout

    main = tmp_path / "work" / "main"
    (main / ".git" / "worktrees" / "x").mkdir(parents=True)
    tree = tmp_path / "work" / "wt" / "x"
    tree.mkdir(parents=True)
    (tree / ".git").write_text(f"gitdir: {main / '.git' / 'worktrees' / 'x'}\n", encoding="utf-8")
    assert _main_checkout(tree) == main.resolve()
    assert _main_checkout(main) == main
