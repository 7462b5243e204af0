"""The one way tests wait: poll a condition instead of sleeping a fixed time.

A fixed sleep is either too short on a loaded machine (a flaky test) or too long everywhere
(a slow suite), and a sleep before "nothing arrived" proves nothing about what happened
during it. ``eventually`` returns as soon as a condition holds; ``stays_true`` checks a
condition again and again over a window, so "nothing happens for N s" is an observed fact.
Both come in an async variant (the condition may be a coroutine function) and a sync one for
tests that drive processes from plain functions.

``eventually`` checks again after 0.05 s, then waits 1.5 times longer each time up to
``interval_s``: most conditions hold within a second or two, and a fixed 0.5 s pause made
each wait end up to half a second after its condition held (hundreds of waits in a run), while
a long wait still checks only about every ``interval_s``.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Iterator

Check = Callable[[], bool | Awaitable[bool]]
What = str | Callable[[], str]


FIRST_PAUSE_S = 0.05
GROWTH = 1.5


def _pauses(interval_s: float) -> Iterator[float]:
    """The pauses between checks of ``eventually``: from FIRST_PAUSE_S up to ``interval_s``."""
    pause = min(FIRST_PAUSE_S, interval_s)
    while True:
        yield pause
        pause = min(pause * GROWTH, interval_s)


def _describe(what: What) -> str:
    """``what`` may be a function so a failure can show state read at that moment (a log tail)."""
    return what() if callable(what) else what


async def _holds(check: Check) -> bool:
    result = check()
    if inspect.isawaitable(result):
        result = await result
    return bool(result)


async def eventually(check: Check, timeout_s: float, what: What, *,
                     interval_s: float = 0.5) -> float:
    """Poll ``check`` until it is true and return the seconds that took; fail naming ``what``
    after ``timeout_s``. Pauses grow to ``interval_s`` (module docstring). The check runs once
    more at the deadline, so a slow check is not cut short by its own duration."""
    started = time.monotonic()
    deadline = started + timeout_s
    pauses = _pauses(interval_s)
    while True:
        if await _holds(check):
            return time.monotonic() - started
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {_describe(what)}")
        await asyncio.sleep(min(next(pauses), max(0.0, deadline - time.monotonic())))


async def stays_true(check: Check, for_s: float, what: What, *,
                     interval_s: float = 0.5) -> None:
    """Check ``check`` every ``interval_s`` for ``for_s`` seconds, first at once and last at
    the end of the window; fail as soon as it is false, naming ``what``."""
    started = time.monotonic()
    deadline = started + for_s
    while True:
        if not await _holds(check):
            raise AssertionError(
                f"{_describe(what)} stopped holding after {time.monotonic() - started:.1f}s "
                f"of {for_s}s")
        left = deadline - time.monotonic()
        if left <= 0:
            return
        await asyncio.sleep(min(interval_s, left))


def eventually_sync(check: Callable[[], bool], timeout_s: float, what: What, *,
                    interval_s: float = 0.5) -> float:
    """``eventually`` for plain functions: poll ``check`` until true, return the seconds."""
    started = time.monotonic()
    deadline = started + timeout_s
    pauses = _pauses(interval_s)
    while True:
        if check():
            return time.monotonic() - started
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {_describe(what)}")
        time.sleep(min(next(pauses), max(0.0, deadline - time.monotonic())))


def stays_true_sync(check: Callable[[], bool], for_s: float, what: What, *,
                    interval_s: float = 0.5) -> None:
    """``stays_true`` for plain functions."""
    started = time.monotonic()
    deadline = started + for_s
    while True:
        if not check():
            raise AssertionError(
                f"{_describe(what)} stopped holding after {time.monotonic() - started:.1f}s "
                f"of {for_s}s")
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(interval_s, left))
