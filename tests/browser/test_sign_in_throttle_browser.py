"""The sign-in throttle and a password reset in Chromium: the form says when to try again, and a reset ends the
session an open page holds."""

from __future__ import annotations

import dataclasses
import re
import time
import uuid
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from playwright.sync_api import Page, expect

from infra.settings import Settings
from review_ui.cli import ui
from tests.review_ui_support import PASSWORD, LiveServer, add_operator

WINDOW_S = 12.0


@pytest.fixture(scope="module")
def short_window_server(deployment: Settings) -> Iterator[LiveServer]:
    """A UI whose failure window is short enough to wait out."""
    live = LiveServer(dataclasses.replace(deployment, ui_signin_window_s=WINDOW_S), projection=False)
    yield live
    live.stop()


def _submit(page: Page, username: str, password: str) -> None:
    """Post the form and wait for the page it answers with (an error page looks like the one before it)."""
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("button[type=submit]")


def test_the_eleventh_wrong_password_locks_the_form_and_the_right_one_waits_for_the_window(
        page: Page, short_window_server: LiveServer, deployment: Settings) -> None:
    name = add_operator(deployment, f"form-{uuid.uuid4().hex[:6]}", role="labeller")
    page.goto(f"{short_window_server.url}/login")
    for _ in range(10):
        _submit(page, name, "not the password")
        expect(page.get_by_role("alert").filter(has_text="wrong username or password")).to_be_visible()
    _submit(page, name, "not the password")
    locked = page.get_by_role("alert").filter(has_text="too many failed sign-ins for this account")
    expect(locked).to_be_visible()
    _submit(page, name, PASSWORD)
    expect(locked).to_be_visible()
    expect(page).to_have_url(re.compile(r"/login"))

    deadline = time.monotonic() + 3 * WINDOW_S
    while locked.count() and time.monotonic() < deadline:  # wait as long as the page says, then try again
        time.sleep(int(re.search(r"try again in (\d+) s", locked.inner_text()).group(1)))
        _submit(page, name, PASSWORD)
    expect(page).to_have_url(re.compile(r"/queue$"))


def test_a_password_reset_sends_an_open_page_to_sign_in_and_only_the_new_password_opens_it(
        page: Page, server: LiveServer, deployment: Settings) -> None:
    name = add_operator(deployment, f"reset-{uuid.uuid4().hex[:6]}", role="labeller")
    page.goto(f"{server.url}/queue")
    _submit(page, name, PASSWORD)
    expect(page).to_have_url(re.compile(r"/queue$"))
    env = {"WASTEX_TOPIC_PREFIX": deployment.topic_prefix, "WASTEX_POSTGRES_DB": deployment.postgres_db}
    new_password = f"new-{uuid.uuid4().hex}"
    result = CliRunner().invoke(ui, ["create-operator", name, "--reset", "--password-stdin"],
                                input=f"{new_password}\n", env=env)
    assert result.exit_code == 0, result.output

    page.click("nav >> text=Counts")
    expect(page).to_have_url(re.compile(r"/login\?next=/counts$"))
    expect(page.get_by_role("status")).to_contain_text("password changed")
    _submit(page, name, PASSWORD)
    expect(page.get_by_role("alert").filter(has_text="wrong username or password")).to_be_visible()
    _submit(page, name, new_password)
    expect(page).to_have_url(re.compile(r"/counts$"))
