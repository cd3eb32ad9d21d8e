"""Site-wide views: the health check, and error pages that answer API paths with the spec's
status block (Django's own HTML pages for everything else).

Django's 404/500/400/403 handlers run for what no DRF view handles: a URL that resolves to
no view (``/api_gateway/…/reward/abc/issue``), an exception DRF does not turn into an answer,
an oversized form post. An API client gets JSON there too, and a 500 names the request id
(X-Request-ID), never the exception.
"""

import logging

from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, connections
from django.http import JsonResponse
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from rewards_site.hardening import is_api_path, status_response
from rewards_site.middleware import RETRY_AFTER_SECONDS
from rewards_site.observability import current_request_id

logger = logging.getLogger(__name__)


@never_cache
@require_safe
def health(request):
    """200 ``{"status": "ok", "database": "ok"}`` when the primary database answers a query;
    503 (with Retry-After, as rewards_site.middleware answers a lost database) when it does not."""
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as error:
        logger.warning("health check: database unavailable: %s", error)
        response = JsonResponse({"status": "unavailable", "database": "unavailable"}, status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return JsonResponse({"status": "ok", "database": "ok"})


def not_found(request, exception=None):
    if is_api_path(request.path):
        return status_response(404, "Not found")
    return defaults.page_not_found(request, exception)


def bad_request(request, exception=None):
    if is_api_path(request.path):
        if isinstance(exception, RequestDataTooBig):
            return status_response(413, "Request body too large")
        return status_response(400, "Bad request")
    return defaults.bad_request(request, exception)


def permission_denied(request, exception=None):
    if is_api_path(request.path):
        return status_response(403, "You do not have permission to perform this action")
    return defaults.permission_denied(request, exception)


def server_error(request):
    if is_api_path(request.path):
        return status_response(500, f"Internal server error (request id {current_request_id() or '-'})")
    return defaults.server_error(request)
