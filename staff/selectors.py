"""Reads of the staff pages, each a fixed number of queries (or one per kind of row).

Every function takes the staff member's org ids (``request.staff_org_ids``) and never
returns a row of another org.
"""

import datetime
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Count, F, IntegerField, OuterRef, Prefetch, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce, TruncDate

from catalogue.models import (
    Card,
    CouponCode,
    CouponSeries,
    Customer,
    CustomerLabel,
    FulfillmentStatus,
    GroupMembership,
    PaymentConfig,
    ProgramMembership,
    Reward,
    SegmentMembership,
    Till,
)
from issuance.models import (
    FulfillmentChange,
    IdempotencyRecord,
    Issuance,
    IssuanceLine,
    IssuedUnit,
    LedgerEntry,
    LineStatus,
    PointsAccount,
)

from .choices import BulkRowStatus, GoodwillStatus
from .models import BulkJob, BulkJobRow, GoodwillRequest

SEARCH_LIMIT = 50
RECENT_LINES = 10


# ---------------------------------------------------------------- customers


def customers_find(*, org_ids, term: str) -> list[Customer]:
    """Customers whose mobile, email (any case) or external id is ``term`` exactly, or
    whose id it is; one query."""
    term = term.strip()
    if not term:
        return []
    match = Q(mobile=term) | Q(email__iexact=term) | Q(external_id=term)
    if term.isdigit() and len(term) < 19:
        match |= Q(pk=int(term))
    return list(
        Customer.objects.filter(match, org_id__in=org_ids).select_related("org").order_by("org_id", "pk")[:SEARCH_LIMIT]
    )


def customer_for_staff(*, org_ids, customer_id: int) -> Customer | None:
    return Customer.objects.filter(pk=customer_id, org_id__in=org_ids).select_related("org").first()


@dataclass
class CustomerProfile:
    customer: Customer
    account: PointsAccount | None
    groups: list
    segments: list
    cards: list
    labels: list
    tiers: list
    recent_lines: list
    pending_requests: list


def customer_profile(customer: Customer) -> CustomerProfile:
    """Everything the customer page shows but the ledger: eight queries."""
    return CustomerProfile(
        customer=customer,
        account=PointsAccount.objects.filter(customer=customer).first(),
        groups=list(GroupMembership.objects.filter(customer=customer).select_related("group").order_by("group_id")),
        segments=list(
            SegmentMembership.objects.filter(customer=customer)
            .select_related("partition__segment")
            .order_by("partition__segment__name", "partition__name")
        ),
        cards=list(Card.objects.filter(customer=customer).select_related("series").order_by("series__code", "id")),
        labels=list(CustomerLabel.objects.filter(customer=customer).select_related("label").order_by("label__name")),
        tiers=list(ProgramMembership.objects.filter(customer=customer).select_related("program", "tier")),
        recent_lines=list(
            IssuanceLine.objects.filter(customer=customer)
            .select_related("reward", "issuance__till", "issuance__actor")
            .order_by("-created_at", "-id")[:RECENT_LINES]
        ),
        pending_requests=list(
            GoodwillRequest.objects.filter(customer=customer, status=GoodwillStatus.PENDING)
            .select_related("reward", "requester")
            .order_by("-created_at")
        ),
    )


def ledger_entries(account: PointsAccount | None) -> QuerySet[LedgerEntry]:
    if account is None:
        return LedgerEntry.objects.none()
    return LedgerEntry.objects.filter(account=account).select_related("actor", "line").order_by("-created_at", "-id")


def tills_usable(*, user, org_id: int) -> QuerySet[Till]:
    """The org's active tills this staff member may book on (superusers: all of them),
    the same rule as ``issuance.resolution.till_for``."""
    tills = Till.objects.filter(org_id=org_id, is_active=True).order_by("code")
    if user.is_superuser:
        return tills
    return tills.filter(users=user)


def payment_configs(reward: Reward) -> list[PaymentConfig]:
    return list(PaymentConfig.objects.filter(reward=reward).order_by("id"))


# ---------------------------------------------------------------- issuances


def issuance_lines(*, org_ids) -> QuerySet[IssuanceLine]:
    """History rows (one per line), for staff.filters.IssuanceLineFilterSet."""
    return (
        IssuanceLine.objects.filter(org_id__in=org_ids)
        .select_related("reward", "customer", "issuance__till", "issuance__actor", "fulfillment_status")
        .order_by("-created_at", "-id")
    )


def issuance_detail(*, org_ids, issuance_id: int) -> Issuance | None:
    """One issuance with its lines, units, ledger entries and fulfillment history: six queries."""
    return (
        Issuance.objects.filter(pk=issuance_id, org_id__in=org_ids)
        .select_related("org", "till", "actor", "customer", "brand", "account")
        .prefetch_related(
            Prefetch(
                "lines",
                queryset=IssuanceLine.objects.select_related("reward", "payment_config", "fulfillment_status").order_by(
                    "id"
                ),
            ),
            Prefetch("lines__units", queryset=IssuedUnit.objects.select_related("promotion").order_by("id")),
            Prefetch("lines__ledger_entries", queryset=LedgerEntry.objects.order_by("id")),
            Prefetch(
                "lines__fulfillment_history",
                queryset=FulfillmentChange.objects.select_related("from_status", "to_status", "actor").order_by(
                    "created_at", "id"
                ),
            ),
        )
        .first()
    )


def fulfillment_statuses(org_id: int) -> list[FulfillmentStatus]:
    return list(FulfillmentStatus.objects.filter(org_id=org_id, enabled=True).order_by("position", "name"))


def idempotency_records(*, org_ids, request_id: str) -> list[IdempotencyRecord]:
    return list(
        IdempotencyRecord.objects.filter(org_id__in=org_ids, request_id=request_id)
        .select_related("org", "line__issuance")
        .order_by("org_id")
    )


# ---------------------------------------------------------------- goodwill requests


def goodwill_pending(*, org_ids) -> QuerySet[GoodwillRequest]:
    return (
        GoodwillRequest.objects.filter(org_id__in=org_ids, status=GoodwillStatus.PENDING)
        .select_related("customer", "reward", "requester", "org")
        .order_by("created_at", "id")
    )


def goodwill_recent(*, org_ids, limit: int = 20) -> list[GoodwillRequest]:
    return list(
        GoodwillRequest.objects.filter(org_id__in=org_ids)
        .exclude(status=GoodwillStatus.PENDING)
        .select_related("customer", "reward", "requester", "decided_by")
        .order_by("-updated_at", "-id")[:limit]
    )


# ---------------------------------------------------------------- bulk jobs


def bulk_jobs(*, org_ids, limit: int = 50) -> list[BulkJob]:
    return list(BulkJob.objects.filter(org_id__in=org_ids).select_related("org", "till", "created_by")[:limit])


def bulk_job(*, org_ids, job_id: int) -> BulkJob | None:
    return BulkJob.objects.filter(pk=job_id, org_id__in=org_ids).select_related("org", "till", "created_by").first()


@dataclass(frozen=True)
class JobProgress:
    total: int
    invalid: int
    counts: dict

    @property
    def to_issue(self) -> int:
        return self.total - self.invalid

    @property
    def finished(self) -> int:
        return sum(
            self.counts.get(s, 0)
            for s in (BulkRowStatus.ISSUED, BulkRowStatus.PARTIAL, BulkRowStatus.FAILED, BulkRowStatus.SKIPPED)
        )

    @property
    def pending(self) -> int:
        return self.counts.get(BulkRowStatus.PENDING, 0)

    @property
    def percent(self) -> int:
        return 100 if not self.to_issue else int(100 * self.finished / self.to_issue)


def bulk_job_progress(job: BulkJob) -> JobProgress:
    """Row counts by status: one aggregate query."""
    counts = dict(BulkJobRow.objects.filter(job=job).order_by().values_list("status").annotate(n=Count("id")))
    return JobProgress(total=job.total_rows, invalid=job.invalid_rows, counts=counts)


def bulk_rows(job: BulkJob, *, status: str | None = None) -> QuerySet[BulkJobRow]:
    rows = BulkJobRow.objects.filter(job=job).select_related("reward").order_by("row_number")
    return rows.filter(status=status) if status else rows


# ---------------------------------------------------------------- dashboard


@dataclass
class Dashboard:
    days: list[str] = field(default_factory=list)
    issued_per_day: list[int] = field(default_factory=list)
    points_per_day: list[float] = field(default_factory=list)
    by_type: list[dict] = field(default_factory=list)
    by_reward: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    low_pools: list = field(default_factory=list)
    totals: dict = field(default_factory=dict)


def _num(value) -> float:
    """Chart data only (JSON for Chart.js); totals shown as text stay Decimal."""
    return float(value or 0)


def dashboard(*, org, days: int, now: datetime.datetime, top: int = 10) -> Dashboard:
    """Issued lines and points redeemed per day (the org's calendar), by redemption type
    and by reward, failure codes, and coupon pools at or below their low-stock threshold:
    six queries whatever the period."""
    tz = zoneinfo.ZoneInfo(org.time_zone)
    today = now.astimezone(tz).date()
    first = today - datetime.timedelta(days=days - 1)
    since = datetime.datetime.combine(first, datetime.time(0), tz)
    lines = IssuanceLine.objects.filter(org=org, created_at__gte=since).order_by()
    issued = lines.filter(quantity__gt=0)
    per_day = {
        row["day"]: row
        for row in issued.annotate(day=TruncDate("created_at", tzinfo=tz))
        .values("day")
        .annotate(n=Count("id"), points=Sum("total_points"))
    }
    data = Dashboard()
    for offset in range(days):
        day = first + datetime.timedelta(days=offset)
        row = per_day.get(day, {})
        data.days.append(day.isoformat())
        data.issued_per_day.append(row.get("n", 0))
        data.points_per_day.append(_num(row.get("points")))
    data.by_type = [
        {"label": r["redemption_type"], "units": r["units"], "points": r["points"]}
        for r in issued.values("redemption_type")
        .annotate(units=Sum("quantity"), points=Sum("total_points"))
        .order_by("-points", "redemption_type")
    ]
    data.by_reward = [
        {"label": f"{r['reward_id']} {r['reward__name']}", "units": r["units"], "points": r["points"]}
        for r in issued.values("reward_id", "reward__name")
        .annotate(units=Sum("quantity"), points=Sum("total_points"))
        .order_by("-units", "reward_id")[:top]
    ]
    data.failures = [
        {"code": r["error_code"], "message": r["error_message"], "count": r["n"]}
        for r in lines.filter(status__in=[LineStatus.FAILED, LineStatus.PARTIAL])
        .values("error_code", "error_message")
        .annotate(n=Count("id"))
        .order_by("-n", "error_code")[:top]
    ]
    available = (
        CouponCode.objects.filter(series=OuterRef("pk")).order_by().values("series").annotate(c=Count("id")).values("c")
    )
    data.low_pools = list(
        CouponSeries.objects.filter(org=org, enabled=True, generate_codes=False, valid_till__gt=now)
        .annotate(available=Coalesce(Subquery(available, output_field=IntegerField()), 0))
        .filter(available__lte=F("low_stock_threshold"))
        .order_by("available", "name")
    )
    totals = issued.aggregate(lines=Count("id"), units=Sum("quantity"), points=Sum("total_points"))
    data.totals = {
        "lines": totals["lines"] or 0,
        "units": totals["units"] or 0,
        "points": totals["points"] or Decimal(0),
        "failed": sum(f["count"] for f in data.failures),
    }
    return data


# ---------------------------------------------------------------- used by why_not


def target_names(reward_ids) -> dict[str, dict[int, list[str]]]:
    """Names of what each reward targets, by kind (the four targeting kinds of
    issuance.eligibility.TARGETINGS): four queries."""
    names: dict[str, dict[int, list[str]]] = {
        k: defaultdict(list) for k in ("segments", "card series", "labels", "tiers")
    }
    ids = list(reward_ids)
    if not ids:
        return names
    for reward_id, seg, part in Reward.target_partitions.through.objects.filter(reward_id__in=ids).values_list(
        "reward_id", "partition__segment__name", "partition__name"
    ):
        names["segments"][reward_id].append(f"{seg} / {part}")
    for reward_id, code in Reward.card_series.through.objects.filter(reward_id__in=ids).values_list(
        "reward_id", "cardseries__code"
    ):
        names["card series"][reward_id].append(code)
    for reward_id, name in Reward.labels.through.objects.filter(reward_id__in=ids).values_list(
        "reward_id", "label__name"
    ):
        names["labels"][reward_id].append(name)
    for reward_id, program, tier in Reward.target_tiers.through.objects.filter(reward_id__in=ids).values_list(
        "reward_id", "tier__program__name", "tier__name"
    ):
        names["tiers"][reward_id].append(f"{program} / {tier}")
    return names


def customer_profile_account(customer: Customer) -> PointsAccount | None:
    return PointsAccount.objects.filter(customer=customer).first()


def fulfillment_statuses_qs(org_id: int) -> QuerySet[FulfillmentStatus]:
    return FulfillmentStatus.objects.filter(org_id=org_id, enabled=True).order_by("position", "name")
