"""The issuance engine: one request object in, one result out (R1–R10).

Every channel — the single and bulk API calls, the connected-orgs call, the staff pages
and the bulk CSV tool — calls ``rewards_issue``. No rule lives anywhere else.

Locking and atomicity (``rewards_issue``):
1. Validation and look-ups (no writes, no locks): the request, till, brand, customer,
   group, rewards, custom fields, fulfillment status, validation code. Failures are 4xx
   and nothing is stored.
2. One transaction: lock the customer's points account (and the group's, when the group
   pays) in primary-key order, with a lock timeout (10004 when another call holds it);
   lock the idempotency records of the request ids; lock the rows of rewards that have
   reward-level limits (pk order). Then plan (eligibility, price, limits), check the
   balance against the sum of the planned points (8004: the whole call fails, nothing
   written), issue each line (coupon codes taken with SKIP LOCKED from a pool that codes
   leave), deduct the points actually issued through the ledger, store the outcome
   under each requestId, commit. A crash anywhere rolls all of it back.
3. Vendor lines only: step 2 wrote them PENDING with their points held; after the commit
   the vendor is called with no lock held and each line is settled in its own
   transaction (``issuance.vendor_settlement``; crash recovery in ``issuance.recovery``).
A dry run does step 1 and the planning of step 2 without locks or writes.
"""

import datetime
import hashlib
import secrets
import string
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import DatabaseError, IntegrityError, OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from catalogue.choices import (
    COUPON_REDEMPTION_TYPES,
    VENDOR_REDEMPTION_TYPES,
    ConstraintLevel,
    CustomFieldScope,
    RedemptionType,
)
from catalogue.models import (
    CouponCode,
    CustomFieldDefinition,
    Customer,
    CustomerGroup,
    FulfillmentStatus,
    Organisation,
    Reward,
    RewardConstraint,
)
from catalogue.validation import custom_field_value_error

from . import jsonio, ledger, responses
from .eligibility import CustomerFacts, customer_facts, reward_refusal, reward_targets
from .errors import ErrorCode, IssuanceError, bad_request, insufficient_points, limit_reached, points_not_redeemable
from .limits import LimitState, format_limit, limit_states
from .models import (
    Channel,
    FulfillmentChange,
    IdempotencyRecord,
    IdempotencyState,
    Issuance,
    IssuanceLine,
    IssuanceStatus,
    IssuedUnit,
    LineStatus,
    PointsAccount,
)
from .pricing import PaymentRequest, Price, payment_config_choose, price, tender_check
from .resolution import GroupRef, Identifiers, brand_for, customer_for, group_for, till_for
from .validation_codes import validation_code_check, validation_code_consume

SINGLE = "single"
BULK = "bulk"
CONNECTED = "connected"  # v1.1: bulk across connected orgs, each line names its org
LOCK_TIMEOUT_MS = 5000
_CODE_ALPHABET = string.ascii_uppercase + string.digits


@dataclass
class IssueItem:
    reward_id: int
    quantity: int = 1
    payment: PaymentRequest = field(default_factory=PaymentRequest)
    custom_fields: dict | None = None
    fulfillment_status: str | None = None
    params: Any = None
    request_id: str | None = None
    event_log_id: str | None = None
    org_id: int | None = None
    fingerprint: str = ""


@dataclass(frozen=True)
class OrgDetails:
    """v1.1 ``orgLevelDetails``: what differs per org of one call."""

    params: Any = None
    notes: str | None = None
    group: GroupRef = field(default_factory=GroupRef)


@dataclass
class IssueRequest:
    org: Organisation
    actor: Any
    till_code: str | None
    mode: str
    identifiers: Identifiers
    items: list[IssueItem]
    brand_name: str | None = None
    transaction_number: str = ""
    notes: str = ""
    program_id: int | None = None
    event_log_id: str | None = None
    event_date_time: datetime.datetime | None = None
    params: Any = None
    ownership: tuple[str, str] | None = None
    group: GroupRef = field(default_factory=GroupRef)
    skip_validation: bool = False
    validation_code: str | None = None
    dry_run: bool = False
    channel: str = Channel.API
    owner_type: str = ""
    reason: str = ""
    org_details: dict[int, OrgDetails] = field(default_factory=dict)
    # Orgs this call may act on (R12 DATA-SCOPE); None: the caller's org only.
    allowed_org_ids: frozenset[int] | None = None


@dataclass
class LinePlan:
    index: int  # position in the request
    item: IssueItem
    reward: Reward
    error: IssuanceError | None = None
    price: Price | None = None
    custom_fields: dict | None = None
    fulfillment: FulfillmentStatus | None = None
    record: IdempotencyRecord | None = None
    line: IssuanceLine | None = None  # an earlier attempt's line (retry of a requestId)
    prior_units: int = 0
    units: int = 0  # to issue now
    limit_error: IssuanceError | None = None
    limits: list[LimitState] = field(default_factory=list)
    replay: dict | None = None  # stored result, nothing outstanding
    coupon_stock: int | None = None

    @property
    def points(self) -> Decimal:
        if self.price is None or self.units == 0:
            return Decimal(0)
        return self.price.points_for(self.prior_units + self.units) - self.price.points_for(self.prior_units)


IssueResult = responses.Result


@dataclass
class _Context:
    """One org's part of a call (a v1 call has exactly one)."""

    request: IssueRequest
    org: Organisation
    items: list[tuple[int, IssueItem]]
    details: OrgDetails
    till: Any
    brand: Any
    customer: Customer
    group: CustomerGroup | None
    rewards: dict[int, Reward]
    facts: CustomerFacts
    targets: dict
    definitions: dict[str, CustomFieldDefinition]
    statuses: dict[str, FulfillmentStatus]
    validation_row: Any
    now: datetime.datetime
    constraints: list[RewardConstraint] = field(default_factory=list)


# ---------------------------------------------------------------- step 1: look-ups


def _check_items(request: IssueRequest) -> None:
    if not request.items:
        raise bad_request("rewards: at least one reward is required")
    ids = [i.request_id for i in request.items if i.request_id not in (None, "")]
    if len(ids) != len(set(ids)):
        raise IssuanceError(ErrorCode.DUPLICATE_REQUEST_ID)
    for index, item in enumerate(request.items):
        if item.quantity < 1:
            raise bad_request(f"rewards[{index}].quantity: must be at least 1")
        tender_check(item.payment.tender)


def _custom_fields_clean(values: dict | None, definitions: dict[str, CustomFieldDefinition], path: str) -> dict | None:
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise bad_request(f"{path}: must be an object")
    clean = {}
    for name, value in values.items():
        definition = definitions.get(name)
        if definition is None:
            raise bad_request(f"{path}.{name}: no such custom field with scope ISSUE_REWARD")
        problem = custom_field_value_error(definition.field_type, value, definition.enum_values)
        if problem:
            raise bad_request(f"{path}.{name}: {problem}")
        clean[name] = value
    for name, definition in definitions.items():
        if name not in clean:
            if definition.is_mandatory and not definition.default_value:
                raise bad_request(f"{path}.{name}: is mandatory")
            if definition.default_value and definition.is_mandatory:
                clean[name] = definition.default_value
    return clean or None


def _items_by_org(request: IssueRequest) -> dict[Organisation, list[tuple[int, IssueItem]]]:
    """R12: each line's org (the caller's unless it names one) must be in the call's scope."""
    allowed = request.allowed_org_ids if request.allowed_org_ids is not None else frozenset({request.org.pk})
    by_org: dict[int, list[tuple[int, IssueItem]]] = {}
    for index, item in enumerate(request.items):
        org_id = item.org_id or request.org.pk
        if org_id not in allowed:
            raise IssuanceError(
                ErrorCode.FORBIDDEN, f"rewards[{index}].orgId: org {org_id} is outside the DATA-SCOPE of this call"
            )
        by_org.setdefault(org_id, []).append((index, item))
    orgs = {request.org.pk: request.org}
    if set(by_org) - set(orgs):
        orgs = Organisation.objects.in_bulk(list(by_org))
    return {orgs[org_id]: items for org_id, items in by_org.items()}


def _context(request: IssueRequest, org: Organisation, items, till, now: datetime.datetime) -> _Context:
    details = request.org_details.get(org.pk) or OrgDetails(group=request.group)
    for index, item in items:
        if item.quantity > org.max_quantity:
            raise bad_request(f"rewards[{index}].quantity: must be at most {org.max_quantity}")
    brand = brand_for(org=org, name=request.brand_name)
    customer = customer_for(org=org, identifiers=request.identifiers)
    group = group_for(org=org, ref=details.group, customer=customer) if details.group.given() else None
    validation_row = None
    # R3 protects a customer's points from an API caller; signed-in, audited staff
    # (goodwill pages, bulk uploads) are not asked for the customer's code.
    staff_channel = request.channel in (Channel.STAFF, Channel.BULK_UPLOAD)
    if not staff_channel and not (request.skip_validation and org.allow_skip_validation):
        validation_row = validation_code_check(customer=customer, code=request.validation_code)

    reward_ids = {item.reward_id for _, item in items}
    rewards_qs = Reward.objects.filter(org=org, pk__in=reward_ids).select_related(
        "coupon_series", "cart_promotion", "vendor_redemption"
    ).prefetch_related("payment_configs")
    if brand is not None:
        rewards_qs = rewards_qs.filter(brand=brand)
    rewards = {r.pk: r for r in rewards_qs}
    missing = reward_ids - rewards.keys()
    if missing:
        raise IssuanceError(ErrorCode.REWARD_NOT_FOUND, f"Reward not found: {min(missing)}")

    definitions = {
        d.name: d for d in CustomFieldDefinition.objects.filter(org=org, scope=CustomFieldScope.ISSUE_REWARD)
    }
    wanted_statuses = {i.fulfillment_status for _, i in items if i.fulfillment_status}
    statuses = {}
    if wanted_statuses:
        statuses = {s.name: s for s in FulfillmentStatus.objects.filter(org=org, enabled=True, name__in=wanted_statuses)}
    for index, item in items:
        if item.fulfillment_status and item.fulfillment_status not in statuses:
            raise bad_request(
                f"rewards[{index}].fulfillmentDetails.status: {item.fulfillment_status!r} is not an enabled "
                "fulfillment status"
            )
    return _Context(
        request=request,
        org=org,
        items=items,
        details=details,
        till=till,
        brand=brand,
        customer=customer,
        group=group,
        rewards=rewards,
        facts=customer_facts(customer),
        targets=reward_targets(rewards.keys()),
        definitions=definitions,
        statuses=statuses,
        validation_row=validation_row,
        now=now,
        constraints=_constraints_for(org, rewards.values()),
    )


def _constraints_for(org: Organisation, rewards) -> list[RewardConstraint]:
    """The active limits that may apply to these rewards (one query): their own and the
    org-level limits of their redemption types."""
    rewards = list(rewards)
    return list(
        RewardConstraint.objects.filter(org=org, is_active=True).filter(
            Q(reward_id__in=[r.pk for r in rewards])
            | Q(level=ConstraintLevel.CUSTOMER_REDEMPTION_TYPE, redemption_type__in={r.redemption_type for r in rewards})
        )
    )


# ---------------------------------------------------------------- step 2: plan


def _plan_lines(ctx: _Context, records: dict[str, IdempotencyRecord]) -> list[LinePlan]:
    request = ctx.request
    single = request.mode == SINGLE
    plans = []
    for index, item in ctx.items:
        reward = ctx.rewards[item.reward_id]
        path = "customFields" if single else f"rewards[{index}].customFields"
        plan = LinePlan(
            index=index,
            item=item,
            reward=reward,
            custom_fields=_custom_fields_clean(item.custom_fields, ctx.definitions, path),
            fulfillment=ctx.statuses.get(item.fulfillment_status) if item.fulfillment_status else None,
        )
        record = records.get(item.request_id) if item.request_id else None
        if record is not None:
            if record.fingerprint != item.fingerprint:
                raise IssuanceError(ErrorCode.PAYLOAD_MISMATCH)
            if record.state == IdempotencyState.IN_FLIGHT and record.line_id is not None:
                raise IssuanceError(ErrorCode.IN_FLIGHT)
            plan.record = record
            plan.line = record.line
            plan.prior_units = record.line.quantity if record.line else 0
            if record.state == IdempotencyState.DONE and record.line and record.line.status == LineStatus.ISSUED:
                # Fully answered before: the stored result, whatever has changed since.
                plan.replay = jsonio.loads(record.response_body)
        plans.append(plan)

    # Validation errors (400) of any item fail the whole call before anything else.
    for plan in plans:
        if plan.replay is not None:
            continue
        configs = list(plan.reward.payment_configs.all())
        try:
            config = payment_config_choose(plan.reward, configs, plan.item.payment, single=single)
        except IssuanceError as error:
            if error.http_status == 400:
                raise
            plan.error = error
            continue
        plan.price = price(plan.reward, config, plan.item.payment, quantity=plan.item.quantity, single=single)

    for plan in plans:
        if plan.error is not None or plan.replay is not None:
            continue
        plan.error = reward_refusal(
            plan.reward, facts=ctx.facts, targets=ctx.targets, now=ctx.now, ownership=request.ownership
        )
        if plan.error is None and _needs_coupon(plan.reward) and not _series_usable(plan.reward, ctx.now):
            # Known before issuing: such a line neither issues nor needs points.
            plan.error = IssuanceError(ErrorCode.COUPON_SERIES_INVALID)
        if plan.error is None:
            plan.units = max(plan.price.units - plan.prior_units, 0)
    _plan_limits(ctx, plans)
    return plans


def _plan_limits(ctx: _Context, plans: list[LinePlan]) -> None:
    """Cut each line's units to what its limits leave (R6 12005). Lines of one request
    count against each other in order."""
    live = [p for p in plans if p.error is None and p.replay is None and p.units > 0]
    if not live:
        return
    reward_ids = {p.reward.pk for p in live}
    types = {p.reward.redemption_type for p in live}
    constraints = [
        c for c in ctx.constraints
        if c.reward_id in reward_ids or (c.reward_id is None and c.redemption_type in types)
    ]
    if not constraints:
        return
    states = limit_states(constraints, customer_id=ctx.customer.pk, org=ctx.org, now=ctx.now)
    used_in_request: Counter = Counter()
    for plan in live:
        applicable = [
            s
            for s in states
            if s.constraint.reward_id == plan.reward.pk
            or (s.constraint.reward_id is None and s.constraint.redemption_type == plan.reward.redemption_type)
        ]
        plan.limits = applicable
        allowed = plan.units
        blocking = None
        for state in applicable:
            left = state.remaining - used_in_request[state.constraint.pk]
            per_unit = _kpi_per_unit(state.constraint.kpi, plan)
            fits = plan.units if per_unit == 0 else int(max(left, Decimal(0)) // per_unit)
            if fits < allowed:
                allowed, blocking = fits, state.constraint
        if blocking is not None:
            plan.limit_error = limit_reached(
                frequency=blocking.frequency, limit=format_limit(blocking.limit_value), level=blocking.level
            )
            plan.units = allowed
            if allowed == 0 and plan.prior_units == 0:
                plan.error = plan.limit_error
        for state in applicable:
            used_in_request[state.constraint.pk] += _kpi_per_unit(state.constraint.kpi, plan) * plan.units


def _kpi_per_unit(kpi: str, plan: LinePlan) -> Decimal:
    if kpi == "QUANTITY":
        return Decimal(1)
    if plan.price.redemption_value is not None:
        return plan.price.redemption_value
    return plan.price.points_per_unit


# ---------------------------------------------------------------- step 2: issue


def _paying_account(ctx: _Context) -> tuple[PointsAccount, PointsAccount]:
    """(paying account, customer's own account), not locked; created empty on first use."""
    own = ledger.account_for_customer(ctx.customer)
    return (ledger.account_for_group(ctx.group) if ctx.group else own), own


def _lock_accounts(ctxs: list[_Context]) -> dict[int, PointsAccount]:
    """Lock every account the call touches — each customer's own (limits are per customer)
    and each paying group's — in one primary-key-ordered statement; returns the paying
    account per org."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_MS}ms'")
    customer_ids = [ctx.customer.pk for ctx in ctxs]
    group_ids = [ctx.group.pk for ctx in ctxs if ctx.group is not None]

    def lock() -> list[PointsAccount]:
        return list(
            PointsAccount.objects.select_for_update(of=("self",))
            .filter(Q(customer_id__in=customer_ids) | Q(group_id__in=group_ids))
            .order_by("pk")
        )

    locked = lock()
    if len(locked) < len(customer_ids) + len(group_ids):  # first use: create, then lock
        for ctx in ctxs:
            _paying_account(ctx)
        locked = lock()
    by_customer = {a.customer_id: a for a in locked if a.customer_id}
    by_group = {a.group_id: a for a in locked if a.group_id}
    return {ctx.org.pk: by_group[ctx.group.pk] if ctx.group else by_customer[ctx.customer.pk] for ctx in ctxs}


def _lock_records(ctx: _Context) -> dict[str, IdempotencyRecord]:
    ids = sorted({i.request_id for _, i in ctx.items if i.request_id})
    if not ids:
        return {}
    rows = (
        IdempotencyRecord.objects.select_for_update(of=("self",))
        .filter(org=ctx.org, request_id__in=ids)
        .select_related("line")
        .order_by("request_id")
    )
    return {r.request_id: r for r in rows}


def _lock_limited_rewards(ctxs: list[_Context]) -> None:
    """Reward-level limits are shared by all customers: serialise on the reward rows, all
    of the call's at once in primary-key order (so calls never wait on each other in a cycle)."""
    ids = sorted({c.reward_id for ctx in ctxs for c in ctx.constraints if c.level == ConstraintLevel.REWARD})
    if ids:
        list(Reward.objects.select_for_update(of=("self",)).filter(pk__in=ids).order_by("pk").values_list("pk"))


def _needs_coupon(reward: Reward) -> bool:
    return reward.redemption_type in COUPON_REDEMPTION_TYPES or reward.coupon_series_id is not None


def _series_usable(reward: Reward, now) -> bool:
    series = reward.coupon_series
    return series is not None and series.enabled and series.valid_till > now


def _generated_code(series) -> str:
    return series.code_prefix + "".join(secrets.choice(_CODE_ALPHABET) for _ in range(series.code_length))


def _take_codes(reward: Reward, count: int, now) -> list[tuple[str, datetime.datetime]] | None:
    """Up to ``count`` codes of the reward's series; None when the series is unusable."""
    series = reward.coupon_series
    if not _series_usable(reward, now):
        return None
    if series.generate_codes:
        return [(_generated_code(series), series.valid_till) for _ in range(count)]
    # ORDER BY code: an index range scan of (series, code) (coupon_code_unique_per_series) that
    # starts at the series' first free code, so a pick costs the same for any series and however
    # far the pool has drained (issued codes leave the table; VACUUM drops their index entries).
    # Unordered, PostgreSQL scans the table from its first page: through every other series'
    # codes and every page emptied by earlier picks (measured: docs/performance.md).
    picked = list(
        CouponCode.objects.select_for_update(skip_locked=True)
        .filter(series=series)
        .order_by("code")
        .values_list("pk", "code")[:count]
    )
    if picked:
        CouponCode.objects.filter(pk__in=[pk for pk, _ in picked]).delete()
    return [(code, series.valid_till) for _, code in picked]


def _issue_units(plan: LinePlan, line: IssuanceLine, now) -> tuple[list[IssuedUnit], IssuanceError | None]:
    """Create the units of one line; returns them and the error that stopped short, if any."""
    reward = plan.reward
    start = plan.prior_units
    value = plan.price.redemption_value

    def unit(i: int, **kwargs) -> IssuedUnit:
        return IssuedUnit(line=line, points=plan.price.unit_points(start + i), redemption_value=value, **kwargs)

    if reward.vendor_redemption_id or reward.redemption_type in VENDOR_REDEMPTION_TYPES:
        return [], IssuanceError(ErrorCode.VOUCHER_NOT_PRESENT)
    if _needs_coupon(reward):
        codes = _take_codes(reward, plan.units, now)
        if not codes:
            return [], IssuanceError(ErrorCode.COUPON_SERIES_INVALID)
        units = [
            unit(i, coupon_series_id=reward.coupon_series_id, coupon_code=code, code_expiry=expiry)
            for i, (code, expiry) in enumerate(codes)
        ]
        if reward.coupon_series.generate_codes:
            units = _save_generated(units, reward)
        else:
            IssuedUnit.objects.bulk_create(units)
        shortfall = IssuanceError(ErrorCode.COUPON_SERIES_INVALID) if len(units) < plan.units else None
        return units, shortfall
    if reward.redemption_type == RedemptionType.CART_PROMOTION:
        promotion = reward.cart_promotion
        if promotion is None or not promotion.enabled or (promotion.valid_till and promotion.valid_till <= now):
            return [], IssuanceError(ErrorCode.ISSUE_FAILED)
        units = [unit(i, promotion=promotion) for i in range(plan.units)]
    else:
        units = [unit(i) for i in range(plan.units)]
    IssuedUnit.objects.bulk_create(units)
    return units, None


def _save_generated(units: list[IssuedUnit], reward: Reward) -> list[IssuedUnit]:
    """Generated codes are unique by the database constraint; a collision draws again."""
    series = reward.coupon_series
    for unit in units:
        for _ in range(5):
            try:
                with transaction.atomic():
                    unit.save()
                break
            except IntegrityError:
                unit.pk = None
                unit.coupon_code = _generated_code(series)
        else:
            raise RuntimeError("could not draw a unique coupon code")
    return units


def _line_for(plan: LinePlan, issuance: Issuance, ctx: _Context) -> IssuanceLine:
    if plan.line is not None:
        return plan.line
    price_ = plan.price
    return IssuanceLine.objects.create(
        issuance=issuance,
        org=ctx.org,
        customer=ctx.customer,
        reward=plan.reward,
        redemption_type=plan.reward.redemption_type,
        request_id=plan.item.request_id or None,
        requested_quantity=plan.item.quantity,
        planned_units=price_.units if price_ else 0,
        status=LineStatus.FAILED,
        payment_config=price_.config if price_ else None,
        payment_mode=price_.mode or "" if price_ else "",
        conversion_ratio=price_.config.conversion_ratio if price_ and price_.config else None,
        points_per_unit=price_.points_per_unit if price_ else Decimal(0),
        redemption_value=price_.redemption_value if price_ else None,
        tender=plan.item.payment.tender,
        custom_fields=plan.custom_fields,
        params=plan.item.params,
        event_log_id=plan.item.event_log_id or ctx.request.event_log_id,
        fulfillment_status=plan.fulfillment,
    )


def _is_vendor(reward: Reward) -> bool:
    return reward.vendor_redemption_id is not None or reward.redemption_type in VENDOR_REDEMPTION_TYPES


def line_conclude(line: IssuanceLine, error: IssuanceError | None) -> None:
    """Set a line's status from what it issued against what it was priced for."""
    if line.quantity and line.quantity >= line.planned_units:
        line.status, line.error_code, line.error_message = LineStatus.ISSUED, None, ""
    elif line.quantity:
        line.status = LineStatus.PARTIAL
        line.error_code, line.error_message = (error.code, error.message) if error else (None, "")
    else:
        line.status = LineStatus.FAILED
        error = error or IssuanceError(ErrorCode.ISSUE_FAILED)
        line.error_code, line.error_message = error.code, error.message


def _execute_line(plan: LinePlan, issuance: Issuance, account: PointsAccount, ctx: _Context) -> IssuanceLine:
    line = _line_for(plan, issuance, ctx)
    if plan.line is None and plan.fulfillment is not None:
        FulfillmentChange.objects.create(
            line=line, to_status=plan.fulfillment, actor=ctx.request.actor, note="set on issue"
        )
    error = plan.error
    if error is None and plan.units > 0 and _is_vendor(plan.reward):
        if plan.reward.vendor_redemption_id is None:
            error = IssuanceError(ErrorCode.VOUCHER_NOT_PRESENT)  # a vendor type with no vendor configured
        else:
            # Hold the points and leave the vendor call for after the commit (R10).
            points = plan.points
            if points > 0:
                ledger.points_hold_locked(account, amount=points)
            line.status, line.pending_units, line.held_points = LineStatus.PENDING, plan.units, points
            line.save()
            return line
    issued: list[IssuedUnit] = []
    refs: list[str] = []
    if error is None and plan.units > 0:
        issued, error = _issue_units(plan, line, ctx.now)
    if issued:
        points = plan.price.points_for(plan.prior_units + len(issued)) - plan.price.points_for(plan.prior_units)
        if points > 0:
            entry = ledger.points_redeem_locked(
                account,
                amount=points,
                reason=f"Reward {plan.reward.pk} × {len(issued)} (line {line.pk})",
                actor=ctx.request.actor,
                line=line,
            )
            refs.append(entry.reference_id)
        line.quantity += len(issued)
        line.total_points += points
    if error is None and plan.limit_error is not None and line.quantity < line.planned_units:
        error = plan.limit_error
    line_conclude(line, error)
    line.save()
    if plan.line is None:
        # A new line's units and references are all here: the response needs no re-read.
        line.written = responses.Written(units=issued, refs=refs)
    return line


def record_store(record: IdempotencyRecord | None, *, org, request_id, fingerprint_, shape, line, body, http_status):
    """Create or complete the idempotency record of one line. ``body`` None: IN_FLIGHT."""
    state = IdempotencyState.IN_FLIGHT if body is None else IdempotencyState.DONE
    text = "" if body is None else jsonio.dumps(body)
    if record is None:
        return IdempotencyRecord.objects.create(
            org=org, request_id=request_id, fingerprint=fingerprint_, shape=shape, state=state, line=line,
            http_status=http_status, response_body=text,
        )
    record.line, record.state, record.http_status, record.response_body = line, state, http_status, text
    record.save(update_fields=["line", "state", "http_status", "response_body", "updated_at"])
    return record


def _needs_points(plans: list[LinePlan]) -> Decimal:
    return sum((p.points for p in plans if p.error is None and p.replay is None), Decimal(0))


def _check_points(ctx: _Context, plans: list[LinePlan], paying: PointsAccount) -> None:
    """R7 step 2: the whole call fails when the priced rewards are not covered."""
    needed = _needs_points(plans)
    if needed > 0:
        if not ctx.org.points_redeemable or not ctx.customer.points_redeemable:
            raise points_not_redeemable()
        if paying.available < needed:
            raise insufficient_points()


def _new_issuance(ctx: _Context, paying: PointsAccount) -> Issuance:
    request = ctx.request
    return Issuance(
        org=ctx.org,
        till=ctx.till,
        brand=ctx.brand,
        customer=ctx.customer,
        account=paying,
        group=ctx.group,
        group_loyalty_redemption=ctx.group is not None,
        actor=request.actor,
        channel=request.channel,
        owner_type=request.owner_type,
        reason=request.reason,
        transaction_number=str(request.transaction_number or ""),  # the API accepts at most 254
        notes=(ctx.details.notes if ctx.details.notes is not None else request.notes) or "",
        program_id=request.program_id,
        event_log_id=request.event_log_id or "",
        event_date_time=request.event_date_time,
        params=ctx.details.params if ctx.details.params is not None else request.params,
        status=IssuanceStatus.FAILED,
        response_code=0,
    )


def _execute(ctxs: list[_Context]) -> IssueResult:
    request = ctxs[0].request
    paying_by_org = _lock_accounts(ctxs)
    records_by_org = {ctx.org.pk: _lock_records(ctx) for ctx in ctxs}  # ctxs are in org order
    _lock_limited_rewards(ctxs)
    planned = []
    for ctx in ctxs:
        plans = _plan_lines(ctx, records_by_org[ctx.org.pk])
        _check_points(ctx, plans, paying_by_org[ctx.org.pk])
        planned.append((ctx, plans))
    for ctx, _plans in planned:
        if ctx.validation_row is not None:
            validation_code_consume(ctx.validation_row)

    all_plans = sorted((p for _, plans in planned for p in plans), key=lambda p: p.index)
    if all(p.replay is not None for p in all_plans):
        return responses.result_from_replays(request.mode, all_plans)

    outcomes = []
    issuances = []
    for ctx, plans in planned:
        paying = paying_by_org[ctx.org.pk]
        issuance = _new_issuance(ctx, paying)
        if any(p.line is None and p.replay is None for p in plans):
            issuance.save()
            issuances.append(issuance)
        for plan in plans:
            if plan.replay is not None:
                outcomes.append(responses.Outcome(plan=plan, line=None, replay=plan.replay))
            else:
                outcomes.append(responses.Outcome(plan=plan, line=_execute_line(plan, issuance, paying, ctx)))
    outcomes.sort(key=lambda o: o.plan.index)
    settled = [o for o in outcomes if o.line is not None and o.line.status != LineStatus.PENDING]
    responses.fill_line_bodies(settled, mode=request.mode, event_date_time=request.event_date_time)
    # Records are inserted in (org, requestId) order, so two calls reusing the same
    # requestIds in opposite orders meet on the unique index in the same order (the later
    # one then retries and answers 10003 or replays) instead of deadlocking.
    keyed = [o for o in outcomes if o.line is not None and o.plan.item.request_id]
    for outcome in sorted(keyed, key=lambda o: (o.line.org_id, o.plan.item.request_id)):
        pending = outcome.line.status == LineStatus.PENDING
        body, status = (None, None) if pending else responses.stored_body(request.mode, outcome.body)
        outcome.plan.record = record_store(
            outcome.plan.record, org=outcome.line.org, request_id=outcome.plan.item.request_id,
            fingerprint_=outcome.plan.item.fingerprint, shape=request.mode, line=outcome.line, body=body,
            http_status=status,
        )
    _issuances_conclude(issuances, outcomes, request.mode)
    return _Executed(request, outcomes, issuances, paying_by_org)


@dataclass
class _Executed:
    request: IssueRequest
    outcomes: list
    issuances: list[Issuance]
    paying_by_org: dict[int, PointsAccount]


def _issuances_conclude(issuances: list[Issuance], outcomes, mode: str) -> None:
    for issuance in issuances:
        lines = [o for o in outcomes if o.line is not None and o.line.issuance_id == issuance.pk]
        if any(o.line.status == LineStatus.PENDING for o in lines):
            issuance.status, issuance.response_code = IssuanceStatus.PENDING, 0
        else:
            issuance.status, issuance.response_code = responses.issuance_outcome(mode, [o.body for o in lines])
        issuance.save(update_fields=["status", "response_code"])


def _vendor_phase(executed: _Executed) -> None:
    """After the commit: call the vendor for each PENDING line (no lock held), then settle
    each line in its own transaction. A crash in between leaves PENDING lines that
    ``issuance.recovery`` settles."""
    from . import vendor_settlement

    pending = [o for o in executed.outcomes if o.line is not None and o.line.status == LineStatus.PENDING]
    if not pending:
        return
    for outcome in pending:
        outcome.line = vendor_settlement.line_call_and_settle(outcome.line.pk, actor=executed.request.actor)
    responses.fill_line_bodies(pending, mode=executed.request.mode, event_date_time=executed.request.event_date_time,
                               refresh=True)
    with transaction.atomic():
        _issuances_conclude(list(Issuance.objects.filter(pk__in=[i.pk for i in executed.issuances])),
                            executed.outcomes, executed.request.mode)


def _contexts(request: IssueRequest, now) -> list[_Context]:
    _check_items(request)
    till = till_for(org=request.org, code=request.till_code, user=request.actor)
    by_org = sorted(_items_by_org(request).items(), key=lambda pair: pair[0].pk)  # lock order
    return [_context(request, org, items, till, now) for org, items in by_org]


def rewards_issue(request: IssueRequest) -> IssueResult:
    """Issue (or, with ``dry_run``, price and check) the rewards of one request.

    Raises ``IssuanceError`` for refusals of the whole call; per-reward refusals are in
    the result. See the module docstring for what is locked and what is atomic."""
    now = timezone.now()
    ctxs = _contexts(request, now)
    if request.dry_run:
        return _dry_run(ctxs)
    executed = None
    for attempt in range(2):
        try:
            with transaction.atomic():
                executed = _execute(ctxs)
            break
        except IntegrityError as error:
            # Another call inserted one of our requestIds first (a concurrent duplicate
            # for another customer); the retry sees its record.
            if "idempotency_unique_per_org" not in str(error):
                raise
            if attempt:
                raise IssuanceError(ErrorCode.IN_FLIGHT) from error
        except OperationalError as error:
            raise _lock_error(error) from error
    if isinstance(executed, responses.Result):
        return executed
    _vendor_phase(executed)  # after the commit, never inside the retry above
    result = responses.assemble(request.mode, [o.body if o.line is not None else o.replay for o in executed.outcomes])
    result.issuance = executed.issuances[0] if executed.issuances else None
    return result


def _dry_run(ctxs: list[_Context]) -> IssueResult:
    """Plan without locks or writes; what a real call would answer, per line."""
    all_plans, needed, available, stock = [], Decimal(0), Decimal(0), {}
    for ctx in ctxs:
        plans = _plan_lines(ctx, _records_unlocked(ctx))
        paying, _own = _paying_account(ctx)
        all_plans.extend(plans)
        needed += _needs_points(plans)
        available += paying.available
        stock.update(_coupon_stock(plans))
    all_plans.sort(key=lambda p: p.index)
    return responses.dry_run_result(ctxs[0], all_plans, needed, available, stock)


def _lock_error(error: DatabaseError) -> IssuanceError:
    cause = getattr(error, "__cause__", None)
    sqlstate = getattr(cause, "sqlstate", None)
    if sqlstate in ("55P03", "40P01") or "database is locked" in str(error):
        return IssuanceError(ErrorCode.PARALLEL_CALL)
    raise error


def _coupon_stock(plans: list[LinePlan]) -> dict[int, int]:
    """Codes a dry run could take now, per coupon reward (counted up to what it needs)."""
    stock = {}
    for plan in plans:
        series = plan.reward.coupon_series
        if plan.error is not None or series is None or series.generate_codes or plan.units == 0:
            continue
        stock[plan.reward.pk] = CouponCode.objects.filter(series=series).values("pk")[: plan.units].count()
    return stock


def _records_unlocked(ctx: _Context) -> dict[str, IdempotencyRecord]:
    ids = {i.request_id for _, i in ctx.items if i.request_id}
    if not ids:
        return {}
    return {r.request_id: r for r in IdempotencyRecord.objects.filter(org=ctx.org, request_id__in=ids).select_related("line")}


def fingerprint(*parts) -> str:
    """A stable digest of the payload a requestId was first used with (R8)."""
    return hashlib.sha256(jsonio.dumps(parts).encode()).hexdigest()
