"""The waiting helpers (tests/waiting.py) that the integration and e2e tiers rely on instead of
fixed sleeps: each must return as soon as it may and fail when it should."""

from __future__ import annotations

import itertools
import time

import pytest

from tests.conftest import run
from tests.waiting import _pauses, eventually, eventually_sync, stays_true, stays_true_sync


def test_eventually_returns_once_the_condition_holds() -> None:
    calls = itertools.count(1)

    async def third_time() -> bool:
        return next(calls) >= 3

    started = time.monotonic()
    run(eventually(third_time, 10, "the third call", interval_s=0.01))
    assert next(calls) == 4 and time.monotonic() - started < 5
    assert eventually_sync(lambda: True, 10, "at once") < 5


def test_eventually_checks_again_soon_then_every_interval() -> None:
    """A condition that holds at the third check ends the wait after two short pauses (0.05 s
    and 0.075 s), not two whole intervals (1 s at 0.5 s); the pauses then grow to interval_s."""
    calls = itertools.count(1)
    assert run(eventually(lambda: next(calls) >= 3, 10, "the third check")) < 1.0
    sync_calls = itertools.count(1)
    assert eventually_sync(lambda: next(sync_calls) >= 3, 10, "the third check") < 1.0
    pauses = _pauses(0.5)
    assert [round(next(pauses), 4) for _ in range(8)] == [
        0.05, 0.075, 0.1125, 0.1688, 0.2531, 0.3797, 0.5, 0.5]
    assert next(_pauses(0.01)) == 0.01, "a shorter interval_s is never exceeded"


def test_eventually_fails_naming_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match="waiting for the moon after"):
        run(eventually(lambda: False, 0.05, lambda: "the moon after 0 tries", interval_s=0.01))
    with pytest.raises(AssertionError, match="timed out after 0.05s waiting for the sun"):
        eventually_sync(lambda: False, 0.05, "the sun", interval_s=0.01)


def test_stays_true_watches_the_whole_window() -> None:
    calls = itertools.count(1)
    started = time.monotonic()
    run(stays_true(lambda: next(calls) > 0, 0.1, "quiet", interval_s=0.01))
    assert time.monotonic() - started >= 0.1 and next(calls) > 3
    stays_true_sync(lambda: True, 0.05, "quiet", interval_s=0.01)


def test_stays_true_fails_when_the_condition_breaks_inside_the_window() -> None:
    calls = itertools.count(1)
    with pytest.raises(AssertionError, match="no alert stopped holding"):
        run(stays_true(lambda: next(calls) < 3, 10, "no alert", interval_s=0.01))
    sync_calls = itertools.count(1)
    with pytest.raises(AssertionError, match="no letter stopped holding"):
        stays_true_sync(lambda: next(sync_calls) < 3, 10, "no letter", interval_s=0.01)
