"""One-time validation codes (R3).

A code is never stored: the row keeps a random nonce and the code is an HMAC of it under
SECRET_KEY, so asking again inside the validity window re-sends the same code while a
copy of the database alone reveals nothing. Codes live a few minutes and allow a few
tries; a wrong code costs a try (recorded in its own transaction, so a failed issue
cannot roll the count back).
"""

import datetime
import hashlib
import hmac
import secrets

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from catalogue.models import Customer

from .errors import ErrorCode, IssuanceError
from .models import ValidationCode

CODE_LIFETIME = datetime.timedelta(minutes=getattr(settings, "VALIDATION_CODE_MINUTES", 5))
MAX_TRIES = 5


def _code_of(row: ValidationCode) -> str:
    digest = hmac.new(settings.SECRET_KEY.encode(), row.nonce.encode(), hashlib.sha256).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 1_000_000:06d}"


def _current(customer: Customer, now) -> ValidationCode | None:
    return (
        ValidationCode.objects.filter(customer=customer, used_at__isnull=True, expires_at__gt=now, attempts__lt=MAX_TRIES)
        .order_by("-created_at")
        .first()
    )


def validation_code_issue(*, customer: Customer) -> ValidationCode:
    """Send the customer their code (the same one while it is valid). Sends after commit."""
    now = timezone.now()
    with transaction.atomic():
        row = _current(customer, now)
        if row is None:
            row = ValidationCode.objects.create(
                org_id=customer.org_id,
                customer=customer,
                nonce=secrets.token_hex(16),
                expires_at=now + CODE_LIFETIME,
            )
        code = _code_of(row)
        if customer.email:
            transaction.on_commit(
                lambda: send_mail(
                    "Your validation code",
                    f"Your code is {code}. It is valid for {int(CODE_LIFETIME.total_seconds() // 60)} minutes.",
                    None,
                    [customer.email],
                )
            )
    return row


def validation_code_check(*, customer: Customer, code: str | None) -> ValidationCode:
    """Raise 808 unless ``code`` is the customer's current code. Call outside the issuing
    transaction (a wrong try must stay counted); consume inside it."""
    now = timezone.now()
    row = _current(customer, now)
    if row is None or not code:
        raise IssuanceError(ErrorCode.VALIDATION_CODE_INVALID)
    if not hmac.compare_digest(_code_of(row), str(code)):
        ValidationCode.objects.filter(pk=row.pk).update(attempts=row.attempts + 1)
        raise IssuanceError(ErrorCode.VALIDATION_CODE_INVALID)
    return row


def validation_code_consume(row: ValidationCode) -> None:
    """Mark the code used, once: of two calls racing with one code only one gets it."""
    if not ValidationCode.objects.filter(pk=row.pk, used_at__isnull=True).update(used_at=timezone.now()):
        raise IssuanceError(ErrorCode.VALIDATION_CODE_INVALID)
