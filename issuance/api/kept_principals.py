"""A list call's authentication, re-checked inside the call's own statement.

Every API call authenticates with one query (issuance.api.authentication): the user (HTTP
Basic) or the token and its client (bearer), with profile and org and whether the API
permission is held. A list call then makes one statement of its own (catalogue.list_index).
Two round trips to PostgreSQL where the work needs one: on this machine the second costs
about a tenth of a list call (docs/performance.md, "The list's authentication in its
statement").

So the list API keeps, per process, the principal of each Authorization header it has
authenticated the usual way (and whose permission check passed): the user and ``request.auth``
as that query loaded them, with the versions (``xmin``) of every row it read. A later list call
with the same header takes the kept principal without a query, and its statement answers, in
the same snapshot as everything else it reads, one more row: present only if every one of those
rows is still the version that was read and the user still holds the API permission
(``PrincipalCheck``). If it is absent (a password, a user, a profile, an org, a token, a client
or a till changed, was deleted, or a permission was taken away), the answer computed is thrown
away, the kept principal forgotten, and the call is made again from the start with the usual
authentication, which refuses it or answers it with what holds now. A call that fails before
its statement ran (a bad parameter) is made again the same way, so an error is never answered
to a principal that was not checked. So a deactivated user, a changed password or a revoked
token is refused on its very next list call, as with the usual authentication.

Kept only where the list reads the default database (no read replica: a replica's rows may
lag the primary's, where the usual authentication reads), on PostgreSQL with the list index
on, for ``settings.API_AUTH_CACHE_SECONDS`` at most, and a bearer token only while it is valid.
The key is an HMAC (under SECRET_KEY) of the header: nothing reversible is kept.
"""

import functools
import hashlib
import hmac
import time
from typing import NamedTuple

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, connection
from django.db.models import Q
from rest_framework.authentication import BaseAuthentication

from catalogue import list_index

from .authentication import (
    _USER_MAY_USE_API,
    ROW_VERSIONS,
    ApiClientTokenAuthentication,
    BoundToken,
    CachedBasicAuthentication,
    challenge,
    principal_models,
    row_versions_sql,
)

KIND = list_index.PRINCIPAL_ROW  # the kind of the check's row in the list's first statement


class PrincipalCheck(NamedTuple):
    """SQL giving one row (1, 0, KIND) exactly when the principal is still what was kept, and
    its parameters; as a branch of the list's UNION ALL."""

    sql: str
    params: list


class KeptPrincipal(NamedTuple):
    user: object
    auth: object  # None (HTTP Basic) or a BoundToken
    check: PrincipalCheck
    until: float  # time.monotonic()


class PrincipalChanged(Exception):
    """The statement's check found the kept principal changed: the call is made anew."""


_PRINCIPALS: dict[str, KeptPrincipal] = {}
MAX_PRINCIPALS = 4096
_ATTRIBUTE = "kept_principal"  # on the Django request: the KeptPrincipal this call took
_CONFIRMED = "kept_principal_confirmed"  # on the Django request: its check row was there
_REFUSED = "kept_principal_refused"  # on the Django request: authenticate the usual way


def clear() -> None:
    _PRINCIPALS.clear()


def usable() -> bool:
    return list_index.enabled() and list_index._alias() == DEFAULT_DB_ALIAS


def _key(header: str) -> str:
    return hmac.new(settings.SECRET_KEY.encode(), header.encode(), hashlib.sha256).hexdigest()


def _header(request) -> str | None:
    return request.META.get("HTTP_AUTHORIZATION") or None


class KeptPrincipalAuthentication(BaseAuthentication):
    """The principal kept for this Authorization header, unchecked: for views that fold
    ``check_of`` into their first statement (the list API). None when nothing is kept, so
    the usual authentication classes run next."""

    def authenticate_header(self, request):
        return challenge(request)

    def authenticate(self, request):
        django_request = request._request
        if getattr(django_request, _REFUSED, False) or not usable():
            return None
        header = _header(django_request)
        kept = None if header is None else _PRINCIPALS.get(_key(header))
        if kept is None:
            return None
        if time.monotonic() >= kept.until or (isinstance(kept.auth, BoundToken) and not kept.auth.token.is_valid()):
            _PRINCIPALS.pop(_key(header), None)
            return None
        setattr(django_request, _ATTRIBUTE, kept)
        return kept.user, kept.auth


def keep(request) -> None:
    """After ``request`` authenticated the usual way and passed the permission checks: keep its
    principal for the next list calls with the same Authorization header."""
    django_request = request._request
    header = _header(django_request)
    if header is None or getattr(django_request, _ATTRIBUTE, None) is not None or not usable():
        return
    authenticator = request.successful_authenticator
    if isinstance(authenticator, KeptPrincipalAuthentication):
        return
    if isinstance(authenticator, CachedBasicAuthentication) and request.auth is None:
        versions, check = getattr(request.user, ROW_VERSIONS, None), _basic_check_sql()
        subject = request.user.pk
    elif isinstance(authenticator, ApiClientTokenAuthentication) and isinstance(request.auth, BoundToken):
        if request.auth.token.resource:  # audience-restricted: the toolkit checks it against each request
            return
        versions, check = getattr(request.auth.token, ROW_VERSIONS, None), _bearer_check_sql()
        subject = request.auth.token.pk
    else:
        return
    if versions is None:  # a row missing (a user without profile): nothing to compare
        return
    if len(_PRINCIPALS) >= MAX_PRINCIPALS:
        _PRINCIPALS.clear()  # a flood of distinct headers: start over rather than grow
    until = time.monotonic() + settings.API_AUTH_CACHE_SECONDS
    permission = [request.user.pk if p is _SUBJECT else p for p in _permission_sql()[1]]
    params = [subject, versions, *permission]
    _PRINCIPALS[_key(header)] = KeptPrincipal(request.user, request.auth, PrincipalCheck(check, params), until)


def check_of(request) -> PrincipalCheck | None:
    """The check the call's statement must answer, when it took a kept principal."""
    kept = getattr(request._request, _ATTRIBUTE, None)
    return None if kept is None else kept.check


def confirm(request, found: bool) -> None:
    """What the statement answered to ``check_of``: raises PrincipalChanged if the row was
    absent (the principal is forgotten)."""
    if found:
        setattr(request._request, _CONFIRMED, True)
        return
    forget(request)
    raise PrincipalChanged


def unconfirmed(request) -> bool:
    """The call took a kept principal whose check has not answered (yet)."""
    django_request = request._request
    return getattr(django_request, _ATTRIBUTE, None) is not None and not getattr(django_request, _CONFIRMED, False)


def forget(request) -> None:
    """Forget the principal kept for the call's header; the call, if made anew on the same
    request, authenticates the usual way."""
    django_request = request._request
    header = _header(django_request)
    if header is not None:
        _PRINCIPALS.pop(_key(header), None)
    django_request.__dict__.pop(_ATTRIBUTE, None)
    django_request.__dict__.pop(_CONFIRMED, None)
    setattr(django_request, _REFUSED, True)


_SUBJECT = object()  # in a check's parameter template: the user's id


@functools.cache
def _permission_sql() -> tuple[str, tuple]:
    """EXISTS: the user holds the API permission (or is a superuser), as the authentication
    queries' ``API_ALLOWED`` says (the same expression, compiled by the ORM), and its
    parameters (``_SUBJECT``: the user's id)."""
    User = get_user_model()
    mark = -2_147_480_001  # an id no user has; no other parameter of the query is this
    queryset = User._default_manager.filter(Q(is_superuser=True) | _USER_MAY_USE_API, pk=mark).values("pk")
    sql, params = queryset.query.get_compiler(DEFAULT_DB_ALIAS).as_sql()
    assert list(params).count(mark) == 1, params
    return f"EXISTS({sql})", tuple(_SUBJECT if p == mark else p for p in params)


def _joined(models, joins: list[tuple[int, str, int, str]]) -> str:
    qn = connection.ops.quote_name
    tables = [qn(m._meta.db_table) for m in models]
    sql = tables[0]
    for left, left_column, right, right_column in joins:
        sql += f" INNER JOIN {tables[right]} ON ({tables[left]}.{qn(left_column)} = {tables[right]}.{qn(right_column)})"
    return sql


@functools.cache
def _basic_check_sql() -> str:
    """Params: the user's id, the row versions, ``_permission_sql``'s."""
    models = principal_models()["basic"]  # user, profile, org
    qn = connection.ops.quote_name
    user = qn(models[0]._meta.db_table)
    return (f"SELECT 1, 0, {KIND} FROM {_joined(models, [(0, 'id', 1, 'user_id'), (1, 'org_id', 2, 'id')])} "
            f"WHERE {user}.{qn('id')} = %s AND ({row_versions_sql(models)}) = %s AND {_permission_sql()[0]}")


@functools.cache
def _bearer_check_sql() -> str:
    """Params: the token's id, the row versions, ``_permission_sql``'s."""
    models = principal_models()["bearer"]  # token, application, user, profile, org, api client, till
    qn = connection.ops.quote_name
    token = qn(models[0]._meta.db_table)
    joins = [(0, "application_id", 1, "id"), (1, "user_id", 2, "id"), (2, "id", 3, "user_id"), (3, "org_id", 4, "id"),
             (1, "id", 5, "application_id"), (5, "till_id", 6, "id")]
    return (f"SELECT 1, 0, {KIND} FROM {_joined(models, joins)} "
            f"WHERE {token}.{qn('id')} = %s AND ({row_versions_sql(models)}) = %s AND {_permission_sql()[0]}")
