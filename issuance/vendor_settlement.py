"""Vendor rewards: call, then settle (R10). Shared by the engine and by recovery.

A vendor line is written PENDING with its points held (issuance.services, in the
issuing transaction). Then, with no lock held, ``line_call_and_settle`` calls the vendor
once per unit and ``line_settle`` finishes the line in ONE transaction: it releases the
hold, records a unit per voucher, deducts exactly the points of those units, concludes
the line and completes its idempotency record. Hence: points are deducted only for
units with a voucher, and every voucher recorded is paid for in the same commit.

A crash between the vendor's answer and the settlement leaves the line PENDING with
its hold; ``issuance.recovery`` finds it and settles it (see that module for what is
guaranteed when the vendor has no status look-up).
"""

from dataclasses import dataclass

from django.db import transaction
from django.dispatch import Signal

from . import jsonio, ledger, responses
from .errors import ErrorCode, IssuanceError
from .models import IdempotencyRecord, IssuanceLine, IssuedUnit, LineStatus, PointsAccount
from .pricing import Price
from .vendors import VendorAnswer, vendor_call

# Sent after the vendor answered for a line and before the settlement; receivers get
# ``line_id`` and ``answers``. (Observability, and the crash tests' injection point.)
vendor_answered = Signal()


@dataclass(frozen=True)
class Voucher:
    unit_index: int
    reference: str
    context: dict


def unit_reference(line: IssuanceLine, index: int) -> str:
    return f"{line.pk}-{index}"


def call_variables(line: IssuanceLine, index: int) -> dict:
    customer = line.customer
    issuance = line.issuance
    price = _price_of(line)
    return {
        "reference": unit_reference(line, index),
        "lineId": line.pk,
        "unitIndex": index,
        "rewardId": line.reward_id,
        "rewardName": line.reward.name,
        "orgId": line.org_id,
        "customerId": customer.pk,
        "mobile": customer.mobile,
        "email": customer.email,
        "externalId": customer.external_id,
        "points": price.unit_points(index),
        "redemptionValue": line.redemption_value,
        "transactionNumber": issuance.transaction_number,
        "requestId": line.request_id,
        "till": issuance.till.code,
    }


def _price_of(line: IssuanceLine) -> Price:
    return Price(None, line.planned_units, line.points_per_unit, line.redemption_value)


def line_call_and_settle(line_id: int, *, actor=None) -> IssuanceLine:
    """Call the vendor for the line's pending units (stopping at the first failure), then
    settle. Must be called outside any transaction: no lock is held during the calls."""
    line = IssuanceLine.objects.select_related(
        "reward__vendor_redemption", "customer", "issuance__till"
    ).get(pk=line_id)
    config = line.reward.vendor_redemption
    vouchers: list[Voucher] = []
    answers: list[VendorAnswer] = []
    failure = ""
    first = line.quantity
    for index in range(first, first + line.pending_units):
        answer = vendor_call(config, variables=call_variables(line, index))
        answers.append(answer)
        if not answer.ok:
            failure = answer.error
            break
        vouchers.append(Voucher(index, unit_reference(line, index), answer.context))
    vendor_answered.send(sender=IssuanceLine, line_id=line.pk, answers=answers)
    return line_settle(line.pk, vouchers=vouchers, failure=failure, actor=actor)


def line_settle(line_id: int, *, vouchers: list[Voucher], failure: str = "", actor=None,
                needs_attention: bool = False) -> IssuanceLine:
    """Finish a PENDING line in one transaction (idempotent: a line no longer PENDING is
    returned as it is)."""
    with transaction.atomic():
        line = IssuanceLine.objects.select_for_update(of=("self",)).select_related("issuance").get(pk=line_id)
        if line.status != LineStatus.PENDING:
            return line
        account = ledger.account_lock(line.issuance.account_id)
        _settle_locked(line, account, vouchers=vouchers, failure=failure, actor=actor)
        line.needs_attention = line.needs_attention or needs_attention
        line.save()
        _record_complete(line)
        return line


def _settle_locked(line: IssuanceLine, account: PointsAccount, *, vouchers, failure: str, actor) -> None:
    ledger.points_release_locked(account, amount=line.held_points)
    price = _price_of(line)
    prior = line.quantity
    units = [
        IssuedUnit(
            line=line,
            points=price.unit_points(v.unit_index),
            redemption_value=line.redemption_value,
            vendor_response=_vendor_entry(v.context, price.unit_points(v.unit_index)),
            vendor_reference=v.reference,
        )
        for v in vouchers
    ]
    IssuedUnit.objects.bulk_create(units)
    points = price.points_for(prior + len(units)) - price.points_for(prior)
    if points > 0:
        ledger.points_redeem_locked(
            account, amount=points, reason=f"Reward {line.reward_id} × {len(units)} (line {line.pk}, vendor)",
            actor=actor, line=line,
        )
    line.quantity += len(units)
    line.total_points += points
    line.held_points = 0
    line.pending_units = 0
    error = IssuanceError(ErrorCode.VOUCHER_NOT_PRESENT) if len(units) < line.planned_units - prior else None
    from .services import line_conclude

    line_conclude(line, error)
    if failure:
        line.diagnostic = f"vendor: {failure}"


def _vendor_entry(context: dict, points) -> dict:
    """The page's vendor entry: the context map's keys and pointsRedeemed (a string)."""
    entry = {k: (str(v) if v is not None and not isinstance(v, (str, int, bool)) else v) for k, v in context.items()}
    entry["pointsRedeemed"] = str(responses._integral(points))
    return entry


def _record_complete(line: IssuanceLine) -> None:
    """Store the finished line under its requestId (the record was left IN_FLIGHT)."""
    record = IdempotencyRecord.objects.select_for_update().filter(org_id=line.org_id, line=line).first()
    if record is None:
        return
    outcome = responses.Outcome(plan=None, line=line)
    responses.fill_line_bodies([outcome], mode=record.shape, event_date_time=line.issuance.event_date_time)
    body, status = responses.stored_body(record.shape, outcome.body)
    record.state, record.http_status, record.response_body = "DONE", status, jsonio.dumps(body)
    record.save(update_fields=["state", "http_status", "response_body", "updated_at"])
