"""Bearer tokens on the API (issuance.api.authentication.ApiClientTokenAuthentication): one query
per call, nothing cached, so a revoked, expired or re-bound token stops working on its very next
request; a refused token is answered with a Bearer challenge."""

import datetime
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone
from oauth2_provider.models import get_access_token_model
from rest_framework.test import APIClient

from apiclients.models import ApiClient
from catalogue.choices import PaymentMode
from issuance.groups import API_GROUP
from tests import factories as f
from tests.conftest import ISSUE_SINGLE, basic_auth
from tests.oauth_factories import access_token_for

pytestmark = pytest.mark.django_db

INVALID_TOKEN = {"status": {"success": False, "code": 401, "message": "Invalid or expired access token."}}
BEARER_CHALLENGE = 'Bearer realm="rewards"'
BASIC_CHALLENGE = 'Basic realm="rewards"'


@pytest.fixture
def reward(brand):
    reward = f.RewardFactory(brand=brand)
    f.PaymentConfigFactory(reward=reward, mode=PaymentMode.POINTS, points=Decimal("10"))
    return reward


@pytest.fixture
def token(api_client):
    return access_token_for(api_client)


def caller(header: str) -> APIClient:
    http = APIClient()
    http.credentials(HTTP_AUTHORIZATION=header)
    return http


def issue(http, reward):
    return http.post(ISSUE_SINGLE.format(reward.pk), {"mobile": "11223569865"}, format="json")


# ---------------------------------------------------------------- the challenge of a 401


@pytest.mark.parametrize("header", ["Bearer not-a-token", "Bearer", "Bearer two parts", "bearer not-a-token"])
def test_a_refused_bearer_token_gets_a_bearer_challenge(account, reward, header):
    response = issue(caller(header), reward)
    assert response.status_code == 401
    assert response.json() == INVALID_TOKEN
    assert response["WWW-Authenticate"] == BEARER_CHALLENGE


def test_an_expired_token_gets_a_bearer_challenge(account, reward, api_client):
    expired = access_token_for(api_client, expires_in=-1)
    response = issue(caller(f"Bearer {expired.token}"), reward)
    assert (response.status_code, response["WWW-Authenticate"]) == (401, BEARER_CHALLENGE)


def test_basic_and_no_credentials_still_get_a_basic_challenge(client, api_user, account, reward):
    wrong = issue(caller(basic_auth(api_user.username, "wrong")), reward)
    none = client.post(ISSUE_SINGLE.format(reward.pk), {"mobile": "11223569865"}, content_type="application/json")
    assert wrong.status_code == none.status_code == 401
    assert wrong["WWW-Authenticate"] == none["WWW-Authenticate"] == BASIC_CHALLENGE


# ---------------------------------------------------------------- every call re-checks the token


def test_a_token_revoked_after_use_is_refused_on_the_next_request(account, reward, token):
    http = caller(f"Bearer {token.token}")
    assert issue(http, reward).status_code == 200
    token.revoke()
    response = issue(http, reward)
    assert response.status_code == 401
    assert response.json() == INVALID_TOKEN


def test_a_token_that_expires_after_use_is_refused_on_the_next_request(account, reward, token):
    http = caller(f"Bearer {token.token}")
    assert issue(http, reward).status_code == 200
    get_access_token_model().objects.filter(pk=token.pk).update(expires=timezone.now() - datetime.timedelta(seconds=1))
    assert issue(http, reward).json() == INVALID_TOKEN


def test_a_client_deactivated_after_use_is_refused_on_the_next_request(account, reward, token, api_client):
    http = caller(f"Bearer {token.token}")
    assert issue(http, reward).status_code == 200
    ApiClient.objects.filter(pk=api_client.pk).update(is_active=False)  # no signal: nothing to invalidate
    assert issue(http, reward).json() == INVALID_TOKEN


def test_a_client_user_taken_from_the_api_group_is_refused_on_the_next_request(account, reward, token, api_client):
    http = caller(f"Bearer {token.token}")
    assert issue(http, reward).status_code == 200
    api_client.user.groups.remove(Group.objects.get(name=API_GROUP))
    response = issue(http, reward)
    assert response.status_code == 403
    assert response.json()["status"]["message"] == "This user may not use the rewards API"


def test_narrowed_scopes_apply_on_the_next_request(account, reward, token, api_client):
    http = caller(f"Bearer {token.token}")
    assert issue(http, reward).status_code == 200
    ApiClient.objects.filter(pk=api_client.pk).update(scopes="rewards:read")
    response = issue(http, reward)
    assert response.status_code == 403
    assert response.json()["status"]["message"] == "The access token does not allow this call"


# ---------------------------------------------------------------- audience-restricted tokens (RFC 8707)


def test_a_token_restricted_to_this_api_works(account, reward, token):
    get_access_token_model().objects.filter(pk=token.pk).update(resource=["http://testserver/api_gateway/"])
    assert issue(caller(f"Bearer {token.token}"), reward).status_code == 200


def test_a_token_restricted_to_another_resource_is_refused(account, reward, token):
    get_access_token_model().objects.filter(pk=token.pk).update(resource=["https://elsewhere.example/api/"])
    response = issue(caller(f"Bearer {token.token}"), reward)
    assert response.status_code == 401
    assert response.json() == INVALID_TOKEN
