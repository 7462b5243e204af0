"""``make screenshots``: retake every picture README.md and docs/ show, from a fresh
``voc up --demo``, so that anyone gets the same pictures the same way (not a test: pytest
collects only ``test_*.py``).

It starts ``voc up --demo`` on free ports in a temporary directory (the embedded chdb default,
with no inherited ``VOC_*`` setting but the few below), polls the API until the demo has
produced what each view needs (bounded: a demo that never gets there is an error naming what
is missing, with the log's tail), opens each view in Chromium at 1280x800 and writes the
pictures into docs/screenshots/ under the names the docs use; then it stops ``voc up`` and
removes the directory. The set of pictures is the set the docs reference: a reference without
a recipe here, or a recipe nobody references, is an error before anything starts.

Settings of the run, each so that a view has something to show within minutes:
``VOC_EMERGING_WINDOW_S=60`` (a 5-minute window would need a 7-minute baseline first) and
``VOC_DIMENSION_MAX_VALUES=4`` (the demo's five cities and six agents then show the folded ``other`` row).
The demo feed repeats the same phrases all the time, so nothing it says is ever emerging: once
store_pickup has a baseline, the script posts one burst of a complaint no topic names
(小票打印不出来, from 24 customers), as a user of the tour would post feedback, and the
新话题 view shows that window.

Run: ``.venv/bin/python -m tests.e2e.screenshots`` from the repository root (``--out DIR`` to
write elsewhere, ``--api URL`` to shoot a demo already running). About five minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.browsing import CHROMIUM, browser
from tests.unit.test_docs_links import DOCS, links

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "docs" / "screenshots"
VOC = Path(sys.executable).with_name("voc")
VIEWPORT = {"width": 1280, "height": 800}
RUN_SETTINGS = {"VOC_EMERGING_WINDOW_S": "60", "VOC_DIMENSION_MAX_VALUES": "4"}
DEMO_TOUCHPOINTS = {"app_checkout", "delivery", "hotline", "store_pickup"}
READY_S = 120.0
"""Bound on the API answering after ``voc up`` starts."""
DEMO_S = 600.0
"""Bound on each thing the demo should produce for the views."""
DRAW_MS = 800
"""A chart's draw time (ECharts animates); the only fixed wait, after the data is on the page."""
SELECTOR_MS = 30_000
BASELINE_EVENTS = 220
"""store_pickup's events before the emerging window, over VOC_EMERGING_MIN_BASELINE_VOLUME
(200) so the detector judges the burst."""
BURST_TOUCHPOINT = "store_pickup"
BURST_TEXTS = ("小票打印不出来，在店里干等，很差", "自提的时候小票打印不出来，很差",
               "小票打印不出来，很差")
"""Untagged by the taxonomy, so they also form a cluster; 很差 is store_pickup's usual word."""
BURST_SIZE = 24


class NotReady(RuntimeError):
    """The demo did not produce what a view needs within the bound."""


def referenced() -> set[str]:
    """The file names of docs/screenshots/ that README.md and docs/*.md show."""
    names = set()
    for doc in DOCS:
        for _, target in links(doc):
            path = (doc.parent / target).resolve()
            if path.parent == SHOTS.resolve() and path.suffix == ".png":
                names.add(path.name)
    return names


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Demo:
    """``voc up --demo`` as a child process in ``home``, its output in ``home/voc.log``."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.log = home / "voc.log"
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("VOC_")}
        env.update(RUN_SETTINGS, VOC_DATA_DIR=str(home / "data"), VOC_HTTP_PORT=str(self.port),
                   VOC_LOCAL_BROKER_PORT=str(free_port()))
        with self.log.open("wb") as out:
            self.process = subprocess.Popen([str(VOC), "up", "--demo"], cwd=home, env=env,
                                            stdout=out, stderr=subprocess.STDOUT)
        self.started = time.monotonic()

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(encoding="utf-8", errors="replace")
                         .splitlines()[-lines:])

    def stop(self) -> None:
        """SIGINT, as Ctrl-C: voc up flushes, commits and stops its broker."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def until(what: str, check: Callable[[], Awaitable[Any]], demo: Demo | None,
                bound_s: float = DEMO_S) -> Any:
    """Poll ``check`` until it returns something truthy; a bounded wait that names ``what``.
    ``demo``: the child whose exit ends the wait early (None: a demo run by someone else)."""
    deadline = time.monotonic() + bound_s
    while True:
        if demo and demo.process.poll() is not None:
            raise NotReady(f"voc up exited ({demo.process.returncode}) while waiting for "
                           f"{what}; its log ends:\n{demo.tail()}")
        try:
            found = await check()
        except (httpx.HTTPError, KeyError, IndexError, ValueError):
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            raise NotReady(f"no {what} after {bound_s:.0f} s of the demo"
                           + (f"; its log ends:\n{demo.tail()}" if demo else ""))
        await asyncio.sleep(1.0)


async def demo_ready(client: httpx.AsyncClient, demo: Demo | None) -> dict[str, Any]:
    """Wait for everything the views show; return what the recipes need to know (the detractor
    whose timeline is shown, the emerging window's end)."""

    async def get(path: str, **params: Any) -> Any:
        response = await client.get(path, params=params)
        response.raise_for_status()
        return response.json()

    await until("answer from the API", lambda: get("/healthz"), demo, READY_S)

    async def touchpoints() -> bool:
        answer = await get("/v1/touchpoints")
        return {t["touchpoint"] for t in answer["touchpoints"]} >= DEMO_TOUCHPOINTS

    async def rules_fired() -> bool:
        rules = {c["rule_id"] for c in await get("/v1/cases")}
        return {"negative-share-high", "detractor-callback"} <= rules

    async def quadrant() -> bool:
        tps = (await get("/v1/drivers", touchpoint="delivery"))["touchpoints"]
        return sum(1 for k in tps[0]["key_experiences"] if k.get("quadrant")) >= 3

    async def detractor() -> str | None:
        from services.ingest.demo_feed import DETRACTORS

        best: tuple[int, str] | None = None
        for customer in DETRACTORS:
            timeline = await get(f"/v1/customers/{customer}/timeline")
            if timeline["cases"]:
                best = max(best or (0, customer), (len(timeline["items"]), customer))
        return best[1] if best and best[0] >= 3 else None

    async def baseline() -> bool:
        answer = await get("/v1/emerging", touchpoint=BURST_TOUCHPOINT,
                           end=(datetime.now(UTC) - timedelta(seconds=55)).isoformat())
        return sum(t["volume"] + t["baseline_volume"] for t in answer["touchpoints"]) \
            >= BASELINE_EVENTS

    await until("touchpoint of the demo's four", touchpoints, demo)
    await until("negative-share alert and callback case", rules_fired, demo)
    async def coaching() -> bool:
        return bool((await get("/v1/contact-center/coaching", limit=1))["calls"])

    async def effort() -> bool:
        answer = await get("/v1/feedback", touchpoint="delivery", effort="true", page_size=1)
        return int(answer["total"]) >= 3

    await until("coaching call", coaching, demo)
    await until("effort-flagged feedback", effort, demo)
    await until("three topics placed in delivery's quadrant", quadrant, demo)
    customer = await until("detractor with a case and three answers", detractor, demo)
    await until(f"{BURST_TOUCHPOINT} baseline of {BASELINE_EVENTS} events", baseline, demo)
    end = await burst(client, demo, get)
    return {"customer": customer, "emerging_end": end}


async def burst(client: httpx.AsyncClient, demo: Demo | None,
                get: Callable[..., Awaitable[Any]]) -> str:
    """Post the complaint no topic names and wait until the detector and the clusters show it;
    the emerging window's end (an ISO instant) that holds it."""
    from services.ingest.demo_feed import DIMENSION_VALUES

    cities = DIMENSION_VALUES["city"]
    run = datetime.now(UTC).strftime("%H%M%S")
    events = [{"source": "screenshots", "external_id": f"receipt-{run}-{i}", "channel": "web",
               "touchpoint": BURST_TOUCHPOINT, "text": BURST_TEXTS[i % len(BURST_TEXTS)],
               "customer_id": f"c-receipt-{run}-{i:02d}", "segment": "老客",
               "metadata": {"city": cities[i % len(cities)], "campaign": "会员日"}}
              for i in range(BURST_SIZE)]
    response = await client.post("/v1/feedback/batch", json={"events": events})
    response.raise_for_status()
    end = (datetime.now(UTC) + timedelta(seconds=5)).replace(microsecond=0)
    stamp = end.isoformat().replace("+00:00", "Z")

    async def rising() -> bool:
        answer = await get("/v1/emerging", end=stamp)
        return bool(answer["overall"]["phrases"])

    async def clustered() -> bool:
        return bool((await get("/v1/emerging/clusters", end=stamp))["clusters"])

    await until("emerging phrase from the burst", rising, demo, 120)
    await until("cluster of the burst", clustered, demo, 60)
    return stamp


Shot = Callable[[Any, str, dict[str, Any], Path], Awaitable[None]]


async def settle(page: Any) -> None:
    await page.wait_for_timeout(DRAW_MS)


async def overview(page: Any, api: str, facts: dict[str, Any], out: Path) -> None:
    await page.goto(f"{api}/dashboard/#/overview")
    await page.wait_for_selector('.tile[data-touchpoint="delivery"].firing', timeout=SELECTOR_MS)
    await page.wait_for_selector("#firing li", timeout=SELECTOR_MS)
    await settle(page)
    await page.screenshot(path=str(out / "overview.png"))


async def journey(page: Any, api: str, facts: dict[str, Any], out: Path) -> None:
    await page.goto(f"{api}/dashboard/#/journey")
    await page.wait_for_function(
        "() => Number(document.querySelector('#journey-chart')?.dataset.cells) >= 8",
        timeout=SELECTOR_MS)
    await settle(page)
    await page.screenshot(path=str(out / "journey.png"))


async def journey_range(page: Any, api: str, facts: dict[str, Any], out: Path) -> None:
    await page.goto(f"{api}/dashboard/#/journey")
    await page.wait_for_selector("#journey-chart canvas", timeout=SELECTOR_MS)
    await page.select_option("#journey-range", "7d")
    await page.select_option("#journey-metric", "complaint_rate")
    await page.wait_for_function(
        "() => Number(document.querySelector('#journey-chart').dataset.cells) >= 8")
    await settle(page)
    await page.locator("main").screenshot(path=str(out / "journey-range.png"))


async def touchpoint(page: Any, api: str, facts: dict[str, Any], out: Path) -> None:
    """The touchpoint page, its quadrant, its effort panel and the effort-flagged comments."""
    await page.goto(f"{api}/dashboard/#/touchpoint/delivery")
    for selector in ("#trend-sentiment canvas", "#verbatims mark", "#drivers table tbody tr",
                     "#quadrant-chart canvas", "#effort [data-metric]"):
        await page.wait_for_selector(selector, timeout=SELECTOR_MS)
    await settle(page)
    await page.screenshot(path=str(out / "touchpoint.png"))
    trends = await page.locator("#trend-sentiment").bounding_box()
    await page.screenshot(path=str(out / "effort.png"), clip={
        "x": 0, "y": 0, "width": VIEWPORT["width"], "height": trends["y"] + trends["height"] + 12})
    await page.locator("#quadrant-chart").screenshot(path=str(out / "quadrant.png"))
    await page.click("#effort a")
    await page.wait_for_selector("#drill-list li mark", timeout=SELECTOR_MS)
    await settle(page)
    await page.screenshot(path=str(out / "effort-drill.png"))


async def alerts(page: Any, api: str, facts: dict[str, Any], out: Path) -> None:
    """The alerts page, the negative-share alert's explanation, and the comments it quotes."""
    await page.goto(f"{api}/dashboard/#/alerts")
    await page.wait_for_selector('#alert-feed tr[data-status="firing"]', timeout=SELECTOR_MS)
    await page.wait_for_selector("tr[data-case-id]", timeout=SELECTOR_MS)
    await settle(page)
    await page.screenshot(path=str(out / "alerts.png"))
    row = page.locator('#alert-feed tr[data-status="firing"]',
                       has=page.locator("details.explain")).filter(
                           has_text="negative-share-high").first
    await row.locator("details.explain summary").click()
    await settle(page)
    await row.screenshot(path=str(out / "alert-explanation.png"))
    await row.locator("a.drill-quoted").click()
    await page.wait_for_selector("#drill-list li mark", timeout=SELECTOR_MS)
    await settle(page)
    await page.screenshot(path=str(out / "drill.png"))


async def segments(page: Any, api: str, facts: dict[str, Any], out: Path) -> None:
    await page.goto(f"{api}/dashboard/#/segments?by=city&days=7")
    await page.wait_for_selector("#dimension-figures tr.other", timeout=SELECTOR_MS)
    await settle(page)
    await page.screenshot(path=str(out / "segments.png"))


async def agents(page: Any, api: str, facts: dict[str, Any], out: Path) -> None:
    await page.goto(f"{api}/dashboard/#/agents")
    await page.wait_for_selector("#scorecard button.link", timeout=SELECTOR_MS)
    await page.wait_for_selector("#coaching li", timeout=SELECTOR_MS)
    await page.locator("#coaching details.transcript summary").first.click()
    await settle(page)
    await page.screenshot(path=str(out / "agents.png"))


async def customer(page: Any, api: str, facts: dict[str, Any], out: Path) -> None:
    await page.goto(f"{api}/dashboard/#/customer/{facts['customer']}")
    await page.wait_for_selector("#customer-cases li", timeout=SELECTOR_MS)
    await page.wait_for_selector("#timeline li", timeout=SELECTOR_MS)
    await settle(page)
    await page.screenshot(path=str(out / "customer.png"))


async def emerging(page: Any, api: str, facts: dict[str, Any], out: Path) -> None:
    await page.goto(f"{api}/dashboard/#/emerging/{facts['emerging_end']}")
    await page.wait_for_selector(".emerging-phrases button.phrase", timeout=SELECTOR_MS)
    await page.wait_for_selector(".emerging-cluster", timeout=SELECTOR_MS)
    await page.locator(".emerging-phrases button.phrase").first.click()
    await page.wait_for_selector("#emerging-comments li", timeout=SELECTOR_MS)
    await settle(page)
    await page.screenshot(path=str(out / "emerging.png"), full_page=True)


RECIPES: dict[tuple[str, ...], Shot] = {
    ("overview.png",): overview,
    ("journey.png",): journey,
    ("journey-range.png",): journey_range,
    ("touchpoint.png", "quadrant.png", "effort.png", "effort-drill.png"): touchpoint,
    ("alerts.png", "alert-explanation.png", "drill.png"): alerts,
    ("segments.png",): segments,
    ("agents.png",): agents,
    ("customer.png",): customer,
    ("emerging.png",): emerging,
}


def check_recipes() -> None:
    made = {name for names in RECIPES for name in names}
    shown = referenced()
    if made != shown:
        raise SystemExit(
            f"the docs show pictures no recipe takes: {sorted(shown - made)}; recipes take "
            f"pictures no doc shows: {sorted(made - shown)} (tests/e2e/screenshots.py RECIPES)")


async def shoot_all(api: str, facts: dict[str, Any], out: Path) -> None:
    async with browser() as chromium:
        page = await chromium.new_page(viewport=VIEWPORT)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        for names, recipe in RECIPES.items():
            await recipe(page, api, facts, out)
            if errors:
                raise RuntimeError(f"the page threw while taking {names}: {errors}")
            print(f"  wrote {', '.join(names)}", flush=True)


async def main(out: Path, api: str | None) -> None:
    check_recipes()
    if not CHROMIUM.exists():
        raise SystemExit(f"needs Debian's chromium at {CHROMIUM}: make system-deps")
    out.mkdir(parents=True, exist_ok=True)
    if api:
        async with httpx.AsyncClient(base_url=api, timeout=30) as client:
            facts = await demo_ready(client, None)
        await shoot_all(api, facts, out)
        return
    with tempfile.TemporaryDirectory(prefix="voc-screenshots-") as home:
        demo = Demo(Path(home))
        print(f"voc up --demo on {demo.api} in {home}", flush=True)
        try:
            async with httpx.AsyncClient(base_url=demo.api, timeout=30) as client:
                facts = await demo_ready(client, demo)
            print(f"demo ready after {time.monotonic() - demo.started:.0f} s", flush=True)
            await shoot_all(demo.api, facts, out)
        finally:
            demo.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=SHOTS, help="where the pictures go")
    parser.add_argument("--api", help="shoot a `voc up --demo` already running at this URL "
                        "(started with the settings above) instead of starting one")
    args = parser.parse_args()
    try:
        asyncio.run(main(args.out, args.api))
    except NotReady as exc:
        raise SystemExit(f"make screenshots: {exc}") from exc
