"""Request ids and structured logs (one JSON object per line), with secrets masked.

``RequestIdMiddleware`` gives every request an id: the caller's ``X-Request-ID`` when it
is safe (1–128 characters of ``A-Z a-z 0-9 . _ : -``), otherwise a new random one. The id
is sent back in the response's ``X-Request-ID``, is on every log record written while the
request runs (``RequestIdFilter``) and in the body of a 500 (rewards_site/views.py), so a
client's report can be matched to the server's lines. One access record per request
(logger ``rewards.access``): method, path (never the query string), status, duration,
user id, client address.

``JsonFormatter`` writes each record as one JSON line. Everything it writes goes through
``rewards_site.redaction.redact``: an ``Authorization`` value, ``password=…``-style pairs and
card numbers never reach a log.
"""

import datetime
import json
import logging
import re
import secrets
import time
import traceback
from contextvars import ContextVar

from django.conf import settings
from django.utils.functional import SimpleLazyObject, empty

from rewards_site.redaction import redact

REQUEST_ID_HEADER = "X-Request-ID"
SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
access_log = logging.getLogger("rewards.access")


def current_request_id() -> str | None:
    return request_id_var.get()


def new_request_id() -> str:
    return secrets.token_hex(16)


def client_ip(request) -> str | None:
    """The caller's address. Behind ``TRUSTED_PROXY_COUNT`` reverse proxies (each appending
    to X-Forwarded-For) it is the entry that many places from the right; the rest of the
    header is the client's to forge and is ignored. Also django-axes' AXES_CLIENT_IP_CALLABLE."""
    proxies = getattr(settings, "TRUSTED_PROXY_COUNT", 0)
    if proxies:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR")


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if SAFE_REQUEST_ID.fullmatch(incoming) else new_request_id()
        request.request_id = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response[REQUEST_ID_HEADER] = request_id
            if getattr(settings, "ACCESS_LOG", True):
                access_log.info(
                    "%s %s %s",
                    request.method,
                    request.path,
                    response.status_code,
                    extra={
                        "method": request.method,
                        "path": request.path,
                        "status": response.status_code,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                        "user_id": _user_id(getattr(request, "user", None)),
                        "client_ip": client_ip(request),
                    },
                )
            return response
        finally:
            request_id_var.reset(token)


def _user_id(user) -> int | None:
    """The signed-in user's id, without evaluating a lazy ``request.user`` that nothing read
    (that would cost a session query after the response was made)."""
    if user is None or (isinstance(user, SimpleLazyObject) and user._wrapped is empty):
        return None
    return user.pk if user.is_authenticated else None


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on every record (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


# ---------------------------------------------------------------- JSON lines

_STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message", "asctime", "request_id", "taskName"}
)
_PLAIN = (str, int, float, bool, type(None))


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "request_id", …extra fields, "exception"}``.
    Extra fields are kept when they are plain values (a ``request`` object is not dumped)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": getattr(record, "request_id", None) or request_id_var.get(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_") and isinstance(value, _PLAIN):
                entry[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exception"] = redact("".join(traceback.format_exception(*record.exc_info)))
        elif record.exc_text:
            entry["exception"] = redact(record.exc_text)
        return json.dumps(entry, ensure_ascii=False, default=str)
