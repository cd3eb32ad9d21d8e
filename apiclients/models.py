"""Who may call the rewards API with an OAuth2 bearer token, and what a token is bound to.

An ``ApiClient`` ties one django-oauth-toolkit Application (confidential, client-credentials
grant) to a till. The Application's ``user`` is the client's identity: a dedicated login
with an unusable password (it can never use HTTP Basic or a session), a UserProfile in the
till's org and the default access group. Every token of the client therefore acts as that
user, in that user's org, on that one till, with at most the client's scopes.
"""

from django.core.exceptions import ValidationError
from django.db import models
from oauth2_provider.models import AbstractApplication
from oauth2_provider.settings import oauth2_settings

from .scopes import ALL_SCOPES, SCOPE_READ, scope_set


def validate_scopes(value: str) -> None:
    scopes = value.split()
    unknown = sorted(set(scopes) - set(ALL_SCOPES))
    if unknown:
        raise ValidationError(f"unknown scope(s): {', '.join(unknown)}; known: {', '.join(ALL_SCOPES)}")
    if not scopes:
        raise ValidationError("at least one scope is required")


class ApiClient(models.Model):
    application = models.OneToOneField(
        oauth2_settings.APPLICATION_MODEL, on_delete=models.CASCADE, related_name="api_client"
    )
    till = models.ForeignKey(
        "catalogue.Till",
        on_delete=models.PROTECT,
        related_name="api_clients",
        help_text="Every token of this client books on this till only: `username` must be its code.",
    )
    scopes = models.CharField(
        max_length=200,
        default=SCOPE_READ,
        validators=[validate_scopes],
        help_text="Space-separated: rewards:issue (POST calls), rewards:read (GET calls).",
    )
    is_active = models.BooleanField(
        default=True, help_text="Off: the token endpoint refuses the client and its tokens stop working at once."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API client"

    def __str__(self) -> str:
        return self.application.name or self.application.client_id

    @property
    def user(self):
        return self.application.user

    @property
    def scope_set(self) -> frozenset[str]:
        return scope_set(self.scopes)

    def binding_errors(self) -> list[str]:
        """Why this client may not act (empty: it may). The one rule, checked when the
        client is saved from a form, when it asks for a token and on every call."""
        errors = []
        application, user = self.application, self.application.user
        if not self.is_active:
            errors.append("the client is deactivated")
        if application.authorization_grant_type != AbstractApplication.GRANT_CLIENT_CREDENTIALS:
            errors.append("the application must use the client-credentials grant")
        if application.client_type != AbstractApplication.CLIENT_CONFIDENTIAL:
            errors.append("the application must be confidential")
        if user is None:
            errors.append("the application needs a user: the client's identity")
            return errors
        if not user.is_active:
            errors.append("the client's user is deactivated")
        if user.is_staff or user.is_superuser:
            errors.append("the client's user must be a dedicated login, not a staff or superuser account")
        profile = getattr(user, "profile", None)
        if profile is None:
            errors.append("the client's user has no organisation (UserProfile)")
        elif profile.org_id != self.till.org_id:
            errors.append("the till must belong to the organisation of the client's user")
        return errors

    def clean(self) -> None:
        if self.application_id is None or self.till_id is None:
            return
        errors = [e for e in self.binding_errors() if e != "the client is deactivated"]
        if errors:
            raise ValidationError(errors)
