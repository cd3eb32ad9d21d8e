"""The staff pages end to end in a real browser: sign in, find a customer, preview and
issue goodwill, approval by a second staff member, a bulk CSV job to completion,
fulfillment, history, requestId look-up and the dashboard's charts. Screenshots of the
main pages go to test-artifacts/screenshots/."""

import csv
import io
import re
import zoneinfo
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from catalogue import models as cm
from issuance import models as im
from staff.choices import BulkRowStatus, GoodwillStatus
from staff.models import BulkJob, GoodwillRequest
from tests.test_staff_pages import build_world, issue_direct

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def w(settings):
    settings.STAFF_BULK_WORKER_THREAD = True  # the page starts the worker thread, as under `make run`
    return build_world(codes=200)


def sign_in(page, username: str) -> None:
    page.goto("/staff/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("pass")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Find a customer")).to_be_visible()


def nav(page, name: str):
    return page.get_by_role("navigation", name="Staff pages").get_by_role("link", name=name, exact=True)


def sign_out(page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in to the staff pages")).to_be_visible()


def test_find_a_customer_preview_issue_and_see_the_coupon_code(page, w, screenshot):
    sign_in(page, "alice")
    screenshot("01-search")
    # Keyboard only: the search box has the focus; type and press Enter.
    page.keyboard.type("jo@example.com")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=re.compile("Jo Bloggs"))).to_be_visible()
    expect(page.get_by_test_id("available")).to_have_text("5000")
    screenshot("02-customer")

    page.get_by_role("link", name="Issue goodwill").click()
    expect(page.get_by_role("heading", name="Goodwill for Jo Bloggs")).to_be_visible()
    row = page.locator(f'#eligible-rewards tr[data-reward="{w.coupon_reward.pk}"]')
    expect(row).to_contain_text("100")
    screenshot("03-goodwill-rewards")
    row.get_by_role("link", name="Choose").click()

    page.get_by_label("Quantity").fill("2")
    page.get_by_label("Reason").fill("Parcel arrived damaged")
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_role("heading", name="Preview — nothing issued yet")).to_be_visible()
    expect(page.get_by_test_id("preview-points")).to_contain_text("200")
    expect(page.get_by_test_id("preview-status")).to_have_text("will be issued")
    assert not im.Issuance.objects.exists()
    screenshot("04-goodwill-preview")

    page.get_by_role("button", name="Confirm and issue").click()
    expect(page.get_by_role("heading", name=re.compile(r"Issuance \d+"))).to_be_visible()
    codes = sorted(im.IssuedUnit.objects.values_list("coupon_code", flat=True))
    assert len(codes) == 2
    for code in codes:
        expect(page.locator("code.coupon-code", has_text=code)).to_be_visible()
    expect(page.locator(".messagelist")).to_contain_text(codes[0])
    issuance = im.Issuance.objects.get()
    assert (issuance.channel, issuance.owner_type, issuance.actor.username, issuance.reason) == (
        "STAFF",
        "GOODWILL",
        "alice",
        "Parcel arrived damaged",
    )
    screenshot("05-issuance")


def test_fulfillment_change_history_and_request_id_look_up(page, w, screenshot):
    # History dates are days of the org's calendar (docs/staff-pages.md).
    cm.Organisation.objects.filter(pk__in=[w.org.pk, w.child.pk]).update(time_zone="Asia/Kolkata")
    line = issue_direct(w)
    day_in_kolkata = line.created_at.astimezone(zoneinfo.ZoneInfo("Asia/Kolkata")).date().isoformat()
    sign_in(page, "alice")
    page.goto(f"/staff/issuances/{line.issuance_id}/")
    page.get_by_label("New fulfillment status").select_option(label="SHIPPED")
    page.get_by_label("Note").fill("DHL 123")
    page.get_by_role("button", name="Change status").click()
    expect(page.get_by_test_id(f"fulfillment-{line.pk}")).to_have_text("SHIPPED")
    expect(page.locator(".fulfillment-history")).to_contain_text("DHL 123")
    screenshot("06-fulfillment")
    assert im.FulfillmentChange.objects.get().to_status.name == "SHIPPED"

    nav(page, "Issuances").click()
    expect(page.locator("#history-time-zone")).to_contain_text("Dates in Asia/Kolkata")
    page.get_by_label("Status").select_option("ISSUED")
    page.get_by_label("From (date)").fill(day_in_kolkata)
    page.get_by_label("To (date)").fill(day_in_kolkata)
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#history tbody tr")).to_have_count(1)
    screenshot("07-history")
    page.locator("#history").get_by_role("link", name=re.compile("^staff-")).click()
    expect(page.get_by_role("heading", name=line.request_id)).to_be_visible()
    expect(page.locator("pre.json").first).to_contain_text('"couponCode"')
    screenshot("08-request-id")


def test_goodwill_above_the_threshold_is_approved_by_a_second_staff_member(page, w, screenshot):
    sign_in(page, "alice")
    page.goto(f"/staff/customers/{w.customer.pk}/goodwill/{w.big_reward.pk}/")
    page.get_by_label("Reason").fill("Holiday ruined by the flood")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#preview")).to_contain_text("a second staff member must approve")
    page.get_by_role("button", name="Ask for approval").click()
    expect(page.get_by_test_id("request-status")).to_have_text("Waiting for approval")
    request = GoodwillRequest.objects.get()
    assert not im.Issuance.objects.exists()
    sign_out(page)

    sign_in(page, "bob")
    nav(page, "Approvals").click()
    expect(page.locator("#pending-requests")).to_contain_text("Holiday ruined")
    screenshot("09-approvals")
    page.get_by_role("link", name=f"#{request.pk}").click()
    expect(page.get_by_test_id("points-now")).to_contain_text("2000")
    screenshot("10-approval-request")
    page.get_by_role("button", name="Approve and issue").click()
    expect(page.get_by_test_id("request-status")).to_have_text("Issued")
    request.refresh_from_db()
    assert request.status == GoodwillStatus.ISSUED and request.decided_by.username == "bob"
    assert request.line.issuance.actor.username == "alice"
    w.account.refresh_from_db()
    assert w.account.balance == Decimal("3000")


def test_bulk_csv_progress_to_completion_and_result_download(page, w, screenshot, tmp_path):
    rows = ["identifier,reward,quantity,reason,requestId"]
    rows += [f"919000000001,{w.coupon_reward.pk},1,Storm week,storm-{i}" for i in range(40)]
    rows.append(f"nobody@example.com,{w.coupon_reward.pk},1,Storm week,")
    upload = tmp_path / "storm.csv"
    upload.write_text("\n".join(rows) + "\n")
    sign_in(page, "alice")
    nav(page, "Bulk goodwill").click()
    page.get_by_label("CSV file").set_input_files(str(upload))
    page.get_by_role("button", name="Upload and validate").click()
    expect(page.get_by_role("heading", name="Validation report")).to_be_visible()
    expect(page.locator("#bulk-rows")).to_contain_text("no customer with mobile, email or external id")
    assert not im.Issuance.objects.exists()
    screenshot("11-bulk-report")

    page.get_by_role("button", name="Issue 40 valid rows").click()
    expect(page.locator("progress#bulk-progress-bar")).to_be_visible()
    expect(page.get_by_test_id("job-status")).to_have_text("Done", timeout=60_000)
    expect(page.get_by_test_id("progress-text")).to_contain_text("40 of 40 rows done (100%)")
    screenshot("12-bulk-done")
    job = BulkJob.objects.get()
    assert job.rows.filter(status=BulkRowStatus.ISSUED).count() == 40

    with page.expect_download() as info:
        page.locator("#result-download").click()
    result = list(csv.DictReader(io.StringIO(open(info.value.path(), encoding="utf-8").read())))
    assert len(result) == 41
    assert [r["status"] for r in result].count("ISSUED") == 40 and result[-1]["status"] == "INVALID"
    assert len({r["couponCodes"] for r in result if r["status"] == "ISSUED"}) == 40
    assert im.IssuedUnit.objects.count() == 40


def test_dashboard_draws_its_charts(page, w, screenshot):
    issue_direct(w, quantity=3)
    issue_direct(w)
    sign_in(page, "alice")
    nav(page, "Dashboard").click()
    for canvas in ("chart-per-day", "chart-by-type", "chart-by-reward", "chart-failures"):
        expect(page.locator(f"canvas#{canvas}")).to_be_visible()
    page.wait_for_function("window.staffCharts && Object.keys(window.staffCharts).length === 4")
    created = page.evaluate(
        "['chart-per-day', 'chart-by-type', 'chart-by-reward', 'chart-failures']"
        ".map(id => Chart.getChart(document.getElementById(id)) !== undefined)"
    )
    assert created == [True, True, True, True]
    assert page.evaluate("Chart.getChart('chart-per-day').data.datasets[0].data.reduce((a, b) => a + b, 0)") == 2
    assert page.evaluate("typeof Chart.version") == "string"
    screenshot("13-dashboard")
