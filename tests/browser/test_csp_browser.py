"""The Content-Security-Policy in a real browser: Swagger UI, the staff pages (htmx, Chart.js)
and the admin work under it, and the browser reports no violation."""

import re

import pytest
from playwright.sync_api import expect

from tests.test_staff_pages import build_world

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def violations(page):
    """Console messages about the policy (Chromium: "Refused to … because it violates …")."""
    found = []
    page.on("console", lambda message: found.append(message.text)
            if "Content Security Policy" in message.text or "Refused to" in message.text else None)
    return found


def test_swagger_ui_renders_every_operation_under_the_policy(page, violations, db):
    page.goto("/api/docs/")
    expect(page.locator(".opblock").first).to_be_visible()
    expect(page.locator(".opblock")).to_have_count(5)
    expect(page.get_by_text("Rewards Catalogue API").first).to_be_visible()
    page.locator(".opblock-summary").first.click()
    expect(page.locator(".opblock-body").first).to_be_visible()
    assert violations == []


def test_staff_pages_and_admin_work_under_the_policy(page, violations, settings):
    settings.STAFF_BULK_WORKER_THREAD = False
    world = build_world()
    world.staff.is_staff = world.staff.is_superuser = True
    world.staff.save()
    page.goto("/staff/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("pass")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Find a customer")).to_be_visible()
    page.goto("/staff/dashboard/?days=30")
    page.wait_for_function("window.staffCharts && Object.keys(window.staffCharts).length === 4")
    page.goto("/admin/catalogue/couponseries/")
    expect(page.get_by_text(re.compile(r"\(low\)"))).to_be_visible()  # the one allowed inline style
    color = page.get_by_text(re.compile(r"\(low\)")).evaluate("node => getComputedStyle(node).color")
    assert color == "rgb(186, 33, 33)"
    page.goto("/admin/catalogue/reward/add/")
    expect(page.locator("#reward_form")).to_be_visible()
    assert violations == []
