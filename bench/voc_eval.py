"""Analysis quality on realistic multi-channel feedback: the figures of issue 16, per channel.

The review corpora of ``nlp_bench.py`` and ``topics_eval.py`` say how the models do on reviews;
this says how the NLP stage does on what reaches it: survey answers, chat, call transcripts,
emails (GBK / Big5 / UTF-8, subjects, quoted history, signatures), social posts, app reviews and
web forms, a fifth of them in traditional Chinese (``bench/data/voc_eval.jsonl``, labelled by
``docs/annotation-guide.md``). Each item takes the path it takes in production: the channel's
ingest builder (an email as raw RFC 822 bytes in its own charset), then the NLP stage's
``prepare_raw`` and analyzer in batches; the serialised enriched event is the returned record
every figure is read from.

Figures, per split and per channel: sentiment accuracy (3
classes), intent accuracy, topic micro precision / recall / F1 and ``product_quality`` recall,
urgency-flag precision and recall, evidence spans (every span of a returned record lies on the
text it indexes, ``analysis_text``; an expected evidence phrase is covered by a span of its
topic, over the topics returned and over the gold topics, where a phrase whose topic was not
returned is a miss; and, against pointing at whole texts, the mean share of the analysed text
one returned topic's spans cover), and the records holding raw PII. SnowNLP's sentiment on the
same analysed texts is the baseline.

    python bench/voc_eval.py --json build/bench/voc_eval.json --loao
    python bench/voc_eval.py --errors          # tuning items' errors (in sample), for reading
    python bench/voc_eval.py --loao --errors   # each author's errors under models fitted without them

The data (docs/model-card.md, "Round 3" and "Round 4"):

- Tuning data is every labelled file of ``bench/data`` that is not held out, each item with its
  author: ``voc_eval.jsonl`` (author ``v1``; splits ``tuning`` and ``retired``),
  ``voc_heldout2.jsonl``, ``voc_heldout3a.jsonl``, ``voc_heldout3b.jsonl``,
  ``voc_heldout4h.jsonl``, ``voc_heldout4i.jsonl``, ``voc_heldout5p.jsonl``,
  ``voc_heldout5q.jsonl``, ``voc_heldout6r.jsonl``, ``voc_heldout6s.jsonl``,
  ``voc_heldout7w.jsonl``, ``voc_heldout7x.jsonl``, ``voc_heldout8ab.jsonl``,
  ``voc_heldout8ac.jsonl`` and ``voc_heldout9ae.jsonl`` … ``voc_heldout9ah.jsonl`` (authors
  ``v2``, ``d``, ``e``, ``h``, ``i``, ``p``, ``q``, ``r``, ``s``, ``w``, ``x``, ``ab``,
  ``ac`` and ``ae`` … ``ah``;
  held-out sets that had their one run and were retired into training, so their items are
  scored as ``retired``) and ``voc_train_*.jsonl`` (authors ``a``, ``b``, ``c``, ``f``,
  ``g``, ``j`` … ``o``, ``t`` … ``v``, ``y``, ``z``, ``aa``, ``ad``, ``ai`` … ``al``,
  ``am``, ``an``, ``ao`` … ``ar``, ``aw``, ``ax``: the file's suffix or
  the items' ``author`` field).
- ``heldout`` is one or more separate files (``--heldout``, by default every
  ``bench/data/voc_heldout10*.jsonl``: authors ``as``, ``at``, ``au`` and ``av``),
  written by authors who do not tune: every item of them is scored as ``heldout`` whatever its
  own ``split`` field says, and their errors are never listed (:func:`errors` refuses them).

The honest estimate is leave-one-author-out (``--loao``): for each author, every trainer of
:data:`LOAO_TRAINERS` is called with ``--hold-author`` that author, writing its artifact into a
scratch copy of ``services/nlp``; the author's items are then scored by an analyzer built from
that copy (:func:`analyzer_from`). Each author's figures and their mean are reported; settings
are chosen by that mean, never by the in-sample ``tuning`` figures.

``--hold-fold K`` keeps one fifth of the tuning data (:func:`fold_of`) out of ``--errors`` and
reports it apart (``fold K`` against ``other folds``).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import zlib  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Iterable, Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from email.header import Header  # noqa: E402
from email.mime.text import MIMEText  # noqa: E402
from email.utils import format_datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, get_args  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO_ROOT, SHARED_NLP, write_json  # noqa: E402
from services.core.channels import prepare_raw  # noqa: E402
from services.core.events import EnrichedFeedback, RawFeedback  # noqa: E402
from services.core.normalize import to_simplified  # noqa: E402
from services.core.pii import fold  # noqa: E402
from services.core.settings import load_settings  # noqa: E402

DATA_DIR = REPO_ROOT / "bench" / "data"
DATA = DATA_DIR / "voc_eval.jsonl"
RETIRED_FILES = {"voc_heldout2.jsonl": "v2", "voc_heldout3a.jsonl": "d", "voc_heldout3b.jsonl": "e",
                 "voc_heldout4h.jsonl": "h", "voc_heldout4i.jsonl": "i",
                 "voc_heldout5p.jsonl": "p", "voc_heldout5q.jsonl": "q",
                 "voc_heldout6r.jsonl": "r", "voc_heldout6s.jsonl": "s",
                 "voc_heldout7w.jsonl": "w", "voc_heldout7x.jsonl": "x",
                 "voc_heldout8ab.jsonl": "ab", "voc_heldout8ac.jsonl": "ac",
                 "voc_heldout9ae.jsonl": "ae", "voc_heldout9af.jsonl": "af",
                 "voc_heldout9ag.jsonl": "ag", "voc_heldout9ah.jsonl": "ah"}
"""Held-out files that had their one run and were retired into tuning data, with their author:
their items are scored as ``retired`` whatever their ``split`` field says."""
AUTHOR_FILES = {"voc_eval.jsonl": "v1", **RETIRED_FILES}
TRAINING_GLOB = "voc_train_*.jsonl"
HELDOUT_GLOB = "voc_heldout10*.jsonl"
TUNABLE = ("tuning", "retired")
"""Splits whose errors may be read and tuned on."""
SPLITS = (*TUNABLE, "heldout")
NLP_DIR = REPO_ROOT / "services" / "nlp"
PUBLIC_DATA = SHARED_NLP


@dataclass(frozen=True)
class Trainer:
    """One trainer run for each left-out author: ``module.main(args + ["--hold-author", X,
    "--out", <copy of services/nlp>/out])`` (and ``["--data-dir", D]`` when it reads the
    public corpora) writes the artifact that the analyzer of :func:`analyzer_from` loads from
    ``out`` (a path relative to services/nlp)."""

    module: str
    args: tuple[str, ...]
    out: str
    public: bool = False


LOAO_TRAINERS: tuple[Trainer, ...] = (
    Trainer("bench.train_nlp", ("topics",), "taggers/cem", public=True),
    Trainer("bench.train_topics", ("urgency",), "taggers/urgency"),
    Trainer("bench.train_nlp", ("stance",), "model_data/stance.json"),
)
"""What is fitted on the tuning data, in the order it is fitted (the stance model reads the
outputs of the others)."""
FOLDS = 5
CHANNELS = ("survey", "chat", "call", "email", "social", "app", "web")
NEUTRAL_BAND = 0.2
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)

TARGETS = {
    "sentiment_accuracy": 0.88,
    "intent_accuracy": 0.88,
    "topic_micro_f1": 0.82,
    "topic_recall": 0.78,
    "product_quality_recall": 0.75,
    "urgency_recall": 0.85,
    "urgency_precision": 0.90,
    "evidence_hit_rate": 1.0,
    "span_validity": 1.0,
}
"""Issue 16's targets; the PII target is no record with raw PII."""


@dataclass(frozen=True)
class Item:
    """One labelled message of the set, as stored."""

    row: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.row["id"])

    @property
    def channel(self) -> str:
        return str(self.row["channel"])

    @property
    def labels(self) -> dict[str, Any]:
        return dict(self.row["labels"])

    @property
    def author(self) -> str:
        return str(self.row.get("author", "?"))


def author_of_file(path: Path) -> str:
    """The author of a file's items that carry no ``author`` field: ``v1`` and ``v2`` for the
    first two sets, ``X`` for ``voc_train_X.jsonl``, else the file's stem."""
    if path.name in AUTHOR_FILES:
        return AUTHOR_FILES[path.name]
    return path.stem.removeprefix("voc_train_")


def read_items(path: Path = DATA) -> list[Item]:
    """The file's items in file order, each with its author (its own field or the file's)."""
    author = author_of_file(path)
    with path.open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [Item({**row, "author": row.get("author") or author}) for row in rows]


def tuning_files() -> list[Path]:
    """Every labelled file of ``bench/data`` that is tuning data (see the module docstring)."""
    named = [DATA_DIR / name for name in AUTHOR_FILES]
    return [p for p in named if p.exists()] + sorted(DATA_DIR.glob(TRAINING_GLOB))


def read_tuning(paths: Sequence[Path] | None = None) -> list[Item]:
    """The tuning items of these files (default :func:`tuning_files`), each with its author.

    A retired held-out file's items are ``retired``; an item of another file without a split is
    ``tuning``; one marked ``heldout`` is refused, since held-out items live in their own
    files whose errors are never listed.
    """
    items = []
    for path in paths if paths is not None else tuning_files():
        for item in read_items(path):
            split = "retired" if path.name in RETIRED_FILES else item.row.get("split", "tuning")
            if split not in TUNABLE:
                raise SystemExit(f"{path}: split value {split!r} of {item.id} is not one of the "
                                 f"tuning splits {TUNABLE}; a held-out set goes in its own file, "
                                 "given with --heldout")
            items.append(Item({**item.row, "split": split}))
    return items


def read_heldout(path: Path) -> list[Item]:
    """The held-out file's items, each marked ``heldout`` whatever its file says, so that no
    split field written there can make its errors listable."""
    return [Item({**item.row, "split": "heldout"}) for item in read_items(path)]


def fold_of(item: Item) -> int:
    """The item's fold of :data:`FOLDS`, fixed by its id alone (CRC-32), so folds do not move
    when items are added or reordered."""
    return zlib.crc32(item.id.encode("utf-8")) % FOLDS


def _sendable_charset(declared: str, text: str) -> str:
    """The charset a mailer would label this text with: the declared one, or Big5-HKSCS for
    a Big5 text holding Hong Kong characters Big5 lacks (攞, 冇 ...), as Hong Kong mailers do
    (an author's item may declare Big5 for such a text, which no Big5 mailer could send)."""
    if declared.lower() == "big5":
        try:
            text.encode("big5")
        except UnicodeEncodeError:
            return "big5-hkscs"
    return declared


def _sendable_platform(name: str) -> str:
    """The platform id ingest accepts for a post: the author's own when ingest lists it, else
    ``other`` (authors name the forum a post came from: ptt, dcard, lihkg ...), as a connector
    for a site without its own id sends it."""
    from services.ingest.channels.social import SocialPostIn

    known = get_args(SocialPostIn.model_fields["platform"].annotation)
    return name if name in known else "other"


def raw_event(item: Item) -> RawFeedback:
    """The raw event ingest builds for this item on its channel (PII redacted, analysis text
    derived), then ``prepare_raw`` as the NLP stage applies it to everything it reads."""
    from services.ingest.call_transcript import CallIn
    from services.ingest.channels.calls import call_event
    from services.ingest.channels.emails import email_event
    from services.ingest.channels.social import SocialPostIn, social_event
    from services.ingest.channels.surveys import SurveyResponseIn, survey_event
    from services.ingest.email_message import parse_rfc822

    row = item.row
    if item.channel == "call":
        turns, at = [], 0
        for turn in row["turns"]:
            length = 2000 + 150 * len(turn["text"])
            turns.append({"speaker": turn["speaker"], "start_ms": at, "end_ms": at + length,
                          "text": turn["text"]})
            at += length + 800
        call = CallIn.model_validate({
            "call_id": item.id, "touchpoint": "hotline", "started_at": NOW.isoformat(),
            "ended_at": (NOW + timedelta(milliseconds=at)).isoformat(), "turns": turns})
        event = call_event("voc-eval", call)
    elif item.channel == "email":
        mail = row["email"]
        charset = _sendable_charset(mail["charset"], mail["subject"] + mail["body"])
        message = MIMEText(mail["body"], "plain", charset)
        message["Subject"] = Header(mail["subject"], charset).encode()
        message["From"] = "customer@example.invalid"
        message["Message-ID"] = f"<{item.id}@voc-eval.invalid>"
        message["Date"] = format_datetime(NOW)
        raw = message.as_bytes()
        event = email_event("voc-eval", parse_rfc822(raw), raw, touchpoint="email")
    elif item.channel == "social":
        event = social_event("voc-eval", SocialPostIn(
            platform=_sendable_platform(row["platform"]), post_id=item.id.removeprefix("voc-"),
            text=row["text"],
            posted_at=NOW))
    elif item.channel in ("survey", "web"):
        event = survey_event("voc-eval", SurveyResponseIn(
            response_id=item.id, channel=item.channel, touchpoint="survey", text=row["text"],
            submitted_at=NOW))
    else:
        event = RawFeedback(event_id=item.id, source="voc-eval", channel=item.channel,
                            touchpoint=item.channel, text=row["text"], occurred_at=NOW,
                            received_at=NOW)
    return prepare_raw(event)


def enrich(items: Sequence[Item], batch_size: int = 256, analyzer: Any = None
           ) -> tuple[list[dict[str, Any]], float]:
    """The returned record (the serialised enriched event, parsed) of each item, and the
    analyzer's CPU microseconds per event (the shipped analyzer unless one is given)."""
    from services.nlp.worker import build_analyzer

    analyzer = analyzer if analyzer is not None else build_analyzer(load_settings())
    raws = [raw_event(item) for item in items]
    enriched: list[EnrichedFeedback] = []
    started = time.process_time()
    for i in range(0, len(raws), batch_size):
        enriched.extend(analyzer.analyze(raws[i: i + batch_size]))
    spent = time.process_time() - started
    return [json.loads(e.to_bytes()) for e in enriched], 1e6 * spent / max(len(items), 1)


def ratio(hits: int, total: int) -> float | None:
    return hits / total if total else None


def _covers(spans: Iterable[Sequence[int]], start: int, end: int) -> bool:
    return any(a < end and start < b for a, b in spans)


def phrase_spans(text: str, phrase: str) -> list[tuple[int, int]]:
    """Where an expected phrase sits in the analysed text (simplified there, so converted too)."""
    found = []
    for form in dict.fromkeys((phrase, to_simplified(phrase))):
        start = text.find(form)
        while start >= 0:
            found.append((start, start + len(form)))
            start = text.find(form, start + 1)
    return found


def span_share(text: str, spans: Iterable[Sequence[int]]) -> float:
    """The share of ``text``'s characters one topic's spans cover: the counter-figure of
    evidence coverage, which pointing at whole texts would make perfect."""
    covered = set().union(*(range(a, b) for a, b in spans))
    return len(covered) / max(len(text), 1)


def span_problems(record: dict[str, Any]) -> list[str]:
    """Spans of a record that do not lie on the text they index (``analysis_text``)."""
    text = record.get("analysis_text") or record["text"]
    problems = []
    for topic in record["topics"]:
        for a, b in topic["evidence"]:
            if not 0 <= a < b <= len(text) or not text[a:b].strip():
                problems.append(f"topic {topic['id']} span {a}-{b}")
    for flag in record["urgency"]:
        for a, b in flag["evidence"]:
            if not 0 <= a < b <= len(text) or text[a:b] != flag["term"]:
                problems.append(f"urgency {flag['flag']} span {a}-{b} is not {flag['term']!r}")
    return problems


def pii_leaks(item: Item, record: dict[str, Any]) -> list[str]:
    """The item's PII values found in its returned record, in any digit or separator form."""
    blob = fold(json.dumps(record, ensure_ascii=False))
    digits_only = "".join(ch for ch in blob if ch.isdigit())
    leaks = []
    for value in item.row.get("pii", []):
        folded = fold(value)
        digits = "".join(ch for ch in folded if ch.isdigit())
        if folded in blob or (len(digits) >= 7 and digits in digits_only and "@" not in folded):
            leaks.append(value)
    return leaks


def score(items: Sequence[Item], records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Every figure of issue 16 over these items."""
    n = len(items)
    sentiment = sum(r["sentiment"]["label"] == i.labels["sentiment"] for i, r in zip(items, records, strict=True))
    intent = sum(r["intent"] == i.labels["intent"] for i, r in zip(items, records, strict=True))
    tp = fp = fn = pq_tp = pq_gold = 0
    u_tp = u_fp = u_fn = 0
    per_flag: dict[str, list[int]] = {}
    ev_total = ev_hit = ev_topic_missing = 0
    shares: list[float] = []
    span_bad = 0
    leaks = 0
    confusion: dict[str, dict[str, int]] = {}
    for item, record in zip(items, records, strict=True):
        gold, got = set(item.labels["topics"]), {t["id"] for t in record["topics"]}
        tp += len(gold & got)
        fp += len(got - gold)
        fn += len(gold - got)
        pq_gold += "product_quality" in gold
        pq_tp += "product_quality" in gold and "product_quality" in got
        flags_gold, flags_got = set(item.labels["urgency"]), {u["flag"] for u in record["urgency"]}
        u_tp += len(flags_gold & flags_got)
        u_fp += len(flags_got - flags_gold)
        u_fn += len(flags_gold - flags_got)
        for flag in flags_gold | flags_got:
            counts = per_flag.setdefault(flag, [0, 0, 0])
            counts[0] += flag in flags_gold and flag in flags_got
            counts[1] += flag in flags_got and flag not in flags_gold
            counts[2] += flag in flags_gold and flag not in flags_got
        text = record.get("analysis_text") or record["text"]
        spans_of = {t["id"]: t["evidence"] for t in record["topics"]}
        shares.extend(span_share(text, spans) for spans in spans_of.values())
        for expected in item.labels["evidence"]:
            if expected["topic"] not in spans_of:
                ev_topic_missing += 1
                continue
            ev_total += 1
            ev_hit += any(_covers(spans_of[expected["topic"]], a, b)
                          for a, b in phrase_spans(text, expected["phrase"]))
        span_bad += bool(span_problems(record))
        leaks += bool(pii_leaks(item, record))
        row = confusion.setdefault(item.labels["sentiment"], {})
        row[record["sentiment"]["label"]] = row.get(record["sentiment"]["label"], 0) + 1
    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    u_precision, u_recall = ratio(u_tp, u_tp + u_fp), ratio(u_tp, u_tp + u_fn)
    return {
        "n": n,
        "sentiment_accuracy": ratio(sentiment, n),
        "intent_accuracy": ratio(intent, n),
        "topic_precision": precision,
        "topic_recall": recall,
        "topic_micro_f1": ratio(2 * tp, 2 * tp + fp + fn),
        "product_quality_recall": ratio(pq_tp, pq_gold),
        "urgency_precision": u_precision,
        "urgency_recall": u_recall,
        "urgency_recall_at_precision_0_9": (u_recall if u_precision is not None and u_precision >= 0.9
                                            else 0.0 if u_tp + u_fn else None),
        "urgency_per_flag": {f: {"precision": ratio(c[0], c[0] + c[1]), "recall": ratio(c[0], c[0] + c[2]),
                                 "gold": c[0] + c[2]} for f, c in sorted(per_flag.items())},
        "evidence_phrases": ev_total,
        "evidence_hit_rate": ratio(ev_hit, ev_total),
        "evidence_topic_missing": ev_topic_missing,
        "evidence_gold_hit_rate": ratio(ev_hit, ev_total + ev_topic_missing),
        "evidence_span_share": sum(shares) / len(shares) if shares else None,
        "span_validity": ratio(n - span_bad, n),
        "records_with_raw_pii": leaks,
        "sentiment_confusion": confusion,
    }


def snownlp_accuracy(items: Sequence[Item], records: Sequence[dict[str, Any]]) -> float:
    """SnowNLP's 3-class accuracy on the same analysed texts (neutral band as the pipeline's)."""
    from services.nlp.sentiment_model import SnowNLPSentiment

    scores = SnowNLPSentiment().predict([r.get("analysis_text") or r["text"] for r in records])
    labels = ["negative" if s <= -NEUTRAL_BAND else "positive" if s >= NEUTRAL_BAND else "neutral"
              for s in scores]
    return sum(lab == i.labels["sentiment"] for lab, i in zip(labels, items, strict=True)) / len(items)


def errors(items: Sequence[Item], records: Sequence[dict[str, Any]]) -> list[str]:
    """One line per wrong figure of each tuning or retired item (never of a held-out one)."""
    lines = []
    for item, record in zip(items, records, strict=True):
        assert item.row["split"] in TUNABLE, "held-out errors are never shown"
        text = record.get("analysis_text") or record["text"]
        got_topics = sorted(t["id"] for t in record["topics"])
        wrong = []
        if record["sentiment"]["label"] != item.labels["sentiment"]:
            wrong.append(f"sentiment {record['sentiment']['label']} ({record['sentiment']['score']:+.2f}) "
                         f"want {item.labels['sentiment']}")
        if record["intent"] != item.labels["intent"]:
            wrong.append(f"intent {record['intent']} want {item.labels['intent']}")
        if set(got_topics) != set(item.labels["topics"]):
            extra = sorted(set(got_topics) - set(item.labels["topics"]))
            missing = sorted(set(item.labels["topics"]) - set(got_topics))
            evidence = {t["id"]: [text[a:b] for a, b in t["evidence"]] for t in record["topics"]}
            wrong.append(f"topics +{[(t, evidence[t]) for t in extra]} -{missing}")
        flags = sorted({u["flag"] for u in record["urgency"]})
        if flags != sorted(item.labels["urgency"]):
            wrong.append(f"urgency {[(u['flag'], u['term']) for u in record['urgency']]} want "
                         f"{item.labels['urgency']}")
        if wrong:
            shown = text[:160].replace("\n", " / ")
            lines.append(f"{item.id} [{item.channel}, {item.author}] {shown}\n    " + "\n    ".join(wrong))
    return lines


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


ROWS = [("sentiment, 3 classes", "sentiment_accuracy"), ("intent", "intent_accuracy"),
        ("topic micro-F1", "topic_micro_f1"), ("topic precision", "topic_precision"),
        ("topic recall", "topic_recall"), ("`product_quality` recall", "product_quality_recall"),
        ("urgency recall", "urgency_recall"), ("urgency precision", "urgency_precision"),
        ("evidence phrase covered by its topic's spans", "evidence_hit_rate"),
        ("evidence phrase covered, over gold topics", "evidence_gold_hit_rate"),
        ("share of the text one topic's spans cover", "evidence_span_share"),
        ("records whose spans all lie on the indexed text", "span_validity")]


def markdown(result: dict[str, Any]) -> str:
    """The figures as tables: LOAO per author when run, then one per split with a column per
    channel (the pooled LOAO figures among them), targets alongside."""
    rows = ROWS
    sizes = ", ".join(f"{split} {figures['all']['n']}" for split, figures in result["splits"].items())
    # A held-out-only run (--splits heldout) scores no tuning file, so it names none.
    if result["authors"]:
        counts = ", ".join(f"{a} {n}" for a, n in result["authors"].items())
        data = ", ".join(f"`{d}`" for d in result["data"])
        data = f"{data} ({result['items']} items; {sizes}; by author {counts})"
    else:
        data = f"no tuning data ({result['items']} items; {sizes})"
    held = (f"held-out files {', '.join(f'`{h}`' for h in result['heldout'])}" if result.get("heldout")
            else "no held-out file, so no `heldout` figures")
    lines = [f"Data: {data}; {held}. Model `{result['model']}`; analyzer "
             f"{result['analyze_us_per_event']:.0f} CPU µs per event on this set.", ""]
    if result.get("loao"):
        if result["loao_trainers"] != sorted({t.args[0] for t in LOAO_TRAINERS}):
            lines += [f"LOAO refitted only {', '.join(result['loao_trainers'])}: every other "
                      "artifact is the shipped one, so its figures are in sample.", ""]
        lines += loao_markdown(result["loao"])
    tables = [*result["splits"].items(), *result.get("folds", {}).items()]
    if result.get("loao"):
        tables.insert(0, ("leave-one-author-out, pooled", result["loao"]["pooled"]))
    for split, figures in tables:
        present = [c for c in CHANNELS if c in figures["channels"]]
        lines += [f"**{split}** (n = {figures['all']['n']})", "",
                  "| figure | target | all | " + " | ".join(present) + " |",
                  "|---|---:|---:|" + "---:|" * len(present)]
        for label, key in rows:
            target = TARGETS.get(key)
            cells = [_pct(figures["channels"][c][key]) for c in present]
            lines.append(f"| {label} | {'' if target is None else f'≥ {target:g}'} | "
                         f"{_pct(figures['all'][key])} | " + " | ".join(cells) + " |")
        lines.append("| records with raw PII | 0 | " + str(figures["all"]["records_with_raw_pii"]) + " | "
                     + " | ".join(str(figures["channels"][c]["records_with_raw_pii"]) for c in present) + " |")
        lines.append(f"| SnowNLP sentiment (baseline) | | {_pct(figures['snownlp_sentiment_accuracy'])} |"
                     + " |" * len(present))
        lines.append("")
    return "\n".join(lines)


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def default_heldout() -> list[Path]:
    """The held-out files that exist (``bench/data/voc_heldout10*.jsonl``; with none, nothing is
    scored as ``heldout``)."""
    return sorted(DATA_DIR.glob(HELDOUT_GLOB))


def analyzer_from(root: Path) -> Any:
    """The analyzer as the NLP stage builds it, but with every artifact read from ``root``, a
    copy of ``services/nlp`` (taxonomy and its tagger, urgency cues, stance model)."""
    from services.nlp.analyzer import Analyzer, load_sentiment
    from services.nlp.cues import load_urgency
    from services.nlp.stance import STANCE_FILE, StanceModel
    from services.nlp.taxonomy import load_taxonomy

    settings = load_settings()
    return Analyzer(load_sentiment(settings.sentiment_backend), load_taxonomy(root / "taxonomy.yaml"),
                    load_urgency(root / "urgency.yaml"), settings.neutral_band,
                    settings.jieba_user_dict,
                    stance=StanceModel.load(root / "model_data" / STANCE_FILE))


def loao(items: Sequence[Item], trainers: Sequence[Trainer] = LOAO_TRAINERS,
         data_dir: Path = PUBLIC_DATA) -> list[dict[str, Any]]:
    """Each item's record as returned by models fitted without its author's items.

    For each author, a scratch copy of ``services/nlp`` receives what each trainer fits with
    ``--hold-author`` that author; the author's items are scored by :func:`analyzer_from` it.
    """
    records: dict[int, dict[str, Any]] = {}
    for author in sorted({item.author for item in items}):
        mine = [k for k, item in enumerate(items) if item.author == author]
        with tempfile.TemporaryDirectory(prefix=f"loao-{author}-") as scratch:
            root = Path(scratch) / "nlp"
            shutil.copytree(NLP_DIR, root, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
            for trainer in trainers:
                # A trainer's report goes to stderr: stdout is this bench's tables.
                with contextlib.redirect_stdout(sys.stderr):
                    importlib.import_module(trainer.module).main([
                        *trainer.args, "--hold-author", author, "--out", str(root / trainer.out),
                        *(("--data-dir", str(data_dir)) if trainer.public else ())])
            got, _ = enrich([items[k] for k in mine], analyzer=analyzer_from(root))
        records.update(zip(mine, got, strict=True))
    return [records[k] for k in range(len(items))]


MEAN_KEYS = ("sentiment_accuracy", "intent_accuracy", "topic_micro_f1", "topic_precision",
             "topic_recall", "product_quality_recall", "urgency_recall", "urgency_precision",
             "evidence_hit_rate", "evidence_gold_hit_rate", "evidence_span_share", "span_validity")


def loao_figures(items: Sequence[Item], records: Sequence[dict[str, Any]],
                 with_snownlp: bool) -> dict[str, Any]:
    """Each left-out author's figures, their mean (each author counts once) and the pooled
    figures of all left-out items per channel."""
    pairs = list(zip(items, records, strict=True))
    authors = {author: _figures([(i, r) for i, r in pairs if i.author == author], with_snownlp)
               for author in sorted({i.author for i in items})}
    mean: dict[str, float | None] = {}
    for key in MEAN_KEYS:
        values = [f["all"][key] for f in authors.values() if f["all"][key] is not None]
        mean[key] = sum(values) / len(values) if values else None
    return {"authors": authors, "mean": mean, "pooled": _figures(pairs, with_snownlp)}


def loao_markdown(figures: dict[str, Any]) -> list[str]:
    """The LOAO table: a column per left-out author, their mean and the pooled figure."""
    authors = figures["authors"]
    lines = ["**leave-one-author-out** (each author scored by models fitted without them; the "
             "mean counts each author once)", "",
             "| figure | target | " + " | ".join(f"{a} (n = {f['all']['n']})" for a, f in authors.items())
             + " | mean | pooled |", "|---|---:|" + "---:|" * (len(authors) + 2)]
    for label, key in ROWS:
        target = TARGETS.get(key)
        cells = [_pct(f["all"][key]) for f in authors.values()]
        lines.append(f"| {label} | {'' if target is None else f'≥ {target:g}'} | " + " | ".join(cells)
                     + f" | {_pct(figures['mean'].get(key))} | {_pct(figures['pooled']['all'][key])} |")
    lines.append("| records with raw PII | 0 | " + " | ".join(
        str(f["all"]["records_with_raw_pii"]) for f in authors.values())
        + f" | | {figures['pooled']['all']['records_with_raw_pii']} |")
    lines.append("")
    return lines


def _figures(chosen: Sequence[tuple[Item, dict[str, Any]]], with_snownlp: bool) -> dict[str, Any]:
    part_items = [i for i, _ in chosen]
    part_records = [r for _, r in chosen]
    figures: dict[str, Any] = {"all": score(part_items, part_records), "channels": {}}
    for channel in CHANNELS:
        subset = [(i, r) for i, r in chosen if i.channel == channel]
        if subset:
            figures["channels"][channel] = score([i for i, _ in subset], [r for _, r in subset])
    figures["snownlp_sentiment_accuracy"] = (snownlp_accuracy(part_items, part_records)
                                             if with_snownlp else None)
    return figures


def run(paths: Sequence[Path] | None = None, with_snownlp: bool = True,
        splits: Sequence[str] = SPLITS, heldout: Sequence[Path] = (), hold_fold: int | None = None,
        with_loao: bool = False, trainers: Sequence[Trainer] = LOAO_TRAINERS,
        data_dir: Path = PUBLIC_DATA) -> tuple[dict[str, Any], list[Item], list[dict[str, Any]],
                                               list[dict[str, Any]] | None]:
    """Every figure on the splits asked for, with the items, their returned records and, with
    ``with_loao``, their records under models fitted without their author.

    ``paths`` are the tuning files (default :func:`tuning_files`) and ``heldout`` the held-out
    files (scored as split ``heldout``, never fitted on in LOAO); with ``hold_fold`` the tuning
    splits' items of that fold and of the others are also scored apart.
    """
    paths = list(paths) if paths is not None else tuning_files()
    overlap = {p.resolve() for p in paths} & {p.resolve() for p in heldout}
    if overlap:
        raise SystemExit(f"{sorted(map(str, overlap))} given both as tuning data and as held out")
    items = [i for i in read_tuning(paths) if i.row["split"] in splits]
    if "heldout" in splits:
        for path in heldout:
            items += read_heldout(path)
    records, us = enrich(items)
    from services.nlp.worker import build_analyzer

    tunable_items = [i for i in items if i.row["split"] in TUNABLE]
    result: dict[str, Any] = {
        "data": [_shown(p) for p in paths], "heldout": [_shown(h) for h in heldout],
        "items": len(items), "authors": dict(sorted(Counter(i.author for i in tunable_items).items())),
        "model": build_analyzer(load_settings()).model_id, "analyze_us_per_event": us,
        "targets": TARGETS, "splits": {}}
    pairs = list(zip(items, records, strict=True))
    for split in splits:
        chosen = [(i, r) for i, r in pairs if i.row["split"] == split]
        if chosen:
            result["splits"][split] = _figures(chosen, with_snownlp)
    if hold_fold is not None:
        tunable = [(i, r) for i, r in pairs if i.row["split"] in TUNABLE]
        result["folds"] = {
            f"other folds ({' + '.join(TUNABLE)})": _figures(
                [(i, r) for i, r in tunable if fold_of(i) != hold_fold], with_snownlp),
            f"fold {hold_fold} ({' + '.join(TUNABLE)})": _figures(
                [(i, r) for i, r in tunable if fold_of(i) == hold_fold], with_snownlp)}
    left_out = None
    if with_loao and tunable_items:
        left_out = loao(tunable_items, trainers, data_dir)
        result["loao"] = loao_figures(tunable_items, left_out, with_snownlp)
        result["loao_trainers"] = sorted({t.args[0] for t in trainers})
    result["markdown"] = markdown(result)
    return result, items, records, left_out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, nargs="+", default=None,
                        help="tuning files (default: voc_eval.jsonl, voc_heldout2.jsonl and "
                             "voc_train_*.jsonl of bench/data)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--heldout", type=Path, nargs="*", default=default_heldout(),
                        help="held-out files, scored as split heldout and never listed "
                             f"(default: every bench/data/{HELDOUT_GLOB} that exists)")
    parser.add_argument("--loao", action="store_true",
                        help="also score each author with models fitted without them (the "
                             "trainers run with --hold-author) and report each and their mean")
    parser.add_argument("--trainers", nargs="+", default=None,
                        choices=sorted({t.args[0] for t in LOAO_TRAINERS}),
                        help="with --loao, refit only these (the others' artifacts stay as "
                             "shipped, so in sample: for a quick look while tuning one model)")
    parser.add_argument("--data-dir", type=Path, default=PUBLIC_DATA,
                        help="the public dev corpora the trainers read (with --loao)")
    parser.add_argument("--errors", action="store_true",
                        help="list the tuning items' errors (with --loao: under the models "
                             "fitted without their author); held-out errors are never listed")
    parser.add_argument("--hold-fold", type=int, choices=range(FOLDS), default=None,
                        help="leave this fold of the tuning data out of --errors and report it "
                             "apart from the other folds")
    parser.add_argument("--no-snownlp", action="store_true", help="skip the SnowNLP baseline")
    parser.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS),
                        help="score only these splits (while tuning: --splits tuning retired)")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    result, items, records, left_out = run(
        args.data, with_snownlp=not args.no_snownlp, splits=args.splits, heldout=args.heldout,
        hold_fold=args.hold_fold, with_loao=args.loao, data_dir=args.data_dir,
        trainers=[t for t in LOAO_TRAINERS if args.trainers is None or t.args[0] in args.trainers])
    if args.errors:
        if left_out is not None:
            tunable = [i for i in items if i.row["split"] in TUNABLE]
            listed = list(zip(tunable, left_out, strict=True))
        else:
            listed = [(i, r) for i, r in zip(items, records, strict=True)
                      if i.row["split"] in TUNABLE and (args.hold_fold is None or fold_of(i) != args.hold_fold)]
        print("\n".join(errors([i for i, _ in listed], [r for _, r in listed])))
        print()
    print(result["markdown"])
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
