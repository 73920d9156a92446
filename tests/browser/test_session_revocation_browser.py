"""Revoked sessions in Chromium: an open page is sent to the sign-in page, with the reason, at its next request."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from click.testing import CliRunner
from playwright.sync_api import Browser, Page, expect

from infra.settings import Settings
from review_ui.cli import ui
from tests.review_ui_support import PASSWORD, LiveServer, add_operator

ENDED = "your session was ended: signed out everywhere, password changed or account deactivated"


def _sign_in(page: Page, server: LiveServer, username: str) -> None:
    page.goto(f"{server.url}/queue")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/queue$"))


def test_a_deactivated_operators_open_page_goes_to_sign_in_with_the_reason(
        page: Page, server: LiveServer, deployment: Settings) -> None:
    name = add_operator(deployment, f"gone-{uuid.uuid4().hex[:6]}", role="labeller")
    _sign_in(page, server, name)
    env = {"WASTEX_TOPIC_PREFIX": deployment.topic_prefix, "WASTEX_POSTGRES_DB": deployment.postgres_db}
    result = CliRunner().invoke(ui, ["deactivate", name], env=env)
    assert result.exit_code == 0, result.output
    page.click("nav >> text=Counts")
    expect(page).to_have_url(re.compile(r"/login\?next=/counts$"))
    expect(page.get_by_role("status")).to_contain_text(ENDED)
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.get_by_role("alert").filter(has_text="wrong username or password")).to_be_visible()


def test_sign_out_everywhere_ends_the_session_in_another_browser(
        page: Page, browser: Browser, server: LiveServer, deployment: Settings, screenshots: Path) -> None:
    name = add_operator(deployment, f"both-{uuid.uuid4().hex[:6]}", role="labeller")
    other_context = browser.new_context()
    try:
        other = other_context.new_page()
        _sign_in(page, server, name)
        _sign_in(other, server, name)
        page.screenshot(path=str(screenshots / "sign-out-everywhere.png"))
        page.get_by_role("button", name="Sign out everywhere").click()
        expect(page).to_have_url(re.compile(r"/login$"))
        expect(page.get_by_role("status")).to_contain_text(f"every session of {name} has ended")
        other.reload()
        expect(other).to_have_url(re.compile(r"/login\?next=/queue$"))
        expect(other.get_by_role("status")).to_contain_text(ENDED)
    finally:
        other_context.close()
