"""The API at the exact paths of the spec pages (trailing slash optional)."""

from django.urls import re_path

from .views import ConnectedIssueViewSet, RewardIssueViewSet, ValidationCodeViewSet

PREFIX = r"^api_gateway/rewards/core/"

urlpatterns = [
    re_path(
        PREFIX + r"v1/user/reward/(?P<reward_id>[0-9]{1,18})/issue/?$",
        RewardIssueViewSet.as_view({"post": "issue_single"}),
        name="reward-issue-single",
    ),
    re_path(
        PREFIX + r"v1/user/rewards/issue/?$",
        RewardIssueViewSet.as_view({"post": "issue_bulk"}),
        name="reward-issue-bulk",
    ),
    re_path(
        PREFIX + r"v1\.1/user/rewards/issue/?$",
        ConnectedIssueViewSet.as_view({"post": "issue_connected"}),
        name="reward-issue-connected",
    ),
    re_path(
        PREFIX + r"v1/user/validation_code/?$",
        ValidationCodeViewSet.as_view({"post": "create"}),
        name="validation-code",
    ),
]
