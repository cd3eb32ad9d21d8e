"""Request bodies: JSON only, decimals kept exact, size bounded, duplicates refused.

Also refused (400), because the database could not store them or they serve no client:
strings (keys or values) with U+0000 or an unpaired surrogate — PostgreSQL's text and jsonb
cannot hold either, and they would fail deep in the engine as a 500 — and nesting deeper
than MAX_DEPTH levels (the API's bodies need four; ``params`` is free-form but stored,
fingerprinted and replayed).
"""

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

from issuance import jsonio

MAX_DEPTH = 32


class RequestTooLarge(ParseError):
    status_code = 413
    default_detail = "Request body too large"


class ContractJSONParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.API_MAX_BODY_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise RequestTooLarge(f"Request body too large (at most {limit} bytes)")
        if not raw.strip():
            raise ParseError("The request body is empty")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("The request body is not UTF-8") from None
        try:
            data = jsonio.loads_request(text)
        except RecursionError:
            raise ParseError("Malformed JSON: nested too deeply") from None
        except ValueError as error:
            raise ParseError(f"Malformed JSON: {error}") from None
        storable_check(data)
        return data


def storable_check(data) -> None:
    """Refuse what the database cannot store and nesting deeper than MAX_DEPTH (iterative:
    the walk itself never recurses)."""
    pending = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            _text_check(value)
        elif isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                raise ParseError(f"Malformed JSON: nested deeper than {MAX_DEPTH} levels")
            if isinstance(value, dict):
                for key, item in value.items():
                    _text_check(key)
                    pending.append((item, depth + 1))
            else:
                pending.extend((item, depth + 1) for item in value)


def _text_check(text: str) -> None:
    if "\x00" in text:
        raise ParseError("Malformed JSON: strings may not contain U+0000")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ParseError("Malformed JSON: strings may not contain unpaired surrogates") from None
