from django.conf import settings
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("staff/", include("staff.urls")),
    path("oauth/", include("apiclients.urls")),
    path("", include("issuance.api.urls")),
    path("", include("catalogue.api.urls")),
]

if settings.BENCH_VIEWS:  # bench-only baselines (bench/, docs/performance.md); off in production
    urlpatterns.append(path("bench/", include("benchsupport.urls")))
