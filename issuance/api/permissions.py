from rest_framework.permissions import BasePermission


class CanIssueThroughApi(BasePermission):
    """The "default access group" permission (issuance.api_issue), and an organisation."""

    message = "This user may not use the rewards API"

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return hasattr(user, "profile") and user.has_perm("issuance.api_issue")
