"""The list API at the exact path of the spec page (trailing slash optional)."""

from django.urls import re_path

from .views import RewardListViewSet

urlpatterns = [
    re_path(
        r"^api_gateway/rewards/core/v1/user/reward/brand/(?P<brand_name>[^/]+)/?$",
        RewardListViewSet.as_view({"get": "list"}),
        name="reward-list",
    ),
]
