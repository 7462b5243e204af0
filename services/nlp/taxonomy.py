"""Topic tagging from an editable YAML taxonomy, with evidence spans, optionally with a learned tagger.

Matching is one Aho-Corasick automaton over every keyword (services/nlp/matching.py), so a text
is scanned once, in linear time, however many topics and keywords a deployment's taxonomy has,
and overlapping keywords resolve to the leftmost, then the longest. Keywords are literal text,
never regular expressions.

A taxonomy may name a learned tagger artifact (``tagger:``, a folder written by
``voc nlp train-topics``, relative to the YAML file). Keyword matches and the model's margins
are then combined per topic (:meth:`AspectTagger.combine`). A topic kept with a keyword match
keeps all its keyword spans as evidence, followed by the stretches the model read it from; a
topic the model found without any keyword gets those stretches only: in the clause the model
alone scores that topic highest and in each clause it would tag with the topic on its own, the
runs of n-grams that raised its margin (:meth:`AspectTagger.evidence_spans`), widened to whole
words of the segmenter, never beyond their clause. One top n-gram pointed at the topic's noun
(师傅) where a person points at what is said about it (走线很干净), often in another clause.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from itertools import accumulate
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.core.config_file import ConfigFile, Watched
from services.core.events import Span
from services.nlp.aspect_tagger import CLAUSE_SPLIT, MIN_EXAMPLES, AspectTagger, TextScan
from services.nlp.matching import KeywordMatcher

log = structlog.get_logger(__name__)

CLAUSE = re.compile(r"[^，。！？；,.!?;~～\n]+")
"""A clause: a run of text between sentence or clause punctuation (linear: each match is a
maximal run, and a position outside one fails at its first character)."""


class TopicSpec(BaseModel):
    """One topic of the taxonomy file."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9_]+$")
    name: str = Field(min_length=1)
    keywords: list[str] = Field(min_length=1)
    synonyms: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(
        default_factory=list, description="Contexts in which this topic's keywords do not count "
        "(手续费 for 手续): each holds one of its keywords and is matched like a keyword.")
    parent: str | None = None
    stage: str | None = Field(default=None, pattern="^(售前|售中|售后)$")


class PackTopic(BaseModel):
    """What a lexicon pack adds to one topic."""

    model_config = ConfigDict(extra="forbid")

    keywords: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)


class LexiconPack(BaseModel):
    """A lexicon pack file: one industry's phrases for the topics of a taxonomy.

    Customers of a telecom say 信号差 and 断网 where a shop's say 发错货: a pack keeps one
    industry's phrasing together, so a deployment lists the packs of its industries in its
    taxonomy (``packs:``) and edits or drops one without touching the others.
    """

    model_config = ConfigDict(extra="forbid")

    version: int = 1
    industry: str = Field(min_length=1)
    topics: dict[str, PackTopic] = Field(min_length=1)


@dataclass(frozen=True)
class TopicMatch:
    """A topic found in a text, before its own sentiment is known."""

    id: str
    name: str
    evidence: list[Span]


class TaxonomySpec(BaseModel):
    """The taxonomy file."""

    model_config = ConfigDict(extra="forbid")

    version: int = 1
    tagger: str | None = Field(
        default=None, description="Folder of a learned tagger artifact, relative to this file.")
    packs: list[str] = Field(
        default_factory=list, description="Lexicon pack files, relative to this file, whose "
        "phrases are added to the topics they name.")
    topics: list[TopicSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> TaxonomySpec:
        ids = [t.id for t in self.topics]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate topic ids: {duplicates}")
        unknown = sorted({t.parent for t in self.topics if t.parent and t.parent not in ids})
        if unknown:
            raise ValueError(f"parent ids that are not topics: {unknown}")
        return self


@dataclass
class Taxonomy:
    """A loaded taxonomy that tags texts."""

    spec: TaxonomySpec
    tagger: AspectTagger | None = None
    _matcher: KeywordMatcher = field(init=False)
    _topics_of: dict[str, list[TopicSpec]] = field(init=False)
    _chain: dict[str, list[TopicSpec]] = field(init=False)

    def __post_init__(self) -> None:
        by_id = {t.id: t for t in self.spec.topics}
        self._topics_of = {}
        self._chain = {}
        for topic in self.spec.topics:
            chain = [topic]
            while chain[-1].parent:
                chain.append(by_id[chain[-1].parent])
            self._chain[topic.id] = chain
            for phrase in {*topic.keywords, *topic.synonyms}:
                self._topics_of.setdefault(phrase, []).extend(chain)
        for topic in self.spec.topics:
            # An exclusion is a phrase like any other, so leftmost-longest matching lets it
            # take the place of the shorter keyword inside it; it only adds no topic itself.
            for phrase in topic.exclude:
                self._topics_of.setdefault(phrase, [])
        self._matcher = KeywordMatcher(self._topics_of)

    def tag(self, text: str, words: Sequence[str] | None = None) -> list[TopicMatch]:
        """Topics found in ``text``, each with its [start, end) character spans.

        With ``words`` (the text's segmentation, which the analyzer has anyway) a match must
        not cut a word on both sides: 慢 counts in 太慢了 but not in 慢慢来's neighbour words,
        and no phrase counts from the middle of a longer word. A one-character phrase must be
        a word of its own.
        """
        return self._tagged(text, words, {})

    def _tagged(self, text: str, words: Sequence[str] | None,
                edges_of: dict[int, set[int] | None], key: int = 0) -> list[TopicMatch]:
        """:meth:`tag`, keeping the word edges it computes in ``edges_of[key]`` for
        :meth:`tag_many`, which needs them again for the text's learned topics."""
        spans: dict[str, list[tuple[int, int]]] = {}
        names: dict[str, str] = {}
        found = self._matcher.find(text)
        edges = edges_of[key] = _word_edges(text, words) if found else None
        for phrase, start, end in found:
            if edges is not None and not _on_edges(edges, start, end):
                continue
            for topic in self._topics_of[phrase]:
                spans.setdefault(topic.id, []).append((start, end))
                names[topic.id] = topic.name
        return [TopicMatch(id=tid, name=names[tid], evidence=sp) for tid, sp in spans.items()]

    def tag_many(self, texts: Sequence[str],
                 words: Sequence[Sequence[str]] | None = None) -> list[list[TopicMatch]]:
        """Topics of each text (:meth:`tag_scanned`, without the learned tagger's pass)."""
        return self.tag_scanned(texts, words)[0]

    def tag_scanned(self, texts: Sequence[str], words: Sequence[Sequence[str]] | None = None
                    ) -> tuple[list[list[TopicMatch]], TextScan | None]:
        """Topics of each text: keyword matches alone, or combined with the learned tagger.

        The model runs once over the batch, and once more over the clauses of the texts it
        decided a learned topic for, to point at the characters that decided it: a topic found
        without a phrase gets that span as its evidence, a topic kept with a phrase gets it after
        the phrase spans (the phrase may sit in another clause than what the text says about
        the topic: a subject's 故障 against the body's 断网). ``words`` are the texts'
        segmentations (see :meth:`tag`). The learned tagger's whole-text pass comes back with
        the topics (None without a tagger): the NLP stage hands its char n-grams to the stance
        model.
        """
        known_edges: dict[int, set[int] | None] = {}
        keyword = [self._tagged(t, w, known_edges, i)
                   for i, (t, w) in enumerate(zip(texts, words if words is not None else [None] * len(texts),
                                                  strict=True))]
        if self.tagger is None:
            return keyword, None
        # Per-clause decisions score the clauses anyway: evidence reads the same margins.
        clauses = self.tagger.clause_margins(texts) if self.tagger.clause_mix is not None else None
        scan = self.tagger.scan(texts)
        decided = self.tagger.combine(texts, [[m.id for m in found] for found in keyword], clauses=clauses,
                                      read=(scan.margins, scan.has_evidence))
        learned = {t for t in self.tagger.topics if self.tagger.support[t] >= MIN_EXAMPLES}
        result: list[list[TopicMatch]] = []
        pending: list[tuple[int, str]] = []
        for i, (found, ids) in enumerate(zip(keyword, decided, strict=True)):
            result.append([m for m in found if m.id in ids])
            pending.extend((i, tid) for tid in ids if tid in learned)
        if pending:
            # A text without a phrase match has no edges yet (None; never an empty set).
            edges = {i: known_edges[i] or _word_edges(texts[i], None if words is None else words[i])
                     for i in dict.fromkeys(i for i, _ in pending)}
            self._place_model_topics(self.tagger, scan, pending, result, edges, clauses)
        return result, scan

    def _place_model_topics(self, tagger: AspectTagger, scan: TextScan,
                            pending: list[tuple[int, str]], result: list[list[TopicMatch]],
                            edges: Mapping[int, set[int] | None],
                            scored: tuple[list[list[Span]], np.ndarray, np.ndarray] | None = None) -> None:
        """Add to each decided learned topic the stretches that decided it
        (:func:`_deciding_spans`): after a kept topic's phrase spans (those that overlap none of
        them), or as the evidence of a model-only topic (and its parents). ``scored`` are the
        clause margins of every text when the decision read them (:meth:`AspectTagger.clause_margins`,
        at most its ``clause_cap`` clauses, so a clause that decided a topic is among them);
        otherwise the clauses of the texts with a pending topic are scored here, all of them,
        from the whole-text pass ``scan`` (:meth:`AspectTagger.read_clauses`), which also gives the
        chosen clauses' n-grams."""
        texts = scan.located.texts
        first: dict[int, int] = {}
        if scored is not None:
            clauses = {i: scored[0][i] for i, _ in pending}
            margins = scored[1]
            first = {i: int(scored[2][i]) for i in clauses if scored[2][i] >= 0}
        else:
            clauses = {i: [m.span() for m in EVIDENCE_CLAUSE.finditer(texts[i])] or [(0, len(texts[i]))]
                       for i in dict.fromkeys(i for i, _ in pending)}
            # Every clause of these texts is read once, for its margins and its n-grams; a text
            # of one clause needs no margins (that clause is the best one), but its n-grams.
            order = sorted(clauses)
            flat = [(i, clause) for i in order for clause in clauses[i]]
            read = tagger.read_clauses(scan, flat)
            margins = read.margins
            offset = 0
            for i in order:
                if len(clauses[i]) > 1:
                    first[i] = offset
                offset += len(clauses[i])
        column = {t: k for k, t in enumerate(tagger.topics)}
        chosen: list[list[Span]] = []
        for i, tid in pending:
            k = column[tid]
            if i in first:
                own = margins[first[i]: first[i] + len(clauses[i]), k]
                picked = _evidence_clauses(own, float(tagger.fused_thresholds[k]) - tagger.evidence["clause_slack"],
                                           int(tagger.evidence["clauses_max"]))
            else:
                picked = [0]
            chosen.append([clauses[i][c] for c in picked])
        # The n-grams of every chosen clause, each clause once however many topics point into
        # it, weighed for all its topics at once.
        if scored is not None:
            needed = {key: n for n, key in enumerate(dict.fromkeys(
                (i, clause) for (i, _), held in zip(pending, chosen, strict=True) for clause in held))}
            read = tagger.read_clauses(scan, list(needed))
        else:
            needed = {key: n for n, key in enumerate(flat)}
        found = iter(tagger.clause_spans(read, [(needed[i, clause], tid) for (i, tid), held
                                                in zip(pending, chosen, strict=True) for clause in held]))
        for (i, tid), held in zip(pending, chosen, strict=True):
            spans: list[Span] = []
            for clause in held:
                spans.extend(_deciding_spans(clause, next(found), edges[i]))
            at = {m.id: n for n, m in enumerate(result[i])}
            if tid in at:
                kept = result[i][at[tid]]
                new = [s for s in spans if not any(a < s[1] and s[0] < b for a, b in kept.evidence)]
                if new:
                    result[i][at[tid]] = TopicMatch(id=kept.id, name=kept.name,
                                                    evidence=[*kept.evidence, *new])
                continue
            for topic in self._chain[tid]:
                if topic.id not in at:
                    result[i].append(TopicMatch(id=topic.id, name=topic.name, evidence=spans))
                    at[topic.id] = len(result[i]) - 1


EVIDENCE_CLAUSE = CLAUSE_SPLIT
"""A stretch the evidence of a learned topic stays within: a clause of :data:`CLAUSE`, also
split at enumeration commas, colons and white space (a call transcript's pauses are spaces, so
one of its turns is one clause of :data:`CLAUSE`); the clauses the per-clause decision scores.
Linear, as :data:`CLAUSE` is."""

def _evidence_clauses(margins: np.ndarray, floor: float, most: int) -> list[int]:
    """The clauses (indexes, in text order) that hold a learned topic's evidence: the one the
    model scores highest, and those it scores at least ``floor`` on their own (the topic's
    fused cut less the artifact's ``clause_slack``), at most ``most`` of them, the highest
    first (:data:`services.nlp.aspect_tagger.EVIDENCE_FIT`)."""
    # A text has a handful of clauses: a sort of plain floats (stable, as the ranking always
    # was: of equal margins the earlier clause first) costs less than numpy calls on them.
    values: list[float] = margins.tolist()
    ranked = sorted(range(len(values)), key=values.__getitem__, reverse=True)[:max(most, 1)]
    return sorted({ranked[0], *(c for c in ranked if values[c] >= floor)})


def _deciding_spans(clause: Span, found: list[Span], edges: set[int] | None) -> list[Span]:
    """Within a clause, the stretches whose n-grams raised a topic's margin (``found``:
    :meth:`AspectTagger.evidence_spans` of the clause's text), each widened to the segmenter's
    word edges inside the clause (a stretch that starts or ends inside a word gets the whole
    word: 玩手机 for 手机 in 全程玩手机 when the segmenter reads 玩 手机 as words, never half a
    word); the clause when no n-gram raised it."""
    if not found:
        return [clause]
    a, b = clause
    return [_widened(a + x, a + y, a, b, edges) for x, y in found]


def _widened(start: int, end: int, low: int, high: int, edges: set[int] | None) -> Span:
    """``[start, end)`` grown to the nearest word edges within ``[low, high)``."""
    if edges is None:
        return (start, end)
    while start > low and start not in edges:
        start -= 1
    while end < high and end not in edges:
        end += 1
    return (start, end)


def _word_edges(text: str, words: Sequence[str] | None) -> set[int] | None:
    """Offsets where a word starts or ends; None when the words do not spell the text."""
    if words is None:
        return None
    edges = {0, *accumulate(map(len, words))}
    return edges if max(edges) == len(text) else None


def _on_edges(edges: set[int], start: int, end: int) -> bool:
    if end - start == 1:
        return start in edges and end in edges
    return start in edges or end in edges


def load_taxonomy(path: Path | None = None) -> Taxonomy:
    """Load and validate a taxonomy file (the shipped default when ``path`` is None).

    A tagger named by the file must list only topics of the taxonomy: a model trained for
    another taxonomy would otherwise tag ids no one can resolve.
    """
    file = ConfigFile.read(path, __package__, "taxonomy.yaml", "taxonomy", "VOC_TAXONOMY_PATH")
    spec = file.validate(TaxonomySpec)
    _refuse_blank_phrases(spec, file)
    base = path.parent if path else Path(str(resources.files(__package__)))
    spec = _with_packs(spec, base)
    _check_exclusions(spec, file)
    if not spec.tagger:
        return Taxonomy(spec, None)
    try:
        tagger = AspectTagger.load(base / spec.tagger)
    except (OSError, KeyError, ValueError) as exc:
        raise file.refuse(("tagger",), f"tagger {spec.tagger} does not load: {exc}") from exc
    unknown = sorted(set(tagger.topics) - {t.id for t in spec.topics})
    if unknown:
        raise file.refuse(("tagger",), f"tagger {spec.tagger} knows topics {unknown} that the "
                          "taxonomy lacks; retrain it with `voc nlp train-topics` for this "
                          "taxonomy")
    return Taxonomy(spec, tagger)


def taxonomy_file(path: Path | None = None) -> Path:
    """The taxonomy file in use: ``path``, or the shipped one."""
    return path or Path(str(resources.files(__package__))) / "taxonomy.yaml"


def load_terms(path: Path | None = None) -> list[str]:
    """Every keyword and synonym of the taxonomy's topics, its lexicon packs' included,
    without loading its tagger: what tells a phrase no topic names (docs/emerging.md)."""
    file = ConfigFile.read(path, __package__, "taxonomy.yaml", "taxonomy", "VOC_TAXONOMY_PATH")
    spec = _with_packs(file.validate(TaxonomySpec), taxonomy_file(path).parent)
    return [term for topic in spec.topics for term in (*topic.keywords, *topic.synonyms)]


def load_taxonomy_spec(path: Path | None = None) -> TaxonomySpec:
    """The taxonomy file's topics (ids, display names, parents, stages) without its packs and
    tagger: what readers that only name topics need (GET /v1/taxonomy)."""
    file = ConfigFile.read(path, __package__, "taxonomy.yaml", "taxonomy", "VOC_TAXONOMY_PATH")
    return file.validate(TaxonomySpec)


def _with_packs(spec: TaxonomySpec, base: Path) -> TaxonomySpec:
    """The taxonomy with the phrases of its lexicon packs added to their topics.

    A pack naming a topic the taxonomy lacks is refused (its phrases would silently tag
    nothing), and so is a blank phrase in a pack, for the reason it is refused in the taxonomy.
    """
    if not spec.packs:
        return spec
    topics = {t.id: t.model_copy(deep=True) for t in spec.topics}
    for name in spec.packs:
        pack_file = ConfigFile.read(base / name, __package__, name, "lexicon pack",
                                    "VOC_TAXONOMY_PATH")
        pack = pack_file.validate(LexiconPack)
        for tid, extra in pack.topics.items():
            if tid not in topics:
                raise pack_file.refuse(("topics", tid), f"lexicon pack {name} names topic "
                                       f"{tid!r}, which the taxonomy lacks; known topics: "
                                       f"{sorted(topics)}")
            for kind in ("keywords", "exclude"):
                for k, phrase in enumerate(getattr(extra, kind)):
                    if not phrase.strip():
                        raise pack_file.refuse(("topics", tid, kind, k), f"topic {tid} has a "
                                               f"blank entry in {kind}; remove it")
            topic = topics[tid]
            topic.keywords = list(dict.fromkeys((*topic.keywords, *extra.keywords)))
            topic.exclude = list(dict.fromkeys((*topic.exclude, *extra.exclude)))
    return spec.model_copy(update={"topics": list(topics.values())})


def _check_exclusions(spec: TaxonomySpec, file: ConfigFile) -> None:
    """Each exclusion must hold one of its topic's phrases and not be one: leftmost-longest
    matching lets it replace only a phrase inside it, so one that holds none guards nothing."""
    for t, topic in enumerate(spec.topics):
        phrases = {*topic.keywords, *topic.synonyms}
        for context in topic.exclude:
            if context in phrases:
                raise file.refuse(("topics", t, "exclude"), f"topic {topic.id}: {context!r} is both a "
                                  "keyword and an exclusion; keep one")
            if not any(p in context for p in phrases):
                raise file.refuse(("topics", t, "exclude"), f"topic {topic.id}: exclusion {context!r} holds "
                                  "none of the topic's keywords, so it guards nothing; write the "
                                  "context around the keyword it guards (手续费 for 手续)")


def _refuse_blank_phrases(spec: TaxonomySpec, file: ConfigFile) -> None:
    """A keyword or synonym that is empty or only spaces would tag its topic in every text."""
    for kind in ("keywords", "synonyms", "exclude"):
        for t, topic in enumerate(spec.topics):
            for k, phrase in enumerate(getattr(topic, kind)):
                if not phrase.strip():
                    raise file.refuse(("topics", t, kind, k), f"topic {topic.id} has a blank "
                                      f"entry in {kind}; remove it")


def dataset_ids(spec: TaxonomySpec) -> dict[str, str]:
    """Labels a labelled data set may use for each topic (its id or its name), mapped to the id.

    Public corpora label aspects either in Chinese (价格) or with ASCII ids; a taxonomy written
    for such a corpus uses the corpus label as ``name`` or as ``id``, so both are accepted.
    """
    return {**{t.name: t.id for t in spec.topics}, **{t.id: t.id for t in spec.topics}}


def train_topics(taxonomy_path: Path, data_path: Path, out_dir: Path, holdout: float = 0.0,
                 seed: int = 42) -> dict[str, Any]:
    """Train a learned tagger for a taxonomy from labelled JSONL and save it to ``out_dir``.

    Rows are ``{"text", "aspects": [...]}`` with aspects named by topic id or name (see
    :func:`dataset_ids`). The taxonomy's own keyword matches are the fusion input, so the saved
    tagger belongs to that taxonomy: point its ``tagger:`` at ``out_dir`` to use it. With
    ``holdout`` > 0 a stratified share of rows is kept out of training and scored, and the
    saved model is the one trained without it, so the figures describe what is shipped.
    """
    from services.nlp.aspect_tagger import (
        f1_scores,
        read_aspect_examples,
        topic_strata,
        train_tagger,
    )
    from services.nlp.sentiment_model import holdout_mask

    taxonomy = load_taxonomy(taxonomy_path)
    examples = read_aspect_examples(data_path, dataset_ids(taxonomy.spec))
    mask = holdout_mask(topic_strata(examples), holdout, seed) if holdout > 0 else [False] * len(examples)
    train = [ex for ex, held in zip(examples, mask, strict=True) if not held]
    test = [ex for ex, held in zip(examples, mask, strict=True) if held]
    tagger = train_tagger([ex.text for ex in train], [ex.topics for ex in train],
                          topics=[t.id for t in taxonomy.spec.topics],
                          keyword_sets=[[m.id for m in taxonomy.tag(ex.text)] for ex in train], seed=seed)
    tagger.save(out_dir)
    report: dict[str, Any] = {"train_rows": len(train), "holdout_rows": len(test), "support": tagger.support}
    if test:
        texts = [ex.text for ex in test]
        report["holdout_combined"] = f1_scores(
            [ex.topics for ex in test], tagger.combine(texts, [[m.id for m in taxonomy.tag(t)] for t in texts]))
    return report


def taxonomy_paths(path: Path | None) -> list[Path]:
    """The files the taxonomy at ``path`` is read from: the file and the lexicon packs it
    lists (only the file when it does not parse: its packs are unknown until it does)."""
    if path is None:
        return []
    try:
        packs = load_taxonomy_spec(path).packs
    except (OSError, ValueError):
        return [path]
    return [path, *(path.parent / name for name in packs)]


class TaxonomyWatch:
    """Whether the taxonomy file or one of its lexicon packs was edited since the last look:
    a pack edit changes the topics' keywords as much as a taxonomy edit does. The packs
    watched are those the file lists, looked up again after each change (a pack added to
    ``packs:`` is watched from then on). The shipped taxonomy (None) never changes."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._files = {p: Watched(p) for p in taxonomy_paths(path)}

    def changed(self) -> bool:
        """True once per edit of any of the files since the last call."""
        changed = [watched.changed() for watched in self._files.values()]
        if not any(changed):
            return False
        self._files = {p: self._files.get(p) or Watched(p) for p in taxonomy_paths(self.path)}
        return True


class TaxonomyFile:
    """The taxonomy the NLP stage tags with, reloaded when its file's or one of its lexicon
    packs' mtime changes (a topic added from an emerging phrase applies to the next batch,
    without a restart).

    A broken edit is logged and the previous taxonomy stays in force. The shipped taxonomy
    (no ``VOC_TAXONOMY_PATH``) never changes under a running process and is not watched.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._watch = TaxonomyWatch(path)

    def reload_if_changed(self) -> Taxonomy | None:
        """The taxonomy when the file or a pack changed and it loads; None otherwise."""
        if not self._watch.changed():
            return None
        try:
            taxonomy = load_taxonomy(self.path)
        except ValueError as exc:
            log.error("taxonomy NOT reloaded; the previous one stays in force", error=str(exc))
            return None
        log.info("taxonomy reloaded", path=str(self.path), topics=len(taxonomy.spec.topics))
        return taxonomy


class TaxonomyNames:
    """The taxonomy's topics as readers that only name them see it (GET /v1/taxonomy): read
    again when the file changed, so a topic added through the API shows its name at once; a
    broken edit is logged and the previous topics stay."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._watch = TaxonomyWatch(path)
        self._spec = load_taxonomy_spec(path)

    def current(self) -> TaxonomySpec:
        if self._watch.changed():
            try:
                self._spec = load_taxonomy_spec(self.path)
            except ValueError as exc:
                log.error("taxonomy names NOT reloaded; the previous ones stay",
                          error=str(exc))
        return self._spec


class TaxonomyEditError(ValueError):
    """A taxonomy change that cannot be made, saying why and what to do."""


def add_to_taxonomy(path: Path, *, topic: str, keywords: Sequence[str],
                    name: str | None = None, parent: str | None = None) -> bool:
    """Add ``keywords`` to topic ``topic`` of the taxonomy file at ``path``, or create the topic
    (with ``name``, under ``parent``) when there is none; True when a topic was created.

    The edited file must load as the NLP stage loads it (load_taxonomy) before it replaces
    the old one, which is kept next to it as ``<name>.bak``; the replacement is one rename,
    so the stage never reads half a file. The file is written by the YAML dumper: its comments
    are not kept (the .bak has them).
    """
    text = path.read_text(encoding="utf-8")
    document = yaml.safe_load(text) or {}
    topics = document.setdefault("topics", [])
    found = next((t for t in topics if t.get("id") == topic), None)
    created = found is None
    if found is None:
        if not name:
            raise TaxonomyEditError(f"topic {topic!r} does not exist: give its name to create "
                                    "it, or name an existing topic")
        found = {"id": topic, "name": name, "keywords": []}
        if parent:
            found["parent"] = parent
        topics.append(found)
    known = set(found.get("keywords") or [])
    found["keywords"] = [*(found.get("keywords") or []),
                         *(k for k in dict.fromkeys(keywords) if k not in known)]
    document["version"] = int(document.get("version") or 1) + 1
    candidate = path.with_name(f".{path.name}.new")
    candidate.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False),
                         encoding="utf-8")
    try:
        load_taxonomy(candidate)
    except ValueError as exc:
        candidate.unlink()
        raise TaxonomyEditError(f"the change would make {path} invalid: {exc}") from exc
    path.with_name(f"{path.name}.bak").write_text(text, encoding="utf-8")
    os.replace(candidate, path)
    return created


def restore_taxonomy(path: Path) -> None:
    """Put back the file :func:`add_to_taxonomy` replaced last (its ``.bak``), in one rename:
    undoes a change whose record could not be written. The ``.bak`` stays."""
    previous = path.with_name(f".{path.name}.old")
    previous.write_bytes(path.with_name(f"{path.name}.bak").read_bytes())
    os.replace(previous, path)
