"""Calls to a reward vendor's redemption endpoint (R10).

``vendor_call`` sends one request per unit as configured in the admin
(``VendorRedemptionConfig``: URL, method, headers, a JSON body template, timeout, and a
context map from the answer's JSON to keys such as ``voucher``). A unit succeeds only
when the vendor answers HTTP 200 and the context holds a non-empty ``voucher``; any
other outcome (another status, a body that is not JSON, no voucher, a timeout, a
dropped connection) is a failure with a diagnostic. Nothing here touches the database
and nothing is ever called while a database lock is held (see issuance.services).

The body template is JSON; a string value that is exactly ``{{name}}`` is replaced by
the variable's value (keeping its JSON type), and ``{{name}}`` inside a longer string by
its text. Values are inserted into the parsed structure, never pasted into JSON text,
so a customer's data cannot inject JSON.

Header values are stored encrypted (catalogue.encryption) and read as plain text. A value
that none of ``FIELD_ENCRYPTION_KEYS`` decrypts (a wrong or missing key) is never sent: the
call is not made, the unit fails like any vendor failure (8003, nothing deducted) and an
error naming the config and the header — never a value — is logged.
"""

import logging
import re
from dataclasses import dataclass, field

import httpx
import simplejson

from catalogue.encryption import unreadable_names

logger = logging.getLogger(__name__)

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")
MAX_ANSWER_BYTES = 64 * 1024

_client: httpx.Client | None = None


def client() -> httpx.Client:
    """One pooled client per process: connections to a vendor are reused."""
    global _client
    if _client is None:
        _client = httpx.Client(
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
            follow_redirects=False,
            trust_env=False,
        )
    return _client


@dataclass
class VendorAnswer:
    ok: bool
    context: dict = field(default_factory=dict)
    http_status: int | None = None
    error: str = ""

    @property
    def voucher(self) -> str | None:
        value = self.context.get("voucher")
        return str(value) if value not in (None, "") else None


class TemplateError(ValueError):
    pass


def _fill(value, variables: dict):
    if isinstance(value, dict):
        return {k: _fill(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, variables) for v in value]
    if isinstance(value, str):
        whole = PLACEHOLDER.fullmatch(value.strip())
        if whole:
            return variables.get(whole.group(1))
        return PLACEHOLDER.sub(lambda m: "" if variables.get(m.group(1)) is None else str(variables[m.group(1)]), value)
    return value


def body_render(template: str, variables: dict):
    """The request body for one unit, as a JSON-able structure (None when no template)."""
    if not template.strip():
        return None
    try:
        parsed = simplejson.loads(template, use_decimal=True)
    except ValueError as error:
        raise TemplateError(f"body template is not JSON: {error}") from None
    return _fill(parsed, variables)


def path_get(data, path: str):
    """A value of the answer by a dotted path: ``data.voucher.code``, ``items.0.code``,
    ``items[0].code``; a leading ``$.`` is allowed. None when absent."""
    path = path.strip()
    if path.startswith("$."):
        path = path[2:]
    current = data
    for part in re.split(r"\.|\[(\d+)\]", path):
        if part in (None, ""):
            continue
        if isinstance(current, dict):
            current = current.get(part)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
    return current


def context_extract(data, context_map: dict) -> dict:
    return {key: path_get(data, str(path)) for key, path in (context_map or {}).items()}


class HeaderSecretError(ValueError):
    """A header value of the config cannot be decrypted; the message names headers, no values."""


def request_headers(config) -> dict[str, str]:
    """The config's headers as sent (decrypted values), or ``HeaderSecretError`` (logged)."""
    unreadable = unreadable_names(config.headers)
    if unreadable:
        names = ", ".join(unreadable)
        logger.error(
            "vendor redemption config %s: header value(s) of %s cannot be decrypted with FIELD_ENCRYPTION_KEYS "
            "(wrong or missing key); the vendor was not called",
            config.pk,
            names,
            extra={"vendor_config_id": config.pk, "header_names": names},
        )
        raise HeaderSecretError(f"header {names} cannot be decrypted (FIELD_ENCRYPTION_KEYS); vendor not called")
    return {str(k): str(v) for k, v in (config.headers or {}).items()}


def vendor_call(config, *, variables: dict) -> VendorAnswer:
    """One redemption call; never raises for what the vendor or the network does."""
    try:
        body = body_render(config.body_template, variables)
    except TemplateError as error:
        return VendorAnswer(False, error=str(error))
    try:
        headers = request_headers(config)
    except HeaderSecretError as error:
        return VendorAnswer(False, error=str(error))
    content = None
    if body is not None:
        headers.setdefault("Content-Type", "application/json")
        content = simplejson.dumps(body, use_decimal=True).encode()
    timeout = float(config.timeout_seconds)
    try:
        response = client().request(
            config.method, config.url, headers=headers, content=content, timeout=httpx.Timeout(timeout)
        )
    except httpx.TimeoutException:
        return VendorAnswer(False, error=f"timed out after {timeout}s")
    except httpx.HTTPError as error:
        return VendorAnswer(False, error=f"{type(error).__name__}: {error}"[:300])
    answer = VendorAnswer(False, http_status=response.status_code)
    if response.status_code != 200:
        answer.error = f"HTTP {response.status_code}"
        return answer
    try:
        data = simplejson.loads(response.content[:MAX_ANSWER_BYTES], use_decimal=True)
    except ValueError:
        answer.error = "the answer is not JSON"
        return answer
    answer.context = context_extract(data, config.context_map)
    answer.ok = answer.voucher is not None
    if not answer.ok:
        answer.error = "no voucher in the answer"
    return answer


def vendor_status(config, *, variables: dict) -> VendorAnswer | None:
    """Ask the vendor whether an earlier redemption exists (recovery). None when the
    config has no status look-up; otherwise an answer like ``vendor_call``'s."""
    if not config.status_url:
        return None
    url = PLACEHOLDER.sub(lambda m: str(variables.get(m.group(1), "")), config.status_url)
    try:
        headers = request_headers(config)
    except HeaderSecretError as error:
        return VendorAnswer(False, error=str(error))
    try:
        response = client().get(url, headers=headers, timeout=httpx.Timeout(float(config.timeout_seconds)))
    except httpx.HTTPError as error:
        return VendorAnswer(False, error=f"{type(error).__name__}: {error}"[:300])
    if response.status_code != 200:
        return VendorAnswer(False, http_status=response.status_code, error=f"HTTP {response.status_code}")
    try:
        data = simplejson.loads(response.content[:MAX_ANSWER_BYTES], use_decimal=True)
    except ValueError:
        return VendorAnswer(False, http_status=200, error="the answer is not JSON")
    context = context_extract(data, config.context_map)
    answer = VendorAnswer(False, context=context, http_status=200)
    answer.ok = answer.voucher is not None
    return answer
