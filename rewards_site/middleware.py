"""Site-wide HTTP behaviour that belongs to no single app."""

import logging

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import JsonResponse

from rewards_site.db_router import REPLICA, replica_reads_enter, replica_reads_exit

logger = logging.getLogger(__name__)

DATABASE_UNAVAILABLE = "Service temporarily unavailable: the database cannot be reached. Retry later."
RETRY_AFTER_SECONDS = 2


class DatabaseUnavailableMiddleware:
    """A lost or refused database connection answers 503 with the spec's status block
    instead of a 500.

    The database being down (restart, fail-over, network cut) is not a bug of the request:
    the client may retry, and with requestIds a retry is safe (R8). Each call's writes run in
    one ``transaction.atomic()``, so they committed whole or not at all; when the connection
    broke during COMMIT itself the client cannot tell which, and the retry with the same
    requestId answers either way (tests/test_stress.py restarts PostgreSQL under load). Django
    marks the broken connection unusable and, with ``CONN_HEALTH_CHECKS``, opens a new one
    on the next request, so the service recovers by itself once the database is back.

    Only ``OperationalError`` / ``InterfaceError`` are mapped: ``IntegrityError``,
    ``ProgrammingError`` and ``DataError`` are bugs and stay 500. Lock time-outs (10004)
    and deadlocks never get here: the engine turns them into its own answers first.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        logger.warning("database unavailable on %s %s: %s", request.method, request.path, exception)
        response = JsonResponse(
            {"status": {"success": False, "code": 503, "message": DATABASE_UNAVAILABLE}}, status=503
        )
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response


class ReplicaReadsMiddleware:
    """Opens the replica-reads window (``rewards_site.db_router``) around GET/HEAD requests
    to the views named in ``settings.REPLICA_READ_URL_NAMES``; a no-op without a replica."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            return self.get_response(request)
        finally:
            token = getattr(request, "_replica_reads_token", None)
            if token is not None:
                replica_reads_exit(token)

    def process_view(self, request, view_func, view_args, view_kwargs):
        if (
            REPLICA in settings.DATABASES
            and request.method in ("GET", "HEAD")
            and request.resolver_match is not None
            and request.resolver_match.url_name in settings.REPLICA_READ_URL_NAMES
        ):
            request._replica_reads_token = replica_reads_enter()
        return None
