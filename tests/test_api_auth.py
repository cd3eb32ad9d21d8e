"""HTTP Basic without a password hash per request (issuance.api.authentication)."""

from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache

from tests.conftest import ISSUE_SINGLE, basic_auth

pytestmark = pytest.mark.django_db
URL = ISSUE_SINGLE.format(999)  # an unknown reward: a cheap 404 after authentication


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()
    yield
    cache.clear()


def call(client, password="pass"):
    return client.post(URL, {"mobile": "1"}, content_type="application/json",
                       HTTP_AUTHORIZATION=basic_auth("till_user", password))


def test_password_is_hashed_once_then_remembered(client, api_user, account):
    User = get_user_model()
    with mock.patch.object(User, "check_password", autospec=True, side_effect=User.check_password) as check:
        responses = [call(client) for _ in range(5)]
    assert [r.status_code for r in responses] == [404] * 5
    assert check.call_count == 1


def test_wrong_password_is_never_remembered(client, api_user, account):
    assert call(client).status_code == 404
    assert call(client, "wrong").status_code == 401
    assert call(client, "wrong").status_code == 401


def test_password_change_invalidates_the_remembered_credentials(client, api_user, account):
    assert call(client).status_code == 404
    api_user.set_password("new-pass")
    api_user.save()
    assert call(client).status_code == 401
    assert call(client, "new-pass").status_code == 404


def test_deactivated_user_is_refused_even_when_remembered(client, api_user, account):
    assert call(client).status_code == 404
    get_user_model().objects.filter(pk=api_user.pk).update(is_active=False)
    response = call(client)
    assert response.status_code == 401
    assert response.json() == {"status": {"success": False, "code": 401, "message": "Invalid username/password."}}


def test_cache_holds_no_password_material(client, api_user, account):
    call(client)
    keys = list(cache._cache.keys())  # LocMemCache internals: the stored keys
    assert keys and all("pass" not in k and api_user.password not in k for k in keys)
