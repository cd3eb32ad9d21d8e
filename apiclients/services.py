"""Writes of the API client registry."""

import secrets
from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from oauth2_provider.generators import generate_client_secret
from oauth2_provider.models import AbstractApplication, get_application_model

from catalogue.models import Till, UserProfile
from issuance.groups import API_GROUP

from .models import ApiClient


@transaction.atomic
def api_client_create(
    *, name: str, till: Till, scopes: Iterable[str], username: str | None = None
) -> tuple[ApiClient, str]:
    """Register an API client bound to ``till`` and return it with its client secret.

    Creates, in one transaction: the client's identity (a user with an unusable password,
    a UserProfile in the till's org, the default access group, allowed on the till), a
    confidential client-credentials Application owned by it, and the ApiClient row. The
    secret is stored hashed: this return value is the only time it can be read."""
    user = get_user_model()(username=username or f"apiclient-{secrets.token_hex(6)}")
    user.set_unusable_password()
    user.full_clean()
    user.save()
    UserProfile.objects.create(user=user, org=till.org)
    user.groups.add(Group.objects.get(name=API_GROUP))
    till.users.add(user)
    secret = generate_client_secret()
    application = get_application_model().objects.create(
        name=name,
        user=user,
        client_type=AbstractApplication.CLIENT_CONFIDENTIAL,
        authorization_grant_type=AbstractApplication.GRANT_CLIENT_CREDENTIALS,
        client_secret=secret,
        hash_client_secret=True,
    )
    client = ApiClient(application=application, till=till, scopes=" ".join(sorted(set(scopes))))
    client.full_clean()
    client.save()
    return client, secret
