"""The OAuth2 scopes of the rewards API, and the scopes backend that limits each client to
the scopes it is registered for (ApiClient.scopes).

Settings name the scopes literally (OAUTH2_PROVIDER["SCOPES"]); these constants are the
names code uses. A token carries what it was granted; a call needs the scope of its kind
(issuance.api.permissions).
"""

from oauth2_provider.scopes import SettingsScopes

SCOPE_ISSUE = "rewards:issue"
SCOPE_READ = "rewards:read"
ALL_SCOPES = (SCOPE_ISSUE, SCOPE_READ)


def scope_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


class ApiClientScopes(SettingsScopes):
    """A token request may ask only for scopes its ApiClient is registered for; one that
    asks for none gets all of them."""

    def get_available_scopes(self, application=None, request=None, *args, **kwargs):
        scopes = super().get_available_scopes(application, request, *args, **kwargs)
        if application is None:
            return scopes
        allowed = _registered_scopes(application)
        return [scope for scope in scopes if scope in allowed]

    def get_default_scopes(self, application=None, request=None, *args, **kwargs):
        if application is None:
            return super().get_default_scopes(application, request, *args, **kwargs)
        return self.get_available_scopes(application, request, *args, **kwargs)


def _registered_scopes(application) -> frozenset[str]:
    from .models import ApiClient

    text = ApiClient.objects.filter(application=application).values_list("scopes", flat=True).first()
    return scope_set(text or "")
