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

Both cost ONE query per request (docs/performance.md, "Queries per issue call"; a list call
whose principal is kept folds it into its own statement: issuance.api.kept_principals): Basic reads
the user with profile and org; a bearer token is read with its application, the client's
user, profile and org, the ApiClient and its till, all joined (without the token's, the
application's and the client's columns no check reads: ``_TOKEN_UNREAD``; a bearer call then
costs ~30 µs of CPU more than a Basic one instead of ~60). Either query also answers
whether the user holds the API permission (``API_ALLOWED``, read by
``issuance.api.permissions.user_may_use_api``). Nothing about a token is cached: a revoked
(deleted), expired or re-bound token is refused on its very next request.
"""

import hashlib
import hmac
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.cache import caches
from django.db import connection
from django.db.models import Exists, OuterRef, Q
from django.db.models.expressions import RawSQL
from oauth2_provider.contrib.rest_framework import OAuth2Authentication
from oauth2_provider.models import get_access_token_model
from rest_framework import exceptions
from rest_framework.authentication import BasicAuthentication, get_authorization_header

from apiclients.models import ApiClient
from issuance.rawsql import CompiledQuery

CACHE_PREFIX = "basic-auth-ok:"
REALM = "rewards"
# The attribute an authenticated user carries when its authentication query already answered
# "does this user hold issuance.api_issue (directly or through a group)?".
API_ALLOWED = "api_issue_allowed"


def api_permission_rows(user_ref):
    """issuance.api_issue rows held by the user ``user_ref`` names (a user, or an OuterRef)."""
    return Permission.objects.filter(
        Q(user=user_ref) | Q(group__user=user_ref), content_type__app_label="issuance", codename="api_issue"
    )


def api_permission_exists(user_field: str) -> Exists:
    """The API permission as an annotation of the query that reads the user (``user_field``:
    the path to the user's id in that query)."""
    return Exists(api_permission_rows(OuterRef(user_field)))


# Built once: building the subquery's joins is a good part of its cost, and an annotation is
# copied, never changed, by each query that uses it.
_USER_MAY_USE_API = api_permission_exists("pk")
_TOKEN_USER_MAY_USE_API = api_permission_exists("application__user")


# The row versions (PostgreSQL's ``xmin`` and ``ctid``) of every row an authentication query
# read, as one text, on the instance the query gives: issuance.api.kept_principals re-checks a
# principal by comparing it (any UPDATE of one of the rows makes a new version; a DELETE leaves
# no row).
ROW_VERSIONS = "principal_row_versions"


def principal_models() -> dict[str, list]:
    """The models whose rows each authentication reads, as their queries join them."""
    from catalogue.models import Organisation, Till, UserProfile
    from oauth2_provider.models import get_application_model

    User = get_user_model()
    return {
        "basic": [User, UserProfile, Organisation],
        "bearer": [get_access_token_model(), get_application_model(), User, UserProfile, Organisation, ApiClient, Till],
    }


def row_versions_sql(models) -> str:
    """The versions of the models' rows, each table named as itself (joined once): the
    transaction that wrote the row version (``xmin``) and where it lies (``ctid``, which an
    UPDATE changes even within the transaction that wrote the row)."""
    return " || ',' || ".join(
        f"{table}.xmin::text || {table}.ctid::text"
        for table in (connection.ops.quote_name(m._meta.db_table) for m in models)
    )


def _with_row_versions(queryset, models):
    if connection.vendor != "postgresql":
        return queryset
    return queryset.annotate(**{ROW_VERSIONS: RawSQL(row_versions_sql(models), ())})


def _user_by_name(username: str):
    """The user with profile and org, whether it may use the API and the rows' versions. The
    username is unique: no ORDER BY (as .first() would add)."""
    User = get_user_model()
    queryset = (User._default_manager.select_related("profile__org")
                .annotate(**{API_ALLOWED: _USER_MAY_USE_API})
                .filter(**{User.USERNAME_FIELD: username}))
    return _with_row_versions(queryset, principal_models()["basic"])[:1]


# Compiled once per process (issuance.rawsql.CompiledQuery): building and compiling this query
# was ~10 % of a single issue call's CPU (docs/performance.md); its SQL and rows are unchanged.
_USER_BY_NAME = CompiledQuery(_user_by_name, "username")


def challenge(request) -> str:
    """``WWW-Authenticate`` of a 401: the scheme the caller tried (a failed bearer token is
    answered with a Bearer challenge), Basic when it sent no credentials or Basic ones."""
    header = get_authorization_header(request).split()
    if header and header[0].lower() == b"bearer":
        return f'Bearer realm="{REALM}"'
    return f'Basic realm="{REALM}"'


def _credential_key(user, password: str) -> str:
    message = f"{user.pk}\0{user.password}\0{password}".encode()
    return CACHE_PREFIX + hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


class CachedBasicAuthentication(BasicAuthentication):
    www_authenticate_realm = REALM

    def authenticate_header(self, request):
        return challenge(request)

    def authenticate_credentials(self, userid, password, request=None):
        User = get_user_model()
        user = next(iter(_USER_BY_NAME.all(username=userid)), None)
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
    """A bearer token of a registered, correctly bound API client, checked in one query.

    The toolkit's own check (oauthlib request, validator) reads the token and its application
    and user, then this class read the ApiClient, and the permission check the user's
    permission and org: four queries and the toolkit's overhead per call. Here the token is
    looked up by its SHA-256 checksum (as the toolkit stores it) with everything the checks
    read joined. The checks are the toolkit's (``AccessToken.is_valid``: not expired;
    ``Application.is_usable``) and the client's binding (``ApiClient.binding_errors``). A
    token restricted to a resource (RFC 8707 ``resource``) is handed to the toolkit, which
    checks its audience."""

    www_authenticate_realm = REALM

    def authenticate_header(self, request):
        return challenge(request)

    def authenticate(self, request):
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != b"bearer":
            return None  # a token anywhere but the Authorization header is not looked at
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(INVALID_TOKEN)
        try:
            value = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(INVALID_TOKEN) from None
        token = _token_with_client(value)
        if token is None or not token.is_valid():
            raise exceptions.AuthenticationFailed(INVALID_TOKEN)
        if token.resource:
            # Audience-restricted: the toolkit's full check. The Django request: its POST is
            # empty for a JSON body, so the check does not parse the body before the caller
            # is known.
            if super().authenticate(request._request) is None:
                raise exceptions.AuthenticationFailed(INVALID_TOKEN)
        application = token.application
        if application is None or not application.is_usable(request._request):
            raise exceptions.AuthenticationFailed(INVALID_TOKEN)
        client = getattr(application, "api_client", None)
        if client is None or client.binding_errors():
            raise exceptions.AuthenticationFailed(INVALID_TOKEN)
        # A client whose scopes were narrowed since the token was issued gets the narrower set.
        scopes = frozenset(token.scope.split()) & client.scope_set
        user = client.user
        setattr(user, API_ALLOWED, getattr(token, API_ALLOWED))
        return user, BoundToken(token=token, client=client, scopes=scopes)


def _token_with_client(value: str):
    """The access token of ``value`` with its application, the application's user (profile,
    org), its ApiClient and the client's till, and whether that user holds the API
    permission: one query. None when unknown."""
    checksum = hashlib.sha256(value.encode("utf-8")).hexdigest()
    return next(iter(_TOKEN_BY_CHECKSUM.all(checksum=checksum)), None)


# Columns of the token's row no check reads (wide texts, hashes and timestamps: each loaded value
# costs a conversion and an attribute per call). The user, its profile, org and the till are
# loaded whole: the views use them.
_TOKEN_UNREAD = (
    "source_refresh_token", "token", "token_checksum", "id_token", "created", "updated",
    *(f"application__{name}" for name in (
        "client_id", "redirect_uris", "post_logout_redirect_uris", "client_secret", "hash_client_secret", "name",
        "skip_authorization", "created", "updated", "algorithm", "allowed_origins")),
    "application__api_client__created_at",
)


def _token_by_checksum(checksum: str):
    # The checksum is unique: no ORDER BY (as .first() would add).
    queryset = (get_access_token_model()
                .objects.select_related("application__user__profile__org", "application__api_client__till")
                .defer(*_TOKEN_UNREAD)
                .annotate(**{API_ALLOWED: _TOKEN_USER_MAY_USE_API})
                .filter(token_checksum=checksum))
    return _with_row_versions(queryset, principal_models()["bearer"])[:1]


_TOKEN_BY_CHECKSUM = CompiledQuery(_token_by_checksum, "checksum")  # as _USER_BY_NAME
