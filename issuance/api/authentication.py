"""HTTP Basic for tills and staff, without a full password hash on every request.

Django's PBKDF2 check costs ~0.6 s of CPU here, which would cap a busy till at a few
calls per second. After one successful check the worker remembers an HMAC (under
SECRET_KEY) of (user id, the user's current password hash, the password given) for a
few minutes in Django's cache. A later request with the same credentials matches that
key without hashing; a changed or wrong password, a changed password hash (password
reset) or a deactivated user never match, because the key covers the stored hash and
the user row is read on every request. Nothing reversible is cached.

OAuth2 bearer tokens (client credentials, django-oauth-toolkit) are accepted from
registered API clients only (apiclients.ApiClient): the token acts as the client's user,
in that user's org, on the client's till, with the token's scopes (docs/permissions.md).
"""

import hashlib
import hmac
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import caches
from oauth2_provider.contrib.rest_framework import OAuth2Authentication
from rest_framework import exceptions
from rest_framework.authentication import BasicAuthentication, get_authorization_header

from apiclients.models import ApiClient
from apiclients.selectors import api_client_for_application

CACHE_PREFIX = "basic-auth-ok:"


def _credential_key(user, password: str) -> str:
    message = f"{user.pk}\0{user.password}\0{password}".encode()
    return CACHE_PREFIX + hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


class CachedBasicAuthentication(BasicAuthentication):
    www_authenticate_realm = "rewards"

    def authenticate_credentials(self, userid, password, request=None):
        User = get_user_model()
        user = User._default_manager.select_related("profile__org").filter(**{User.USERNAME_FIELD: userid}).first()
        if user is None:
            # Same cost as a wrong password, so timing does not tell who exists.
            User().set_password(password)
            raise exceptions.AuthenticationFailed("Invalid username/password.")
        cache = caches[settings.API_AUTH_CACHE]
        key = _credential_key(user, password)
        if cache.get(key) is None:
            if not user.check_password(password):
                raise exceptions.AuthenticationFailed("Invalid username/password.")
            cache.set(key, 1, timeout=settings.API_AUTH_CACHE_SECONDS)
        if not user.is_active:
            raise exceptions.AuthenticationFailed("Invalid username/password.")
        return (user, None)


# One answer for every unusable token (unknown, expired, revoked, of a deactivated or
# badly bound client): a caller learns nothing about which it was.
INVALID_TOKEN = "Invalid or expired access token."


@dataclass(frozen=True)
class BoundToken:
    """``request.auth`` of a bearer-token call: the token, its client (whose till the
    call must book on) and the scopes it may use."""

    token: object  # oauth2_provider AccessToken
    client: ApiClient
    scopes: frozenset[str]

    @property
    def till_code(self) -> str:
        return self.client.till.code


class ApiClientTokenAuthentication(OAuth2Authentication):
    www_authenticate_realm = "rewards"

    def authenticate(self, request):
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != b"bearer":
            return None  # a token anywhere but the Authorization header is not looked at
        # The Django request: its POST is empty for a JSON body, so checking the token does
        # not parse the body (DRF's request.POST would) before the caller is known.
        result = super().authenticate(request._request)
        if result is None:
            raise exceptions.AuthenticationFailed(INVALID_TOKEN)
        token = result[1]
        client = api_client_for_application(token.application_id)
        if client is None or client.binding_errors():
            raise exceptions.AuthenticationFailed(INVALID_TOKEN)
        # A client whose scopes were narrowed since the token was issued gets the narrower set.
        scopes = frozenset(token.scope.split()) & client.scope_set
        return client.user, BoundToken(token=token, client=client, scopes=scopes)
