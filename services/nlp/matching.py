"""Matching engines for the patterns deployments write (urgency cues, taxonomy keywords).

Every byte of customer text is hostile, and a deployment's YAML is written by people who do
not think about backtracking: Python's ``re`` takes exponential time on ``(嗯+)+$``-like
patterns, and holding the GIL it stops every service in the process. So what deployments
supply never reaches ``re``:

- urgency cues are regular expressions compiled with RE2 (``google-re2``), whose automata run
  in time linear in the text for one search. Syntax RE2 lacks (look-around, backreferences,
  possessive quantifiers) is refused at load with the file, the line and RE2's reason.
- taxonomy keywords are literal phrases matched with one Aho-Corasick automaton
  (``ahocorasick-rs``): O(text + matches) whatever the number of keywords. RE2 compiles a
  large alternation too, but with thousands of Chinese keywords it measured tens of seconds
  per 100 KB, while the automaton takes milliseconds.

One search is linear, but a ``finditer`` restarts after each match, and a pattern like
``a.*b|a`` rescans to the end of the text for each of up to n matches. Hence the cap on the
matches read per text (:data:`MAX_CUE_MATCHES`), which bounds a cue scan at
``(MAX_CUE_MATCHES + 1)`` linear searches.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import ahocorasick_rs
import re2

MAX_CUE_MATCHES = 100
"""Most matches of one urgency flag read from one text: evidence needs a few spans, and
reading more would let a pattern rescan the text once per match (quadratic)."""


SCREEN_MEMORY = 32 << 20
"""RE2's memory budget for one set of cue patterns (:func:`screen`), in bytes; RE2's default
is 8 MiB.

A set's automaton builds its states lazily, from the text it meets, and keeps them within two
thirds of this budget; when they outgrow it, RE2 throws them all away and builds them again.
The urgency set of round 12 outgrew 8 MiB: on the shared dev reviews read twice over, 10,000
texts at a time, it never settled and cost 14-32 µs a text from start to end, where with 16 MiB
or more it settled at 3.4-5 µs after about 50,000 texts (the stance cue set settled at about 4.5
µs either way; ``python bench/cue_sets.py``). The states take what the texts need, not the
budget: the urgency set's took about 10 MB of resident memory, 7 MB with the default. A text
crafted to visit many states costs a reset, not more memory."""


def _options(max_mem: int | None = None) -> Any:
    options = re2.Options()
    options.log_errors = False  # the error is raised to the caller with the file and line
    if max_mem is not None:
        options.max_mem = max_mem
    return options


_OPTIONS = _options()


def compile_cue(pattern: str) -> Any:
    """The RE2 form of one deployment pattern; raises ValueError saying why it was refused."""
    try:
        compiled = re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(
            exc.args[0], bytes) else str(exc)
        raise ValueError(f"not a valid regex for RE2 ({reason}); cues are RE2 syntax: no "
                         "look-around (?=, (?!, (?<=, (?<!, no backreferences \\1, no "
                         "possessive or atomic groups") from None
    if compiled.search("") is not None:
        raise ValueError("matches the empty string, so it would flag every text; "
                         "make every alternative match at least one character")
    return compiled


def screen(patterns: Sequence[Any], max_mem: int = SCREEN_MEMORY) -> Any:
    """One RE2 set of ``patterns``: a single pass tells which of them occur in a text at all,
    so most texts (no cue) cost one scan instead of one per pattern. Its automaton may hold up
    to ``max_mem`` bytes (:data:`SCREEN_MEMORY`; ``bench/cue_sets.py`` passes RE2's default to
    compare)."""
    found = re2.Set.SearchSet(_options(max_mem))
    for pattern in patterns:
        found.Add(pattern.pattern)
    found.Compile()
    return found


def cue_spans(pattern: Any, text: str) -> Iterator[tuple[str, int, int]]:
    """(matched text, start, end) of the non-empty matches, in characters, at most
    :data:`MAX_CUE_MATCHES` matches read (empty ones included, since each costs a search)."""
    for count, match in enumerate(pattern.finditer(text)):
        if count >= MAX_CUE_MATCHES:
            return
        start, end = match.span()
        if end > start:
            yield match.group(), start, end


class KeywordMatcher:
    """Leftmost-longest, non-overlapping occurrences of literal phrases, as ``re`` would find
    them with an alternation sorted longest first, in O(text + matches)."""

    def __init__(self, phrases: Iterable[str]) -> None:
        self.phrases: list[str] = sorted(set(phrases), key=lambda p: (-len(p), p))
        if "" in self.phrases:
            raise ValueError("an empty keyword would match everywhere")
        self._automaton = ahocorasick_rs.AhoCorasick(
            self.phrases, matchkind=ahocorasick_rs.MatchKind.LeftmostLongest)

    def find(self, text: str) -> list[tuple[str, int, int]]:
        """(phrase, start, end) of each occurrence, character offsets into ``text``."""
        return [(self.phrases[i], start, end)
                for i, start, end in self._automaton.find_matches_as_indexes(text)]
