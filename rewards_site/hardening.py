"""Input the API refuses before any view sees it.

PostgreSQL cannot store or compare text containing U+0000: a NUL in a path or query
parameter would reach a query and fail there as a 500. Every API path (``/api_gateway/``)
and its query string are checked once here, for all endpoints (the issue APIs and the list),
and answered with the spec's status block. JSON bodies get the same check in the API's
parser (issuance/api/parsers.py).
"""

from django.http import JsonResponse

API_PREFIX = "/api_gateway/"


def status_response(http_status: int, message: str, *, code: int | None = None) -> JsonResponse:
    body = {"status": {"success": False, "code": code or http_status, "message": message}}
    return JsonResponse(body, status=http_status, json_dumps_params={"ensure_ascii": False, "separators": (",", ":")})


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIX)


class ApiInputGuardMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if is_api_path(request.path) and _has_nul(request):
            return status_response(400, "The URL may not contain NUL (%00) characters")
        return self.get_response(request)


def _has_nul(request) -> bool:
    if "\x00" in request.path:
        return True
    return any("\x00" in key or any("\x00" in value for value in values) for key, values in request.GET.lists())
