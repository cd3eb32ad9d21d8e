"""The response bodies of the issue APIs, exactly as the spec pages shape them.

Built from what the engine wrote (lines, units, ledger references) with a constant
number of queries per call. ``totalPointsRedeemed`` is our addition: the points really
deducted for the line (clients that do not know it ignore it).
"""

import datetime
from dataclasses import dataclass
from decimal import Decimal

from catalogue.choices import COUPON_REDEMPTION_TYPES, CONV_RATIO_REDEMPTION_TYPES, PaymentMode

from .errors import ErrorCode, IssuanceError
from .models import IssuanceLine, IssuanceStatus, IssuedUnit, LedgerEntry, LineStatus

SUCCESS = {"success": True, "code": 200, "message": "Reward issued successfully"}
PARTIAL = {"success": False, "code": ErrorCode.PARTIAL.code, "message": ErrorCode.PARTIAL.message}
FOUR_PLACES = Decimal("0.0001")


@dataclass
class Outcome:
    plan: object
    line: object | None
    replay: dict | None = None
    body: dict | None = None


@dataclass
class Written:
    """What the engine just wrote for a new line (so rendering it needs no query)."""

    units: list
    refs: list


@dataclass
class Result:
    mode: str
    http_status: int
    body: dict
    issuance: object | None = None
    dry_run: bool = False


def http_for_code(code: int) -> int:
    for error in ErrorCode:
        if error.code == code:
            return error.http_status
    return 422


def iso_utc(value: datetime.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _plain_utc(value: datetime.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _integral(value) -> Decimal:
    value = Decimal(value)
    integral = value.to_integral_value()
    return integral if value == integral else value


def payment_config_body(config) -> dict | None:
    if config is None:
        return None
    body = {"paymentMode": config.mode, "id": config.pk}
    if config.mode in (PaymentMode.POINTS, PaymentMode.POINTS_CASH):
        body["points"] = config.points.quantize(FOUR_PLACES)
    if config.mode in (PaymentMode.CASH, PaymentMode.POINTS_CASH):
        body["cashAmount"] = config.cash_amount
    if config.mode == PaymentMode.CONV_RATIO:
        body["conversionRatio"] = config.conversion_ratio.quantize(FOUR_PLACES)
    return body


def redemption_details(redemption_type: str, value: Decimal | None, units: int) -> dict | None:
    if value is None or redemption_type not in CONV_RATIO_REDEMPTION_TYPES:
        return None
    return {
        "redemptionType": redemption_type,
        "redemptionValue": _integral(value),
        "totalRedemptionValue": _integral(value * units),
    }


def intouch_entry(unit: IssuedUnit) -> dict:
    return {
        "pointsRedeemed": str(_integral(unit.points)),
        "couponCode": unit.coupon_code,
        "codeExpiry": _plain_utc(unit.code_expiry),
        "codeExpiryDateTime": iso_utc(unit.code_expiry),
    }


def promotion_entry(unit: IssuedUnit) -> dict:
    promotion = unit.promotion
    return {
        "id": promotion.pk,
        "name": promotion.name,
        "promotionCode": promotion.promotion_code,
        "validTill": iso_utc(promotion.valid_till),
    }


def _status_of(line, error: IssuanceError | None) -> dict:
    if line.status == LineStatus.ISSUED:
        return dict(SUCCESS)
    if line.status == LineStatus.PARTIAL:
        return dict(PARTIAL)
    if error is not None:
        return error.status_block()
    return {"success": False, "code": line.error_code, "message": line.error_message}


def line_body(line, units: list[IssuedUnit], refs: list[str], *, request_id, event_date_time, org_id=None,
              error: IssuanceError | None = None) -> dict:
    reward_type = line.redemption_type
    coupons = [intouch_entry(u) for u in units if u.coupon_code]
    body = {"status": _status_of(line, error)}
    if org_id is not None:
        body["orgId"] = org_id
    body.update(
        {
            "transactionId": line.pk,
            "rewardId": line.reward_id,
            "requestedQuantity": line.requested_quantity,
            "quantity": line.quantity,
            "pointsReferenceId": refs[0] if refs else None,
            "pointsReferenceIds": refs,
            "eventLogId": line.event_log_id or None,
            "requestId": request_id,
            "intouch": coupons if (coupons or reward_type in COUPON_REDEMPTION_TYPES) and line.quantity else None,
            "promotions": [promotion_entry(u) for u in units if u.promotion_id],
            "vendor": [u.vendor_response for u in units if u.vendor_response],
            "eventDateTime": iso_utc(event_date_time),
            "restrictions": None,
            "paymentConfig": payment_config_body(line.payment_config),
            "fulfillmentDetails": {"status": line.fulfillment_status.name} if line.fulfillment_status_id else None,
            "customFields": line.custom_fields or None,
            "redemptionDetails": redemption_details(reward_type, line.redemption_value, line.quantity)
            if line.quantity
            else None,
            "totalPointsRedeemed": _integral(line.total_points),
        }
    )
    return body


def single_body(line_json: dict) -> dict:
    """The single-issue shape (issue-single-reward.txt) of one line."""
    intouch = line_json["intouch"]
    return {
        "status": line_json["status"],
        "intouch": intouch[0] if intouch else None,
        "transactionId": line_json["transactionId"],
        "promotion": line_json["promotions"][0] if line_json["promotions"] else None,
        "vendor": line_json["vendor"][0] if line_json["vendor"] else None,
        "paymentConfig": line_json["paymentConfig"],
        "redemptionDetails": line_json["redemptionDetails"],
        "fulfillmentDetails": line_json["fulfillmentDetails"],
        "customFields": line_json["customFields"],
        "eventLogId": line_json["eventLogId"],
        "requestId": line_json["requestId"],
        "totalPointsRedeemed": line_json["totalPointsRedeemed"],
    }


def bulk_top(lines: list[dict]) -> tuple[dict, int]:
    if all(line["status"]["code"] == 200 for line in lines):
        return dict(SUCCESS), 200
    if any(line["quantity"] for line in lines):
        return dict(PARTIAL), 200
    first = lines[0]["status"]
    return dict(first), http_for_code(first["code"])


def _refs_and_units(lines) -> tuple[dict, dict]:
    ids = [line.pk for line in lines]
    refs: dict[int, list[str]] = {i: [] for i in ids}
    for line_id, ref in LedgerEntry.objects.filter(line_id__in=ids).order_by("id").values_list("line_id", "reference_id"):
        refs[line_id].append(ref)
    units: dict[int, list[IssuedUnit]] = {i: [] for i in ids}
    for unit in IssuedUnit.objects.filter(line_id__in=ids).select_related("promotion").order_by("id"):
        units[unit.line_id].append(unit)
    return refs, units


def fill_line_bodies(outcomes: list[Outcome], *, mode: str, event_date_time, refresh: bool = False) -> None:
    """Render each outcome's line (two queries for all of them: references and units)."""
    if not outcomes:
        return
    if refresh:
        fresh = IssuanceLine.objects.select_related("payment_config", "fulfillment_status").in_bulk(
            [o.line.pk for o in outcomes]
        )
        for outcome in outcomes:
            outcome.line = fresh[outcome.line.pk]
    unread = [o.line for o in outcomes if getattr(o.line, "written", None) is None]
    refs, units = _refs_and_units(unread) if unread else ({}, {})
    for outcome in outcomes:
        written = getattr(outcome.line, "written", None)
        if written is not None:
            refs[outcome.line.pk], units[outcome.line.pk] = written.refs, written.units
    for outcome in outcomes:
        line = outcome.line
        error = outcome.plan.error if (outcome.plan is not None and line.status == LineStatus.FAILED) else None
        outcome.body = line_body(
            line,
            units[line.pk],
            refs[line.pk],
            request_id=line.request_id,
            event_date_time=event_date_time,
            org_id=line.org_id if mode == "connected" else None,
            error=error,
        )


def assemble(mode: str, bodies: list[dict]) -> Result:
    if mode == "single":
        body = single_body(bodies[0])
        status = body["status"]
        return Result(mode, 200 if status["code"] == 200 else http_for_code(status["code"]), body)
    top, http = bulk_top(bodies)
    return Result(mode, http, {"status": top, "rewards": bodies})


def result_from_replays(mode: str, plans) -> Result:
    """Every requestId of the call was already fully answered: the stored results."""
    if mode == "single":
        return Result(mode, plans[0].record.http_status, plans[0].replay)
    top, http = bulk_top([p.replay for p in plans])
    return Result(mode, http, {"status": top, "rewards": [p.replay for p in plans]})


def stored_body(mode: str, line_json: dict) -> tuple[dict, int]:
    """What a later request with the same requestId gets back: the line in bulk calls,
    the whole response in single calls."""
    if mode == "single":
        result = assemble(mode, [line_json])
        return result.body, result.http_status
    status = line_json["status"]["code"]
    return line_json, 200 if status in (200, ErrorCode.PARTIAL.code) else http_for_code(status)


def issuance_outcome(mode: str, line_bodies: list[dict]) -> tuple[str, int]:
    """(status, code) of one Issuance row from its own lines."""
    top, _http = bulk_top(line_bodies)
    code = top["code"]
    if code == 200:
        return IssuanceStatus.SUCCESS, code
    if code == ErrorCode.PARTIAL.code:
        return IssuanceStatus.PARTIAL, code
    return IssuanceStatus.FAILED, code


def issuance_outcome_of_lines(mode: str, lines: list[tuple[object, IssuanceError | None]]) -> tuple[str, int]:
    """``issuance_outcome`` from (line, error) pairs before the lines are written: the same
    status blocks and quantities ``line_body`` would render."""
    return issuance_outcome(mode, [{"status": _status_of(line, error), "quantity": line.quantity}
                                   for line, error in lines])


def dry_run_result(ctx, plans, needed: Decimal, available: Decimal, stock: dict[int, int]) -> Result:
    """What the call would do, changing nothing (staff preview)."""
    lines = []
    for plan in plans:
        units = plan.units if plan.error is None else 0
        if plan.error is None and plan.reward.pk in stock:
            units = min(units, stock[plan.reward.pk])
        if plan.replay is not None:
            status = plan.replay["status"]
        elif plan.error is not None:
            status = plan.error.status_block()
        elif plan.reward.pk in stock and stock[plan.reward.pk] == 0:
            status = IssuanceError(ErrorCode.COUPON_SERIES_INVALID).status_block()
        elif units < (plan.price.units - plan.prior_units):
            status = dict(PARTIAL)
        else:
            status = dict(SUCCESS)
        price = plan.price
        lines.append(
            {
                "status": status,
                "rewardId": plan.reward.pk,
                "requestedQuantity": plan.item.quantity,
                "quantity": units,
                "totalPointsRedeemed": _integral(price.points_for(plan.prior_units + units) - price.points_for(plan.prior_units)) if price else Decimal(0),
                "paymentConfig": payment_config_body(price.config) if price else None,
                "redemptionDetails": redemption_details(plan.reward.redemption_type, price.redemption_value, units)
                if price and units
                else None,
                "limits": [
                    {
                        "rewardConstraintId": s.constraint.pk,
                        "constraintLevel": s.constraint.level,
                        "kpi": s.constraint.kpi,
                        "frequencyType": s.constraint.frequency,
                        "constraintLimitValue": _integral(s.constraint.limit_value),
                        "consumed": _integral(s.consumed),
                        "remaining": _integral(s.remaining),
                        "resetsAt": iso_utc(s.window.end),
                    }
                    for s in plan.limits
                ],
                "couponStock": stock.get(plan.reward.pk),
                "replay": plan.replay is not None,
            }
        )
    top, http = bulk_top(lines)
    if needed > available:
        top, http = IssuanceError(ErrorCode.POINTS_NOT_REDEEMABLE).status_block(), 422
    body = {
        "status": top,
        "dryRun": True,
        "pointsAvailable": _integral(available),
        "pointsRequired": _integral(needed),
        "pointsShortBy": _integral(max(needed - available, Decimal(0))),
        "rewards": lines,
    }
    return Result(ctx.request.mode, http, body, None, dry_run=True)
