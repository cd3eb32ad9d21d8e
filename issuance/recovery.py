"""Settling vendor issuances left PENDING by a crash (R10).

A line is PENDING from the commit that held its points until the commit that settles
it; an issuing process only leaves one behind when it dies (or loses the database)
in between. ``pending_lines_recover`` takes PENDING lines older than a threshold — at
least the longest possible vendor call, so a live process is never overtaken — and:
- when the vendor config has a status look-up, asks the vendor about each pending
  unit's reference: a unit the vendor confirms is settled as issued (points deducted,
  voucher recorded); the others are released;
- otherwise releases the hold, fails the line (8003) and flags it ``needs_attention``
  with a diagnostic, for staff to check with the vendor.
Guarantees: points are never deducted without a voucher the vendor confirmed; a hold
never outlives the threshold; with a status look-up no voucher is left unpaid. Without
one, a voucher the vendor issued just before the crash is not paid for automatically:
that line is flagged for staff (the only case that needs a person).
"""

import datetime
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from .models import IssuanceLine, LineStatus
from .vendor_settlement import Voucher, call_variables, line_settle, unit_reference
from .vendors import vendor_status

# Recovery must never overtake a live call: the threshold is at least this.
MINIMUM_AGE = datetime.timedelta(seconds=getattr(settings, "VENDOR_RECOVERY_MIN_AGE_SECONDS", 130))


@dataclass
class RecoveryReport:
    settled: int = 0
    released: int = 0
    flagged: int = 0


def pending_lines_recover(*, older_than: datetime.timedelta = MINIMUM_AGE, now=None) -> RecoveryReport:
    now = now or timezone.now()
    threshold = max(older_than, MINIMUM_AGE)
    report = RecoveryReport()
    candidates = IssuanceLine.objects.filter(status=LineStatus.PENDING, updated_at__lt=now - threshold).values_list(
        "pk", flat=True
    )
    for line_id in list(candidates):
        line = IssuanceLine.objects.select_related(
            "reward__vendor_redemption", "customer", "issuance__till"
        ).get(pk=line_id)
        if line.status != LineStatus.PENDING:
            continue
        config = line.reward.vendor_redemption
        vouchers, supported = [], config is not None and bool(config.status_url)
        if supported:
            for index in range(line.quantity, line.quantity + line.pending_units):
                answer = vendor_status(config, variables=call_variables(line, index))
                if answer is None or not answer.ok:
                    break
                vouchers.append(Voucher(index, unit_reference(line, index), answer.context))
        settled = line_settle(
            line.pk,
            vouchers=vouchers,
            failure="recovered after a crash" if supported else "outcome unknown after a crash; hold released",
            needs_attention=not supported,
        )
        if vouchers:
            report.settled += 1
        elif supported:
            report.released += 1
        else:
            report.flagged += 1
        del settled
    return report
