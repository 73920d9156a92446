"""Roles in headless Chromium: a labeller sees no admin controls; an admin promotes and sees the audit trail."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from playwright.sync_api import Browser, Page, expect

from infra.db.registry import promote
from infra.settings import Settings
from tests.review_ui_support import PASSWORD, LiveServer, add_operator, dataset_version, registered_model


def _signed_in_page(browser: Browser, server: LiveServer, username: str) -> Page:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.goto(f"{server.url}/models")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/models$"))
    return page


def test_a_labeller_sees_no_admin_controls_and_an_admins_promotion_shows_in_the_trail(
        browser: Browser, server: LiveServer, deployment: Settings, screenshots: Path) -> None:
    first = registered_model(deployment, f"br-a-{uuid.uuid4().hex[:6]}")
    second = registered_model(deployment, f"br-b-{uuid.uuid4().hex[:6]}")
    promote(deployment, first, "test", source="test")
    version = dataset_version(deployment, f"bv-{uuid.uuid4().hex[:6]}")
    labeller = _signed_in_page(browser, server, add_operator(deployment, f"bl-{uuid.uuid4().hex[:6]}",
                                                             role="labeller"))
    admin_name = add_operator(deployment, f"ba-{uuid.uuid4().hex[:6]}", role="admin")
    admin = _signed_in_page(browser, server, admin_name)
    try:
        expect(labeller.locator(f'tr[data-model="{second}"]')).to_be_visible()
        expect(labeller.locator("button.promote")).to_have_count(0)
        expect(labeller.locator("#rollback")).to_have_count(0)
        expect(labeller.locator("nav a", has_text="Import")).to_have_count(0)
        labeller.goto(f"{server.url}/versions")
        expect(labeller.locator(f'tr[data-version="{version}"]')).to_be_visible()
        expect(labeller.locator("#create-version")).to_have_count(0)
        labeller.goto(f"{server.url}/versions/{version}")
        expect(labeller.locator("#class-stats")).to_be_visible()
        expect(labeller.locator("#activate")).to_have_count(0)
        labeller.screenshot(path=str(screenshots / "labeller-version.png"), full_page=True)

        expect(admin.locator("nav a", has_text="Import")).to_be_visible()
        admin.locator(f'tr[data-model="{second}"] button.promote').click()
        expect(admin.locator(".banner.ok")).to_contain_text(f"{second}")
        expect(admin.locator(f'tr[data-model="{second}"]')).to_have_class("serving")
        expect(admin.locator("#rollback")).to_have_text(f"Roll back to {first}")
        labeller.goto(f"{server.url}/models")  # now there is something to roll back to, and still no button
        expect(labeller.locator(f'tr[data-model="{second}"]')).to_have_class("serving")
        expect(labeller.locator("#rollback")).to_have_count(0)
        promoted = admin.locator(f'#audit-trail tr[data-action="promote"][data-subject="{second}"]')
        expect(promoted.locator(".audit-operator")).to_have_text(admin_name)
        admin.screenshot(path=str(screenshots / "admin-models.png"), full_page=True)
        admin.goto(f"{server.url}/versions")
        expect(admin.locator("#create-version")).to_be_visible()
        admin.goto(f"{server.url}/versions/{version}")
        expect(admin.locator("#activate")).to_be_visible()
    finally:
        labeller.context.close()
        admin.context.close()
