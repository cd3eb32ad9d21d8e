"""The list API's kept principals (issuance.api.kept_principals): a warm list call is ONE
statement, its authentication re-checked inside it; whatever changed about the principal since
it was kept (user, password, permission, org, token, client, till) is seen on the very next
call, which then answers exactly what the usual authentication answers."""

import datetime
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from oauth2_provider.models import get_access_token_model
from rest_framework.test import APIClient

from apiclients.models import ApiClient
from catalogue import models as cm
from catalogue.choices import PaymentMode
from issuance.api import kept_principals
from issuance.groups import API_GROUP
from tests import factories as f
from tests.conftest import basic_auth
from tests.oauth_factories import access_token_for

pytestmark = pytest.mark.django_db

URL = "/api_gateway/rewards/core/v1/user/reward/brand/BUKL"
BAD_PASSWORD = {"status": {"success": False, "code": 401, "message": "Invalid username/password."}}
INVALID_TOKEN = {"status": {"success": False, "code": 401, "message": "Invalid or expired access token."}}
NO_API = {"status": {"success": False, "code": 403, "message": "This user may not use the rewards API"}}


@pytest.fixture(autouse=True)
def version_row(db):
    """The catalogue version row, put back if a flushed database lacks it (as in
    tests/test_list_index.py): any statement on a list table upserts it."""
    with connection.cursor() as cursor:
        cursor.execute('UPDATE "catalogue_reward" SET id = id WHERE id < 0')


@pytest.fixture
def reward(brand):
    reward = f.RewardFactory(brand=brand)
    f.PaymentConfigFactory(reward=reward, mode=PaymentMode.POINTS, points=Decimal("10"))
    return reward


def caller(scheme: str, api_user, api_client) -> APIClient:
    """A caller with HTTP Basic (the till login) or a bearer token of a client on its till."""
    client = APIClient()
    if scheme == "basic":
        client.credentials(HTTP_AUTHORIZATION=basic_auth(api_user.username, "pass"))
        client.user = api_user
    else:
        token = access_token_for(api_client)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.token}")
        client.user, client.token = api_client.user, token
    client.scheme = scheme
    return client


@pytest.fixture(params=["basic", "bearer"])
def http(request, api_user, api_client):
    return caller(request.param, api_user, api_client)


@pytest.fixture
def bearer(api_user, api_client):
    return caller("bearer", api_user, api_client)


def call(http, customer, **params):
    with CaptureQueriesContext(connection) as ctx:
        response = http.get(URL, {"userId": customer.pk, **params})
    return response, len(ctx.captured_queries)


def kept(http, customer):
    """A first call authenticates the usual way and keeps the principal; the second takes it."""
    first, _ = call(http, customer)
    assert first.status_code == 200, first.content
    second, statements = call(http, customer)
    assert (second.status_code, statements) == (200, 1)
    assert second.json() == first.json()
    return first.json()


def refused_body(http):
    return BAD_PASSWORD if http.scheme == "basic" else INVALID_TOKEN


def test_a_warm_list_call_is_one_statement_with_its_authentication(http, reward, customer):
    body = kept(http, customer)
    assert [r["id"] for r in body["rewardList"]] == [reward.pk]
    for _ in range(3):
        response, statements = call(http, customer)
        assert (response.status_code, statements, response.json()) == (200, 1, body)


def test_a_user_deactivated_after_a_call_is_refused_on_the_next(http, reward, customer):
    kept(http, customer)
    type(http.user).objects.filter(pk=http.user.pk).update(is_active=False)
    response, _ = call(http, customer)
    assert (response.status_code, response.json()) == (401, refused_body(http))
    assert call(http, customer)[0].status_code == 401  # and stays refused


def test_a_permission_taken_away_after_a_call_is_refused_on_the_next(http, reward, customer):
    kept(http, customer)
    http.user.groups.remove(Group.objects.get(name=API_GROUP))  # no row of the principal changes
    response, _ = call(http, customer)
    assert (response.status_code, response.json()) == (403, NO_API)


def test_a_changed_password_is_refused_on_the_next_call(api, api_user, reward, customer):
    api.scheme = "basic"
    kept(api, customer)
    api_user.set_password("another")
    api_user.save()
    response, _ = call(api, customer)
    assert (response.status_code, response.json()) == (401, BAD_PASSWORD)
    api.credentials(HTTP_AUTHORIZATION=basic_auth(api_user.username, "another"))
    assert call(api, customer)[0].status_code == 200


def test_a_wrong_password_never_takes_a_kept_principal(api, api_user, reward, customer):
    api.scheme = "basic"
    kept(api, customer)
    api.credentials(HTTP_AUTHORIZATION=basic_auth(api_user.username, "wrong"))
    response, _ = call(api, customer)
    assert (response.status_code, response.json()) == (401, BAD_PASSWORD)


def test_a_token_revoked_or_expired_or_rebound_after_a_call_is_refused_on_the_next(bearer, api_client, reward,
                                                                                    customer):
    http = bearer
    kept(http, customer)
    http.token.revoke()
    assert call(http, customer)[0].json() == INVALID_TOKEN
    for change in (
        lambda token: get_access_token_model().objects.filter(pk=token.pk).update(
            expires=timezone.now() - datetime.timedelta(seconds=1)),
        lambda token: ApiClient.objects.filter(pk=api_client.pk).update(is_active=False),
    ):
        token = access_token_for(api_client)
        http.credentials(HTTP_AUTHORIZATION=f"Bearer {token.token}")
        ApiClient.objects.filter(pk=api_client.pk).update(is_active=True)
        kept(http, customer)
        change(token)
        response, _ = call(http, customer)
        assert (response.status_code, response.json()) == (401, INVALID_TOKEN)


def test_narrowed_scopes_apply_on_the_next_call(bearer, api_client, reward, customer):
    http = bearer
    kept(http, customer)
    ApiClient.objects.filter(pk=api_client.pk).update(scopes="rewards:issue")
    response, _ = call(http, customer)
    assert response.status_code == 403
    assert response.json()["status"]["message"] == "The access token does not allow this call"


def test_an_org_changed_after_a_call_is_read_again_and_kept_anew(http, org, reward, customer):
    """A change to any row of the principal (here the org's time zone) throws away the answer
    computed with the kept one: the call is made again with the usual authentication (and the
    new time zone), and keeps the principal anew."""
    body = kept(http, customer)
    cm.Organisation.objects.filter(pk=org.pk).update(time_zone="Asia/Kolkata")
    response, statements = call(http, customer)
    assert response.status_code == 200 and response.json() == body
    assert statements >= 3  # the statement whose check failed, the authentication, the list's own
    seen = []
    original = kept_principals.KeptPrincipalAuthentication.authenticate

    def spy(self, request):
        found = original(self, request)
        seen.append(found and found[0].profile.org.time_zone)
        return found

    kept_principals.KeptPrincipalAuthentication.authenticate = spy
    try:
        response, statements = call(http, customer)
    finally:
        kept_principals.KeptPrincipalAuthentication.authenticate = original
    assert (response.status_code, statements, seen) == (200, 1, ["Asia/Kolkata"])


def test_an_error_is_answered_only_to_a_checked_principal(http, reward, customer):
    """A call failing before its statement (no userId: 15006; a customer id nobody has: 1014)
    is made again with the usual authentication: a principal that lost its access gets 401,
    not the error."""
    kept(http, customer)
    response = http.get(URL)
    assert response.status_code == 400 and response.json()["status"]["code"] == 15006
    response = http.get(URL, {"userId": 10**30})
    assert response.status_code == 404 and response.json()["status"]["code"] == 1014
    response, statements = call(http, customer)
    assert (response.status_code, statements) == (200, 1)  # kept again by the call made anew
    type(http.user).objects.filter(pk=http.user.pk).update(is_active=False)
    for params in ({}, {"userId": 10**30}, {"userId": 2**40}, {"userId": customer.pk, "page": "x"}):
        response = http.get(URL, params)
        assert (response.status_code, response.json()) == (401, refused_body(http)), params


def test_the_usual_way_without_the_list_index(http, reward, customer, settings):
    settings.LIST_INDEX = False
    for _ in range(2):
        response, statements = call(http, customer)
        assert response.status_code == 200 and statements > 1
    assert not kept_principals._PRINCIPALS


def test_other_api_calls_authenticate_the_usual_way(api, reward, customer, account):
    api.scheme = "basic"
    kept(api, customer)
    with CaptureQueriesContext(connection) as ctx:
        response = api.get("/api_gateway/rewards/core/v1/user/reward/brand/BUKL/", {"userId": customer.pk})
    assert response.status_code == 200 and len(ctx.captured_queries) == 1
    from tests.conftest import ISSUE_SINGLE

    with CaptureQueriesContext(connection) as ctx:
        response = api.post(ISSUE_SINGLE.format(reward.pk), {"mobile": customer.mobile}, format="json")
    assert response.status_code == 200, response.content
    assert any("auth_user" in q["sql"] and "password" in q["sql"] for q in ctx.captured_queries)


@pytest.mark.django_db(transaction=True)
def test_changes_committed_by_another_connection_are_seen_on_the_next_call(api, api_user, org, reward, customer):
    """The production case: the change is another transaction's (a new row version, ``xmin``)."""
    import threading

    api.scheme = "basic"

    def committed_elsewhere(fn):
        def run():
            try:
                fn()
            finally:
                connection.close()

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(30)

    body = kept(api, customer)
    committed_elsewhere(lambda: cm.Organisation.objects.filter(pk=org.pk).update(name="Renamed"))
    response, statements = call(api, customer)
    assert (response.status_code, response.json()) == (200, body) and statements >= 3
    assert call(api, customer)[1] == 1
    committed_elsewhere(lambda: type(api_user).objects.filter(pk=api_user.pk).update(is_active=False))
    response, _ = call(api, customer)
    assert (response.status_code, response.json()) == (401, BAD_PASSWORD)


def test_nothing_is_answered_to_an_unchecked_principal(http, reward, customer):
    """OPTIONS runs no statement: it is answered after the usual authentication."""
    kept(http, customer)
    response = http.options(URL)
    assert response.status_code == 200
    type(http.user).objects.filter(pk=http.user.pk).update(is_active=False)
    response = http.options(URL)
    assert (response.status_code, response.json()) == (401, refused_body(http))


def test_an_audience_restricted_token_is_not_kept(api_client, reward, customer):
    token = access_token_for(api_client)
    get_access_token_model().objects.filter(pk=token.pk).update(resource=["http://testserver/api_gateway/"])
    http = APIClient()
    http.credentials(HTTP_AUTHORIZATION=f"Bearer {token.token}")
    response, _ = call(http, customer)
    assert response.status_code == 200, response.content
    assert not kept_principals._PRINCIPALS
    response, statements = call(http, customer)
    assert response.status_code == 200 and statements > 1
