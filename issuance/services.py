"""The issuance engine: one request object in, one result out (R1–R10).

Every channel — the single and bulk API calls, the connected-orgs call, the staff pages
and the bulk CSV tool — calls ``rewards_issue``. No rule lives anywhere else.

Locking and atomicity (``rewards_issue``):
1. Validation and look-ups (no writes, no locks): the request, till, brand, customer,
   group, rewards, custom fields, fulfillment status, validation code. Failures are 4xx
   and nothing is stored. The till, brand, custom field definitions, limit definitions and
   reward targets come from per-process caches when fresh (``issuance.caches``: at most
   30 s old); the customer, what the customer holds, the rewards and their prices never do.
2. One transaction: lock the customer's points account (and the group's, when the group
   pays) in primary-key order, with a lock timeout (10004 when another call holds it);
   lock the idempotency records of the request ids; lock the rows of rewards that have
   reward-level limits (pk order). Then plan (eligibility, price, limits), check the
   balance against the sum of the planned points (8004: the whole call fails, nothing
   written), decide each line (coupon codes taken with SKIP LOCKED from a pool that codes
   leave; when that comes up short, waiting for the codes other calls hold, which come back
   if those calls roll back), write the issuance, lines and units once with their outcome,
   deduct the points actually issued through the ledger, store the outcome under each
   requestId, commit. A crash anywhere rolls all of it back.
3. Vendor lines only: step 2 wrote them PENDING with their points held; after the commit
   the vendor is called with no lock held and each line is settled in its own
   transaction (``issuance.vendor_settlement``; crash recovery in ``issuance.recovery``).
A dry run does step 1 and the planning of step 2 without locks or writes.
"""

import datetime
import functools
import hashlib
import secrets
import string
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import DatabaseError, IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from catalogue.choices import (
    COUPON_REDEMPTION_TYPES,
    VENDOR_REDEMPTION_TYPES,
    ConstraintLevel,
    CustomFieldScope,
    RedemptionType,
)
from catalogue.models import (
    CartPromotion,
    CouponCode,
    CouponSeries,
    CustomFieldDefinition,
    Customer,
    CustomerGroup,
    FulfillmentStatus,
    Organisation,
    PaymentConfig,
    Reward,
    RewardConstraint,
    VendorRedemptionConfig,
)
from catalogue.validation import custom_field_value_error

from . import caches, jsonio, ledger, rawsql, responses
from .eligibility import CustomerFacts, reward_refusal, targets_and_facts
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
    LedgerEntry,
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
    payment_configs: dict[int, list[PaymentConfig]]  # by reward id, in (reward, id) order
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
    brand = _brand(org, request.brand_name)
    customer = customer_for(org=org, identifiers=request.identifiers)
    group = group_for(org=org, ref=details.group, customer=customer) if details.group.given() else None
    validation_row = None
    # R3 protects a customer's points from an API caller; signed-in, audited staff
    # (goodwill pages, bulk uploads) are not asked for the customer's code.
    staff_channel = request.channel in (Channel.STAFF, Channel.BULK_UPLOAD)
    if not staff_channel and not (request.skip_validation and org.allow_skip_validation):
        validation_row = validation_code_check(customer=customer, code=request.validation_code)

    reward_ids = {item.reward_id for _, item in items}
    rewards, payment_configs = _rewards_for(org, sorted(reward_ids), brand)
    missing = reward_ids - rewards.keys()
    if missing:
        raise IssuanceError(ErrorCode.REWARD_NOT_FOUND, f"Reward not found: {min(missing)}")

    targets, facts = targets_and_facts(rewards, customer)
    definitions = caches.CUSTOM_FIELDS.get_or_set(caches.org_key(org), lambda: {
        d.name: d for d in CustomFieldDefinition.objects.filter(org=org, scope=CustomFieldScope.ISSUE_REWARD)
    })
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
        payment_configs=payment_configs,
        facts=facts,
        targets=targets,
        definitions=definitions,
        statuses=statuses,
        validation_row=validation_row,
        now=now,
        constraints=_constraints_for(org, list(rewards.values())),
    )


# The engine's reads and writes below are hand-written SQL (issuance.rawsql): compiling them
# through the ORM cost more CPU than running them (measured: docs/performance.md).
_REWARD = rawsql.Columns(Reward)
_REWARD_RELATED = (  # what the engine reads of each reward, LEFT JOINed (select_related)
    (Reward.coupon_series.field, rawsql.Columns(CouponSeries)),
    (Reward.cart_promotion.field, rawsql.Columns(CartPromotion)),
    (Reward.vendor_redemption.field, rawsql.Columns(VendorRedemptionConfig)),
)
_PAYMENT_CONFIG = rawsql.Columns(PaymentConfig)
_CONSTRAINT = rawsql.Columns(RewardConstraint)


@functools.lru_cache(maxsize=64)
def _rewards_sql(count: int, brand: bool) -> str:
    """The rewards of ``count`` ids with their series, promotion, vendor config (at most one
    each) and payment configs (a row per config: at most five), by (reward, config) id."""
    reward = rawsql.quoted(Reward._meta.db_table)
    columns, joins = [_REWARD.sql], []
    for field, related in _REWARD_RELATED:
        table = rawsql.quoted(related.alias)
        columns.append(related.sql)
        joins.append(f"LEFT JOIN {table} ON {table}.{rawsql.quoted(field.target_field.column)} = "
                     f"{reward}.{rawsql.quoted(field.column)}")
    configs = rawsql.quoted(_PAYMENT_CONFIG.alias)
    columns.append(_PAYMENT_CONFIG.sql)
    joins.append(f'LEFT JOIN {configs} ON {configs}."reward_id" = {reward}."id"')
    return (f"SELECT {', '.join(columns)} FROM {reward} {' '.join(joins)} "
            f'WHERE {reward}."org_id" = %s AND {reward}."id" IN ({rawsql.placeholders(count)})'
            + (f' AND {reward}."brand_id" = %s' if brand else "")
            + f' ORDER BY {reward}."id", {configs}."id"')


def _rewards_for(org: Organisation, reward_ids: list[int], brand) -> tuple[dict[int, Reward], dict[int, list]]:
    """The org's rewards of these ids (of the brand, when the call names one) with their coupon
    series, cart promotion and vendor config (as ``select_related`` gives them), and their
    payment configs by reward id in id order (as ``prefetch_related`` gives them): one query,
    never cached (rewards and prices are read afresh on every call)."""
    params = [org.pk, *reward_ids] + ([brand.pk] if brand is not None else [])
    rewards: dict[int, Reward] = {}
    configs: dict[int, list] = {}
    configs_start = _REWARD.width + sum(related.width for _field, related in _REWARD_RELATED)
    for row in rawsql.fetch(_rewards_sql(len(reward_ids), brand is not None), params):
        reward = rewards.get(row[0])  # the reward's id: its first column
        if reward is None:
            reward = _REWARD.instance(row)
            start = _REWARD.width
            for field, related in _REWARD_RELATED:
                field.set_cached_value(reward, related.instance(row, start))
                start += related.width
            rewards[reward.pk], configs[reward.pk] = reward, []
        config = _PAYMENT_CONFIG.instance(row, configs_start)
        if config is not None:
            PaymentConfig.reward.field.set_cached_value(config, reward)
            configs[reward.pk].append(config)
    return rewards, configs


@functools.lru_cache(maxsize=64)
def _constraints_sql(reward_count: int, type_count: int) -> str:
    return (f"SELECT {_CONSTRAINT.sql} FROM {rawsql.quoted(RewardConstraint._meta.db_table)} "
            f'WHERE "org_id" = %s AND "is_active" = %s AND ("reward_id" IN ({rawsql.placeholders(reward_count)}) '
            f'OR ("level" = %s AND "redemption_type" IN ({rawsql.placeholders(type_count)}))) ORDER BY "id"')


def _constraints_for(org: Organisation, rewards) -> list[RewardConstraint]:
    """The active limits that may apply to these rewards (one query, never cached: a new or
    changed limit applies to the next call): their own and the org-level limits of their
    redemption types."""
    rewards = list(rewards)
    if not rewards:
        return []
    reward_ids = [r.pk for r in rewards]
    types = sorted({r.redemption_type for r in rewards})
    params = [org.pk, True, *reward_ids, ConstraintLevel.CUSTOMER_REDEMPTION_TYPE, *types]
    return [_CONSTRAINT.instance(row) for row in rawsql.fetch(_constraints_sql(len(reward_ids), len(types)), params)]


def _brand(org: Organisation, name: str | None):
    """``resolution.brand_for`` through ``caches.BRANDS`` (a brand found stays cached)."""
    if name in (None, ""):
        return None
    key = (caches.org_key(org), name)
    brand = caches.BRANDS.get(key)
    if brand is None:
        brand = brand_for(org=org, name=name)
        caches.BRANDS.set(key, brand)
    return brand


def _till(request: IssueRequest):
    """``resolution.till_for`` through ``caches.TILLS`` (a till found usable stays cached)."""
    org, user, code = request.org, request.actor, request.till_code
    key = (caches.org_key(org), code, user.pk, user.is_superuser)
    till = caches.TILLS.get(key) if code else None
    if till is None:
        till = till_for(org=org, code=code, user=user)
        caches.TILLS.set(key, till)
    return till


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
        configs = list(ctx.payment_configs[plan.reward.pk])
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


_ACCOUNT = rawsql.Columns(PointsAccount)
_RECORD = rawsql.Columns(IdempotencyRecord)


@functools.lru_cache(maxsize=32)
def _lock_accounts_sql(customers: int, groups: int) -> str:
    """Params: the lock timeout (PostgreSQL only), the customer ids, the group ids."""
    whose = f'"customer_id" IN ({rawsql.placeholders(customers)})'
    if groups:
        whose += f' OR "group_id" IN ({rawsql.placeholders(groups)})'
    # The transaction's lock timeout, set by the locking statement itself (one round trip
    # instead of a SET LOCAL before it): set_config(..., is_local => true) is SET LOCAL, and
    # PostgreSQL computes a row's select list below the LockRows node, so it is in force before
    # the first row lock is waited for, and for the rest of the transaction (the idempotency
    # records, the limited rewards).
    timeout = ", set_config('lock_timeout', %s, true)" if connection.vendor == "postgresql" else ""
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    return (f"SELECT {_ACCOUNT.sql}{timeout} FROM {rawsql.quoted(PointsAccount._meta.db_table)} "
            f'WHERE {whose} ORDER BY "id"{lock}')


def _lock_accounts(ctxs: list[_Context]) -> dict[int, PointsAccount]:
    """Lock every account the call touches — each customer's own (limits are per customer)
    and each paying group's — in one primary-key-ordered statement; returns the paying
    account per org."""
    postgresql = connection.vendor == "postgresql"
    customer_ids = [ctx.customer.pk for ctx in ctxs]
    group_ids = [ctx.group.pk for ctx in ctxs if ctx.group is not None]
    sql = _lock_accounts_sql(len(customer_ids), len(group_ids))
    timeout = [f"{LOCK_TIMEOUT_MS}ms"] if postgresql else []  # read at each call: tests lower it
    params = timeout + customer_ids + group_ids

    def lock() -> list[PointsAccount]:
        return [_ACCOUNT.instance(row) for row in rawsql.fetch(sql, params)]

    locked = lock()
    if len(locked) < len(customer_ids) + len(group_ids):  # first use: create, then lock
        if postgresql:  # the timeout must cover the inserts' waits too
            with connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_MS}ms'")
        for ctx in ctxs:
            _paying_account(ctx)
        locked = lock()
    by_customer = {a.customer_id: a for a in locked if a.customer_id}
    by_group = {a.group_id: a for a in locked if a.group_id}
    return {ctx.org.pk: by_group[ctx.group.pk] if ctx.group else by_customer[ctx.customer.pk] for ctx in ctxs}


@functools.lru_cache(maxsize=32)
def _lock_records_sql(count: int) -> str:
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    return (f"SELECT {_RECORD.sql} FROM {rawsql.quoted(IdempotencyRecord._meta.db_table)} "
            f'WHERE "org_id" = %s AND "request_id" IN ({rawsql.placeholders(count)}) ORDER BY "request_id"{lock}')


def _lock_records(ctx: _Context) -> dict[str, IdempotencyRecord]:
    ids = sorted({i.request_id for _, i in ctx.items if i.request_id})
    if not ids:
        return {}
    rows = [_RECORD.instance(row) for row in rawsql.fetch(_lock_records_sql(len(ids)), [ctx.org.pk, *ids])]
    _records_lines(rows)
    return {r.request_id: r for r in rows}


def _records_lines(records: list[IdempotencyRecord]) -> None:
    """Attach the earlier attempts' lines to their records: one query, and only on a retry
    (a fresh requestId, the usual case, has no record: its lock query stays a narrow one)."""
    ids = [r.line_id for r in records if r.line_id is not None]
    if ids:
        lines = IssuanceLine.objects.in_bulk(ids)
        for record in records:
            if record.line_id is not None:
                record.line = lines[record.line_id]


def _lock_limited_rewards(ctxs: list[_Context]) -> None:
    """Reward-level limits are shared by all customers: serialise on the reward rows, all
    of the call's at once in primary-key order (so calls never wait on each other in a cycle).
    FOR NO KEY UPDATE: it excludes the other calls' locks as FOR UPDATE does, but not the
    FOR KEY SHARE of a foreign key check, which every new line's reward gets at its commit
    (Django's foreign keys are deferred). With FOR UPDATE, a call that wrote a line of the
    reward without this lock (one whose process does not know the limit yet: caches are up to
    30 s behind) waited at its commit for the lock's holder, which may wait for that call's
    hourly usage row (issuance.models.RewardUsage): a deadlock."""
    ids = sorted({c.reward_id for ctx in ctxs for c in ctx.constraints if c.level == ConstraintLevel.REWARD})
    if ids:
        list(Reward.objects.select_for_update(of=("self",), no_key=True).filter(pk__in=ids)
             .order_by("pk").values_list("pk"))


def _needs_coupon(reward: Reward) -> bool:
    return reward.redemption_type in COUPON_REDEMPTION_TYPES or reward.coupon_series_id is not None


def _series_usable(reward: Reward, now) -> bool:
    series = reward.coupon_series
    return series is not None and series.enabled and series.valid_till > now


def _generated_code(series) -> str:
    return series.code_prefix + "".join(secrets.choice(_CODE_ALPHABET) for _ in range(series.code_length))


def _take_codes(series, count: int) -> list[str]:
    """Take up to ``count`` free codes of a pool series out of the pool (ordered by code);
    fewer only when the pool holds fewer.

    ORDER BY code: an index range scan of (series, code) (coupon_code_unique_per_series) that
    starts at the series' first free code, so a pick costs the same for any series and however
    far the pool has drained (issued codes leave the table; VACUUM drops their index entries).
    Unordered, PostgreSQL scans the table from its first page: through every other series'
    codes and every page emptied by earlier picks (measured: docs/performance.md).

    SKIP LOCKED: concurrent calls take different codes instead of waiting for each other (the
    common path: one statement). A code it skipped is held by another call that took it and
    has not finished; if that call rolls back, the code is free again. So a pick that comes up
    short waits for the codes others hold (``_wait_for_codes``) before answering with fewer."""
    if count <= 0:
        return []
    taken = _pick_codes(series, count, skip_locked=True)
    if len(taken) < count and connection.features.has_select_for_update_skip_locked:
        # (Without SKIP LOCKED — SQLite, one writer at a time — nothing was skipped.)
        taken.extend(_wait_for_codes(series, count - len(taken)))
        taken.sort()
    return taken


def _wait_for_codes(series, count: int) -> list[str]:
    """Up to ``count`` more codes of the series, waiting for the codes other calls hold: a
    code whose taker commits is gone and passed over, one whose taker rolls back is ours.
    Repeated while it brings codes and more are needed (a code waited for may vanish under
    the wait); empty only when no code of the series is left, taken or not. The codes this
    call already took are not seen again: it has deleted them.

    Each wait is bounded by the transaction's lock timeout (set with the account lock): past
    it the error goes up and the call answers 10004 (``_lock_error``). Two calls short of
    codes can each hold a code the other waits for: PostgreSQL then breaks the cycle by failing
    one wait (deadlock_timeout, 1 s by default); that call keeps what it has and answers with
    it, and the other's wait ends when the first commits. Each wait runs in a savepoint so that the
    failed wait, and only it, is undone (the savepoint costs two round trips, on this path only)."""
    taken: list[str] = []
    while len(taken) < count:
        try:
            with transaction.atomic():
                more = _pick_codes(series, count - len(taken), skip_locked=False)
        except OperationalError as error:
            if _sqlstate(error) != "40P01":  # deadlock_detected; a lock timeout is the call's 10004
                raise
            break
        if not more:
            break
        taken.extend(more)
    return taken


def _sqlstate(error: DatabaseError) -> str | None:
    return getattr(getattr(error, "__cause__", None), "sqlstate", None)


def _pick_codes(series, count: int, *, skip_locked: bool) -> list[str]:
    """Lock and delete up to ``count`` codes of the series, first by code (see ``_take_codes``);
    ``skip_locked=False`` waits for the codes other calls hold."""
    if connection.vendor == "postgresql":
        # One round trip: pick (locking the rows) and delete in one statement.
        table = connection.ops.quote_name(CouponCode._meta.db_table)
        lock = "FOR UPDATE SKIP LOCKED" if skip_locked else "FOR UPDATE"
        with connection.cursor() as cursor:
            cursor.execute(
                f"WITH picked AS (SELECT id, code FROM {table} WHERE series_id = %s ORDER BY code LIMIT %s "
                f"{lock}), "
                f"taken AS (DELETE FROM {table} WHERE id = ANY(ARRAY(SELECT id FROM picked))) "
                f"SELECT code FROM picked ORDER BY code",
                [series.pk, count],
            )
            return [code for (code,) in cursor.fetchall()]
    picked = list(
        CouponCode.objects.select_for_update(skip_locked=skip_locked)
        .filter(series=series)
        .order_by("code")
        .values_list("pk", "code")[:count]
    )
    if picked:
        CouponCode.objects.filter(pk__in=[pk for pk, _ in picked]).delete()
    return [code for _, code in picked]


def _codes_for(plans: list[LinePlan], now) -> dict[int, list[tuple[str, datetime.datetime]] | None]:
    """The codes of every coupon line about to issue (by plan index; None: the series is
    unusable): one pick per pool series for all the lines drawing on it, shared out in line
    order — what picking line by line gives (a pool running dry shorts the later lines)."""
    codes: dict[int, list | None] = {}
    by_series: dict[int, list[LinePlan]] = {}
    for plan in plans:
        reward = plan.reward
        if plan.error is not None or plan.units <= 0 or _is_vendor(reward) or not _needs_coupon(reward):
            continue
        if not _series_usable(reward, now):
            codes[plan.index] = None
            continue
        series = reward.coupon_series
        if series.generate_codes:
            codes[plan.index] = [(_generated_code(series), series.valid_till) for _ in range(plan.units)]
        else:
            by_series.setdefault(series.pk, []).append(plan)
    # Series in primary-key order: a call short of codes waits for other calls' codes
    # (``_take_codes``); one order keeps two calls from waiting for each other across series.
    for series_pk in sorted(by_series):
        series_plans = by_series[series_pk]
        series = series_plans[0].reward.coupon_series
        taken = _take_codes(series, sum(p.units for p in series_plans))
        start = 0
        for plan in series_plans:
            codes[plan.index] = [(code, series.valid_till) for code in taken[start:start + plan.units]]
            start += plan.units
    return codes


def _units_for(plan: LinePlan, codes, now) -> tuple[list[IssuedUnit], IssuanceError | None]:
    """The units of one line (not yet saved, no line set) and the error that stopped it
    short, if any. ``codes``: the line's coupon codes from ``_codes_for``."""
    reward = plan.reward
    start = plan.prior_units
    value = plan.price.redemption_value

    def unit(i: int, **kwargs) -> IssuedUnit:
        return IssuedUnit(points=plan.price.unit_points(start + i), redemption_value=value, **kwargs)

    if _is_vendor(reward):
        return [], IssuanceError(ErrorCode.VOUCHER_NOT_PRESENT)
    if _needs_coupon(reward):
        if not codes:
            return [], IssuanceError(ErrorCode.COUPON_SERIES_INVALID)
        units = [
            unit(i, coupon_series_id=reward.coupon_series_id, coupon_code=code, code_expiry=expiry)
            for i, (code, expiry) in enumerate(codes)
        ]
        shortfall = IssuanceError(ErrorCode.COUPON_SERIES_INVALID) if len(units) < plan.units else None
        return units, shortfall
    if reward.redemption_type == RedemptionType.CART_PROMOTION:
        promotion = reward.cart_promotion
        if promotion is None or not promotion.enabled or (promotion.valid_till and promotion.valid_till <= now):
            return [], IssuanceError(ErrorCode.ISSUE_FAILED)
        return [unit(i, promotion=promotion) for i in range(plan.units)], None
    return [unit(i) for i in range(plan.units)], None


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


def _new_line(plan: LinePlan, ctx: _Context) -> IssuanceLine:
    """A new line (not saved yet: it is written once, with its outcome)."""
    price_ = plan.price
    return IssuanceLine(
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


@dataclass
class _LineWork:
    """One line's outcome, decided before anything of it is written."""

    plan: LinePlan
    line: IssuanceLine  # new (unsaved) or an earlier attempt's (a retry of its requestId)
    units: list[IssuedUnit] = field(default_factory=list)
    points: Decimal = Decimal(0)  # to deduct now
    hold: Decimal = Decimal(0)  # to hold for the vendor phase

    @property
    def new(self) -> bool:
        return self.plan.line is None


def _line_work(plan: LinePlan, ctx: _Context, codes) -> _LineWork:
    """Decide a line's outcome: its units (coupon codes already taken out of the pool), its
    points, its status. Writes nothing: the line is then written once, final."""
    line = plan.line if plan.line is not None else _new_line(plan, ctx)
    work = _LineWork(plan=plan, line=line)
    error = plan.error
    if error is None and plan.units > 0 and _is_vendor(plan.reward):
        if plan.reward.vendor_redemption_id is None:
            error = IssuanceError(ErrorCode.VOUCHER_NOT_PRESENT)  # a vendor type with no vendor configured
        else:
            # Hold the points and leave the vendor call for after the commit (R10).
            work.hold = plan.points
            line.status, line.pending_units, line.held_points = LineStatus.PENDING, plan.units, work.hold
            return work
    if error is None and plan.units > 0:
        work.units, error = _units_for(plan, codes.get(plan.index), ctx.now)
    if work.units:
        issued = len(work.units)
        work.points = plan.price.points_for(plan.prior_units + issued) - plan.price.points_for(plan.prior_units)
        line.quantity += issued
        line.total_points += work.points
    if error is None and plan.limit_error is not None and line.quantity < line.planned_units:
        error = plan.limit_error
    line_conclude(line, error)
    return work


_INSERTS = {model: rawsql.Insert(model) for model in (Issuance, IssuanceLine, IssuedUnit, FulfillmentChange,
                                                       IdempotencyRecord)}


def _insert(objs: list) -> None:
    """INSERT new rows, all in one statement when there are several (their ids come back)."""
    if objs:
        _INSERTS[type(objs[0])].run(objs)


def _write_lines(works: list[_LineWork], issuance: Issuance | None, account: PointsAccount, ctx: _Context) -> None:
    """Write the lines of one org, each once with its outcome: the new lines (one INSERT),
    their units (one INSERT), the vendor lines' holds, then the deductions (one account UPDATE,
    one INSERT of their ledger entries, in request order); an earlier attempt's line is updated."""
    new = [w for w in works if w.new]
    for work in new:
        work.line.issuance = issuance
    _insert([w.line for w in new])
    pooled = []
    for work in works:
        for unit in work.units:
            unit.line = work.line
        if work.units and work.plan.reward.coupon_series_id and work.plan.reward.coupon_series.generate_codes:
            _save_generated(work.units, work.plan.reward)
        else:
            pooled.extend(work.units)
    _insert(pooled)
    changes = [
        FulfillmentChange(line=w.line, to_status=w.plan.fulfillment, actor=ctx.request.actor, note="set on issue")
        for w in new if w.plan.fulfillment is not None
    ]
    _insert(changes)
    # Holds first, then the deductions in line order: _check_points made sure the call's
    # points (held and deducted) are all available, so no order refuses one.
    for work in works:
        if work.hold > 0:
            ledger.points_hold_locked(account, amount=work.hold)
    paid = [w for w in works if w.points > 0]
    entries = ledger.points_redeem_many_locked(
        account,
        [(w.points, f"Reward {w.plan.reward.pk} × {len(w.units)} (line {w.line.pk})", w.line) for w in paid],
        actor=ctx.request.actor,
    )
    refs = {id(work): [entry.reference_id] for work, entry in zip(paid, entries, strict=True)}
    for work in works:
        line = work.line
        if work.new:
            if line.status != LineStatus.PENDING:
                # A new line's units and references are all here: the response needs no re-read.
                line.written = responses.Written(units=work.units, refs=refs.get(id(work), []))
        else:
            line.save()


def _records_store(outcomes: list, mode: str) -> None:
    """Create or complete the idempotency record of each line that has a requestId (the
    stored result; IN_FLIGHT for a line still PENDING). Existing records (locked by
    ``_lock_records``) are updated; new ones are inserted in ONE statement, in (org,
    requestId) order, so two calls reusing the same requestIds in opposite orders meet on the
    unique index in the same order (the later one then retries and answers 10003 or replays)
    instead of deadlocking."""
    keyed = sorted(
        (o for o in outcomes if o.line is not None and o.plan.item.request_id),
        key=lambda o: (o.line.org_id, o.plan.item.request_id),
    )
    new = []
    for outcome in keyed:
        line, record = outcome.line, outcome.plan.record
        if line.status == LineStatus.PENDING:
            state, text, http_status = IdempotencyState.IN_FLIGHT, "", None
        else:
            body, http_status = responses.stored_body(mode, outcome.body)
            state, text = IdempotencyState.DONE, jsonio.dumps(body)
        if record is None:
            outcome.plan.record = IdempotencyRecord(
                org_id=line.org_id, request_id=outcome.plan.item.request_id, fingerprint=outcome.plan.item.fingerprint,
                shape=mode, state=state, line=line, http_status=http_status, response_body=text,
            )
            new.append(outcome.plan.record)
        else:
            record.line, record.state, record.http_status, record.response_body = line, state, http_status, text
            record.save(update_fields=["line", "state", "http_status", "response_body", "updated_at"])
    _insert(new)


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
    # The writes below go to the database as one statement (rawsql.batched, PostgreSQL).
    with rawsql.batched(_rows_at_most(planned)):
        for ctx, plans in planned:
            paying = paying_by_org[ctx.org.pk]
            live = [p for p in plans if p.replay is None]
            codes = _codes_for(live, ctx.now)
            works = [_line_work(plan, ctx, codes) for plan in live]
            issuance = None
            new = [w for w in works if w.new]
            if new:
                # Written once, with the status its lines give it.
                issuance = _new_issuance(ctx, paying)
                issuance.status, issuance.response_code = _issuance_status(new, request.mode)
                _insert([issuance])
                issuances.append(issuance)
            _write_lines(works, issuance, paying, ctx)
            outcomes.extend(responses.Outcome(plan=w.plan, line=w.line) for w in works)
            outcomes.extend(responses.Outcome(plan=p, line=None, replay=p.replay) for p in plans if p.replay is not None)
        outcomes.sort(key=lambda o: o.plan.index)
        settled = [o for o in outcomes if o.line is not None and o.line.status != LineStatus.PENDING]
        responses.fill_line_bodies(settled, mode=request.mode, event_date_time=request.event_date_time)
        _records_store(outcomes, request.mode)
    return _Executed(request, outcomes, issuances, paying_by_org)


def _rows_at_most(planned: list[tuple[_Context, list[LinePlan]]]) -> dict[type, int]:
    """The most rows of each model the write step can insert for these plans: the ids
    ``rawsql.batched`` takes beforehand (too few only costs a statement of its own)."""
    rows = dict.fromkeys(_INSERTS, 0)
    rows[LedgerEntry] = 0
    for _ctx, plans in planned:
        live = [p for p in plans if p.replay is None]
        new = [p for p in live if p.line is None]
        rows[Issuance] += 1 if new else 0
        rows[IssuanceLine] += len(new)
        rows[IssuedUnit] += sum(max(p.units, 0) for p in live)
        rows[FulfillmentChange] += sum(1 for p in new if p.fulfillment is not None)
        rows[LedgerEntry] += len(live)
        rows[IdempotencyRecord] += sum(1 for p in live if p.item.request_id and p.record is None)
    return rows


def _issuance_status(works: list[_LineWork], mode: str) -> tuple[str, int]:
    """(status, response code) of an Issuance row from its new lines' outcomes."""
    if any(w.line.status == LineStatus.PENDING for w in works):
        return IssuanceStatus.PENDING, 0
    return responses.issuance_outcome_of_lines(
        mode, [(w.line, w.plan.error if w.line.status == LineStatus.FAILED else None) for w in works]
    )


@dataclass
class _Executed:
    request: IssueRequest
    outcomes: list
    issuances: list[Issuance]
    paying_by_org: dict[int, PointsAccount]


def _issuances_conclude(issuances: list[Issuance], outcomes, mode: str) -> None:
    """Each Issuance's status once its vendor lines are settled."""
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
    till = _till(request)
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
