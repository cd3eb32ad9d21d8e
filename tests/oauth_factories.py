"""API clients and bearer tokens for tests (apiclients, django-oauth-toolkit)."""

import datetime
import itertools
import secrets

from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_application_model

from apiclients.models import ApiClient
from apiclients.scopes import ALL_SCOPES
from apiclients.services import api_client_create
from tests import factories as f

_seq = itertools.count(1)


def api_client_for(till, *, scopes=ALL_SCOPES, name=None) -> tuple[ApiClient, str]:
    """A registered client bound to ``till`` (through the real service) and its secret."""
    return api_client_create(name=name or f"client {next(_seq)}", till=till, scopes=scopes)


def access_token_for(client: ApiClient, *, scopes=None, expires_in: int = 600):
    """A token as the token endpoint would store it (no HTTP round trip); returns the row
    with its plain value in ``.token``."""
    return get_access_token_model().objects.create(
        application=client.application,
        token=secrets.token_urlsafe(30),
        scope=" ".join(scopes if scopes is not None else sorted(client.scope_set)),
        expires=timezone.now() + datetime.timedelta(seconds=expires_in),
    )


def bearer(token) -> str:
    return f"Bearer {token.token}"


def _api_client():
    return api_client_for(f.TillFactory())[0]


# Rows for tests/test_admin.py, which builds one of each registered model.
ADMIN_BUILDERS = {
    ApiClient: _api_client,
    get_application_model(): lambda: _api_client().application,
    get_access_token_model(): lambda: access_token_for(_api_client()),
}
