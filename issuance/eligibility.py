"""Who may take which reward (R6) — the one place the targeting rule is written.

A reward is targeted by at most one kind of entity (segments, card series, labels,
tiers). For each kind the rule is the same: a reward that targets nothing of that kind
goes to everyone; otherwise the customer must hold one of its targets. ``TARGETINGS``
states the kinds once; ``reward_refusal`` (one reward in Python, for the engine) and
``eligible_rewards_q`` (a database filter, for the list API and the staff pages) are
both driven by it, so the engine and the list cannot disagree.
"""

import datetime
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Exists, OuterRef, Q, Value

from catalogue.choices import CardStatus, MembershipStatus
from catalogue.models import Card, Customer, CustomerLabel, ProgramMembership, Reward, RewardSegmentTarget, SegmentMembership

from .errors import ErrorCode, IssuanceError


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
    through: type  # the reward → target link table
    target_field: str  # its column naming the target
    facts_attr: str
    error: ErrorCode


TARGETINGS = (
    Targeting("segments", RewardSegmentTarget, "partition_id", "partitions", ErrorCode.NOT_IN_SEGMENT),
    Targeting("card series", Reward.card_series.through, "cardseries_id", "card_series", ErrorCode.NO_VALID_CARD),
    Targeting("labels", Reward.labels.through, "label_id", "labels", ErrorCode.NO_VALID_LABEL),
    Targeting("tiers", Reward.target_tiers.through, "tier_id", "tiers", ErrorCode.TIER_NOT_ELIGIBLE),
)


def customer_facts(customer: Customer) -> CustomerFacts:
    """One query (a UNION ALL of four small indexed look-ups)."""
    held = (
        SegmentMembership.objects.filter(customer=customer).annotate(kind=Value(0)).values_list("partition_id", "kind"),
        Card.objects.filter(customer=customer, status=CardStatus.ACTIVE).annotate(kind=Value(1)).values_list("series_id", "kind"),
        CustomerLabel.objects.filter(customer=customer, status=MembershipStatus.ACTIVE).annotate(kind=Value(2)).values_list("label_id", "kind"),
        ProgramMembership.objects.filter(customer=customer).annotate(kind=Value(3)).values_list("tier_id", "kind"),
    )
    by_kind: dict[int, set[int]] = defaultdict(set)
    for target_id, kind in held[0].union(*held[1:], all=True):
        by_kind[kind].add(target_id)
    return CustomerFacts(*(frozenset(by_kind[k]) for k in range(4)))


RewardTargets = dict[str, dict[int, set[int]]]


def reward_targets(reward_ids: Iterable[int]) -> RewardTargets:
    """Targets of several rewards by kind: one query (UNION ALL), whatever the count."""
    ids = list(reward_ids)
    targets: RewardTargets = {t.kind: defaultdict(set) for t in TARGETINGS}
    links = [
        t.through.objects.filter(reward_id__in=ids).annotate(kind=Value(i)).values_list("reward_id", t.target_field, "kind")
        for i, t in enumerate(TARGETINGS)
    ]
    for reward_id, target_id, kind in links[0].union(*links[1:], all=True):
        targets[TARGETINGS[kind].kind][reward_id].add(target_id)
    return targets


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
    for targeting in TARGETINGS:
        wanted = targets[targeting.kind].get(reward.pk)
        if wanted and not (wanted & getattr(facts, targeting.facts_attr)):
            return IssuanceError(targeting.error)
    return None


def eligible_rewards_q(facts: CustomerFacts) -> Q:
    """The targeting rule as a filter on Reward (one EXISTS pair per kind)."""
    condition = Q()
    for targeting in TARGETINGS:
        links = targeting.through.objects.filter(reward_id=OuterRef("pk"))
        held = links.filter(**{f"{targeting.target_field}__in": getattr(facts, targeting.facts_attr)})
        condition &= ~Exists(links) | Exists(held)
    return condition
