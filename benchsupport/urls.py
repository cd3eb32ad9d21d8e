"""Included under /bench/ by rewards_site/urls.py only when settings.BENCH_VIEWS is on."""

from django.urls import path

from .views import BareIssueView, PingView

urlpatterns = [
    path("ping", PingView.as_view(), name="bench-ping"),
    path("bare-issue", BareIssueView.as_view(), name="bench-bare-issue"),
]
