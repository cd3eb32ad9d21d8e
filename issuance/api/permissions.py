"""Who may call the rewards API (docs/permissions.md).

``CanIssueThroughApi`` is the one permission every API view lists. It asks for the default
access group (issuance.api_issue) and an org, and for a bearer token also the scope of the
call and the token's till. Views need nothing else: a view may name its scopes with
``required_scopes``; without it a GET/HEAD/OPTIONS needs rewards:read and anything else
rewards:issue.
"""

from rest_framework.permissions import SAFE_METHODS, BasePermission

from apiclients.scopes import SCOPE_ISSUE, SCOPE_READ

from .authentication import API_ALLOWED, BoundToken, api_permission_rows

# The till_for message (issuance.resolution): a till not bound to the token answers exactly
# like a till of another org or an unknown one.
TILL_NOT_AVAILABLE = "The till is not available to this user"


def required_scopes(request, view) -> frozenset[str]:
    scopes = getattr(view, "required_scopes", None)
    if scopes is not None:
        return frozenset(scopes)
    return frozenset({SCOPE_READ if request.method in SAFE_METHODS else SCOPE_ISSUE})


class TokenHasRequiredScope(BasePermission):
    """A bearer token must carry the call's scopes. Other callers pass (their groups decide)."""

    message = "The access token does not allow this call"

    def has_permission(self, request, view) -> bool:
        if not isinstance(request.auth, BoundToken):
            return True
        return required_scopes(request, view) <= request.auth.scopes


class TokenBoundToTill(BasePermission):
    """A bearer token books on its client's till only: a ``username`` must be that till's
    code. Without one the view decides (the issue calls answer 400). Other callers pass."""

    message = TILL_NOT_AVAILABLE

    def has_permission(self, request, view) -> bool:
        if not isinstance(request.auth, BoundToken):
            return True
        code = request.query_params.get("username")
        return code in (None, "") or code == request.auth.till_code


def user_may_use_api(user) -> bool:
    """issuance.api_issue, held directly or through a group. No query when the
    authentication read it with the user (``API_ALLOWED``: Basic and bearer tokens), else
    ONE query (Django's has_perm loads every permission of the user and of their groups: two
    queries on every call of a busy till). Same semantics: active superusers have it."""
    if not user.is_active:
        return False
    if user.is_superuser:
        return True
    allowed = getattr(user, API_ALLOWED, None)
    if allowed is not None:
        return allowed
    return api_permission_rows(user).exists()


class CanIssueThroughApi(BasePermission):
    """The "default access group" permission (issuance.api_issue), and an organisation;
    for bearer tokens also TokenHasRequiredScope and TokenBoundToTill."""

    message = "This user may not use the rewards API"
    token_checks = (TokenHasRequiredScope, TokenBoundToTill)

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if not (hasattr(user, "profile") and user_may_use_api(user)):
            return False
        for check_class in self.token_checks:
            check = check_class()
            if not check.has_permission(request, view):
                self.message = check.message
                return False
        return True
