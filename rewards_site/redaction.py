"""Masking what must never be written to a log or echoed in an error body.

``mask_card_numbers``: 13–19 digits (spaces or dashes allowed) that pass the Luhn check are
card numbers: kept are the first 6 and last 4 digits (what PCI DSS allows to show).
``redact``: also the value of an ``Authorization`` header and of ``password=…``,
``secret: …``, ``api_key``, ``access_token``-style pairs.
"""

import re

_AUTHORIZATION = re.compile(
    r"(?i)\b((?:proxy-)?authorization|HTTP_AUTHORIZATION)(['\"]?\s*[:=]\s*['\"]?)((?:basic|bearer|digest|token)\s+)?[^\s'\",;]+"
)
_SECRET_PAIR = re.compile(
    r"(?i)\b([A-Za-z_-]*(?:password|passwd|secret|api[_-]?key|access[_-]?token|refresh[_-]?token|client[_-]?secret))"
    r"(['\"]?\s*[:=]\s*['\"]?)[^\s'\",;&}]+"
)
_CARD_CANDIDATE = re.compile(r"(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])")


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def mask_card_numbers(text: str) -> str:
    """Card numbers (13–19 digits, spaces or dashes allowed, Luhn-valid) → first 6 and last 4."""

    def mask(match: re.Match) -> str:
        digits = re.sub(r"[ -]", "", match.group(0))
        if not luhn_valid(digits):
            return match.group(0)
        return digits[:6] + "*" * (len(digits) - 10) + digits[-4:]

    return _CARD_CANDIDATE.sub(mask, text)


def redact(text: str) -> str:
    text = _AUTHORIZATION.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3) or ''}[REDACTED]", text)
    text = _SECRET_PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}[REDACTED]", text)
    return mask_card_numbers(text)
