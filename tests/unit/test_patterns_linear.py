"""Every pattern that runs over customer text runs in linear time: found by the test itself.

The test does not trust a list of patterns. It imports every module under ``services`` and
takes every compiled pattern (``re`` or RE2) it holds at module level, also inside tuples,
lists and dicts (``pii._RULES``); it loads the shipped urgency cues and every shipped taxonomy
the way the NLP stage does; and it reads the source of every module, so that a pattern
compiled anywhere but at module level (where it could not be found) fails the test until it is
moved there or put on ``INLINE_ALLOWED`` with the reason. Patterns known not to run over
customer text are on ``NOT_CUSTOMER_TEXT``, each with the reason.

Each pattern is then run (``finditer`` to the end, what ``sub``/``findall`` cost) on inputs of
100 KB built from its own parse tree: every character its classes accept and reject, each
literal piece, a sample match and that sample less its last character (a near miss), each
repeated body pumped and followed by characters it does not accept (no terminator). The bound
is generous, 1 s of CPU per input, since a linear pattern takes milliseconds and a quadratic or
exponential one takes minutes to forever; an alarm stops a runaway scan. ``test_the_harness_
catches_backtracking`` proves it fails on the two patterns issue 14 found.

Pydantic ``Field(pattern=...)`` constraints are not here: pydantic-core matches them with
Rust's ``regex`` crate, which is linear by construction.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from re import _constants as sre_c
from re import _parser as sre_parse
from typing import Any

import pytest
import re2

import services
from services.core import channels, normalize, pii
from services.ingest.email_message import html_to_text
from services.nlp import taxonomies
from services.nlp.cues import intent_of, load_urgency
from services.nlp.effort import read_effort
from services.nlp.matching import cue_spans
from services.nlp.taxonomy import load_taxonomy

SIZE = 100_000
BOUND_S = 1.0
ALARM_S = 3.0
GROWTH = 8.0
"""How much longer than at a quarter of its size an input over the bound may take: a linear
scan about 4 times, a quadratic one about 16."""
ROOT = Path(services.__file__).parent

NOT_CUSTOMER_TEXT = {
    # Our own migration files, split into statements for a cluster's ON CLUSTER form.
    "services.core.cluster_ddl._CREATE": "schemas/clickhouse/*.sql, shipped DDL",
    "services.core.cluster_ddl._ORDER_BY": "schemas/clickhouse/*.sql, shipped DDL",
    "services.core.cluster_ddl._ALTER": "schemas/clickhouse/*.sql, shipped DDL",
    "services.core.migrations._ADD_COLUMN": "schemas/clickhouse/*.sql, shipped DDL",
    "services.core.cluster_ddl._IDENTIFIER": "VOC_CLICKHOUSE_CLUSTER and the database name",
    "services.core.migrations._CLUSTER_ALTER": "cluster DDL generated from shipped DDL",
    "services.core.migrations._ADDED": "cluster DDL generated from shipped DDL",
    "services.core.settings._CLUSTER_NAME": "VOC_CLICKHOUSE_CLUSTER",
    "services.core.store._HOSTS": "alt_hosts of VOC_CLICKHOUSE_URL",
    # The API keys file an operator writes (hashes only).
    "services.core.access._HEX": "VOC_API_KEYS_FILE and VOC_INGEST_API_KEYS_FILE entries",
    # Lines of the shipped and the operator's jieba user dictionary.
    "services.nlp.segmenter._USER_DICT_LINE": "user_dict.txt / VOC_JIEBA_USER_DICT lines",
    # Webhook URLs from the operator's rules file.
    "services.alerting.webhooks._HOOK_TOKEN": "webhook URLs of the rules file",
    "services.alerting.webhooks._TOKEN_CHARS": "webhook URL path segments of the rules file",
}

# Calls of re/re2 functions other than a module-level ``NAME = re.compile(...)``, by
# (file, enclosing function, function called), with where their pattern is covered.
INLINE_ALLOWED = {
    ("nlp/matching.py", "compile_cue", "compile"):
        "compiles deployment cues; the loaded cues are timed below (urgency_targets)",
}
_MATCHING_CALLS = {"compile", "search", "match", "fullmatch", "finditer", "findall", "sub",
                   "subn", "split"}


@dataclass(frozen=True)
class Target:
    """Something that scans customer text, with the pattern its inputs are derived from."""

    name: str
    scan: Callable[[str], object]
    source: str
    flags: int = 0


# --- discovery -----------------------------------------------------------------------------

_RE2_TYPE = type(re2.compile("x"))


def _is_pattern(value: object) -> bool:
    return isinstance(value, re.Pattern | _RE2_TYPE)


def _patterns_in(value: object, depth: int = 0) -> Iterator[Any]:
    if _is_pattern(value):
        yield value
    elif depth < 3 and isinstance(value, tuple | list | set | frozenset):
        for item in value:
            yield from _patterns_in(item, depth + 1)
    elif depth < 3 and isinstance(value, dict):
        for item in value.values():
            yield from _patterns_in(item, depth + 1)


def module_patterns() -> dict[str, Any]:
    """Every compiled pattern held at module level in services.*, named after the module that
    defines it (not one that imports it)."""
    found: dict[int, tuple[int, str, Any]] = {}
    for info in pkgutil.walk_packages(services.__path__, "services."):
        module = importlib.import_module(info.name)
        source = Path(module.__file__ or "").read_text(encoding="utf-8")
        for attr, value in vars(module).items():
            defined_here = re.search(rf"^{re.escape(attr)}\s*[:=]", source, re.MULTILINE)
            # Best name: a pattern's own assignment, then a container of it defined here.
            rank = 2 * bool(defined_here) + _is_pattern(value)
            for index, pattern in enumerate(_patterns_in(value)):
                name = f"{module.__name__}.{attr}" + ("" if _is_pattern(value) else f"[{index}]")
                if id(pattern) not in found or rank > found[id(pattern)][0]:
                    found[id(pattern)] = (rank, name, pattern)
    return {name: pattern for _, name, pattern in found.values()}


def _code_targets() -> list[Target]:
    targets = []
    for name, pattern in sorted(module_patterns().items()):
        if name in NOT_CUSTOMER_TEXT:
            continue
        flags = pattern.flags if isinstance(pattern, re.Pattern) else 0
        targets.append(Target(name, lambda s, p=pattern: sum(1 for _ in p.finditer(s)),
                              pattern.pattern, flags))
    return targets


def urgency_targets() -> list[Target]:
    cues = load_urgency()
    return [Target(f"urgency.yaml:{flag}", lambda s, p=p: list(cue_spans(p, s)), p.pattern)
            for flag, p in cues.patterns.items()]


def taxonomy_targets() -> list[Target]:
    files = [None, *sorted(Path(taxonomies.__file__).parent.glob("*.yaml"))]
    targets = []
    for path in files:
        taxonomy = load_taxonomy(path)
        matcher = taxonomy._matcher
        # The keywords as one alternation of literals: its parse tree yields them as pieces.
        source = "|".join(re.escape(p) for p in matcher.phrases)
        targets.append(Target(f"taxonomy:{path.name if path else 'taxonomy.yaml'}",
                              matcher.find, source))
    return targets


def _function_name(tree: ast.Module, node: ast.AST) -> str:
    for func in ast.walk(tree):
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef) and \
                func.lineno <= node.lineno <= (func.end_lineno or func.lineno):
            return func.name
    return "<module>"


def inline_pattern_calls() -> list[tuple[str, str, str, int]]:
    """re/re2 matching calls that are not a module-level ``NAME = re.compile(...)``."""
    calls = []
    for path in sorted(ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        module_level = {id(stmt.value) for stmt in tree.body
                        if isinstance(stmt, ast.Assign | ast.AnnAssign) and stmt.value is not None}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and isinstance(node.func.value, ast.Name) \
                    and node.func.value.id in ("re", "re2") \
                    and node.func.attr in _MATCHING_CALLS \
                    and not (node.func.attr == "compile" and id(node) in module_level):
                rel = str(path.relative_to(ROOT))
                calls.append((rel, _function_name(tree, node), node.func.attr, node.lineno))
    return calls


# --- adversarial inputs from a pattern's parse tree -----------------------------------------

_POOL = ["a", "Z", "x", "0", "1", "9", "中", "嗯", "。", "，", "!", "?", "@", "#", "<", ">",
         "[", "]", "(", ")", "/", ":", ".", "-", "_", "*", "\n", "\t", " ", "\u3000", "\x00",
         "😡", "ｘ", "１", "\u200b"]
_CATEGORY_CHARS = {
    sre_c.CATEGORY_DIGIT: "1１", sre_c.CATEGORY_SPACE: " \u3000\n", sre_c.CATEGORY_WORD: "a中_1",
    sre_c.CATEGORY_NOT_DIGIT: "a中", sre_c.CATEGORY_NOT_SPACE: "a中", sre_c.CATEGORY_NOT_WORD: "!。 ",
}


def _class_chars(items: list[tuple[Any, Any]], flags: int) -> list[str]:
    """Characters a [class] accepts: a few of each literal, range and category, or, for a
    negated class, the characters of a varied pool it accepts."""
    if any(op is sre_c.NEGATE for op, _ in items):
        source = "".join(_class_source(op, av) for op, av in items if op is not sre_c.NEGATE)
        try:
            negated = re.compile(f"[^{source}]", flags & re.IGNORECASE)
        except re.error:
            return ["a"]
        return [c for c in _POOL if negated.fullmatch(c)]
    chars: list[str] = []
    for op, av in items:
        if op is sre_c.LITERAL:
            chars.append(chr(av))
        elif op is sre_c.RANGE:
            lo, hi = av
            chars += [chr(lo), chr((lo + hi) // 2), chr(hi)]
        elif op is sre_c.CATEGORY:
            chars += list(_CATEGORY_CHARS.get(av, "a"))
    return chars


def _class_source(op: Any, av: Any) -> str:
    if op is sre_c.LITERAL:
        return re.escape(chr(av))
    if op is sre_c.RANGE:
        return f"{re.escape(chr(av[0]))}-{re.escape(chr(av[1]))}"
    if op is sre_c.CATEGORY:
        return {sre_c.CATEGORY_DIGIT: r"\d", sre_c.CATEGORY_SPACE: r"\s", sre_c.CATEGORY_WORD: r"\w",
                sre_c.CATEGORY_NOT_DIGIT: r"\D", sre_c.CATEGORY_NOT_SPACE: r"\S",
                sre_c.CATEGORY_NOT_WORD: r"\W"}.get(av, "")
    return ""


@dataclass
class Pieces:
    chars: list[str]
    literals: list[str]
    pumps: list[str]


def _walk(data: Any, flags: int, pieces: Pieces) -> None:
    run = ""
    for op, av in data:
        if op is sre_c.LITERAL:
            run += chr(av)
            pieces.chars.append(chr(av))
            continue
        if len(run) > 1:
            pieces.literals.append(run)
        run = ""
        if op is sre_c.IN:
            pieces.chars += _class_chars(av, flags)
        elif op is sre_c.NOT_LITERAL:
            pieces.chars += [c for c in _POOL if c != chr(av)][:3]
        elif op is sre_c.ANY:
            pieces.chars += ["a", "中"]
        elif op is sre_c.BRANCH:
            for branch in av[1]:
                _walk(branch, flags, pieces)
        elif op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, sre_c.POSSESSIVE_REPEAT):
            _min, high, sub = av
            if high > 1:
                pieces.pumps += _samples(sub, flags)
            _walk(sub, flags, pieces)
        elif op is sre_c.SUBPATTERN:
            _walk(av[-1], flags, pieces)
        elif op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
            _walk(av[1], flags, pieces)
        elif op is sre_c.ATOMIC_GROUP:
            _walk(av, flags, pieces)
    if len(run) > 1:
        pieces.literals.append(run)


def _sample(data: Any, flags: int) -> str:
    """A short string the (sub)pattern is likely to match: first choices, fewest repeats."""
    out = []
    for op, av in data:
        if op is sre_c.LITERAL:
            out.append(chr(av))
        elif op is sre_c.IN:
            out.append((_class_chars(av, flags) or ["a"])[0])
        elif op is sre_c.NOT_LITERAL:
            out.append("a" if chr(av) != "a" else "b")
        elif op is sre_c.ANY:
            out.append("a")
        elif op is sre_c.BRANCH:
            out.append(_sample(av[1][0], flags))
        elif op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, sre_c.POSSESSIVE_REPEAT):
            out.append(_sample(av[2], flags) * max(av[0], 1))
        elif op is sre_c.SUBPATTERN:
            out.append(_sample(av[-1], flags))
        elif op is sre_c.ATOMIC_GROUP:
            out.append(_sample(av, flags))
    return "".join(out)


def _samples(data: Any, flags: int) -> list[str]:
    """A sample per alternative of the (sub)pattern's outermost alternation."""
    items = list(data)
    while len(items) == 1 and items[0][0] is sre_c.SUBPATTERN:
        items = list(items[0][1][-1])
    if len(items) == 1 and items[0][0] is sre_c.BRANCH:
        return [s for s in (_sample(b, flags) for b in items[0][1][1][:40]) if s]
    sample = _sample(items, flags)
    return [sample] if sample else []


def _first(values: list[str], limit: int) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))[:limit]


def adversarial_inputs(source: str, flags: int = 0, size: int = SIZE) -> list[tuple[str, str]]:
    """(description, text of ``size`` characters) pairs built from the pattern's own pieces."""
    try:
        tree = sre_parse.parse(source, flags)
    except re.error:  # RE2-only syntax: the literal characters of the source still serve
        chars = _first([c for c in source if c not in "\\()[]{}|?*+.^$"], 20)
        return [(f"{c!r} repeated", (c * size)[:size]) for c in chars]
    pieces = Pieces([], [], [])
    _walk(tree.data, flags, pieces)
    samples = _samples(tree.data, flags)
    inputs: list[tuple[str, str]] = []

    def fill(unit: str, tail: str = "") -> str:
        return unit * max(1, (size - len(tail)) // len(unit)) + tail

    for char in _first(pieces.chars, 24):
        inputs.append((f"{char!r} repeated", fill(char)))
    for literal in _first(pieces.literals, 8):
        inputs.append((f"{literal!r} repeated", fill(literal)))
    for sample in _first(samples, 12):
        inputs.append((f"sample {sample!r} repeated", fill(sample)))
        if len(sample) > 1:
            inputs.append((f"near miss {sample[:-1]!r} repeated", fill(sample[:-1])))
    for pump in _first(pieces.pumps, 12):
        for terminator in ("x", "\x00", "!"):
            inputs.append((f"{pump!r} pumped then {terminator!r}", fill(pump, terminator)))
        for prefix in _first([s[:3] for s in samples], 2):
            inputs.append((f"{prefix!r} then {pump!r} pumped then 'x'",
                           prefix + fill(pump, "x")[len(prefix):]))
    return list(dict(inputs).items())


# --- timing -------------------------------------------------------------------------------

class _Runaway(Exception):
    pass


def _alarm(*_: object) -> None:
    raise _Runaway


Inputs = Callable[[int], list[tuple[str, str]]]


def _cpu_time(target: Target, text: str, alarm_s: float) -> float:
    """CPU seconds ``target`` took over ``text``; at least ``alarm_s`` if the alarm stopped it.

    This process's CPU time (the machine is shared), and the alarm counts CPU time too
    (SIGPROF); ``re`` checks for signals while it matches.
    """
    started = time.process_time()
    signal.setitimer(signal.ITIMER_PROF, alarm_s)
    try:
        target.scan(text)
    except _Runaway:
        return max(alarm_s, time.process_time() - started)
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
    return time.process_time() - started


def too_slow(target: Target, bound_s: float = BOUND_S, alarm_s: float = ALARM_S,
             inputs: Inputs | None = None, first: bool = False) -> list[str]:
    """The inputs on which ``target`` took longer than the bound and grows faster than linearly.

    An input over the bound is timed again at a quarter of its size, best of three each: a
    linear scan takes about a quarter of the time there, a quadratic one a sixteenth. Only a
    ratio above :data:`GROWTH` (or the alarm) counts, so a busy CI machine that slows a linear
    scan with a hundred thousand matches past the bound (stance._GRIEVANCE once took 1.10 s
    there and 0.35 s idle) does not fail the test, while backtracking still does. (At half
    the size, best of two, with a bar of 3 between the ratios 2 and 4, the harness's own
    linear example once measured over 3 on a busy CI machine, 2026-12-04.)
    """
    def make(size: int) -> list[tuple[str, str]]:
        return inputs(size) if inputs else adversarial_inputs(target.source, target.flags, size)

    slow = []
    previous = signal.signal(signal.SIGPROF, _alarm)
    try:
        for description, text in make(SIZE):
            elapsed = _cpu_time(target, text, alarm_s)
            if elapsed <= bound_s:
                continue
            if elapsed < alarm_s:
                quarter = dict(make(SIZE // 4))[description]
                elapsed = min(elapsed, *(_cpu_time(target, text, alarm_s) for _ in range(2)))
                quartered = min(_cpu_time(target, quarter, alarm_s) for _ in range(3))
                if elapsed <= bound_s or elapsed < GROWTH * quartered:
                    continue
            slow.append(f"{target.name} on {description} ({len(text)} chars): "
                        f"{'stopped after ' if elapsed >= alarm_s else ''}{elapsed:.2f} s")
            if first:
                break
    finally:
        signal.signal(signal.SIGPROF, previous)
    return slow


CODE = _code_targets()


def test_discovery_finds_the_patterns_over_customer_text() -> None:
    """Guards the discovery: the known patterns are found, so a new one would be too."""
    names = {t.name for t in CODE}
    for expected in ("services.core.pii._EMAIL", "services.core.pii._MOBILE",
                     "services.nlp.stance.ACKNOWLEDGEMENT", "services.core.normalize._HISTORY",
                     "services.nlp.taxonomy.CLAUSE", "services.ingest.call_transcript._TRANSFER",
                     "services.nlp.effort.CUES[0]", "services.nlp.effort._COUNT"):
        assert expected in names, sorted(names)
    assert set(NOT_CUSTOMER_TEXT) <= set(module_patterns()), "stale NOT_CUSTOMER_TEXT entries"
    assert len(urgency_targets()) == 4 and len(taxonomy_targets()) >= 2


def test_every_pattern_is_compiled_where_this_test_finds_it() -> None:
    """A pattern compiled or used inline (re.sub(r"...", ...)) would escape the timing."""
    found = {(path, func, call) for path, func, call, _ in inline_pattern_calls()}
    unexpected = sorted(found - set(INLINE_ALLOWED))
    assert not unexpected, ("compile these patterns at module level (NAME = re.compile(...)) "
                            f"so test_patterns_linear times them: {unexpected}")
    assert set(INLINE_ALLOWED) <= found, "stale INLINE_ALLOWED entries"


@pytest.mark.parametrize("target", CODE, ids=lambda t: t.name)
def test_code_patterns_run_in_linear_time(target: Target) -> None:
    assert too_slow(target) == []


@pytest.mark.parametrize("target", urgency_targets() + taxonomy_targets(), ids=lambda t: t.name)
def test_shipped_cue_and_keyword_matching_runs_in_linear_time(target: Target) -> None:
    assert too_slow(target) == []


HOSTILE_UNITS = (
    "嗯", "好的，", "a", "a.", "@a", "1", "１", "1 ", "138-", "#a", "@", "<a b=", "<", "On ",
    "> ", "在", "-", "回复@", "http://", "😡", "[怒", "吗 ", "\n", "\u200b", "a at ", "a艾特b点",
    "圈a", " dot ")


def hostile(size: int) -> list[tuple[str, str]]:
    return [(f"{unit!r} repeated", (unit * size)[:size]) for unit in HOSTILE_UNITS]


@pytest.mark.parametrize("name, scan", [
    ("pii.redact", pii.redact),
    ("channels.analysis_text(email)", lambda s: channels.analysis_text(s, "email")),
    ("channels.analysis_text(social)", lambda s: channels.analysis_text(s, "social")),
    ("normalize.strip_history", normalize.strip_history),
    ("email_message.html_to_text", html_to_text),
    ("cues.intent_of", lambda s: intent_of(s, "neutral")),
    ("urgency.find", load_urgency().find),
    ("effort.read_effort", read_effort),
])
def test_the_text_functions_run_in_linear_time(name: str, scan: Callable[[str], object]) -> None:
    assert too_slow(Target(name, scan, ""), inputs=hostile) == []


def test_the_harness_catches_backtracking() -> None:
    """The inputs and the bound find the two patterns issue 14 reproduced: the nested
    quantifier of the old acknowledgement pattern and the old quadratic email pattern."""
    nested = re.compile(r"^((好的?|嗯+|哦+|收到了?)[，,。！!~～\s]*)+$")
    quadratic = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
    for pattern in (nested, quadratic):
        target = Target("old", lambda s, p=pattern: sum(1 for _ in p.finditer(s)), pattern.pattern)
        assert too_slow(target, bound_s=0.5, alarm_s=0.6, first=True), pattern.pattern


def test_the_harness_tells_a_slow_linear_scan_from_a_quadratic_one() -> None:
    """Over the bound is not enough: a scan that is merely slow (a busy machine, many matches)
    grows linearly and passes, one that grows with the square of the input fails."""
    def linear(text: str) -> int:
        return sum(len(repr(c * 100)) for c in text)

    def quadratic(text: str) -> int:
        return sum(text.count("a", 0, end) for end in range(0, len(text), 25))

    def inputs(size: int) -> list[tuple[str, str]]:
        return hostile(size)[:3]

    assert too_slow(Target("linear", linear, ""), bound_s=0.02, inputs=inputs) == []
    assert too_slow(Target("quadratic", quadratic, ""), bound_s=0.02, inputs=inputs)
