"""Reads of the API client registry."""

from .models import ApiClient


def api_client_for_application(application_id: int | None) -> ApiClient | None:
    """The client of an OAuth2 application with everything its binding check reads
    (application, user and profile, till): one query."""
    if application_id is None:
        return None
    return (
        ApiClient.objects.select_related("application__user__profile", "till")
        .filter(application_id=application_id)
        .first()
    )
