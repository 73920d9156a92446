"""Browser tests drive Debian's chromium through Playwright against a live review UI on an isolated deployment."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from infra.services import all_services
from infra.settings import Settings
from tests.review_ui_support import LiveServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# The machine is shared with model training: give each expectation room beyond Playwright's 5 s default.
TIMEOUT_MS = 20_000
expect.set_options(timeout=TIMEOUT_MS)
SCREENSHOTS = Path(os.environ.get("WASTEX_SCREENSHOT_DIR", Path(tempfile.gettempdir()) / "wastex-screens"))


@pytest.fixture(scope="session", autouse=True)
def running_services(settings: Settings) -> None:
    unhealthy = [s.name for s in (svc.status() for svc in all_services(settings)) if not s.healthy]
    if unhealthy:
        pytest.fail(f"services not healthy: {', '.join(unhealthy)}; run `wastex infra up` first", pytrace=False)
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing; run scripts/install-chromium (make test does)", pytrace=False)


@pytest.fixture(scope="module")
def server(deployment: Settings) -> Iterator[LiveServer]:
    live = LiveServer(deployment)
    yield live
    live.stop()


# Module scope: Playwright's sync API keeps an event loop running in this thread while it is open, which would
# break `asyncio.run` in tests collected after this folder.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        # Debian's chromium, never a downloaded one (`playwright install` is not used).
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture()
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    yield opened
    context.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
