"""API clients, and django-oauth-toolkit's applications and access tokens, in the admin.

Loaded after oauth2_provider's admin (INSTALLED_APPS order): its Application and
AccessToken admins are replaced by org-scoped subclasses (a non-superuser sees only the
rows bound to their own org), and the Grant, ID token and refresh token admins are removed:
only the client-credentials grant exists here, which creates none of them.
"""

from django.contrib import admin
from oauth2_provider import admin as dot_admin
from oauth2_provider.models import (
    get_access_token_model,
    get_application_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
)

from catalogue.admin import OrgScopedMixin, ScopedAdmin

from .models import ApiClient

for _model in (get_grant_model(), get_id_token_model(), get_refresh_token_model()):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)


class _NoCrossOrgFiltersMixin:
    """Related-row filters would list every org's applications: superusers only."""

    superuser_only_filters: tuple[str, ...] = ()

    def get_list_filter(self, request):
        filters = super().get_list_filter(request)
        if request.user.is_superuser:
            return filters
        return [f for f in filters if f not in self.superuser_only_filters]


@admin.register(ApiClient)
class ApiClientAdmin(ScopedAdmin):
    org_path = "till__org"
    list_display = ("__str__", "client_id", "identity", "org", "till", "scopes", "is_active", "created_at")
    list_select_related = ("application__user", "till__org")
    list_filter = ("is_active",)
    search_fields = ("application__name", "application__client_id", "till__code")
    autocomplete_fields = ("application", "till")
    readonly_fields = ("created_at",)

    @admin.display(description="client id", ordering="application__client_id")
    def client_id(self, obj):
        return obj.application.client_id

    @admin.display(description="identity (user)", ordering="application__user__username")
    def identity(self, obj):
        return obj.application.user or "—"

    @admin.display(description="organisation", ordering="till__org__name")
    def org(self, obj):
        return obj.till.org


Application = get_application_model()
AccessToken = get_access_token_model()
admin.site.unregister(Application)
admin.site.unregister(AccessToken)


@admin.register(Application)
class ApplicationAdmin(OrgScopedMixin, dot_admin.ApplicationAdmin):
    org_path = "api_client__till__org"
    list_select_related = ("user",)
    ordering = ("id",)  # the toolkit's model has no default order; autocomplete pages need one


@admin.register(AccessToken)
class AccessTokenAdmin(_NoCrossOrgFiltersMixin, OrgScopedMixin, dot_admin.AccessTokenAdmin):
    org_path = "application__api_client__till__org"
    superuser_only_filters = ("application",)
