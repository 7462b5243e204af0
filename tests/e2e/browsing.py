"""Chromium on the dashboard for the browser tests: launched the one way this machine allows
(Debian's binary, no sandbox, no background networking), and a page on a running API that
collects the page's script errors, so that each test only says what it looks at and asserts
that nothing threw."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from services.core.settings import Settings
from services.core.store import Store
from tests.pipeline_harness import running

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(),
                                    reason="needs Debian chromium: make system-deps")


@asynccontextmanager
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-background-networking"])
        try:
            yield chromium
        finally:
            await chromium.close()


@dataclass
class Dashboard:
    """The running API's URL and a desktop-sized page; ``errors`` holds every uncaught script
    error the page raised, which a test asserts empty at its end."""

    api: str
    page: Any
    errors: list[str] = field(default_factory=list)


@asynccontextmanager
async def dashboard(settings: Settings, stages: Sequence[str], bootstrap: str, store: Store,
                    height: int = 900) -> AsyncIterator[Dashboard]:
    """``stages`` (ingest among them, which serves the dashboard) running on ``store`` with a
    Chromium page opened beside them."""
    async with running(settings, stages, bootstrap, store=store) as api, browser() as chromium:
        page = await chromium.new_page(viewport={"width": 1280, "height": height})
        shown = Dashboard(api, page)
        page.on("pageerror", lambda error: shown.errors.append(str(error)))
        yield shown


async def shoot(page: Any, name: str, full_page: bool = True) -> None:
    """A screenshot into build/screenshots/ once the charts have finished drawing."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.wait_for_timeout(600)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)
