"""Who is calling, for whom, on which till and brand (R1, R2, R3, R9). Reads only."""

import functools
from dataclasses import dataclass

from django.db.models import Exists, OuterRef, Q

from catalogue.models import Brand, Customer, CustomerGroup, Organisation, Till

from .errors import ErrorCode, IssuanceError, group_invalid, group_not_member
from .rawsql import Columns, fetch, quoted


@dataclass(frozen=True)
class Identifiers:
    mobile: str | None = None
    email: str | None = None
    external_id: str | None = None

    def given(self) -> dict[str, str]:
        return {k: v for k, v in (("mobile", self.mobile), ("email", self.email), ("external_id", self.external_id)) if v}


@dataclass(frozen=True)
class GroupRef:
    primary_user_id: str | None = None
    group_id: str | None = None
    external_id: str | None = None

    def given(self) -> bool:
        return any(v not in (None, "") for v in (self.primary_user_id, self.group_id, self.external_id))

    def describe(self) -> str:
        return next(str(v) for v in (self.group_id, self.external_id, self.primary_user_id) if v not in (None, ""))


def till_for(*, org: Organisation, code: str | None, user) -> Till:
    """R1: the till must be in the caller's org and usable by the caller. A till of another
    org answers exactly like an unknown one."""
    if not code:
        raise IssuanceError(ErrorCode.BAD_REQUEST, "username (the till) is required")
    member = Till.users.through.objects.filter(till_id=OuterRef("pk"), user_id=user.pk)
    till = Till.objects.filter(org=org, code=code, is_active=True).annotate(usable=Exists(member)).first()
    if till is None or not (till.usable or user.is_superuser):
        raise IssuanceError(ErrorCode.FORBIDDEN, "The till is not available to this user")
    return till


def brand_for(*, org: Organisation, name: str | None) -> Brand | None:
    if name in (None, ""):
        return None
    brand = Brand.objects.filter(org=org, name=name).first()
    if brand is None:
        raise IssuanceError(ErrorCode.BRAND_NOT_FOUND)
    return brand


# What the engine reads of a customer (the others are deferred, as with ``only``).
_CUSTOMER = Columns(Customer, "id", "org", "mobile", "email", "external_id", "points_redeemable", "primary_value",
                    "first_name", "last_name")


@functools.lru_cache(maxsize=8)
def _customers_sql(fields: tuple[str, ...]) -> str:
    """Hand-written: compiling this OR of identifiers through the ORM cost ~7 % of a single
    issue's CPU (docs/performance.md). Params: the org's id, then one value per field."""
    meta = Customer._meta
    matches = " OR ".join(f"{quoted(meta.get_field(name).column)} = %s" for name in fields)
    return (f"SELECT {_CUSTOMER.sql} FROM {quoted(meta.db_table)} WHERE {quoted(meta.get_field('org').column)} = %s "
            f"AND ({matches}) ORDER BY {quoted(meta.pk.column)} LIMIT 50")


def customer_for(*, org: Organisation, identifiers: Identifiers) -> Customer:
    """R2: every identifier given must point at the same single customer.

    Under dual eligibility a secondary identifier may match several customers; the
    candidates of all identifiers given are intersected, and more than one left is
    refused with 8015 rather than picking one."""
    given = identifiers.given()
    if not given:
        raise IssuanceError(ErrorCode.MISSING_IDENTIFIER)
    rows = [_CUSTOMER.instance(row) for row in fetch(_customers_sql(tuple(given)), [org.pk, *given.values()])]
    for customer in rows:
        Customer.org.field.set_cached_value(customer, org)  # the row's org: org_id = org.pk
    candidates: set[int] | None = None
    for field, value in given.items():
        matching = {c.pk for c in rows if getattr(c, field) == value}
        candidates = matching if candidates is None else candidates & matching
        if not candidates:
            raise IssuanceError(ErrorCode.CUSTOMER_NOT_FOUND)
    if len(candidates) > 1:
        raise IssuanceError(ErrorCode.AMBIGUOUS_CUSTOMER)
    (customer_id,) = candidates
    return next(c for c in rows if c.pk == customer_id)


def group_for(*, org: Organisation, ref: GroupRef, customer: Customer) -> CustomerGroup:
    """R9: user_group2 by id, external id or primary member (customer id or primary
    identifier value); the customer must be a member."""
    groups = CustomerGroup.objects.filter(org=org)
    group = None
    if ref.group_id not in (None, ""):
        group = groups.filter(pk=int(ref.group_id)).first() if str(ref.group_id).isdigit() else None
    elif ref.external_id not in (None, ""):
        group = groups.filter(external_id=str(ref.external_id)).first()
    else:
        value = str(ref.primary_user_id)
        match = Q(primary_member__primary_value=value) | Q(primary_member__mobile=value)
        if value.isdigit() and len(value) < 19:
            match |= Q(primary_member_id=int(value))
        group = groups.filter(match).order_by("pk").first()
    if group is None:
        raise group_invalid(ref.describe())
    if not group.memberships.filter(customer=customer).exists() and group.primary_member_id != customer.pk:
        raise group_not_member(customer.pk, group.pk)
    return group
