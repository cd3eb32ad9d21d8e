"""Every API error body is the spec's ``status`` block (R7)."""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response

from issuance.errors import IssuanceError
from rewards_site.redaction import mask_card_numbers


def flatten_errors(detail, prefix: str = "") -> list[str]:
    """DRF's nested error detail as ``path: message`` strings (``rewards[0].quantity: ...``)."""
    if isinstance(detail, dict):
        out = []
        for key, value in detail.items():
            if key == "non_field_errors":
                out.extend(flatten_errors(value, prefix))
            else:
                if isinstance(key, int):  # a ListSerializer's item
                    path = f"{prefix}[{key}]"
                else:
                    path = f"{prefix}.{key}" if prefix else str(key)
                out.extend(flatten_errors(value, path))
        return out
    if isinstance(detail, list):
        if all(not isinstance(v, (dict, list)) for v in detail):
            return [f"{prefix}: {v}" if prefix else str(v) for v in detail]
        out = []
        for index, value in enumerate(detail):
            if value:
                out.extend(flatten_errors(value, f"{prefix}[{index}]"))
        return out
    return [f"{prefix}: {detail}" if prefix else str(detail)]


def status_body(code: int, message: str) -> dict:
    return {"status": {"success": False, "code": code, "message": message}}


def contract_exception_handler(exc, context):
    if isinstance(exc, IssuanceError):
        block = exc.status_block()
        if exc.http_status == 400:  # request errors may echo the input: never a whole card number
            block["message"] = mask_card_numbers(block["message"])
        return Response({"status": block}, status=exc.http_status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None
    if isinstance(exc, exceptions.ValidationError):
        message = "; ".join(flatten_errors(exc.detail)) or "Invalid request"
    elif isinstance(exc.detail, (list, dict)):
        message = "; ".join(flatten_errors(exc.detail))
    else:
        message = str(exc.detail)
    message = mask_card_numbers(message)
    headers = {}
    if auth_header := getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = auth_header
    if wait := getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(wait))
    return Response(status_body(exc.status_code, message), status=exc.status_code, headers=headers)
