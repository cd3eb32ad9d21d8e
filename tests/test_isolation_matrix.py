"""Organisation isolation (R1, R12), generated from the URL conf.

The matrix is built from ``get_resolver()``: every URL pattern under ``api_gateway/`` (and
every staff page under ``staff/``) and each HTTP method it answers becomes a row, and a row
without an entry in ``MATRIX`` (``STAFF_PAGES``) fails, so a new endpoint cannot be left out.

The world: the caller's org (own) with a connected child, another org (other) with its own
connected child (unconnected: connected, but not to the caller). Every org has the same
brand name, a reward, a customer with the same mobile, a points account, a group and a
coupon pool; every row of an org carries that org's marker (ZOWN, ZOTHER, ...). Each cell
calls one endpoint as own's caller, with one kind of authentication, on one org's data
(with or without DATA-SCOPE OTHER naming that org), and checks:
- the status expected for that cell;
- no marker of an org the call may not see appears in the answer; no other org's points move;
- a refusal answers exactly (status and body) as the same call does once the referenced rows
  are gone and the org id names no org: another org's id is indistinguishable from an unknown one.

The Django admin's org-scoped changelists get the same treatment below (one row per model
in two orgs, a staff member of one), and so do authentication failures and CSRF.
"""

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.contrib.messages import get_messages
from django.middleware.csrf import get_token
from django.test import Client, RequestFactory
from django.urls import URLResolver, get_resolver, reverse

from apiclients.scopes import SCOPE_ISSUE, SCOPE_READ
from catalogue.choices import PaymentMode, RedemptionType
from catalogue.models import Brand, CouponCode, Customer, CustomerGroup, Organisation, Reward
from issuance.groups import API_GROUP, APPROVER_GROUP, STAFF_GROUP
from issuance.models import IdempotencyRecord, IdempotencyState, Issuance, IssuanceLine, PointsAccount
from staff.models import BulkJob, GoodwillRequest
from tests import factories as f
from tests.conftest import api_user_for, basic_auth
from tests.oauth_factories import access_token_for, api_client_for, bearer

API_PREFIX = "api_gateway/"
STAFF_PREFIX = "staff/"
MOBILE = "11223569865"
TILL = "till-own"
PHANTOM_ORG_ID = 2_000_000_001  # names no org

# ---------------------------------------------------------------------------------------
# The URL conf, walked
# ---------------------------------------------------------------------------------------


def _walk(resolver, prefix="", namespace=""):
    """(route, namespaced url name, pattern) of every pattern of the URL conf."""
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern).removeprefix("^")
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _walk(entry, route, inner)
        else:
            yield route, f"{namespace}{entry.name}" if entry.name else route, entry


def _methods(pattern) -> list[str]:
    actions = getattr(pattern.callback, "actions", None)  # a DRF ViewSet.as_view({...})
    if actions:
        return sorted(method.upper() for method in actions)
    view_class = getattr(pattern.callback, "view_class", None) or getattr(pattern.callback, "cls", None)
    if view_class is not None:
        return sorted(m.upper() for m in view_class.http_method_names if m not in ("head", "options")
                      and hasattr(view_class, m))
    return ["GET"]  # a function view: at least its GET must be in the matrix


def routes_under(prefix: str) -> dict[str, str]:
    """``"<url name> <METHOD>"`` → route, for every pattern under ``prefix``."""
    found = {}
    for route, name, pattern in _walk(get_resolver()):
        if route.startswith(prefix):
            for method in _methods(pattern):
                found[f"{name} {method}"] = route
    return found


API_ROUTES = routes_under(API_PREFIX)
STAFF_ROUTES = routes_under(STAFF_PREFIX)

# ---------------------------------------------------------------------------------------
# The world
# ---------------------------------------------------------------------------------------

MARKERS = {"own": "ZOWN", "other": "ZOTHER", "child": "ZCHILD", "unconnected": "ZUNCON"}


@dataclass(frozen=True)
class Refs:
    """What a call names: an org's rows (or, after forget(), ids that name nothing)."""

    org_id: int
    reward_id: int
    customer_id: int
    external_id: str
    brand: str = "BUKL"
    till: str = TILL
    group_id: int | None = None
    # Staff pages' rows (staff_world only).
    issuance_id: int | None = None
    line_id: int | None = None
    goodwill_id: int | None = None
    bulk_job_id: int | None = None


@dataclass
class World:
    orgs: dict[str, Organisation]
    refs: dict[str, Refs]
    groups: dict[str, int]
    basic_user: object
    session_user: object
    token: object
    other_token: object = None
    extra: dict = field(default_factory=dict)

    def caller(self, auth: str) -> Client:
        if auth == "basic":
            return Client(HTTP_AUTHORIZATION=basic_auth(self.basic_user.username, "pass"))
        if auth == "bearer":
            return Client(HTTP_AUTHORIZATION=bearer(self.token))
        if auth == "session":
            return session_client(self.session_user, csrf=True)
        raise AssertionError(auth)

    def balances(self) -> dict[str, Decimal]:
        rows = PointsAccount.objects.filter(org__in=self.orgs.values()).values_list("org_id", "balance")
        by_org = {org.pk: key for key, org in self.orgs.items()}
        totals = dict.fromkeys(self.orgs, Decimal(0))
        for org_id, balance in rows:
            totals[by_org[org_id]] += balance
        return totals

    def forget(self, key: str) -> Refs:
        """Delete the rows a call on ``key``'s data names; the org id is replaced by one
        that names no org (orgs are never deleted)."""
        refs = self.refs[key]
        GoodwillRequest.objects.filter(pk=refs.goodwill_id).delete()
        BulkJob.objects.filter(pk=refs.bulk_job_id).delete()
        IdempotencyRecord.objects.filter(org=self.orgs[key]).delete()
        IssuanceLine.objects.filter(pk=refs.line_id).delete()
        Issuance.objects.filter(pk=refs.issuance_id).delete()
        Reward.objects.filter(pk=refs.reward_id).delete()
        CustomerGroup.objects.filter(pk=self.groups[key]).delete()
        PointsAccount.objects.filter(customer_id=refs.customer_id).delete()
        Customer.objects.filter(pk=refs.customer_id).delete()
        return replace(refs, org_id=PHANTOM_ORG_ID)


def session_client(user, *, csrf: bool) -> Client:
    client = Client(enforce_csrf_checks=True)
    if csrf:
        request = RequestFactory().get("/")
        client.defaults["HTTP_X_CSRFTOKEN"] = get_token(request)
        client.cookies[settings.CSRF_COOKIE_NAME] = request.META["CSRF_COOKIE"]
    client.force_login(user)
    return client


def _org_rows(org, key) -> tuple[Refs, int]:
    marker = MARKERS[key]
    brand = f.BrandFactory(org=org, name="BUKL", description=f"{marker} brand")
    series = f.CouponSeriesFactory(org=org, name=f"{marker} series")
    CouponCode.objects.bulk_create(CouponCode(series=series, code=f"{marker}-CODE-{i}") for i in range(3))
    reward = f.RewardFactory(brand=brand, name=f"{marker} reward", redemption_type=RedemptionType.INTOUCH_REWARD,
                             coupon_series=series)
    f.PaymentConfigFactory(reward=reward, mode=PaymentMode.POINTS, points=Decimal("10"))
    customer = f.CustomerFactory(org=org, mobile=MOBILE, external_id=f"ext-{key}", first_name=marker,
                                 last_name=f"{marker} person", email=f"{key}@example.com")
    f.PointsAccountFactory(customer=customer, opening_balance=Decimal("1000"))
    group = f.CustomerGroupFactory(primary_member=customer, name=f"{marker} group")
    refs = Refs(org_id=org.pk, reward_id=reward.pk, customer_id=customer.pk, external_id=f"ext-{key}")
    return refs, group.pk


def build_world() -> World:
    own = f.OrganisationFactory(name="ZOWN org", allow_skip_validation=True)
    other = f.OrganisationFactory(name="ZOTHER org", allow_skip_validation=True)
    orgs = {
        "own": own,
        "other": other,
        "child": f.OrganisationFactory(name="ZCHILD org", parent=own, allow_skip_validation=True),
        "unconnected": f.OrganisationFactory(name="ZUNCON org", parent=other, allow_skip_validation=True),
    }
    refs, groups = {}, {}
    for key, org in orgs.items():
        refs[key], groups[key] = _org_rows(org, key)
    basic_user = api_user_for(own, username="own_till", till_code=TILL)
    till = basic_user.tills.get()
    session_user = f.UserFactory(username="own_person")
    f.UserProfileFactory(user=session_user, org=own)
    session_user.groups.add(Group.objects.get(name=API_GROUP))
    till.users.add(session_user)
    client, _ = api_client_for(till, scopes=[SCOPE_ISSUE, SCOPE_READ])
    other_till = f.TillFactory(org=other, code="till-other")
    other_client, _ = api_client_for(other_till, scopes=[SCOPE_ISSUE, SCOPE_READ])
    return World(orgs=orgs, refs=refs, groups=groups, basic_user=basic_user, session_user=session_user,
                 token=access_token_for(client), other_token=access_token_for(other_client))


@pytest.fixture
def world(db):
    return build_world()


# ---------------------------------------------------------------------------------------
# The matrix: one entry per API route and method
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: dict | None = None
    headers: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Entry:
    call: Callable[[Refs, str | None], Call]  # (refs, DATA-SCOPE) → the request
    expect: Callable[[str, str | None], int]  # (org key, DATA-SCOPE) → status
    books_on_till: bool = True  # books on the till named by `username`, which must be the caller's (R1)


def _scope_headers(refs: Refs, scope: str | None) -> dict:
    if scope is None:
        return {}
    return {"HTTP_DATA_SCOPE": scope, "HTTP_DATA_SCOPE_ORG": str(refs.org_id)}


def _customer(refs: Refs) -> dict:
    body = {"externalId": refs.external_id, "brand": refs.brand}
    if refs.group_id is not None:
        body["user_group2_id"] = refs.group_id
    return body


def _query(refs: Refs) -> str:
    return f"?username={refs.till}&skip_validation=true"


def single_issue(refs, scope):
    path = f"/api_gateway/rewards/core/v1/user/reward/{refs.reward_id}/issue{_query(refs)}"
    return Call("POST", path, _customer(refs), _scope_headers(refs, scope))


def bulk_issue(refs, scope):
    body = {**_customer(refs), "rewards": [{"rewardId": refs.reward_id, "quantity": 1}]}
    return Call("POST", f"/api_gateway/rewards/core/v1/user/rewards/issue{_query(refs)}", body,
                _scope_headers(refs, scope))


def connected_issue(refs, scope):
    item = {"rewardId": refs.reward_id, "quantity": 1}
    if scope == "OTHER":
        item["orgId"] = refs.org_id
    body = {**_customer(refs), "rewards": [item]}
    return Call("POST", f"/api_gateway/rewards/core/v1.1/user/rewards/issue/{_query(refs)}", body,
                _scope_headers(refs, scope))


def validation_code(refs, scope):
    return Call("POST", f"/api_gateway/rewards/core/v1/user/validation_code{_query(refs)}",
                {"externalId": refs.external_id}, _scope_headers(refs, scope))


def reward_list(refs, scope):
    return Call("GET", f"/api_gateway/rewards/core/v1/user/reward/brand/{refs.brand}?userId={refs.customer_id}",
                None, _scope_headers(refs, scope))


def own_only(key, scope):
    """v1 calls act in the caller's org only; DATA-SCOPE headers change nothing."""
    return 200 if key == "own" else 404


def connected_orgs(key, scope):
    """v1.1 (R12): SELF is the caller's org; OTHER may name the caller's children only."""
    if key == "own":
        return 200
    if scope == "OTHER":
        return 200 if key == "child" else 403
    return 404


MATRIX: dict[str, Entry] = {
    "reward-issue-single POST": Entry(single_issue, own_only),
    "reward-issue-bulk POST": Entry(bulk_issue, own_only),
    "reward-issue-connected POST": Entry(connected_issue, connected_orgs),
    "validation-code POST": Entry(validation_code, own_only),
    "reward-list GET": Entry(reward_list, connected_orgs, books_on_till=False),
}

# STAFF_PAGES (staff pages under /staff/) is defined with its test below.


TARGETS = [
    ("own", None),
    ("other", None),
    ("other", "OTHER"),
    ("child", None),
    ("child", "OTHER"),
    ("unconnected", None),
    ("unconnected", "OTHER"),
]
AUTHS = ["basic", "bearer", "session"]


def send(client: Client, call: Call):
    if call.method == "GET":
        return client.get(call.path, **call.headers)
    return client.generic(call.method, call.path, json.dumps(call.body), content_type="application/json",
                          **call.headers)


def entry_for(endpoint: str) -> Entry:
    entry = MATRIX.get(endpoint)
    if entry is None:
        pytest.fail(f"{endpoint} ({API_ROUTES[endpoint]}) has no isolation matrix entry: add it to MATRIX")
    return entry


def assert_no_markers(text: str, *, allowed: set[str]) -> None:
    leaked = [marker for key, marker in MARKERS.items() if key not in allowed and marker in text]
    assert not leaked, f"{leaked} in {text[:500]}"


def assert_status_block(response) -> None:
    body = response.json()
    assert set(body["status"]) >= {"success", "code", "message"}, body
    assert body["status"]["success"] is False
    assert b"Traceback" not in response.content


def test_every_api_route_has_a_matrix_entry():
    assert API_ROUTES, "no route under api_gateway/ found: the URL walk is broken"
    assert sorted(set(API_ROUTES) - set(MATRIX)) == []


def test_matrix_has_no_entry_without_a_route():
    assert sorted(set(MATRIX) - set(API_ROUTES)) == []


@pytest.mark.django_db
@pytest.mark.parametrize(("target", "scope"), TARGETS, ids=[f"{t}-{s or 'SELF'}" for t, s in TARGETS])
@pytest.mark.parametrize("auth", AUTHS)
@pytest.mark.parametrize("endpoint", sorted(API_ROUTES))
def test_isolation_matrix(world, endpoint, auth, target, scope):
    entry = entry_for(endpoint)
    client = world.caller(auth)
    before = world.balances()
    response = send(client, entry.call(world.refs[target], scope))
    expected = entry.expect(target, scope)
    assert response.status_code == expected, response.content

    allowed = {target} if expected == 200 else set()
    assert_no_markers(response.content.decode(), allowed=allowed)
    after = world.balances()
    assert {key for key in before if before[key] != after[key]} <= allowed
    if expected == 200:
        return
    assert_status_block(response)
    unknown = send(client, entry.call(world.forget(target), scope))
    assert (unknown.status_code, unknown.json()) == (response.status_code, response.json())


# ---------------------------------------------------------------------------------------
# One foreign reference at a time, in an otherwise valid own-org call
# ---------------------------------------------------------------------------------------

ISSUE_ENDPOINTS = [name for name in sorted(API_ROUTES) if MATRIX.get(name) and MATRIX[name].call in
                   (single_issue, bulk_issue, connected_issue)]


def _foreign_reference(world: World, kind: str) -> tuple[Refs, Callable[[], Refs]]:
    """Own refs with one reference swapped for the other org's; and how to make that
    reference name nothing."""
    own, other = world.refs["own"], world.refs["other"]
    if kind == "reward":
        def forget():
            Reward.objects.filter(pk=other.reward_id).delete()
            return replace(own, reward_id=other.reward_id)
        return replace(own, reward_id=other.reward_id), forget
    if kind == "customer":
        def forget():
            world.forget("other")
            return replace(own, external_id=other.external_id)
        return replace(own, external_id=other.external_id), forget
    if kind == "brand":
        Brand.objects.create(org=world.orgs["other"], name="ONLY-OTHER")
        def forget():
            Brand.objects.filter(name="ONLY-OTHER").delete()
            return replace(own, brand="ONLY-OTHER")
        return replace(own, brand="ONLY-OTHER"), forget
    if kind == "group":
        def forget():
            CustomerGroup.objects.filter(pk=world.groups["other"]).delete()
            return replace(own, group_id=world.groups["other"])
        return replace(own, group_id=world.groups["other"]), forget
    if kind == "till":
        return replace(own, till="till-other"), lambda: replace(own, till="no-such-till")
    raise AssertionError(kind)


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["reward", "customer", "brand", "group", "till"])
@pytest.mark.parametrize("endpoint", ISSUE_ENDPOINTS)
def test_a_foreign_reference_answers_like_an_unknown_one(world, endpoint, kind):
    entry = MATRIX[endpoint]
    client = world.caller("basic")
    refs, forget = _foreign_reference(world, kind)
    before = world.balances()
    response = send(client, entry.call(refs, None))
    assert response.status_code in (403, 404, 422), response.content
    assert_status_block(response)
    assert_no_markers(response.content.decode(), allowed=set())
    assert world.balances() == before and not IssuanceLine.objects.exists()
    unknown = send(client, entry.call(forget(), None))
    assert (unknown.status_code, unknown.json()) == (response.status_code, response.json())


@pytest.mark.django_db
def test_request_ids_are_scoped_to_the_org(world):
    """R8: the same requestId in another org is another request, never its stored answer."""
    other_user = api_user_for(world.orgs["other"], username="other_till", till_code="till-other-basic")
    own_call = bulk_issue(world.refs["own"], None)
    own_call.body["rewards"][0]["requestId"] = "shared-req"
    other_call = bulk_issue(replace(world.refs["other"], till="till-other-basic"), None)
    other_call.body["rewards"][0]["requestId"] = "shared-req"
    own_first = send(world.caller("basic"), own_call)
    other_response = send(Client(HTTP_AUTHORIZATION=basic_auth(other_user.username, "pass")), other_call)
    assert own_first.status_code == other_response.status_code == 200, other_response.content
    assert "ZOTHER-CODE" in other_response.content.decode() and "ZOWN" not in other_response.content.decode()
    replay = send(world.caller("basic"), own_call)
    assert replay.json() == own_first.json()
    assert IssuanceLine.objects.filter(org=world.orgs["own"]).count() == 1
    assert IssuanceLine.objects.filter(org=world.orgs["other"]).count() == 1


# ---------------------------------------------------------------------------------------
# Authentication failures and CSRF, on every API route
# ---------------------------------------------------------------------------------------

FAILURES = ["no_credentials", "wrong_password", "unknown_user", "expired_token", "revoked_token",
            "other_orgs_token", "other_orgs_till"]
# "other_orgs_till" only where the call books on the till it names (`username`).
FAILURE_CELLS = [
    (endpoint, failure)
    for endpoint in sorted(API_ROUTES)
    for failure in FAILURES
    if failure != "other_orgs_till" or MATRIX.get(endpoint) is None or MATRIX[endpoint].books_on_till
]


@pytest.mark.django_db
@pytest.mark.parametrize(("endpoint", "failure"), FAILURE_CELLS)
def test_auth_failures_answer_with_the_status_block(world, endpoint, failure):
    entry = entry_for(endpoint)
    refs = world.refs["own"]
    if failure == "no_credentials":
        client = Client()
    elif failure in ("wrong_password", "unknown_user"):
        username = world.basic_user.username if failure == "wrong_password" else "nobody-at-all"
        client = Client(HTTP_AUTHORIZATION=basic_auth(username, "wrong"))
    elif failure == "expired_token":
        world.token.expires = world.token.created
        world.token.save()
        client = world.caller("bearer")
    elif failure == "revoked_token":
        world.token.revoke()
        client = world.caller("bearer")
    elif failure == "other_orgs_token":
        client = Client(HTTP_AUTHORIZATION=bearer(world.other_token))
    else:
        client = world.caller("basic")
        refs = replace(refs, till="till-other")
    response = send(client, entry.call(refs, None))
    assert_status_block(response)
    assert_no_markers(response.content.decode(), allowed=set())
    assert not IssuanceLine.objects.exists()
    status, message = response.status_code, response.json()["status"]["message"]
    if failure in ("no_credentials", "wrong_password", "unknown_user", "expired_token", "revoked_token"):
        assert status == 401
        assert response.has_header("WWW-Authenticate")
    elif failure == "other_orgs_token" and "username=" not in entry.call(refs, None).path:
        assert status == 404  # its own org has no such customer
    else:
        assert (status, message) == (403, "The till is not available to this user")
    if failure == "wrong_password":
        unknown_user = send(Client(HTTP_AUTHORIZATION=basic_auth("nobody-at-all", "wrong")), entry.call(refs, None))
        assert (unknown_user.status_code, unknown_user.json()) == (status, response.json())


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", sorted(name for name in API_ROUTES if not name.endswith(" GET")))
def test_session_without_csrf_token_is_refused(world, endpoint):
    response = send(session_client(world.session_user, csrf=False), entry_for(endpoint).call(world.refs["own"], None))
    assert response.status_code == 403
    assert_status_block(response)
    assert response.json()["status"]["message"].startswith("CSRF Failed")
    assert not IssuanceLine.objects.exists()


@pytest.mark.django_db
def test_session_with_csrf_token_issues_for_an_api_user(world):
    response = send(world.caller("session"), single_issue(world.refs["own"], None))
    assert response.status_code == 200, response.content
    assert IssuanceLine.objects.get().issuance.actor == world.session_user


@pytest.mark.django_db
def test_session_of_a_staff_issuer_without_the_api_group_is_refused(world):
    staffer = f.UserFactory(username="staffer", is_staff=True)
    f.UserProfileFactory(user=staffer, org=world.orgs["own"])
    staffer.groups.add(Group.objects.get(name=STAFF_GROUP))
    response = send(session_client(staffer, csrf=True), single_issue(world.refs["own"], None))
    assert response.status_code == 403
    assert response.json()["status"]["message"] == "This user may not use the rewards API"


# ---------------------------------------------------------------------------------------
# Staff pages: a staff member acts for their org and its child orgs (staff/permissions.py)
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StaffPage:
    """``object``: names one org's row; own and child rows answer (GET: 200), rows of other
    and unconnected orgs 404 exactly like unknown ids (POSTs are checked on those only, so
    nothing is issued). ``list``: no id, or ids only in filters; shows own and child rows
    only, whatever org the parameters name. ``public``: sign-in pages and forms without data."""

    path: Callable[[Refs], str]
    kind: str = "object"


def _customer_page(suffix=""):
    return lambda refs: f"/staff/customers/{refs.customer_id}/{suffix}"


STAFF_PAGES: dict[str, StaffPage] = {
    "staff:login GET": StaffPage(lambda refs: "/staff/login/", "public"),
    "staff:login POST": StaffPage(lambda refs: "/staff/login/", "public"),
    "staff:login PUT": StaffPage(lambda refs: "/staff/login/", "public"),
    "staff:logout POST": StaffPage(lambda refs: "/staff/logout/", "public"),
    "staff:search GET": StaffPage(lambda refs: f"/staff/?q={MOBILE}", "list"),
    "staff:customer GET": StaffPage(_customer_page()),
    "staff:goodwill_rewards GET": StaffPage(_customer_page("goodwill/")),
    "staff:goodwill_issue GET": StaffPage(lambda refs: f"/staff/customers/{refs.customer_id}/goodwill/{refs.reward_id}/"),
    "staff:goodwill_issue POST": StaffPage(lambda refs: f"/staff/customers/{refs.customer_id}/goodwill/{refs.reward_id}/"),
    "staff:goodwill_request GET": StaffPage(lambda refs: f"/staff/goodwill/{refs.goodwill_id}/"),
    "staff:goodwill_approve POST": StaffPage(lambda refs: f"/staff/goodwill/{refs.goodwill_id}/approve/"),
    "staff:goodwill_reject POST": StaffPage(lambda refs: f"/staff/goodwill/{refs.goodwill_id}/reject/"),
    "staff:approvals GET": StaffPage(lambda refs: "/staff/approvals/", "list"),
    "staff:issuances GET": StaffPage(lambda refs: f"/staff/issuances/?customer={refs.customer_id}", "list"),
    "staff:issuance GET": StaffPage(lambda refs: f"/staff/issuances/{refs.issuance_id}/"),
    "staff:fulfillment_change POST": StaffPage(lambda refs: f"/staff/lines/{refs.line_id}/fulfillment/"),
    "staff:request_ids GET": StaffPage(lambda refs: "/staff/request-ids/?requestId=shared-req", "list"),
    "staff:bulk GET": StaffPage(lambda refs: "/staff/bulk/", "list"),
    "staff:bulk POST": StaffPage(lambda refs: "/staff/bulk/", "list"),
    "staff:bulk_template GET": StaffPage(lambda refs: "/staff/bulk/template.csv", "public"),
    "staff:bulk_job GET": StaffPage(lambda refs: f"/staff/bulk/{refs.bulk_job_id}/"),
    "staff:bulk_progress GET": StaffPage(lambda refs: f"/staff/bulk/{refs.bulk_job_id}/progress/"),
    "staff:bulk_result GET": StaffPage(lambda refs: f"/staff/bulk/{refs.bulk_job_id}/result.csv"),
    "staff:bulk_start POST": StaffPage(lambda refs: f"/staff/bulk/{refs.bulk_job_id}/start/"),
    "staff:bulk_resume POST": StaffPage(lambda refs: f"/staff/bulk/{refs.bulk_job_id}/resume/"),
    "staff:bulk_retry POST": StaffPage(lambda refs: f"/staff/bulk/{refs.bulk_job_id}/retry/"),
    "staff:bulk_cancel POST": StaffPage(lambda refs: f"/staff/bulk/{refs.bulk_job_id}/cancel/"),
    "staff:dashboard GET": StaffPage(lambda refs: f"/staff/dashboard/?org={refs.org_id}&days=30", "list"),
}


def build_staff_world() -> World:
    """The world, plus a staff member of the own org (staff issuer and approver, on a till of
    each org they act for) and, in every org, an issuance, a goodwill request waiting for
    approval, a bulk job and a stored requestId."""
    world = build_world()
    staffer = f.UserFactory(username="own_staffer")
    f.UserProfileFactory(user=staffer, org=world.orgs["own"])
    staffer.groups.add(*Group.objects.filter(name__in=[STAFF_GROUP, APPROVER_GROUP]))
    requester = f.UserFactory(username="requester")
    for key, org in world.orgs.items():
        marker, refs = MARKERS[key], world.refs[key]
        till = f.TillFactory(org=org, code=f"{marker}-staff-till")
        till.users.add(staffer, requester)
        account = PointsAccount.objects.select_related("customer").get(customer_id=refs.customer_id)
        reward = Reward.objects.get(pk=refs.reward_id)
        line = f.IssuanceLineFactory(issuance__account=account, issuance__till=till, issuance__actor=requester,
                                     reward=reward)
        goodwill = GoodwillRequest.objects.create(
            org=org, requester=requester, customer=account.customer, reward=reward, till=till, quantity=1,
            reason=f"{marker} reason", points_quoted=Decimal("10"), submit_token=f"token-{key}",
        )
        job = BulkJob.objects.create(org=org, till=till, created_by=requester, file_name=f"{marker}.csv")
        IdempotencyRecord.objects.create(org=org, request_id="shared-req", fingerprint="f" * 64,
                                         state=IdempotencyState.DONE, http_status=200,
                                         response_body=json.dumps({"marker": marker}))
        world.refs[key] = replace(refs, issuance_id=line.issuance_id, line_id=line.pk, goodwill_id=goodwill.pk,
                                  bulk_job_id=job.pk)
    world.extra["staffer"] = staffer
    return world


def _staff_answer(client, method: str, path: str) -> tuple[int, str]:
    if method == "GET":
        response = client.get(path)
    else:
        response = client.generic(method, path, urlencode({}), content_type="application/x-www-form-urlencoded")
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return response.status_code, content.decode()


def test_every_staff_page_has_a_matrix_entry():
    assert sorted(set(STAFF_ROUTES) - set(STAFF_PAGES)) == []


def test_staff_matrix_has_no_entry_without_a_route():
    assert sorted(set(STAFF_PAGES) - set(STAFF_ROUTES)) == []


@pytest.mark.django_db
@pytest.mark.parametrize("page", sorted(STAFF_ROUTES))
def test_staff_page_isolation(page, settings):
    settings.STAFF_BULK_WORKER_THREAD = False
    entry = STAFF_PAGES.get(page)
    if entry is None:
        pytest.fail(f"{page} ({STAFF_ROUTES[page]}) has no entry in STAFF_PAGES")
    world = build_staff_world()
    method = page.rsplit(" ", 1)[1]
    client = session_client(world.extra["staffer"], csrf=True)
    visible = {"own", "child"}
    if entry.kind in ("public", "list"):
        for key in ("own", "child", "other", "unconnected"):
            status, content = _staff_answer(client, method, entry.path(world.refs[key]))
            assert status == 200 if (entry.kind, method) == ("list", "GET") else status in (200, 302, 400), content
            assert_no_markers(content, allowed=visible)
        return
    if method == "GET":
        for key in ("own", "child"):
            status, content = _staff_answer(client, method, entry.path(world.refs[key]))
            assert status == 200, content[:500]
            assert_no_markers(content, allowed=visible)
    for key in ("other", "unconnected"):
        foreign = _staff_answer(client, method, entry.path(world.refs[key]))
        assert foreign[0] == 404, foreign[1][:500]
        assert_no_markers(foreign[1], allowed=set())
        unknown = _staff_answer(client, method, entry.path(world.forget(key)))
        assert unknown == foreign


# ---------------------------------------------------------------------------------------
# The admin: every org-scoped ModelAdmin, for a staff member of one org
# ---------------------------------------------------------------------------------------

ORG_SCOPED_ADMINS = sorted(
    (model for model, model_admin in admin.site._registry.items() if getattr(model_admin, "org_path", None)),
    key=lambda model: model._meta.label,
)


def _admin_url(model, view, *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def _shown_strings_of(org_id: int) -> set[str]:
    """How the rows of an org are named on admin pages (their str), for every org-scoped model."""
    names = {Organisation.objects.get(pk=org_id).name}
    for model in ORG_SCOPED_ADMINS:
        org_path = admin.site._registry[model].org_path
        names.update(str(row) for row in model._default_manager.filter(**{org_path: org_id})[:50])
    return names


def _org_of(model, org_path: str, pk) -> int:
    return model._default_manager.filter(pk=pk).values_list(org_path, flat=True).get()


def _answer(client, url, pk) -> tuple:
    """What a staff member sees: status, where it leads, and the messages (the id itself
    masked, since it is what the staff member typed)."""
    client.cookies.pop("messages", None)  # only this request's messages
    response = client.get(url)
    messages = [str(m).replace(str(pk), "<id>") for m in get_messages(response.wsgi_request)]
    return response.status_code, response.get("Location"), messages, response.content


@pytest.mark.django_db
@pytest.mark.parametrize("model", ORG_SCOPED_ADMINS, ids=lambda m: m._meta.label)
def test_admin_shows_a_staff_member_only_their_orgs_rows(model):
    from tests.test_admin import BUILDERS

    model_admin = admin.site._registry[model]
    own_row, other_row = BUILDERS[model](), BUILDERS[model]()
    own_org = _org_of(model, model_admin.org_path, own_row.pk)
    other_org = Organisation.objects.get(pk=_org_of(model, model_admin.org_path, other_row.pk))
    assert own_org != other_org.pk, "the builder put both rows in one org"
    staffer = f.UserFactory(username="scoped_staff", is_staff=True)
    f.UserProfileFactory(user=staffer, org_id=own_org)
    staffer.user_permissions.add(Permission.objects.get(
        content_type__app_label=model._meta.app_label, codename=f"view_{model._meta.model_name}"))
    client = Client()
    client.force_login(staffer)

    changelist = client.get(_admin_url(model, "changelist"))
    assert changelist.status_code == 200
    content = changelist.content.decode()
    assert _admin_url(model, "change", own_row.pk) in content
    assert _admin_url(model, "change", other_row.pk) not in content
    shown = [text for text in _shown_strings_of(other_org.pk)
             if re.search(rf"(?<![\w-]){re.escape(text)}(?![\w-])", content)]
    assert not shown, f"another org's rows named on the page: {shown}"
    searched = client.get(_admin_url(model, "changelist"), {"q": str(other_row.pk)})
    assert _admin_url(model, "change", other_row.pk) not in searched.content.decode()

    unknown_pk = 2_000_000_003
    for view in ("change", "history", "delete"):
        foreign = _answer(client, _admin_url(model, view, other_row.pk), other_row.pk)
        unknown = _answer(client, _admin_url(model, view, unknown_pk), unknown_pk)
        assert foreign == unknown, view
