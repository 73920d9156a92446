"""The System page of a running deployment: each worker's health and model, and live charts from Prometheus."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from infra.settings import Settings
from tests.observed_system import ObservedSystem, start_observed_system
from tests.review_ui_support import PASSWORD


@pytest.fixture(scope="module")
def system(deployment: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObservedSystem]:
    started = start_observed_system(deployment, tmp_path_factory.mktemp("observed"))
    yield started
    started.stop()


def test_the_system_page_shows_each_worker_and_charts_the_last_hour(page: Page, system: ObservedSystem,
                                                                    screenshots: Path) -> None:
    time.sleep(3 * system.settings.prometheus_scrape_s)  # Prometheus has scraped the scored images by then
    page.goto(f"{system.ui.url}/system")
    page.fill("input[name=username]", system.operator)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile("/system$"))
    expect(page.locator("nav a.current")).to_have_text("System")
    expect(page.locator("#prometheus-error")).to_be_hidden()

    scoring = system.processes["scoring"]
    worker = page.locator(f'#worker-rows tr[data-instance="{scoring.instance}"]')
    expect(worker).to_contain_text("observed-1")
    expect(worker).to_contain_text("ok")
    expect(page.locator(f'#worker-rows tr[data-instance="{system.processes["builder"].instance}"]')).to_contain_text(
        "ok")
    for process in system.processes.values():  # every process Prometheus scrapes, each up
        expect(page.locator(f'#process-rows tr[data-instance="{process.instance}"]').first).to_contain_text("up")

    # Lines, not the "no data" note: images by outcome, OOD rate, latency quantiles and lag per worker.
    expect(page.locator("#throughput-legend li")).to_have_count(3)  # classified, ood, dead_letter
    for chart in ("throughput", "ood_rate", "latency", "lag"):
        expect(page.locator(f"#{chart}-chart :is(polyline, circle)").first).to_be_attached()
    expect(page.locator("#latency-legend")).to_contain_text("p99")
    page.screenshot(path=str(screenshots / "system.png"), full_page=True)
