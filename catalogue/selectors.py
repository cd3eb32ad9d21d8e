"""Reads of the catalogue: the rewards a customer may take, a page of them with every
linked row, and the customer's consumption of the limits shown next to them (R6, R11).

Everything here is a database query of a constant count per call: the list of a page
never loops over rewards issuing queries (one prefetch per kind of linked row, one
aggregate for the consumption of every limit on the page).
"""

import datetime
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import (
    Case,
    CharField,
    DecimalField,
    Exists,
    F,
    Min,
    OuterRef,
    Prefetch,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce

from issuance.eligibility import customer_facts, eligible_rewards_q
from issuance.errors import ErrorCode, IssuanceError
from issuance.limits import LimitState, limit_states

from .choices import ConstraintLevel, PaymentMode, TargetingKind
from .models import (
    MONEY,
    POINTS,
    TARGETING_LINKS,
    Brand,
    CardSeries,
    Category,
    Customer,
    Label,
    Organisation,
    PaymentConfig,
    Reward,
    RewardConstraint,
    RewardGroup,
    RewardLanguageContent,
    RewardMedia,
    Tier,
)

MAX_CUSTOMER_ID = 2**63 - 1
_POINTS_FIELD = DecimalField(**POINTS)
_MONEY_FIELD = DecimalField(**MONEY)


# ---------------------------------------------------------------- customer


def customer_get(*, org: Organisation, customer_id: int) -> Customer:
    """The org's customer with this id; another org's id answers exactly like an unknown
    one (R1): 1014."""
    customer = None
    if 0 < customer_id <= MAX_CUSTOMER_ID:
        customer = Customer.objects.filter(org=org, pk=customer_id).only("id", "org_id").first()
    if customer is None:
        raise IssuanceError(ErrorCode.CUSTOMER_NOT_FOUND)
    return customer


# ---------------------------------------------------------------- the listing cache: prices and targeting
#
# The rules below are written once, as database expressions over a reward's payment
# configs and targeting link rows. The list does not evaluate them per request: they are
# cached on the reward (Reward.list_points, list_cash, targeting) by
# catalogue.services.reward_listing_refresh, which every write path calls, so that a price
# filter or sort is an index range and an untargeted reward skips the eligibility probes.
# reward_listing_drift() compares the cache with the rules (manage.py check_catalogue).

POINTS_MODES = (PaymentMode.POINTS, PaymentMode.POINTS_CASH)
CASH_MODES = (PaymentMode.CASH, PaymentMode.POINTS_CASH)


def _configs():
    return PaymentConfig.objects.filter(reward_id=OuterRef("pk")).order_by()


def reward_points_expression():
    """A reward's price in points, for filtering and sorting (R5):
    the lowest points of its POINTS / POINTS_CASH configs; 0 with a FREE config; its
    ``intouch_points`` when it has no config at all; NULL when it cannot be priced in
    points up front (CASH only, CONV_RATIO). Cached as ``Reward.list_points``."""
    per_config = Case(
        When(mode__in=POINTS_MODES, then=F("points")),
        When(mode=PaymentMode.FREE, then=Value(Decimal(0))),
        output_field=_POINTS_FIELD,
    )
    lowest = _configs().values("reward_id").annotate(v=Min(per_config)).values("v")[:1]
    return Coalesce(
        Subquery(lowest, output_field=_POINTS_FIELD),
        Case(When(~Exists(_configs()), then=F("intouch_points")), output_field=_POINTS_FIELD),
        output_field=_POINTS_FIELD,
    )


def reward_cash_expression():
    """The lowest cash amount of a reward's CASH / POINTS_CASH configs; NULL without one.
    Cached as ``Reward.list_cash``."""
    lowest = _configs().filter(mode__in=CASH_MODES).values("reward_id").annotate(v=Min("cash_amount")).values("v")[:1]
    return Subquery(lowest, output_field=_MONEY_FIELD)


def reward_targeting_expression():
    """Which kind of targets a reward has (R6), from its link rows: NONE without any, the
    kind of its links, MIXED when they are of several kinds (which R6 forbids). Cached as
    ``Reward.targeting``; ``issuance.eligibility.eligible_rewards_q`` reads the cache."""
    linked = {kind: Exists(through.objects.filter(reward_id=OuterRef("pk"))) for kind, through in TARGETING_LINKS.items()}
    several = [When(linked[a] & linked[b], then=Value(TargetingKind.MIXED)) for a, b in itertools.combinations(linked, 2)]
    one = [When(exists, then=Value(kind)) for kind, exists in linked.items()]
    return Case(*several, *one, default=Value(TargetingKind.NONE), output_field=CharField())


# The cached columns and the rules they are computed from.
LISTING_CACHE = {
    "list_points": reward_points_expression,
    "list_cash": reward_cash_expression,
    "targeting": reward_targeting_expression,
}


def reward_listing_drift(rewards: QuerySet[Reward] | None = None) -> list[dict]:
    """The rewards (of ``rewards``, default all) whose cached listing columns differ from the
    rules: ``[{"id", "field", "stored", "expected"}, …]`` by id. One query. Prices are never
    negative, so -1 stands for NULL in the comparison (no three-valued logic)."""
    queryset = Reward.objects.all() if rewards is None else rewards
    compared = {}
    for column, rule in LISTING_CACHE.items():
        if column == "targeting":
            compared[f"{column}_stored"], compared[f"{column}_expected"] = F(column), rule()
        else:
            field = Reward._meta.get_field(column)
            compared[f"{column}_stored"] = Coalesce(column, Value(Decimal(-1)), output_field=field)
            compared[f"{column}_expected"] = Coalesce(rule(), Value(Decimal(-1)), output_field=field)
    same = {f"{column}_stored": F(f"{column}_expected") for column in LISTING_CACHE}
    rows = queryset.annotate(**compared).exclude(**same).order_by("pk").values("pk", *compared)
    unset = Decimal(-1)
    drift = []
    for row in rows:
        for column in LISTING_CACHE:
            stored, expected = row[f"{column}_stored"], row[f"{column}_expected"]
            if stored != expected:
                drift.append({"id": row["pk"], "field": column,
                              "stored": None if stored == unset else stored,
                              "expected": None if expected == unset else expected})
    return drift


# ---------------------------------------------------------------- the list


def rewards_available_to(*, customer: Customer, brand: Brand) -> QuerySet[Reward]:
    """The brand's rewards this customer may take by targeting (R6), as one query. Dates,
    activation and the other list filters are the FilterSet's."""
    return Reward.objects.filter(org_id=brand.org_id, brand=brand).filter(eligible_rewards_q(customer_facts(customer)))


def with_list_details(queryset: QuerySet[Reward]) -> QuerySet[Reward]:
    """Every row a reward object of the list shows: one query per kind, whatever the page
    size or the number of linked rows. Each kind lands in a plain list attribute
    (``list_<kind>``): Django builds a related-manager queryset per reward and per kind
    for a prefetch without ``to_attr`` (~9 × 20 querysets per page, measured at a quarter
    of the call's CPU)."""
    return queryset.prefetch_related(
        Prefetch("categories", queryset=Category.objects.order_by("name", "id"), to_attr="list_categories"),
        Prefetch("groups", queryset=RewardGroup.objects.order_by("name", "id"), to_attr="list_groups"),
        Prefetch("labels", queryset=Label.objects.order_by("name", "id"), to_attr="list_labels"),
        Prefetch("card_series", queryset=CardSeries.objects.order_by("code", "id"), to_attr="list_card_series"),
        Prefetch("target_tiers", queryset=Tier.objects.order_by("program_id", "serial", "id"), to_attr="list_tiers"),
        Prefetch("media", queryset=RewardMedia.objects.order_by("kind", "position", "id"), to_attr="list_media"),
        Prefetch("language_content", queryset=RewardLanguageContent.objects.order_by("language", "id"),
                 to_attr="list_language_content"),
        Prefetch("payment_configs", queryset=PaymentConfig.objects.order_by("id"), to_attr="list_payment_configs"),
        Prefetch("constraints", queryset=RewardConstraint.objects.order_by("id"), to_attr="list_constraints"),
    )


@dataclass(frozen=True)
class PageRequest:
    page: int  # 1-based; 0 = unpaged
    size: int
    unpaged_ceiling: int

    @property
    def unpaged(self) -> bool:
        return self.page == 0


@dataclass(frozen=True)
class RewardPage:
    rewards: list[Reward]
    total: int
    request: PageRequest

    @property
    def number(self) -> int:
        return 0 if self.request.unpaged else self.request.page - 1

    @property
    def size(self) -> int:
        if self.request.unpaged:
            return self.request.unpaged_ceiling if self.cut else self.total
        return self.request.size

    @property
    def cut(self) -> bool:
        """Unpaged and the ceiling left rewards out."""
        return self.request.unpaged and self.total > self.request.unpaged_ceiling

    @property
    def total_pages(self) -> int:
        return math.ceil(self.total / self.size) if self.total else 0

    @property
    def first(self) -> bool:
        return self.number == 0

    @property
    def last(self) -> bool:
        return self.number + 1 >= self.total_pages


def reward_page(queryset: QuerySet[Reward], *, request: PageRequest) -> RewardPage:
    """One count and, unless the page is past the end, one page query (plus its
    prefetches). ``queryset`` must be ordered."""
    if request.unpaged:
        offset, limit = 0, request.unpaged_ceiling
    else:
        offset, limit = (request.page - 1) * request.size, request.size
    total = queryset.count()
    rewards = list(with_list_details(queryset)[offset : offset + limit]) if offset < total else []
    return RewardPage(rewards=rewards, total=total, request=request)


# ---------------------------------------------------------------- limits and what the customer used


ConstraintUsage = LimitState  # a limit and what the customer consumed of it in its window


def org_constraints(org: Organisation) -> list[RewardConstraint]:
    """The org-level limits per redemption type (orgLevelRestrictions), active or not."""
    return list(
        RewardConstraint.objects.filter(org=org, level=ConstraintLevel.CUSTOMER_REDEMPTION_TYPE).order_by("id")
    )


def constraint_consumption(
    constraints: Iterable[RewardConstraint], *, customer_id: int, org: Organisation, now: datetime.datetime
) -> dict[int, ConstraintUsage]:
    """What the customer consumed of each constraint in its current window, by constraint
    id, in one query: the engine's own ``issuance.limits.limit_states``."""
    return {s.constraint.pk: s for s in limit_states(constraints, customer_id=customer_id, org=org, now=now)}


# ---------------------------------------------------------------- one call of the list API


@dataclass(frozen=True)
class RewardList:
    page: RewardPage
    usages: dict[int, ConstraintUsage]
    org_constraints: list[RewardConstraint]
    now: datetime.datetime


def reward_list_for_customer(
    *, org: Organisation, brand: Brand, customer: Customer, filterset, page: PageRequest, now: datetime.datetime
) -> RewardList:
    """The list API's read (R11): the brand's rewards this customer may take, through the
    (already validated) ``catalogue.filters.RewardFilterSet``, one page of them with
    every linked row, and the consumption of the page's and the org's limits."""
    rewards = filterset.filter_queryset(rewards_available_to(customer=customer, brand=brand))
    result = reward_page(rewards, request=page)
    org_level = org_constraints(org)
    reward_level = [c for reward in result.rewards for c in reward.list_constraints]
    usages = constraint_consumption(reward_level + org_level, customer_id=customer.pk, org=org, now=now)
    return RewardList(page=result, usages=usages, org_constraints=org_level, now=now)
