"""Who may take which reward (R6) — the one place the targeting rule is written.

A reward is targeted by at most one kind of entity (segments, card series, labels,
tiers). For each kind the rule is the same: a reward that targets nothing of that kind
goes to everyone; otherwise the customer must hold one of its targets. ``TARGETINGS``
states the kinds once; ``reward_refusal`` (one reward in Python, for the engine) and
``eligible_rewards_q`` (a database filter, for the list API and the staff pages) are
both driven by it, so the engine and the list cannot disagree.
"""

import datetime
import functools
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS, router
from django.db.models import F, Q, Value

from catalogue.choices import CardStatus, MembershipStatus, TargetingKind
from catalogue.models import (
    TARGETING_LINKS,
    Card,
    Customer,
    CustomerLabel,
    ProgramMembership,
    Reward,
    SegmentMembership,
)

from .errors import ErrorCode, IssuanceError
from .rawsql import fetch, placeholders, quoted


@dataclass(frozen=True)
class CustomerFacts:
    """What a customer holds, as sets of target ids."""

    partitions: frozenset[int]
    card_series: frozenset[int]
    labels: frozenset[int]
    tiers: frozenset[int]


@dataclass(frozen=True)
class Targeting:
    kind: str
    code: str  # its TargetingKind: Reward.targeting of a reward targeted this way
    target_field: str  # the link table's column naming the target
    facts_attr: str
    error: ErrorCode

    @property
    def through(self) -> type:
        """The reward → target link table (catalogue.models.TARGETING_LINKS)."""
        return TARGETING_LINKS[self.code]


TARGETINGS = (
    Targeting("segments", TargetingKind.SEGMENTS, "partition_id", "partitions", ErrorCode.NOT_IN_SEGMENT),
    Targeting("card series", TargetingKind.CARD_SERIES, "cardseries_id", "card_series", ErrorCode.NO_VALID_CARD),
    Targeting("labels", TargetingKind.LABELS, "label_id", "labels", ErrorCode.NO_VALID_LABEL),
    Targeting("tiers", TargetingKind.TIERS, "tier_id", "tiers", ErrorCode.TIER_NOT_ELIGIBLE),
)


# What a customer holds, per kind in TARGETINGS order: (model, column of the target, filter).
# Read by the ORM (``_held``) and by the engine's hand-written query (``targets_and_facts``).
_HOLDINGS = (
    (SegmentMembership, "partition_id", {}),
    (Card, "series_id", {"status": CardStatus.ACTIVE}),
    (CustomerLabel, "label_id", {"status": MembershipStatus.ACTIVE}),
    (ProgramMembership, "tier_id", {}),
)


def _held(customer: Customer) -> list:
    """What the customer holds, as (target id, 0, kind 0-3) rows: four small indexed look-ups."""
    rows = [model.objects.filter(customer=customer, **where).values_list(column)
            for model, column, where in _HOLDINGS]
    return [qs.annotate(rid=Value(0), kind=Value(k)).values_list(qs.query.values_select[0], "rid", "kind")
            for k, qs in enumerate(rows)]


def _links(reward_ids: list[int] | None = None, **lookup) -> list:
    """The rewards' targets (of ``reward_ids``, or of the rewards the link rows' ``lookup``
    selects), as (target id, reward id, kind 4-7) rows."""
    if reward_ids is not None:
        lookup["reward_id__in"] = reward_ids
    return [
        t.through.objects.filter(**lookup)
        .annotate(rid=F("reward_id"), kind=Value(len(TARGETINGS) + i))
        .values_list(t.target_field, "rid", "kind")
        for i, t in enumerate(TARGETINGS)
    ]


RewardTargets = dict[str, dict[int, set[int]]]


def _read_rows(rows) -> tuple[RewardTargets, CustomerFacts]:
    held: dict[int, set[int]] = defaultdict(set)
    targets: RewardTargets = {t.kind: defaultdict(set) for t in TARGETINGS}
    for target_id, reward_id, kind in rows:
        if kind < len(TARGETINGS):
            held[kind].add(target_id)
        else:
            targets[TARGETINGS[kind - len(TARGETINGS)].kind][reward_id].add(target_id)
    return targets, CustomerFacts(*(frozenset(held[k]) for k in range(len(TARGETINGS))))


def _read(parts: list) -> tuple[RewardTargets, CustomerFacts]:
    return _read_rows(parts[0].union(*parts[1:], all=True))


def customer_facts(customer: Customer) -> CustomerFacts:
    """One query (a UNION ALL of four small indexed look-ups), on the database reads are routed
    to (the list API's replica, when there is one): ``targets_and_facts``'s SQL without rewards."""
    using = router.db_for_read(SegmentMembership) or DEFAULT_DB_ALIAS
    return facts_of(fetch(facts_query(), facts_params(customer.pk), using=using))


def facts_query() -> str:
    """``customer_facts``'s SQL (rows: target id, 0, kind 0-3), for a caller that runs it within
    a larger statement (catalogue.list_index); its parameters: ``facts_params``."""
    return _targets_and_facts_sql(0)


def facts_params(customer_id: int) -> list:
    return [value for _model, _column, where in _HOLDINGS for value in (customer_id, *where.values())]


def facts_of(rows) -> CustomerFacts:
    """The facts of ``facts_query``'s rows."""
    return _read_rows(rows)[1]


def reward_targets(reward_ids: Iterable[int]) -> RewardTargets:
    """Targets of several rewards by kind: one query (UNION ALL), whatever the count."""
    return _read(_links(list(reward_ids)))[0]


def brand_reward_targets(brand_id: int) -> RewardTargets:
    """The targets of every reward of a brand by kind: one query (catalogue.list_index)."""
    return _read(_links(reward__brand_id=brand_id))[0]


@functools.lru_cache(maxsize=64)
def _targets_and_facts_sql(reward_count: int) -> str:
    """The UNION ALL of ``_held`` and ``_links`` as SQL text, per count of rewards (the IN
    list; none: ``_held`` alone); params: the customer's id (with each filter's values) per
    holding, then the reward ids per targeting."""
    parts = []
    for kind, (model, column, where) in enumerate(_HOLDINGS):
        meta = model._meta
        conditions = [f"{quoted(meta.get_field('customer').column)} = %s"]
        conditions += [f"{quoted(meta.get_field(name).column)} = %s" for name in where]
        parts.append(f"SELECT {quoted(meta.get_field(column).column)}, 0, {kind} FROM {quoted(meta.db_table)} "
                     f"WHERE {' AND '.join(conditions)}")
    for i, targeting in enumerate(TARGETINGS if reward_count else ()):
        meta = targeting.through._meta
        reward = quoted(meta.get_field("reward").column)
        parts.append(f"SELECT {quoted(meta.get_field(targeting.target_field).column)}, {reward}, "
                     f"{len(TARGETINGS) + i} FROM {quoted(meta.db_table)} "
                     f"WHERE {reward} IN ({placeholders(reward_count)})")
    return " UNION ALL ".join(parts)


def targets_and_facts(reward_ids: Iterable[int], customer: Customer) -> tuple[RewardTargets, CustomerFacts]:
    """``reward_targets`` and ``customer_facts`` in one query (the engine's read: always the
    link rows themselves, never a cache, since they decide who may take a reward).

    The same rows as the ORM's UNION ALL of ``_links`` and ``_held``, from SQL text built once
    per count of rewards: compiling that 8-part UNION through the ORM on every call was ~20 %
    of a single issue's CPU (docs/performance.md); tests/test_issue_rawsql.py checks both agree."""
    reward_ids = list(reward_ids)
    params = []
    for _model, _column, where in _HOLDINGS:
        params += [customer.pk, *where.values()]
    for _targeting in TARGETINGS:
        params += reward_ids
    return _read_rows(fetch(_targets_and_facts_sql(len(reward_ids)), params))


def reward_is_live(reward: Reward, now: datetime.datetime) -> bool:
    return reward.enabled and reward.start_time <= now < reward.end_time


def live_q(now: datetime.datetime) -> Q:
    return Q(enabled=True, start_time__lte=now, end_time__gt=now)


def reward_refusal(
    reward: Reward,
    *,
    facts: CustomerFacts,
    targets: RewardTargets,
    now: datetime.datetime,
    ownership: tuple[str, str] | None = None,
) -> IssuanceError | None:
    """Why this customer may not take this reward now, or None. Limits and points are
    checked by the engine afterwards (they need locks)."""
    if not reward_is_live(reward, now):
        return IssuanceError(ErrorCode.REWARD_NOT_ACTIVE)
    if ownership is not None:
        owner_type, owner_id = ownership
        if owner_type != reward.owner_type or (owner_id and reward.owner_id and owner_id != reward.owner_id):
            return IssuanceError(ErrorCode.OWNER_MISMATCH)
    refused = targeting_refused({t.kind: targets[t.kind].get(reward.pk) for t in TARGETINGS}, facts)
    return IssuanceError(refused.error) if refused is not None else None


def targeting_refused(wanted: dict[str, set[int] | frozenset[int] | None], facts: CustomerFacts) -> Targeting | None:
    """The targeting rule (R6) for one reward whose targets by kind are ``wanted``: for each
    kind it targets, the customer must hold one of them; the first kind refused, or None."""
    for targeting in TARGETINGS:
        targets = wanted.get(targeting.kind)
        if targets and not (targets & getattr(facts, targeting.facts_attr)):
            return targeting
    return None


def eligible_rewards_q(facts: CustomerFacts) -> Q:
    """The targeting rule as a filter on Reward, reading ``Reward.targeting`` (which kind of
    link rows the reward has; a cache kept by ``catalogue.services.reward_listing_refresh``)
    so that an untargeted reward passes without looking at any link table and a targeted one
    is looked up only among the customer's targets of its own kind (none held: refused). A
    MIXED reward (several kinds, which R6 forbids) gets the rule of every kind, as
    ``reward_refusal`` applies it. ``reward_refusal`` reads the link rows themselves;
    tests/test_listing_cache.py checks that both agree.

    Written as ``pk IN (…)`` (uncorrelated, hashed once per query), not EXISTS: PostgreSQL
    prices a correlated EXISTS under OR as if it ran per row, ~100× too high, and then picks
    index scans that filter the fewest rows instead of the covering index the count needs
    (docs/performance.md, "List API")."""
    condition = Q(targeting=TargetingKind.NONE)
    every_kind = Q()
    for targeting in TARGETINGS:
        held_ids = getattr(facts, targeting.facts_attr)
        links = targeting.through.objects.values("reward_id")
        if held_ids:
            held = links.filter(**{f"{targeting.target_field}__in": held_ids})
            condition |= Q(targeting=targeting.code, pk__in=held)
            every_kind &= ~Q(pk__in=links) | Q(pk__in=held)
        else:
            every_kind &= ~Q(pk__in=links)
    return condition | (Q(targeting=TargetingKind.MIXED) & every_kind)
