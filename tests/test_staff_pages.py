"""The staff pages (/staff/): permissions, CSRF, org isolation, bounded query counts, and
the services behind them (goodwill with approval, why-not, fulfillment, bulk jobs).

``build_world`` is shared with the browser tests (tests/browser)."""

import datetime
import html
import zoneinfo
from dataclasses import dataclass
from decimal import Decimal
from unittest import mock

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from catalogue import models as cm
from catalogue.choices import (
    CardStatus,
    ConstraintLevel,
    Frequency,
    MembershipStatus,
    PaymentMode,
    RedemptionType,
)
from issuance import models as im
from issuance.groups import APPROVER_GROUP, STAFF_GROUP, groups_ensure
from staff import services
from staff.choices import BulkJobStatus, BulkRowStatus, GoodwillStatus
from staff.models import BulkJob, BulkJobRow, GoodwillRequest
from staff.worker import bulk_jobs_run
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_worker_thread(settings):
    """Bulk jobs run where the test says (bulk_jobs_run), never in a background thread."""
    settings.STAFF_BULK_WORKER_THREAD = False


# ---------------------------------------------------------------- the world


@dataclass
class World:
    org: cm.Organisation
    child: cm.Organisation
    other: cm.Organisation
    brand: cm.Brand
    till: cm.Till
    staff: object
    approver: object
    outsider: object
    other_staff: object
    customer: cm.Customer
    account: im.PointsAccount
    child_customer: cm.Customer
    other_customer: cm.Customer
    series: cm.CouponSeries
    coupon_reward: cm.Reward
    coupon_config: cm.PaymentConfig
    big_reward: cm.Reward
    statuses: list


def staff_user(username, org, *groups, tills=()):
    groups_ensure()
    user = f.UserFactory(username=username)
    f.UserProfileFactory(user=user, org=org)
    user.groups.add(*Group.objects.filter(name__in=groups))
    for till in tills:
        till.users.add(user)
    return user


def build_world(*, codes: int = 20, threshold: Decimal | None = Decimal("1000")) -> World:
    """An org (with a child org and an unrelated org), its staff, a customer with 5000
    points and two rewards: a coupon reward at 100 points and a 2000-point reward."""
    org = f.OrganisationFactory(name="Acme", goodwill_approval_threshold=threshold)
    child = f.OrganisationFactory(name="Acme Kids", parent=org)
    other = f.OrganisationFactory(name="Other Co")
    brand = f.BrandFactory(org=org, name="ACME")
    till = f.TillFactory(org=org, code="staff")
    staff = staff_user("alice", org, STAFF_GROUP, tills=[till])
    approver = staff_user("bob", org, STAFF_GROUP, APPROVER_GROUP, tills=[till])
    outsider = staff_user("mallory", org)
    other_till = f.TillFactory(org=other, code="staff")
    other_staff = staff_user("olga", other, STAFF_GROUP, APPROVER_GROUP, tills=[other_till])
    customer = f.CustomerFactory(
        org=org, mobile="919000000001", email="jo@example.com", external_id="EXT-1", first_name="Jo", last_name="Bloggs"
    )
    account = f.PointsAccountFactory(customer=customer, opening_balance=Decimal("5000"))
    child_customer = f.CustomerFactory(org=child, mobile="919000000002", first_name="Kid")
    other_customer = f.CustomerFactory(org=other, mobile="919000000001", first_name="Other")
    series = f.CouponSeriesFactory(org=org, name="Welcome pool", low_stock_threshold=50)
    cm.CouponCode.objects.bulk_create(cm.CouponCode(series=series, code=f"WELCOME{i:04d}") for i in range(codes))
    coupon_reward = f.RewardFactory(
        brand=brand, name="Welcome coupon", redemption_type=RedemptionType.INTOUCH_REWARD, coupon_series=series
    )
    coupon_config = f.PaymentConfigFactory(reward=coupon_reward, mode=PaymentMode.POINTS, points=Decimal("100"))
    big_reward = f.RewardFactory(brand=brand, name="Weekend stay", intouch_points=Decimal("2000"))
    statuses = [
        f.FulfillmentStatusFactory(org=org, name="BOOKED", position=1),
        f.FulfillmentStatusFactory(org=org, name="SHIPPED", position=2),
        f.FulfillmentStatusFactory(org=org, name="DELIVERED", position=3),
    ]
    f.FulfillmentStatusFactory(org=org, name="LOST", position=4, enabled=False)
    return World(
        org,
        child,
        other,
        brand,
        till,
        staff,
        approver,
        outsider,
        other_staff,
        customer,
        account,
        child_customer,
        other_customer,
        series,
        coupon_reward,
        coupon_config,
        big_reward,
        statuses,
    )


@pytest.fixture
def w() -> World:
    return build_world()


def client_for(user, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def order(w: World, reward=None, *, quantity=1, reason="Late delivery", config=None) -> services.GoodwillOrder:
    reward = reward or w.coupon_reward
    return services.GoodwillOrder(
        customer=cm.Customer.objects.select_related("org").get(pk=w.customer.pk),
        reward=reward,
        till=w.till,
        quantity=quantity,
        reason=reason,
        payment_config_id=config.pk if config else None,
    )


def issue_direct(w: World, reward=None, **kwargs):
    """A goodwill issue through the service (below the threshold): the line."""
    submitted = services.goodwill_submit(actor=w.staff, order=order(w, reward, **kwargs), token=services.new_token())
    return im.IssuanceLine.objects.get(pk=submitted.line_id)


def goodwill_post(client, w: World, reward, **data):
    url = reverse("staff:goodwill_issue", args=[w.customer.pk, reward.pk])
    body = {"till": w.till.pk, "quantity": 1, "reason": "Late delivery", "action": "preview"}
    body.update(data)
    return client.post(url, body)


def preview_then_confirm(client, w: World, reward, **data):
    preview = goodwill_post(client, w, reward, **data)
    assert preview.status_code == 200, preview.content.decode()[:2000]
    form = preview.context["form"]
    return preview, goodwill_post(
        client, w, reward, action="confirm", token=form.data["token"], digest=form.data["digest"], **data
    )


# ---------------------------------------------------------------- permissions


def all_get_urls(w: World, issuance_id=1, request_id=1, job_id=1):
    return [
        reverse("staff:search"),
        reverse("staff:customer", args=[w.customer.pk]),
        reverse("staff:goodwill_rewards", args=[w.customer.pk]),
        reverse("staff:goodwill_issue", args=[w.customer.pk, w.coupon_reward.pk]),
        reverse("staff:issuances"),
        reverse("staff:issuance", args=[issuance_id]),
        reverse("staff:request_ids"),
        reverse("staff:goodwill_request", args=[request_id]),
        reverse("staff:bulk"),
        reverse("staff:bulk_job", args=[job_id]),
        reverse("staff:bulk_result", args=[job_id]),
        reverse("staff:dashboard"),
    ]


def test_staff_pages_need_a_signed_in_user(w):
    for url in all_get_urls(w):
        response = Client().get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("staff:login")), url


def test_staff_pages_are_403_without_the_staff_issuers_group(w):
    client = client_for(w.outsider)
    for url in all_get_urls(w) + [reverse("staff:approvals")]:
        response = client.get(url)
        assert response.status_code == 403, url
        assert b"staff issuers" in response.content or b"goodwill approvers" in response.content


def test_posts_are_403_without_the_staff_issuers_group(w):
    client = client_for(w.outsider)
    response = goodwill_post(client, w, w.coupon_reward)
    assert response.status_code == 403
    assert not im.Issuance.objects.exists()


def test_approval_pages_need_the_goodwill_approvers_group(w):
    request = GoodwillRequest.objects.create(
        org=w.org,
        requester=w.approver,
        customer=w.customer,
        reward=w.big_reward,
        till=w.till,
        quantity=1,
        reason="x",
        points_quoted=Decimal("2000"),
        submit_token="t1",
    )
    client = client_for(w.staff)  # staff issuer, not an approver
    assert client.get(reverse("staff:approvals")).status_code == 403
    assert client.post(reverse("staff:goodwill_approve", args=[request.pk])).status_code == 403
    assert client.post(reverse("staff:goodwill_reject", args=[request.pk]), {"note": "no"}).status_code == 403
    request.refresh_from_db()
    assert request.status == GoodwillStatus.PENDING
    # The request page itself is visible to staff (the requester follows it there).
    assert client.get(reverse("staff:goodwill_request", args=[request.pk])).status_code == 200


def test_a_staff_member_without_a_profile_is_403(w):
    user = f.UserFactory(username="noprofile")
    user.groups.add(Group.objects.get(name=STAFF_GROUP))
    assert client_for(user).get(reverse("staff:search")).status_code == 403


def test_sign_in_page_signs_a_staff_member_in(w):
    client = Client(enforce_csrf_checks=True)
    page = client.get(reverse("staff:login"))
    assert page.status_code == 200
    token = page.cookies["csrftoken"].value
    response = client.post(
        reverse("staff:login"), {"username": "alice", "password": "pass", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302 and response["Location"] == reverse("staff:search")
    assert client.get(reverse("staff:search")).status_code == 200


# ---------------------------------------------------------------- CSRF


def test_every_form_post_is_csrf_protected(w):
    line = issue_direct(w)
    request = GoodwillRequest.objects.create(
        org=w.org,
        requester=w.staff,
        customer=w.customer,
        reward=w.big_reward,
        till=w.till,
        quantity=1,
        reason="x",
        points_quoted=Decimal("2000"),
        submit_token="t2",
    )
    job = services.bulk_job_create(
        actor=w.staff,
        org=w.org,
        till=w.till,
        file_name="a.csv",
        data=b"identifier,reward,quantity,reason\n919000000001,%d,1,x\n" % w.coupon_reward.pk,
    )
    client = client_for(w.approver, csrf=True)
    posts = [
        (
            reverse("staff:goodwill_issue", args=[w.customer.pk, w.coupon_reward.pk]),
            {"till": w.till.pk, "quantity": 1, "reason": "x", "action": "preview"},
        ),
        (reverse("staff:goodwill_approve", args=[request.pk]), {"accepted_points": "2000"}),
        (reverse("staff:goodwill_reject", args=[request.pk]), {"note": "no"}),
        (reverse("staff:fulfillment_change", args=[line.pk]), {"status": w.statuses[0].pk}),
        (reverse("staff:bulk_start", args=[job.pk]), {}),
        (reverse("staff:bulk_cancel", args=[job.pk]), {}),
        (reverse("staff:bulk"), {"till": w.till.pk}),
        (reverse("staff:logout"), {}),
    ]
    for url, data in posts:
        assert client.post(url, data).status_code == 403, url
    request.refresh_from_db()
    job.refresh_from_db()
    line.refresh_from_db()
    assert request.status == GoodwillStatus.PENDING
    assert job.status == BulkJobStatus.VALIDATED
    assert line.fulfillment_status_id is None
    # With the token the same form works.
    page = client.get(reverse("staff:issuance", args=[line.issuance_id]))
    token = page.cookies["csrftoken"].value if "csrftoken" in page.cookies else client.cookies["csrftoken"].value
    ok = client.post(
        reverse("staff:fulfillment_change", args=[line.pk]), {"status": w.statuses[0].pk, "csrfmiddlewaretoken": token}
    )
    assert ok.status_code == 302
    line.refresh_from_db()
    assert line.fulfillment_status == w.statuses[0]


# ---------------------------------------------------------------- org isolation


def test_search_finds_a_customer_by_mobile_email_or_external_id(w):
    client = client_for(w.staff)
    for term in ("919000000001", "JO@example.com", "EXT-1"):
        response = client.get(reverse("staff:search"), {"q": term})
        # One match in the staff member's orgs (the other org's customer with the same
        # mobile is not one of them): straight to the customer page.
        assert response.status_code == 302, term
        assert response["Location"] == reverse("staff:customer", args=[w.customer.pk])
    none = client.get(reverse("staff:search"), {"q": "nobody@example.com"})
    assert none.status_code == 200 and b"No customer" in none.content


def test_a_child_orgs_customers_are_visible_to_the_parents_staff(w):
    client = client_for(w.staff)
    response = client.get(reverse("staff:search"), {"q": "919000000002"})
    assert response["Location"] == reverse("staff:customer", args=[w.child_customer.pk])
    assert client.get(reverse("staff:customer", args=[w.child_customer.pk])).status_code == 200


def test_another_orgs_rows_answer_404_like_unknown_ids(w):
    other_line = issue_direct_other(w)
    other_request = GoodwillRequest.objects.create(
        org=w.other,
        requester=w.other_staff,
        customer=w.other_customer,
        reward=other_line.reward,
        till=other_line.issuance.till,
        quantity=1,
        reason="x",
        points_quoted=Decimal("1"),
        submit_token="o1",
    )
    other_job = BulkJob.objects.create(
        org=w.other, till=other_line.issuance.till, created_by=w.other_staff, file_name="o.csv"
    )
    client = client_for(w.approver)
    urls = [
        reverse("staff:customer", args=[w.other_customer.pk]),
        reverse("staff:goodwill_rewards", args=[w.other_customer.pk]),
        reverse("staff:goodwill_issue", args=[w.other_customer.pk, other_line.reward_id]),
        reverse("staff:goodwill_issue", args=[w.customer.pk, other_line.reward_id]),  # reward of another org
        reverse("staff:issuance", args=[other_line.issuance_id]),
        reverse("staff:goodwill_request", args=[other_request.pk]),
        reverse("staff:bulk_job", args=[other_job.pk]),
        reverse("staff:bulk_result", args=[other_job.pk]),
        reverse("staff:bulk_progress", args=[other_job.pk]),
    ]
    unknown = client.get(reverse("staff:customer", args=[999999]))
    assert unknown.status_code == 404
    for url in urls:
        assert client.get(url).status_code == 404, url
    posts = [
        (reverse("staff:fulfillment_change", args=[other_line.pk]), {"status": w.statuses[0].pk}),
        (reverse("staff:goodwill_approve", args=[other_request.pk]), {"accepted_points": "1"}),
        (reverse("staff:goodwill_reject", args=[other_request.pk]), {"note": "no"}),
        (reverse("staff:bulk_start", args=[other_job.pk]), {}),
    ]
    for url, data in posts:
        assert client.post(url, data).status_code == 404, url
    other_request.refresh_from_db()
    assert other_request.status == GoodwillStatus.PENDING
    # Lists and look-ups never show the other org's rows either.
    history = client.get(reverse("staff:issuances"))
    assert other_line not in list(history.context["page"].object_list)
    assert (
        client.get(reverse("staff:issuances"), {"customer": w.other_customer.pk}).context["page"].paginator.count == 0
    )
    assert client.get(reverse("staff:search"), {"q": str(w.other_customer.pk)}).context["results"] == []
    lookup = client.get(reverse("staff:request_ids"), {"requestId": other_line.request_id})
    assert lookup.context["records"] == []


def issue_direct_other(w: World):
    """A goodwill line in the unrelated org (with a requestId), by its own staff."""
    reward = f.RewardFactory(brand=f.BrandFactory(org=w.other), intouch_points=Decimal("0"))
    f.PointsAccountFactory(customer=w.other_customer, opening_balance=Decimal("10"))
    till = cm.Till.objects.get(org=w.other)
    submitted = services.goodwill_submit(
        actor=w.other_staff,
        order=services.GoodwillOrder(
            customer=cm.Customer.objects.select_related("org").get(pk=w.other_customer.pk),
            reward=reward,
            till=till,
            quantity=1,
            reason="theirs",
        ),
        token="other-token",
    )
    return im.IssuanceLine.objects.select_related("issuance").get(pk=submitted.line_id)


# ---------------------------------------------------------------- the customer page


def test_customer_page_shows_profile_points_ledger_and_memberships(w):
    segment = f.SegmentFactory(org=w.org, name="VIP")
    partition = f.PartitionFactory(segment=segment, name="gold")
    cm.SegmentMembership.objects.create(customer=w.customer, partition=partition)
    cm.Card.objects.create(
        series=f.CardSeriesFactory(org=w.org, code="CARD"), customer=w.customer, number="4111111111111234"
    )
    cm.CustomerLabel.objects.create(customer=w.customer, label=f.LabelFactory(org=w.org, name="newsletter"))
    group = f.CustomerGroupFactory(primary_member=w.customer, name="Family Bloggs")
    cm.GroupMembership.objects.create(group=group, customer=w.customer)
    issue_direct(w)
    response = client_for(w.staff).get(reverse("staff:customer", args=[w.customer.pk]))
    text = response.content.decode()
    assert response.status_code == 200
    for expected in (
        "Jo Bloggs",
        "VIP / gold",
        "****1234",
        "newsletter",
        "Family Bloggs",
        "Welcome coupon",
        "Reward %d" % w.coupon_reward.pk,
    ):
        assert expected in text, expected
    assert "4111111111111234" not in text  # masked numbers only
    account = response.context["p"].account
    assert (account.balance, account.held, account.available) == (Decimal("4900"), 0, Decimal("4900"))


def test_customer_page_query_count_does_not_grow_with_its_rows(w, django_assert_max_num_queries):
    # session + user + permissions (2) + profile + child orgs + customer + account, groups,
    # segments, cards, labels, tiers, recent lines, pending requests (8) + ledger count
    # and page (2) = 17.
    client = client_for(w.staff)
    for _ in range(3):
        issue_direct(w)
    with django_assert_max_num_queries(17):
        assert client.get(reverse("staff:customer", args=[w.customer.pk])).status_code == 200
    cheap = f.RewardFactory(brand=w.brand, intouch_points=Decimal("1"))
    for i in range(30):
        issue_direct(w, cheap)
        cm.Card.objects.create(series=f.CardSeriesFactory(org=w.org), customer=w.customer, number=f"4000{i:08d}")
    with django_assert_max_num_queries(17):
        response = client.get(reverse("staff:customer", args=[w.customer.pk]), {"page": 2})
        assert response.status_code == 200
    assert response.context["ledger"].number == 2


# ---------------------------------------------------------------- goodwill: preview, issue


def test_preview_is_a_dry_run_then_confirm_issues_once_with_the_staff_channel(w):
    client = client_for(w.staff)
    preview, confirmed = preview_then_confirm(client, w, w.coupon_reward, reason="Parcel lost")
    quote = preview.context["quote"]
    assert quote.points == Decimal("100") and quote.ok and not quote.needs_approval
    assert quote.line["couponStock"] == 1 and quote.body["pointsAvailable"] == Decimal("5000")
    assert b"Confirm and issue" in preview.content
    assert confirmed.status_code == 302
    issuance = im.Issuance.objects.get()
    assert confirmed["Location"] == reverse("staff:issuance", args=[issuance.pk])
    assert (issuance.channel, issuance.owner_type, issuance.reason, issuance.actor, issuance.till) == (
        im.Channel.STAFF,
        "GOODWILL",
        "Parcel lost",
        w.staff,
        w.till,
    )
    unit = im.IssuedUnit.objects.get()
    page = client.get(confirmed["Location"])
    assert unit.coupon_code.encode() in page.content
    assert unit.coupon_code in " ".join(str(m) for m in page.context["messages"])
    w.account.refresh_from_db()
    assert w.account.balance == Decimal("4900")
    # A double submit of the same confirmation replays: nothing issued twice.
    again = goodwill_post(
        client,
        w,
        w.coupon_reward,
        action="confirm",
        reason="Parcel lost",
        token=preview.context["form"].data["token"],
        digest=preview.context["form"].data["digest"],
    )
    assert again.status_code == 302
    assert im.IssuedUnit.objects.count() == 1 and im.LedgerEntry.objects.filter(kind="REDEMPTION").count() == 1


def test_preview_writes_nothing(w):
    response = goodwill_post(client_for(w.staff), w, w.coupon_reward)
    assert response.status_code == 200
    assert not im.Issuance.objects.exists() and not GoodwillRequest.objects.exists()
    assert cm.CouponCode.objects.filter(series=w.series).count() == 20


def test_a_reason_is_mandatory(w):
    response = goodwill_post(client_for(w.staff), w, w.coupon_reward, reason="   ")
    assert response.status_code == 400
    assert "reason" in response.context["form"].errors
    with pytest.raises(services.StaffError):
        services.goodwill_submit(actor=w.staff, order=order(w, reason=" "), token="x")
    assert not im.Issuance.objects.exists()


def test_a_form_changed_after_the_preview_is_previewed_again_not_issued(w):
    client = client_for(w.staff)
    preview = goodwill_post(client, w, w.coupon_reward)
    form = preview.context["form"]
    changed = goodwill_post(
        client, w, w.coupon_reward, action="confirm", quantity=3, token=form.data["token"], digest=form.data["digest"]
    )
    assert changed.status_code == 200 and changed.context["quote"] is not None
    assert not im.Issuance.objects.exists()


def test_an_engine_refusal_of_the_whole_call_is_shown_not_a_500(w):
    w.account.balance = Decimal("50")
    im.PointsAccount.objects.filter(pk=w.account.pk).update(balance=Decimal("50"), opening_balance=Decimal("50"))
    client = client_for(w.staff)
    preview = goodwill_post(client, w, w.coupon_reward)
    assert preview.context["quote"].points_short == Decimal("50")
    assert b"short by 50" in preview.content
    assert b"Confirm and issue" not in preview.content


def test_a_till_the_staff_member_may_not_use_is_not_offered(w):
    foreign = f.TillFactory(org=w.org, code="shop-7")  # alice is not one of its logins
    response = goodwill_post(client_for(w.staff), w, w.coupon_reward, till=foreign.pk)
    assert response.status_code == 400 and "till" in response.context["form"].errors


# ---------------------------------------------------------------- approval


def test_goodwill_above_the_threshold_waits_for_approval(w):
    client = client_for(w.staff)
    preview, confirmed = preview_then_confirm(client, w, w.big_reward, reason="Ruined holiday")
    assert preview.context["quote"].needs_approval and b"Ask for approval" in preview.content
    request = GoodwillRequest.objects.get()
    assert confirmed["Location"] == reverse("staff:goodwill_request", args=[request.pk])
    assert (request.status, request.points_quoted, request.requester, request.reason) == (
        GoodwillStatus.PENDING,
        Decimal("2000"),
        w.staff,
        "Ruined holiday",
    )
    assert not im.Issuance.objects.exists()
    # Submitting the same confirmation again records no second request.
    goodwill_post(
        client,
        w,
        w.big_reward,
        action="confirm",
        reason="Ruined holiday",
        token=preview.context["form"].data["token"],
        digest=preview.context["form"].data["digest"],
    )
    assert GoodwillRequest.objects.count() == 1


def pending_request(w: World, reward=None, *, requester=None) -> GoodwillRequest:
    submitted = services.goodwill_submit(
        actor=requester or w.staff, order=order(w, reward or w.big_reward), token=services.new_token()
    )
    assert submitted.goodwill_request is not None
    return submitted.goodwill_request


def test_the_requester_cannot_approve_their_own_request(w):
    request = pending_request(w, requester=w.approver)
    with pytest.raises(services.StaffError, match="own"):
        services.goodwill_approve(approver=w.approver, pk=request.pk, org_ids={w.org.pk})
    response = client_for(w.approver).post(
        reverse("staff:goodwill_approve", args=[request.pk]), {"accepted_points": "2000"}
    )
    assert response.status_code == 409 and b"own" in response.content
    page = client_for(w.approver).get(reverse("staff:goodwill_request", args=[request.pk]))
    assert page.context["may_decide"] is False
    request.refresh_from_db()
    assert request.status == GoodwillStatus.PENDING and not im.Issuance.objects.exists()


def test_approval_issues_through_the_engine_once(w, django_assert_max_num_queries):
    request = pending_request(w)
    client = client_for(w.approver)
    page = client.get(reverse("staff:approvals"))
    assert request in list(page.context["pending"].object_list)
    response = client.post(reverse("staff:goodwill_approve", args=[request.pk]), {"accepted_points": "2000"})
    assert response.status_code == 302
    request.refresh_from_db()
    assert (request.status, request.decided_by, request.points_charged) == (
        GoodwillStatus.ISSUED,
        w.approver,
        Decimal("2000"),
    )
    issuance = request.line.issuance
    assert (issuance.actor, issuance.channel, issuance.owner_type, issuance.reason) == (
        w.staff,
        im.Channel.STAFF,
        "GOODWILL",
        "Late delivery",
    )
    assert request.line.request_id == f"goodwill-{request.pk}"
    w.account.refresh_from_db()
    assert w.account.balance == Decimal("3000")
    # A second approval (another tab, another approver) changes nothing.
    again = client.post(reverse("staff:goodwill_approve", args=[request.pk]), {"accepted_points": "2000"})
    assert again.status_code == 409 and b"already decided" in again.content
    assert im.IssuanceLine.objects.count() == 1
    w.account.refresh_from_db()
    assert w.account.balance == Decimal("3000")


def test_approval_reprices_and_stops_when_the_price_rose(w):
    config = f.PaymentConfigFactory(reward=w.big_reward, mode=PaymentMode.POINTS, points=Decimal("2000"))
    request = pending_request(w)
    cm.PaymentConfig.objects.filter(pk=config.pk).update(points=Decimal("2500"))
    client = client_for(w.approver)
    page = client.get(reverse("staff:goodwill_request", args=[request.pk]))
    assert page.context["rose"] and page.context["quote"].points == Decimal("2500")
    assert b"price rose" in page.content
    refused = client.post(reverse("staff:goodwill_approve", args=[request.pk]), {"accepted_points": "2000"})
    assert refused.status_code == 409 and b"rose from 2000 to 2500" in refused.content
    request.refresh_from_db()
    assert request.status == GoodwillStatus.PENDING and not im.Issuance.objects.exists()
    accepted = client.post(reverse("staff:goodwill_approve", args=[request.pk]), {"accepted_points": "2500"})
    assert accepted.status_code == 302
    request.refresh_from_db()
    assert request.status == GoodwillStatus.ISSUED and request.points_charged == Decimal("2500")


def test_an_approved_request_the_engine_refuses_is_failed_with_the_reason(w):
    request = pending_request(w)
    im.PointsAccount.objects.filter(pk=w.account.pk).update(balance=Decimal("10"), opening_balance=Decimal("10"))
    result = services.goodwill_approve(
        approver=w.approver, pk=request.pk, org_ids={w.org.pk}, accepted_points=Decimal("2000")
    )
    assert result.status == GoodwillStatus.FAILED and result.result_code == 8004
    assert not im.IssuanceLine.objects.filter(quantity__gt=0).exists()


def test_reject_records_the_decision_and_issues_nothing(w):
    request = pending_request(w)
    response = client_for(w.approver).post(reverse("staff:goodwill_reject", args=[request.pk]), {"note": "Too much"})
    assert response.status_code == 302
    request.refresh_from_db()
    assert (request.status, request.decided_by, request.decision_note) == (
        GoodwillStatus.REJECTED,
        w.approver,
        "Too much",
    )
    assert not im.Issuance.objects.exists()


def test_approval_queue_query_count_is_bounded(w, django_assert_max_num_queries):
    for _ in range(3):
        pending_request(w)
    client = client_for(w.approver)
    # session, user, permissions (2), profile, child orgs, count, page, recent = 9
    with django_assert_max_num_queries(9):
        client.get(reverse("staff:approvals"))
    for _ in range(10):
        pending_request(w)
    with django_assert_max_num_queries(9):
        assert len(client.get(reverse("staff:approvals")).context["pending"].object_list) == 13


# ---------------------------------------------------------------- why not


def why_not(w: World, reward) -> list[str]:
    response = client_for(w.staff).get(
        reverse("staff:goodwill_rewards", args=[w.customer.pk]), {"activationStatus": "ALL", "includeExpired": "true"}
    )
    assert response.status_code == 200
    options = {o.reward.pk: o for o in response.context["eligible"] + response.context["others"]}
    return options[reward.pk].reasons


def test_why_not_explains_targeting_by_name(w):
    segment = f.SegmentFactory(org=w.org, name="VIP")
    vip = f.PartitionFactory(segment=segment, name="gold")
    by_segment = f.RewardFactory(brand=w.brand, name="VIP lounge")
    cm.RewardSegmentTarget.objects.create(reward=by_segment, partition=vip)
    by_card = f.RewardFactory(brand=w.brand)
    card_series = f.CardSeriesFactory(org=w.org, code="PLATINUM")
    by_card.card_series.add(card_series)
    cm.Card.objects.create(
        series=card_series, customer=w.customer, number="4000000000000001", status=CardStatus.SUSPENDED
    )
    by_label = f.RewardFactory(brand=w.brand)
    by_label.labels.add(f.LabelFactory(org=w.org, name="students"))
    by_tier = f.RewardFactory(brand=w.brand)
    program = cm.Program.objects.create(org=w.org, name="Club")
    by_tier.target_tiers.add(cm.Tier.objects.create(program=program, name="Gold"))
    assert why_not(w, by_segment) == ["Only for the segments VIP / gold; the customer is in none of them (12034)"]
    assert why_not(w, by_card) == ["Needs an active card of the card series PLATINUM (12050)"]
    assert why_not(w, by_label) == ["Needs one of the active labels students (12050)"]
    assert why_not(w, by_tier) == ["Only for the tiers Club / Gold (12051)"]
    # Once the customer holds the target the same reward is takeable.
    cm.CustomerLabel.objects.create(
        customer=w.customer, label=cm.Label.objects.get(name="students"), status=MembershipStatus.ACTIVE
    )
    assert why_not(w, by_label) == []


def test_why_not_explains_dates_points_stock_and_limits(w):
    now = timezone.now()
    upcoming = f.RewardFactory(brand=w.brand, start_time=now + datetime.timedelta(days=3))
    ended = f.RewardFactory(
        brand=w.brand, start_time=now - datetime.timedelta(days=9), end_time=now - datetime.timedelta(days=2)
    )
    disabled = f.RewardFactory(brand=w.brand, enabled=False)
    dear = f.RewardFactory(brand=w.brand, intouch_points=Decimal("7500"))
    empty_series = f.CouponSeriesFactory(org=w.org)
    no_stock = f.RewardFactory(brand=w.brand, redemption_type=RedemptionType.VOUCHER, coupon_series=empty_series)
    limited = f.RewardFactory(brand=w.brand, intouch_points=Decimal("1"))
    cm.RewardConstraint.objects.create(
        org=w.org, reward=limited, level=ConstraintLevel.CUSTOMER, frequency=Frequency.MONTHS, limit_value=1
    )
    issue_direct(w, limited)
    assert why_not(w, upcoming)[0].startswith("Not started yet: starts ")
    assert why_not(w, ended)[0].startswith("Ended on ")
    assert why_not(w, disabled) == ["Disabled in the catalogue"]
    assert why_not(w, dear) == ["Points short by 2501 (costs 7500, 4999 available)"]
    assert why_not(w, no_stock) == ["The coupon pool is empty (8004)"]
    (limit,) = why_not(w, limited)
    assert limit.startswith("Limit reached: 1 units per months (per customer), 1 used; resets ")
    next_month = (now.replace(day=1) + datetime.timedelta(days=32)).strftime("%Y-%m-01")
    assert next_month in limit
    assert why_not(w, w.coupon_reward) == []


def test_an_org_limit_shared_by_rewards_is_not_mistaken_for_a_refusal(w):
    first = f.RewardFactory(brand=w.brand, redemption_type=RedemptionType.GIFT_CARD, intouch_points=Decimal("1"))
    second = f.RewardFactory(brand=w.brand, redemption_type=RedemptionType.GIFT_CARD, intouch_points=Decimal("1"))
    cm.RewardConstraint.objects.create(
        org=w.org,
        redemption_type=RedemptionType.GIFT_CARD,
        level=ConstraintLevel.CUSTOMER_REDEMPTION_TYPE,
        frequency=Frequency.MONTHS,
        limit_value=1,
    )
    assert why_not(w, first) == [] and why_not(w, second) == []


def test_goodwill_reward_page_query_count_is_bounded(w, django_assert_max_num_queries):
    client = client_for(w.staff)
    url = reverse("staff:goodwill_rewards", args=[w.customer.pk])
    # Base 6 (session, user, perms ×2, profile, children) + customer, facts ×4, eligible
    # count + page + configs, other count + page, tills, account; reward_options: targets
    # ×4 (×2 lists), the dry run (till ×2, customer, rewards + configs, definitions, facts ×4,
    # targets ×4, account, constraints, coupon stock per coupon reward on the page).
    with django_assert_max_num_queries(48):
        client.get(url)
    for i in range(15):
        f.RewardFactory(brand=w.brand, intouch_points=Decimal(i))
        other = f.RewardFactory(brand=w.brand)
        other.labels.add(f.LabelFactory(org=w.org))
    with django_assert_max_num_queries(48):
        response = client.get(url)
    assert len(response.context["eligible"]) == 17 and len(response.context["others"]) == 15


def test_the_reward_list_filters_with_the_catalogue_filterset(w):
    client = client_for(w.staff)
    url = reverse("staff:goodwill_rewards", args=[w.customer.pk])
    response = client.get(url, {"redemptionType": "INTOUCH_REWARD"})
    assert [o.reward for o in response.context["eligible"]] == [w.coupon_reward]
    response = client.get(url, {"minPoints": "500", "sortBy": "points"})
    assert [o.reward for o in response.context["eligible"]] == [w.big_reward]
    bad = client.get(url, {"redemptionType": "NOPE"})
    assert bad.status_code == 200 and "redemptionType" in bad.context["filterset"].errors
    assert bad.context["eligible"] == []


# ---------------------------------------------------------------- follow-up: history, detail, fulfillment, requestId


def test_history_filters(w, django_assert_max_num_queries):
    first = issue_direct(w)
    second = issue_direct(w, f.RewardFactory(brand=w.brand))
    client = client_for(w.staff)
    url = reverse("staff:issuances")

    def lines(**params):
        response = client.get(url, params)
        assert response.status_code == 200
        return set(response.context["page"].object_list)

    assert lines() == {first, second}
    assert lines(reward=w.coupon_reward.pk) == {first}
    assert lines(status="ISSUED") == {first, second}
    assert lines(status="FAILED") == set()
    assert lines(till=w.till.pk, actor=w.staff.pk, channel="STAFF") == {first, second}
    assert lines(actor=w.approver.pk) == set()
    assert lines(requestId=first.request_id) == {first}
    today = timezone.now().date()
    assert lines(created_from=today.isoformat(), created_to=today.isoformat()) == {first, second}
    assert lines(created_to=(today - datetime.timedelta(days=1)).isoformat()) == set()
    bad = client.get(url, {"created_from": today.isoformat(), "created_to": "2000-01-01"})
    assert "created_to" in bad.context["filterset"].errors
    # session, user, perms ×2, profile, children, count, page, reward / till / actor choices.
    for _ in range(20):
        issue_direct(w)
    with django_assert_max_num_queries(11):
        client.get(url)


def _line_at(customer, when: datetime.datetime) -> im.IssuanceLine:
    """A line of ``customer``'s org created at ``when`` (an aware datetime)."""
    account = im.PointsAccount.objects.filter(customer=customer).first() or f.PointsAccountFactory(customer=customer)
    line = f.IssuanceLineFactory(issuance__account=account)
    im.IssuanceLine.objects.filter(pk=line.pk).update(created_at=when)
    return line


def _history(client, **params) -> tuple[set, str]:
    response = client.get(reverse("staff:issuances"), params)
    assert response.status_code == 200
    return set(response.context["page"].object_list), response.content.decode()


def test_history_dates_are_days_of_the_orgs_time_zone(w):
    """Los Angeles (UTC-7 in March): 23:30 on the 10th is 06:30 UTC on the 11th, and is
    listed under the 10th; 00:15 on the 11th is under the 11th."""
    la = zoneinfo.ZoneInfo("America/Los_Angeles")
    cm.Organisation.objects.filter(pk__in=[w.org.pk, w.child.pk]).update(time_zone="America/Los_Angeles")
    late = _line_at(w.customer, datetime.datetime(2026, 3, 10, 23, 30, tzinfo=la))
    early = _line_at(w.customer, datetime.datetime(2026, 3, 11, 0, 15, tzinfo=la))
    before = _line_at(w.customer, datetime.datetime(2026, 3, 9, 23, 59, tzinfo=la))
    late.refresh_from_db()
    assert late.created_at.astimezone(datetime.UTC) == datetime.datetime(2026, 3, 11, 6, 30, tzinfo=datetime.UTC)
    client = client_for(w.staff)

    on_10th, page = _history(client, created_from="2026-03-10", created_to="2026-03-10")
    assert on_10th == {late}
    assert "Dates in America/Los_Angeles" in page
    assert "2026-03-10 23:30" in page and "2026-03-11 06:30" not in page  # shown in local time too
    assert _history(client, created_from="2026-03-11", created_to="2026-03-11")[0] == {early}
    assert _history(client, created_to="2026-03-09")[0] == {before}
    assert _history(client, created_from="2026-03-10")[0] == {late, early}
    # The first and last days a date input can hold: no error, no overflow.
    assert _history(client, created_from="0001-01-01", created_to="9999-12-31")[0] == {late, early, before}
    assert _history(client, created_from="9999-12-31")[0] == set()


def test_history_cuts_each_orgs_lines_at_its_own_midnight(w, django_assert_max_num_queries):
    """A parent org in Los Angeles, its child in Kolkata (UTC+5:30): each line is under the
    day of its own org's calendar, and the page says which zone is whose."""
    cm.Organisation.objects.filter(pk=w.org.pk).update(time_zone="America/Los_Angeles")
    cm.Organisation.objects.filter(pk=w.child.pk).update(time_zone="Asia/Kolkata")
    la, kolkata = zoneinfo.ZoneInfo("America/Los_Angeles"), zoneinfo.ZoneInfo("Asia/Kolkata")
    parent_late = _line_at(w.customer, datetime.datetime(2026, 3, 10, 23, 30, tzinfo=la))  # 06:30 UTC on the 11th
    child_early = _line_at(w.child_customer, datetime.datetime(2026, 3, 11, 1, 0, tzinfo=kolkata))  # 19:30 UTC, 10th
    client = client_for(w.staff)

    with django_assert_max_num_queries(11):
        on_10th, page = _history(client, created_from="2026-03-10", created_to="2026-03-10")
    assert on_10th == {parent_late}
    assert _history(client, created_from="2026-03-11", created_to="2026-03-11")[0] == {child_early}
    everything, page = _history(client)
    assert everything == {parent_late, child_early}
    assert "Acme — America/Los_Angeles; Acme Kids — Asia/Kolkata" in page
    assert "2026-03-10 23:30 PDT" in page and "2026-03-11 01:00 IST" in page
    # Another org's staff, in UTC, see none of it whatever the day.
    assert _history(client_for(w.other_staff), created_from="2026-03-10", created_to="2026-03-11")[0] == set()


LATE_IN_LA = datetime.datetime(2026, 3, 11, 6, 30, tzinfo=datetime.UTC)  # 23:30 PDT on the 10th


def _in_los_angeles(w: World) -> None:
    cm.Organisation.objects.filter(pk__in=[w.org.pk, w.child.pk]).update(time_zone="America/Los_Angeles")


def _shows_late_on_the_10th(page: str, *, times: int = 1) -> None:
    """The time is the org's, with its zone, and the UTC instant is only in ``datetime``."""
    local = '<time datetime="2026-03-11T06:30:00+00:00">2026-03-10 23:30 PDT</time>'
    assert page.count(local) >= times, page
    assert "06:30" not in page.replace('datetime="2026-03-11T06:30:00+00:00"', "")


def test_issuance_detail_shows_times_in_the_orgs_time_zone(w):
    _in_los_angeles(w)
    line = issue_direct(w, quantity=1)
    fulfillment = services.line_fulfillment_change(
        actor=w.staff, line_id=line.pk, org_ids={w.org.pk}, status_id=w.statuses[0].pk, note=""
    )
    im.Issuance.objects.filter(pk=line.issuance_id).update(created_at=LATE_IN_LA)
    im.FulfillmentChange.objects.filter(pk=fulfillment.pk).update(created_at=LATE_IN_LA)
    im.IssuedUnit.objects.filter(line=line).update(code_expiry=LATE_IN_LA)
    page = client_for(w.staff).get(reverse("staff:issuance", args=[line.issuance_id])).content.decode()
    _shows_late_on_the_10th(page, times=3)  # when, the coupon's expiry, the fulfillment change


def test_customer_page_shows_times_in_the_orgs_time_zone(w):
    _in_los_angeles(w)
    line = _line_at(w.customer, LATE_IN_LA)
    with mock.patch("django.utils.timezone.now", return_value=LATE_IN_LA):  # the ledger is append-only
        im.LedgerEntry.objects.create(
            account=w.account, kind="CREDIT", amount=1, balance_after=5001, reference_id="tz-credit", reason="tz"
        )
    cm.Customer.objects.filter(pk=w.customer.pk).update(created_at=LATE_IN_LA)
    page = client_for(w.staff).get(reverse("staff:customer", args=[w.customer.pk])).content.decode()
    assert f"#line-{line.pk}" in page
    _shows_late_on_the_10th(page, times=3)  # customer since, the recent line, the ledger


def test_approval_pages_show_times_in_the_orgs_time_zone(w):
    _in_los_angeles(w)
    gr = pending_request(w)
    GoodwillRequest.objects.filter(pk=gr.pk).update(created_at=LATE_IN_LA)
    client = client_for(w.approver)
    _shows_late_on_the_10th(client.get(reverse("staff:approvals")).content.decode())
    _shows_late_on_the_10th(client.get(reverse("staff:goodwill_request", args=[gr.pk])).content.decode())


def test_bulk_pages_show_times_in_the_orgs_time_zone(w):
    _in_los_angeles(w)
    job = bulk_job(w, 1)
    BulkJob.objects.filter(pk=job.pk).update(created_at=LATE_IN_LA)
    client = client_for(w.staff)
    _shows_late_on_the_10th(client.get(reverse("staff:bulk_job", args=[job.pk])).content.decode())
    _shows_late_on_the_10th(client.get(reverse("staff:bulk")).content.decode())
    # Winter: Pacific Standard Time.
    BulkJob.objects.filter(pk=job.pk).update(created_at=datetime.datetime(2026, 1, 11, 7, 30, tzinfo=datetime.UTC))
    assert "2026-01-10 23:30 PST</time>" in client.get(reverse("staff:bulk_job", args=[job.pk])).content.decode()


def test_request_id_look_up_shows_times_in_the_orgs_time_zone(w):
    _in_los_angeles(w)
    line = issue_direct(w)
    im.IdempotencyRecord.objects.filter(line=line).update(created_at=LATE_IN_LA, updated_at=LATE_IN_LA)
    page = client_for(w.staff).get(reverse("staff:request_ids"), {"requestId": line.request_id}).content.decode()
    _shows_late_on_the_10th(page, times=2)


def test_issuance_detail_shows_units_ledger_and_fulfillment_history(w, django_assert_max_num_queries):
    line = issue_direct(w, quantity=3)
    client = client_for(w.staff)
    url = reverse("staff:issuance", args=[line.issuance_id])
    # session, user, perms ×2, profile, children, issuance, lines, units, ledger, history,
    # statuses, goodwill request = 13
    with django_assert_max_num_queries(13):
        response = client.get(url)
    codes = list(im.IssuedUnit.objects.values_list("coupon_code", flat=True))
    assert len(codes) == 3 and all(code.encode() in response.content for code in codes)
    ref = im.LedgerEntry.objects.get(line=line).reference_id
    assert ref.encode() in response.content
    for status in w.statuses[:2]:
        assert (
            client.post(
                reverse("staff:fulfillment_change", args=[line.pk]), {"status": status.pk, "note": f"to {status.name}"}
            ).status_code
            == 302
        )
    history = list(im.FulfillmentChange.objects.filter(line=line).order_by("id"))
    assert [(h.from_status, h.to_status, h.actor) for h in history] == [
        (None, w.statuses[0], w.staff),
        (w.statuses[0], w.statuses[1], w.staff),
    ]
    with django_assert_max_num_queries(13):
        response = client.get(url)
    assert b"BOOKED" in response.content and b"to SHIPPED" in response.content


def test_fulfillment_only_takes_enabled_statuses_of_the_lines_org(w):
    line = issue_direct(w)
    lost = cm.FulfillmentStatus.objects.get(name="LOST")
    foreign = f.FulfillmentStatusFactory(org=w.other, name="SHIPPED")
    for status in (lost, foreign):
        with pytest.raises(services.StaffError):
            services.line_fulfillment_change(actor=w.staff, line_id=line.pk, org_ids={w.org.pk}, status_id=status.pk)
    response = client_for(w.staff).post(reverse("staff:fulfillment_change", args=[line.pk]), {"status": lost.pk})
    assert response.status_code == 302
    line.refresh_from_db()
    assert line.fulfillment_status is None and not im.FulfillmentChange.objects.exists()
    services.line_fulfillment_change(actor=w.staff, line_id=line.pk, org_ids={w.org.pk}, status_id=w.statuses[0].pk)
    with pytest.raises(services.StaffError, match="already"):
        services.line_fulfillment_change(actor=w.staff, line_id=line.pk, org_ids={w.org.pk}, status_id=w.statuses[0].pk)


def test_request_id_look_up_shows_the_stored_request_and_response(w):
    line = issue_direct(w)
    record = im.IdempotencyRecord.objects.get(request_id=line.request_id)
    response = client_for(w.staff).get(reverse("staff:request_ids"), {"requestId": line.request_id})
    assert response.status_code == 200
    (shown,) = response.context["records"]
    assert shown == record
    text = html.unescape(response.content.decode())
    assert record.fingerprint in text and "DONE" in text
    assert '"couponCode": "WELCOME' in text  # pretty-printed stored response
    assert record.response_body in text
    missing = client_for(w.staff).get(reverse("staff:request_ids"), {"requestId": "nope"})
    assert missing.context["records"] == [] and b"No request" in missing.content


# ---------------------------------------------------------------- bulk goodwill


def csv_bytes(*rows, header="identifier,reward,quantity,reason,requestId") -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def test_bulk_upload_reports_invalid_rows_before_issuing_anything(w):
    two_configs = f.RewardFactory(brand=w.brand)
    f.PaymentConfigFactory(reward=two_configs, points=Decimal("1"))
    f.PaymentConfigFactory(reward=two_configs, points=Decimal("2"))
    data = csv_bytes(
        f"919000000001,{w.coupon_reward.pk},1,Storm damage,",
        "jo@example.com,Welcome coupon,2,Storm damage,r-1",
        f"nobody,{w.coupon_reward.pk},1,Storm damage,",
        f"919000000001,{w.coupon_reward.pk},0,Storm damage,",
        "919000000001,999999,1,Storm damage,",
        f"919000000001,{w.coupon_reward.pk},1,,",
        f"919000000001,{w.coupon_reward.pk},1,Storm damage,r-1",
        f"919000000001,{two_configs.pk},1,Storm damage,",
        f"919000000001,{w.other_customer.pk},1,Storm damage,",
    )
    client = client_for(w.staff)
    response = client.post(reverse("staff:bulk"), {"till": w.till.pk, "file": _upload("goodwill.csv", data)})
    assert response.status_code == 302
    job = BulkJob.objects.get()
    rows = {r.row_number: r for r in job.rows.all()}
    assert (job.total_rows, job.invalid_rows, job.status) == (9, 7, BulkJobStatus.VALIDATED)
    assert rows[1].status == BulkRowStatus.PENDING and rows[1].request_id == f"bulk-{job.pk}-1"
    assert (
        rows[2].status == BulkRowStatus.PENDING and rows[2].customer == w.customer and rows[2].reward == w.coupon_reward
    )
    assert "no customer" in rows[3].errors
    assert "quantity" in rows[4].errors
    assert "no reward 999999" in rows[5].errors
    assert "reason: required" in rows[6].errors
    assert "also on row 2" in rows[7].errors
    assert "paymentConfigId" in rows[8].errors
    assert "no reward" in rows[9].errors  # a number that is no reward of this org
    page = client.get(response["Location"])
    assert b"7 of 9 rows are invalid" in page.content and b"Issue 2 valid rows" in page.content
    assert not im.Issuance.objects.exists()


def _upload(name, data):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type="text/csv")


def test_bulk_file_level_errors_are_shown_on_the_form(w):
    client = client_for(w.staff)
    for data, message in (
        (b"foo,bar\n1,2\n", b"Missing column"),
        (b"\xff\xfe\x00", b"not UTF-8"),
        (b"identifier,reward,quantity,reason\n", b"no rows"),
    ):
        response = client.post(reverse("staff:bulk"), {"till": w.till.pk, "file": _upload("x.csv", data)})
        assert response.status_code == 400 and message in response.content
    assert not BulkJob.objects.exists()


def bulk_job(w: World, rows: int = 5, *, request_ids=False) -> BulkJob:
    lines = [
        f"919000000001,{w.coupon_reward.pk},1,Storm damage,{f'storm-{i}' if request_ids else ''}" for i in range(rows)
    ]
    job = services.bulk_job_create(actor=w.staff, org=w.org, till=w.till, file_name="storm.csv", data=csv_bytes(*lines))
    services.bulk_job_start(job_id=job.pk, org_ids={w.org.pk})
    return job


def test_bulk_job_runs_to_completion_and_the_result_csv_lists_every_row(w):
    job = bulk_job(w, 5)
    assert bulk_jobs_run() == 5
    job.refresh_from_db()
    assert job.status == BulkJobStatus.DONE and job.lease_owner == ""
    assert set(job.rows.values_list("status", flat=True)) == {BulkRowStatus.ISSUED}
    issuances = im.Issuance.objects.all()
    assert issuances.count() == 5 and {i.channel for i in issuances} == {im.Channel.BULK_UPLOAD}
    assert {i.owner_type for i in issuances} == {"GOODWILL"} and {i.reason for i in issuances} == {"Storm damage"}
    response = client_for(w.staff).get(reverse("staff:bulk_result", args=[job.pk]))
    text = b"".join(response.streaming_content).decode()
    lines = text.strip().splitlines()
    assert lines[0].startswith("row,identifier,reward,quantity,reason,requestId,status,code")
    assert len(lines) == 6 and all(",ISSUED,200," in line and "WELCOME" in line for line in lines[1:])
    w.account.refresh_from_db()
    assert w.account.balance == Decimal("4500")


def test_bulk_job_interrupted_and_rerun_never_issues_a_row_twice(w, monkeypatch):
    job = bulk_job(w, 6)
    assert bulk_jobs_run(max_rows=2) == 2  # the worker is stopped after two rows
    # Then it dies between the engine's commit and the row's update on row 3.
    real_save = BulkJobRow.save

    def crash_on_row_3(self, *args, **kwargs):
        if self.row_number == 3 and self.status != BulkRowStatus.PENDING:
            raise RuntimeError("worker killed")
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(BulkJobRow, "save", crash_on_row_3)
    with pytest.raises(RuntimeError):
        bulk_jobs_run()
    monkeypatch.setattr(BulkJobRow, "save", real_save)
    assert im.IssuanceLine.objects.count() == 3  # row 3 was issued, its row still says PENDING
    assert job.rows.get(row_number=3).status == BulkRowStatus.PENDING
    # The dead worker's lease runs out; a new worker resumes the job.
    BulkJob.objects.filter(pk=job.pk).update(lease_until=timezone.now() - datetime.timedelta(seconds=1))
    assert bulk_jobs_run() == 4
    job.refresh_from_db()
    assert job.status == BulkJobStatus.DONE
    rows = list(job.rows.order_by("row_number"))
    assert [r.status for r in rows] == [BulkRowStatus.ISSUED] * 6
    assert im.IssuanceLine.objects.count() == 6 and im.IssuedUnit.objects.count() == 6
    assert len({r.line_id for r in rows}) == 6 and len({r.coupon_codes for r in rows}) == 6
    assert im.LedgerEntry.objects.filter(kind="REDEMPTION").count() == 6
    w.account.refresh_from_db()
    assert w.account.balance == Decimal("4400")
    # Re-running the whole job (every row again) issues nothing more.
    job.rows.update(status=BulkRowStatus.PENDING)
    services.bulk_job_resume(job_id=job.pk, org_ids={w.org.pk})
    assert bulk_jobs_run() == 6
    assert im.IssuedUnit.objects.count() == 6 and im.LedgerEntry.objects.filter(kind="REDEMPTION").count() == 6
    assert [r.coupon_codes for r in job.rows.order_by("row_number")] == [r.coupon_codes for r in rows]


def test_the_same_file_uploaded_again_with_request_ids_is_not_issued_again(w):
    bulk_job(w, 3, request_ids=True)
    bulk_jobs_run()
    again = bulk_job(w, 3, request_ids=True)
    bulk_jobs_run()
    assert set(again.rows.values_list("status", flat=True)) == {BulkRowStatus.ISSUED}
    assert im.IssuedUnit.objects.count() == 3
    # The same requestId with other content is refused before anything runs (10003).
    changed = services.bulk_job_create(
        actor=w.staff,
        org=w.org,
        till=w.till,
        file_name="x.csv",
        data=csv_bytes(f"919000000001,{w.coupon_reward.pk},2,Storm damage,storm-0"),
    )
    assert "10003" in changed.rows.get().errors


def test_failed_rows_can_be_retried_after_a_top_up(w):
    im.PointsAccount.objects.filter(pk=w.account.pk).update(balance=Decimal("150"), opening_balance=Decimal("150"))
    job = bulk_job(w, 3)
    bulk_jobs_run()
    statuses = list(job.rows.order_by("row_number").values_list("status", "result_code"))
    assert statuses == [(BulkRowStatus.ISSUED, 200), (BulkRowStatus.FAILED, 8004), (BulkRowStatus.FAILED, 8004)]
    from issuance.ledger import points_credit

    points_credit(account_id=w.account.pk, amount=Decimal("200"), reason="top-up")
    services.bulk_job_resume(job_id=job.pk, org_ids={w.org.pk}, retry_failed=True)
    bulk_jobs_run()
    assert set(job.rows.values_list("status", flat=True)) == {BulkRowStatus.ISSUED}
    assert im.IssuedUnit.objects.count() == 3


def test_bulk_job_runs_where_the_org_requires_validation_codes(w):
    """Staff channels are signed in and audited: the engine asks them for no customer code."""
    cm.Organisation.objects.filter(pk=w.org.pk).update(allow_skip_validation=False)
    job = services.bulk_job_create(
        actor=w.staff,
        org=w.org,
        till=w.till,
        file_name="a.csv",
        data=csv_bytes(f"919000000001,{w.coupon_reward.pk},1,x,"),
    )
    services.bulk_job_start(job_id=job.pk, org_ids={w.org.pk})
    bulk_jobs_run()
    job.refresh_from_db()
    assert job.rows.get().status == BulkRowStatus.ISSUED


def test_bulk_pages_query_counts_are_bounded(w, django_assert_max_num_queries):
    job = bulk_job(w, 30)
    bulk_jobs_run()
    client = client_for(w.staff)
    # session, user, perms ×2, profile, children, job, progress counts, rows count + page = 10
    with django_assert_max_num_queries(10):
        assert client.get(reverse("staff:bulk_job", args=[job.pk])).status_code == 200
    with django_assert_max_num_queries(8):
        assert client.get(reverse("staff:bulk_progress", args=[job.pk])).status_code == 200
    with django_assert_max_num_queries(9):
        response = client.get(reverse("staff:bulk_result", args=[job.pk]))
        assert len(b"".join(response.streaming_content).splitlines()) == 31
    with django_assert_max_num_queries(9):
        assert client.get(reverse("staff:bulk")).status_code == 200


def test_progress_fragment_stops_polling_when_the_job_is_done(w):
    job = bulk_job(w, 2)
    client = client_for(w.staff)
    running = client.get(reverse("staff:bulk_progress", args=[job.pk]), HTTP_HX_REQUEST="true")
    assert b'hx-trigger="every 1s"' in running.content and "HX-Refresh" not in running
    bulk_jobs_run()
    done = client.get(reverse("staff:bulk_progress", args=[job.pk]), HTTP_HX_REQUEST="true")
    assert b"hx-trigger" not in done.content and done["HX-Refresh"] == "true"
    assert b"2 of 2 rows done (100%)" in done.content


# ---------------------------------------------------------------- dashboard


def test_dashboard_aggregates_and_lists_low_pools(w, django_assert_max_num_queries):
    issue_direct(w, quantity=2)
    issue_direct(w, f.RewardFactory(brand=w.brand, intouch_points=Decimal("500")))
    empty = f.RewardFactory(
        brand=w.brand,
        redemption_type=RedemptionType.VOUCHER,
        coupon_series=f.CouponSeriesFactory(org=w.org, name="Dry pool"),
    )
    issue_direct(w, empty)  # fails: 8004
    client = client_for(w.staff)
    # session, user, perms ×2, profile, children, per day, by type, by reward, failures,
    # low pools, totals = 12
    with django_assert_max_num_queries(12):
        response = client.get(reverse("staff:dashboard"), {"org": w.org.pk, "days": 7})
    data = response.context["data"]
    assert sum(data.issued_per_day) == 2 and sum(data.points_per_day) == 700
    assert {r["label"]: r["units"] for r in data.by_type} == {"INTOUCH_REWARD": 2, "PHYSICAL_REWARD": 1}
    assert data.failures == [
        {"code": 8004, "message": "fail to issue reward as Coupon Series ID is invalid", "count": 1}
    ]
    assert [s.name for s in data.low_pools] == ["Dry pool", "Welcome pool"]
    assert b'id="chart-per-day"' in response.content and b"chart.umd.js" in response.content
    other = client.get(reverse("staff:dashboard"), {"org": w.other.pk})
    assert other.context["org"] == w.org  # not one of the staff member's orgs: their own


@pytest.mark.django_db
def test_migrate_gives_staff_issuers_the_read_only_goodwill_and_bulk_admins():
    # Created by migrate itself (post_migrate of the staff app), not by a fixture: the staff
    # permissions only exist once that app's post_migrate has run.
    codenames = set(Group.objects.get(name=STAFF_GROUP).permissions.values_list("codename", flat=True))
    assert {"view_goodwillrequest", "view_bulkjob"} <= codenames
    assert not {"change_goodwillrequest", "delete_bulkjob"} & codenames
