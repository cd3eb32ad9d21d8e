from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from rewards_site import views

urlpatterns = [
    path("health/", views.health, name="health"),
    # The API's OpenAPI schema and its Swagger UI (static files served from here, no CDN).
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("admin/", admin.site.urls),
    path("staff/", include("staff.urls")),
    path("oauth/", include("apiclients.urls")),
    path("", include("issuance.api.urls")),
    path("", include("catalogue.api.urls")),
]

if settings.BENCH_VIEWS:  # bench-only baselines (bench/, docs/performance.md); off in production
    urlpatterns.append(path("bench/", include("benchsupport.urls")))

# API paths (/api_gateway/) answer errors no DRF view handled with the spec's status block.
handler400 = views.bad_request
handler403 = views.permission_denied
handler404 = views.not_found
handler500 = views.server_error
