"""OAuth2 client credentials (apiclients, django-oauth-toolkit): the token endpoint, bearer
tokens on the API, scopes, the till binding, expiry and revocation."""

import base64
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from oauth2_provider.models import AbstractApplication, get_access_token_model, get_application_model
from rest_framework.test import APIClient

from apiclients.models import ApiClient
from apiclients.scopes import SCOPE_ISSUE, SCOPE_READ
from catalogue.choices import PaymentMode
from catalogue.models import UserProfile
from issuance.groups import API_GROUP
from issuance.models import Issuance, IssuanceLine
from tests import factories as f
from tests.conftest import basic_auth
from tests.oauth_factories import access_token_for, api_client_for, bearer

pytestmark = pytest.mark.django_db

TOKEN_URL = "/oauth/token/"
REVOKE_URL = "/oauth/revoke_token/"
MOBILE = "11223569865"
INVALID_TOKEN = {"status": {"success": False, "code": 401, "message": "Invalid or expired access token."}}
TILL_REFUSED = {"status": {"success": False, "code": 403, "message": "The till is not available to this user"}}
SCOPE_REFUSED = {"status": {"success": False, "code": 403, "message": "The access token does not allow this call"}}


def issue_url(reward_id, till="till1"):
    return f"/api_gateway/rewards/core/v1/user/reward/{reward_id}/issue?username={till}&skip_validation=true"


def list_url(customer_id):
    return f"/api_gateway/rewards/core/v1/user/reward/brand/BUKL?userId={customer_id}"


@pytest.fixture
def till(org):
    return f.TillFactory(org=org, code="till1")


@pytest.fixture
def reward(brand):
    reward = f.RewardFactory(pk=501, brand=brand)
    f.PaymentConfigFactory(reward=reward, mode=PaymentMode.POINTS, points=Decimal("10"))
    return reward


@pytest.fixture
def client_and_secret(till):
    return api_client_for(till, scopes=[SCOPE_ISSUE, SCOPE_READ])


def client_basic(client: ApiClient, secret: str) -> str:
    raw = f"{client.application.client_id}:{secret}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def token_request(http, client, secret, **data):
    return http.post(TOKEN_URL, {"grant_type": "client_credentials", **data},
                     HTTP_AUTHORIZATION=client_basic(client, secret))


def with_token(value: str) -> APIClient:
    http = APIClient()
    http.credentials(HTTP_AUTHORIZATION=f"Bearer {value}")
    return http


def issue(http, reward_id=501, till="till1"):
    return http.post(issue_url(reward_id, till), {"mobile": MOBILE, "brand": "BUKL"}, format="json")


# ---------------------------------------------------------------- the token endpoint


def test_client_credentials_token_carries_the_registered_scopes_and_a_short_life(client, client_and_secret, settings):
    response = token_request(client, *client_and_secret)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert set(body["scope"].split()) == {SCOPE_ISSUE, SCOPE_READ}
    assert body["expires_in"] == settings.OAUTH2_PROVIDER["ACCESS_TOKEN_EXPIRE_SECONDS"] <= 3600
    assert "refresh_token" not in body
    assert get_access_token_model().objects.get().application == client_and_secret[0].application


def test_client_may_ask_for_fewer_scopes(client, client_and_secret):
    response = token_request(client, *client_and_secret, scope=SCOPE_READ)
    assert response.status_code == 200
    assert response.json()["scope"] == SCOPE_READ


def test_client_credentials_in_the_body_are_accepted(client, client_and_secret):
    api_client, secret = client_and_secret
    response = client.post(TOKEN_URL, {"grant_type": "client_credentials",
                                       "client_id": api_client.application.client_id, "client_secret": secret})
    assert response.status_code == 200


def test_a_scope_the_client_is_not_registered_for_is_refused(client, till):
    read_only, secret = api_client_for(till, scopes=[SCOPE_READ])
    response = token_request(client, read_only, secret, scope=f"{SCOPE_READ} {SCOPE_ISSUE}")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"
    assert not get_access_token_model().objects.exists()


def test_a_client_that_asks_for_no_scope_gets_only_its_own(client, till):
    read_only, secret = api_client_for(till, scopes=[SCOPE_READ])
    assert token_request(client, read_only, secret).json()["scope"] == SCOPE_READ


def test_wrong_secret_and_unknown_client_answer_alike(client, client_and_secret):
    api_client, _ = client_and_secret
    wrong = token_request(client, api_client, "not-the-secret")
    unknown = client.post(TOKEN_URL, {"grant_type": "client_credentials"},
                          HTTP_AUTHORIZATION="Basic " + base64.b64encode(b"nobody:nothing").decode())
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"error": "invalid_client"}


def test_secret_is_stored_hashed(client_and_secret):
    api_client, secret = client_and_secret
    stored = get_application_model().objects.get(pk=api_client.application_id).client_secret
    assert stored != secret and secret not in stored


@pytest.mark.parametrize("change", ["deactivated", "user_deactivated", "user_made_staff", "profile_moved"])
def test_a_client_that_may_not_act_gets_no_token(client, client_and_secret, change):
    api_client, secret = client_and_secret
    spoil(api_client, change)
    response = token_request(client, api_client, secret)
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_client"}


def test_an_application_that_is_not_a_registered_api_client_gets_no_token(client, org):
    user = f.UserFactory(username="someone")
    application = get_application_model().objects.create(
        name="plain", user=user, client_type=AbstractApplication.CLIENT_CONFIDENTIAL,
        authorization_grant_type=AbstractApplication.GRANT_CLIENT_CREDENTIALS, client_secret="s3cret-s3cret",
    )
    response = client.post(TOKEN_URL, {"grant_type": "client_credentials"},
                           HTTP_AUTHORIZATION="Basic " + base64.b64encode(
                               f"{application.client_id}:s3cret-s3cret".encode()).decode())
    assert response.status_code == 401


def test_other_grants_are_refused(client, client_and_secret):
    f.UserFactory(username="person")
    response = client.post(TOKEN_URL, {"grant_type": "password", "username": "person", "password": "pass"},
                           HTTP_AUTHORIZATION=client_basic(*client_and_secret))
    assert response.status_code in (400, 401)
    assert "access_token" not in response.json()


def test_the_service_binds_identity_org_and_till(client_and_secret, till, org):
    api_client, _ = client_and_secret
    user = api_client.user
    assert not user.has_usable_password() and not user.is_staff
    assert user.profile.org == org == api_client.till.org
    assert user.groups.filter(name=API_GROUP).exists()
    assert till.users.filter(pk=user.pk).exists()
    assert api_client.binding_errors() == []


def test_the_client_identity_cannot_use_http_basic(client, client_and_secret, reward):
    response = client.post(issue_url(501), {"mobile": MOBILE}, content_type="application/json",
                           HTTP_AUTHORIZATION=basic_auth(client_and_secret[0].user.username, ""))
    assert response.status_code == 401


def test_create_api_client_command_prints_id_and_secret_once(till, org, capsys):
    call_command("create_api_client", "--org", str(org.pk), "--till", "till1", "--name", "POS",
                 "--scope", SCOPE_ISSUE)
    out = capsys.readouterr().out
    client_id = out.split("client_id: ")[1].split()[0]
    secret = out.split("client_secret: ")[1].split()[0]
    api_client = ApiClient.objects.get(application__client_id=client_id)
    assert api_client.till == till and api_client.scopes == SCOPE_ISSUE
    assert api_client.application.client_secret != secret


# ---------------------------------------------------------------- bearer tokens on the API


def test_token_from_the_endpoint_issues_on_its_till_as_its_client(client, client_and_secret, account, reward, till):
    api_client, secret = client_and_secret
    value = token_request(client, api_client, secret).json()["access_token"]
    response = issue(with_token(value))
    assert response.status_code == 200, response.content
    issuance = Issuance.objects.get()
    assert issuance.till == till and issuance.actor == api_client.user and issuance.org == api_client.till.org


def test_read_only_token_cannot_issue(client_and_secret, account, reward, till):
    token = access_token_for(client_and_secret[0], scopes=[SCOPE_READ])
    response = issue(with_token(token.token))
    assert response.status_code == 403
    assert response.json() == SCOPE_REFUSED
    assert not IssuanceLine.objects.exists()


def test_issue_only_token_cannot_list_and_read_token_can(client_and_secret, customer, brand):
    issue_only = access_token_for(client_and_secret[0], scopes=[SCOPE_ISSUE])
    read = access_token_for(client_and_secret[0], scopes=[SCOPE_READ])
    refused = with_token(issue_only.token).get(list_url(customer.pk))
    assert refused.status_code == 403 and refused.json() == SCOPE_REFUSED
    assert with_token(read.token).get(list_url(customer.pk)).status_code == 200


def test_narrowing_the_clients_scopes_narrows_its_live_tokens(client_and_secret, account, reward, till):
    api_client, _ = client_and_secret
    token = access_token_for(api_client, scopes=[SCOPE_ISSUE, SCOPE_READ])
    ApiClient.objects.filter(pk=api_client.pk).update(scopes=SCOPE_READ)
    assert issue(with_token(token.token)).json() == SCOPE_REFUSED


def test_token_books_only_on_its_own_till(client_and_secret, account, reward, org, till):
    api_client, _ = client_and_secret
    token = access_token_for(api_client)
    other_till = f.TillFactory(org=org, code="till2")
    other_till.users.add(api_client.user)  # the login may use till2; the token may not
    response = issue(with_token(token.token), till="till2")
    assert response.status_code == 403 and response.json() == TILL_REFUSED
    assert not IssuanceLine.objects.exists()


def test_till_of_another_org_answers_like_an_unknown_till(client_and_secret, account, reward):
    token = access_token_for(client_and_secret[0])
    f.TillFactory(org=f.OrganisationFactory(), code="foreign")
    foreign = issue(with_token(token.token), till="foreign")
    unknown = issue(with_token(token.token), till="no-such-till")
    assert foreign.status_code == unknown.status_code == 403
    assert foreign.json() == unknown.json() == TILL_REFUSED


def test_missing_till_is_400_with_a_token_too(client_and_secret, reward, account):
    token = access_token_for(client_and_secret[0])
    response = with_token(token.token).post("/api_gateway/rewards/core/v1/user/reward/501/issue?skip_validation=true",
                                            {"mobile": MOBILE}, format="json")
    assert response.status_code == 400
    assert response.json()["status"]["message"] == "username (the till) is required"


def test_token_of_another_org_cannot_reach_this_orgs_data(account, reward):
    other_org = f.OrganisationFactory(name="Other", allow_skip_validation=True)
    other_till = f.TillFactory(org=other_org, code="till9")
    f.BrandFactory(org=other_org, name="BUKL")
    f.PointsAccountFactory(customer=f.CustomerFactory(org=other_org, mobile=MOBILE), opening_balance=Decimal("1000"))
    other_client, _ = api_client_for(other_till)
    http = with_token(access_token_for(other_client).token)
    # This org's till: refused like an unknown till.
    assert issue(http, till="till1").json() == TILL_REFUSED
    # This org's reward, on its own till: not found, exactly like an unknown reward id.
    foreign = issue(http, reward_id=501, till="till9")
    reward.payment_configs.all().delete()
    reward.delete()
    unknown = issue(http, reward_id=501, till="till9")
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json() == unknown.json()


@pytest.mark.parametrize("kind", ["expired", "revoked", "unknown", "client_deactivated", "user_deactivated",
                                  "user_made_staff", "profile_moved", "application_without_client"])
def test_unusable_tokens_are_401_and_alike(client_and_secret, reward, account, kind):
    api_client, _ = client_and_secret
    token = access_token_for(api_client, expires_in=-1 if kind == "expired" else 600)
    value = token.token
    if kind == "revoked":
        token.revoke()
    elif kind == "unknown":
        value = "not-a-token"
    elif kind == "application_without_client":
        ApiClient.objects.filter(pk=api_client.pk).delete()
    elif kind.startswith(("client", "user", "profile")):
        spoil(api_client, {"client_deactivated": "deactivated"}.get(kind, kind))
    response = issue(with_token(value))
    assert response.status_code == 401
    assert response.json() == INVALID_TOKEN
    assert b"Traceback" not in response.content
    assert not IssuanceLine.objects.exists()


def test_revocation_endpoint_revokes(client, client_and_secret, reward, account):
    api_client, secret = client_and_secret
    value = token_request(client, api_client, secret).json()["access_token"]
    assert issue(with_token(value)).status_code == 200
    revoked = client.post(REVOKE_URL, {"token": value}, HTTP_AUTHORIZATION=client_basic(api_client, secret))
    assert revoked.status_code == 200
    assert issue(with_token(value)).json() == INVALID_TOKEN


def test_token_in_the_query_string_is_not_accepted(client_and_secret, reward, account):
    token = access_token_for(client_and_secret[0])
    response = APIClient().post(issue_url(501) + f"&access_token={token.token}", {"mobile": MOBILE}, format="json")
    assert response.status_code == 401
    assert not IssuanceLine.objects.exists()


def test_connected_org_scope_works_with_a_token(client_and_secret, org, till):
    child = f.OrganisationFactory(name="Child", parent=org, allow_skip_validation=True)
    child_reward = f.RewardFactory(pk=777, brand=f.BrandFactory(org=child, name="BUKL"))
    f.PaymentConfigFactory(reward=child_reward, mode=PaymentMode.POINTS, points=Decimal("10"))
    f.PointsAccountFactory(customer=f.CustomerFactory(org=child, mobile=MOBILE), opening_balance=Decimal("100"))
    http = with_token(access_token_for(client_and_secret[0]).token)
    response = http.post(
        "/api_gateway/rewards/core/v1.1/user/rewards/issue/?username=till1&skip_validation=true",
        {"mobile": MOBILE, "brand": "BUKL", "rewards": [{"rewardId": 777, "orgId": child.pk}]},
        format="json", HTTP_DATA_SCOPE="OTHER", HTTP_DATA_SCOPE_ORG=str(child.pk),
    )
    assert response.status_code == 200, response.content
    assert IssuanceLine.objects.get().org == child


def spoil(api_client: ApiClient, change: str) -> None:
    user = api_client.user
    if change == "deactivated":
        ApiClient.objects.filter(pk=api_client.pk).update(is_active=False)
    elif change == "user_deactivated":
        type(user).objects.filter(pk=user.pk).update(is_active=False)
    elif change == "user_made_staff":
        type(user).objects.filter(pk=user.pk).update(is_staff=True)
    elif change == "profile_moved":
        UserProfile.objects.filter(user=user).update(org=f.OrganisationFactory())
    else:
        raise AssertionError(change)


def test_api_group_is_still_needed_with_a_token(client_and_secret, reward, account):
    api_client, _ = client_and_secret
    api_client.user.groups.remove(Group.objects.get(name=API_GROUP))
    response = issue(with_token(access_token_for(api_client).token))
    assert response.status_code == 403
    assert response.json()["status"]["message"] == "This user may not use the rewards API"


def test_admin_form_refuses_a_client_bound_to_another_orgs_till(client_and_secret):
    from django.core.exceptions import ValidationError

    api_client, _ = client_and_secret
    moved = ApiClient(application=api_client.application, till=f.TillFactory(org=f.OrganisationFactory()))
    with pytest.raises(ValidationError, match="the till must belong to the organisation of the client's user"):
        moved.clean()
    api_client.scopes = "rewards:everything"
    with pytest.raises(ValidationError, match="unknown scope"):
        api_client.full_clean(exclude=["application"])
