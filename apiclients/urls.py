"""OAuth2 endpoints under /oauth/: the token endpoint (client credentials) and revocation.

The authorization and application-management views of django-oauth-toolkit are left out:
no grant here involves a browser."""

from django.urls import path
from oauth2_provider import views

app_name = "oauth2_provider"

urlpatterns = [
    path("token/", views.TokenView.as_view(), name="token"),
    path("revoke_token/", views.RevokeTokenView.as_view(), name="revoke-token"),
]
