"""HTTP Basic for tills and staff, without a full password hash on every request.

Django's PBKDF2 check costs ~0.6 s of CPU here, which would cap a busy till at a few
calls per second. After one successful check the worker remembers an HMAC (under
SECRET_KEY) of (user id, the user's current password hash, the password given) for a
few minutes in Django's cache. A later request with the same credentials matches that
key without hashing; a changed or wrong password, a changed password hash (password
reset) or a deactivated user never match, because the key covers the stored hash and
the user row is read on every request. Nothing reversible is cached.
"""

import hashlib
import hmac

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import caches
from rest_framework import exceptions
from rest_framework.authentication import BasicAuthentication

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
