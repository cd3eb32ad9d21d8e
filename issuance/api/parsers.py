"""Request bodies: JSON only, decimals kept exact, size bounded, duplicates refused."""

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

from issuance import jsonio


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
            return jsonio.loads_request(text)
        except RecursionError:
            raise ParseError("Malformed JSON: nested too deeply") from None
        except ValueError as error:
            raise ParseError(f"Malformed JSON: {error}") from None
