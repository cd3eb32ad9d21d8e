"""Which of a page of rewards a customer can take now, and in plain words why not.

No rule is written here: targeting and dates come from
``issuance.eligibility.reward_refusal``, limits, coupon stock and points from one dry run
of the engine (``rewards_issue`` with ``dry_run=True``) over the page's remaining rewards,
one unit each. This only turns their answers into sentences.
"""

import datetime
import zoneinfo
from dataclasses import dataclass, field
from decimal import Decimal

from django.utils import timezone

from catalogue.choices import OwnerType
from catalogue.models import Customer, Reward, Till
from issuance.eligibility import customer_facts, reward_refusal, reward_targets
from issuance.errors import ErrorCode, IssuanceError
from issuance.models import Channel
from issuance.pricing import PaymentRequest, price
from issuance.services import BULK, IssueItem, IssueRequest, rewards_issue

from .filters import local_time
from .selectors import target_names
from .services import customer_identifiers

_TARGETING = {
    ErrorCode.NOT_IN_SEGMENT: ("segments", "Only for the segments {names}; the customer is in none of them"),
    ErrorCode.NO_VALID_CARD: ("card series", "Needs an active card of the card series {names}"),
    ErrorCode.NO_VALID_LABEL: ("labels", "Needs one of the active labels {names}"),
    ErrorCode.TIER_NOT_ELIGIBLE: ("tiers", "Only for the tiers {names}"),
}


@dataclass
class RewardOption:
    reward: Reward
    reasons: list[str] = field(default_factory=list)  # why the customer cannot take it
    notes: list[str] = field(default_factory=list)  # worth knowing, not a refusal
    points: Decimal | None = None  # one unit, from the dry run
    coupon_stock: int | None = None
    payment_mode: str | None = None

    @property
    def can_take(self) -> bool:
        return not self.reasons


def _not_live(reward: Reward, now, tz) -> str:
    if not reward.enabled:
        return "Disabled in the catalogue"
    if reward.start_time > now:
        return f"Not started yet: starts {local_time(reward.start_time, tz)}"
    return f"Ended on {local_time(reward.end_time, tz)}"


def _limit_sentence(limit: dict, tz) -> str:
    what = "units" if limit["kpi"] == "QUANTITY" else "of redemption value"
    level = {
        "REWARD": "for this reward, all customers",
        "CUSTOMER": "per customer",
        "CUSTOMER_REDEMPTION_TYPE": "per customer for this redemption type",
    }.get(limit["constraintLevel"], limit["constraintLevel"])
    text = (
        f"Limit reached: {limit['constraintLimitValue']} {what} per {limit['frequencyType'].lower()} "
        f"({level}), {limit['consumed']} used"
    )
    if limit["resetsAt"]:
        resets = datetime.datetime.fromisoformat(limit["resetsAt"].replace("Z", "+00:00"))
        return f"{text}; resets {local_time(resets, tz)}"
    if limit["frequencyType"] == "NO_LIMIT":
        return f"{text}; a lifetime limit, it never resets"
    return f"{text}; a rolling window: room comes back as earlier issues age out of it"


def _cheapest_config(reward: Reward):
    """The payment config a preview of one unit uses when the reward has several: the
    one the engine prices lowest (so "points short" means short even for the cheapest)."""
    configs = list(reward.payment_configs.all())
    if len(configs) <= 1:
        return None
    return min(configs, key=lambda c: (price(reward, c, PaymentRequest(), quantity=1, single=False).total_points, c.pk))


def reward_options(
    *, actor, customer: Customer, rewards: list[Reward], till: Till | None, now=None, facts=None
) -> tuple[list[RewardOption], str | None]:
    """An option per reward (same order) and, when the dry run as a whole was refused
    (no till, a validation code needed, …), why. ``rewards`` have ``payment_configs``
    prefetched; ``customer.org`` is loaded."""
    now = now or timezone.now()
    org = customer.org
    tz = zoneinfo.ZoneInfo(org.time_zone)
    options = [RewardOption(reward=r) for r in rewards]
    if not rewards:
        return options, None
    facts = customer_facts(customer) if facts is None else facts
    targets = reward_targets([r.pk for r in rewards])
    refusals = {o.reward.pk: reward_refusal(o.reward, facts=facts, targets=targets, now=now) for o in options}
    targeted = [pk for pk, e in refusals.items() if e is not None and e.error in _TARGETING]
    names = target_names(targeted) if targeted else {}
    live = []
    for option in options:
        error = refusals[option.reward.pk]
        if error is None:
            live.append(option)
        elif error.error == ErrorCode.REWARD_NOT_ACTIVE:
            option.reasons.append(_not_live(option.reward, now, tz))
        elif error.error in _TARGETING:
            kind, sentence = _TARGETING[error.error]
            listed = ", ".join(names[kind].get(option.reward.pk, [])) or "(none)"
            option.reasons.append(f"{sentence.format(names=listed)} ({error.code})")
        else:
            option.reasons.append(f"{error.message} ({error.code})")
    if not live:
        return options, None
    if till is None:
        return options, "You have no till in this organisation, so limits, stock and points cannot be checked."
    request = IssueRequest(
        org=org,
        actor=actor,
        till_code=till.code,
        mode=BULK,
        identifiers=customer_identifiers(customer, org),
        items=[
            IssueItem(
                reward_id=o.reward.pk,
                quantity=1,
                payment=PaymentRequest(id=getattr(_cheapest_config(o.reward), "pk", None)),
            )
            for o in live
        ],
        skip_validation=True,
        dry_run=True,
        channel=Channel.STAFF,
        owner_type=OwnerType.GOODWILL,
    )
    try:
        body = rewards_issue(request).body
    except IssuanceError as error:
        return options, f"{error.message} ({error.code})"
    available = Decimal(body["pointsAvailable"])
    redeemable = org.points_redeemable and customer.points_redeemable
    for option, line in zip(live, body["rewards"], strict=True):
        _explain_line(option, line, available=available, redeemable=redeemable, tz=tz)
    return options, None


def _explain_line(option: RewardOption, line: dict, *, available: Decimal, redeemable: bool, tz) -> None:
    status = line["status"]
    option.coupon_stock = line.get("couponStock")
    option.payment_mode = (line.get("paymentConfig") or {}).get("paymentMode")
    code = status["code"]
    if code in (200, ErrorCode.PARTIAL.code):
        option.points = Decimal(line["totalPointsRedeemed"])
        if option.points > 0 and not redeemable:
            option.reasons.append("Points redemption is not allowed for this customer or organisation (8004 / 828)")
        elif option.points > available:
            option.reasons.append(
                f"Points short by {option.points - available} (costs {option.points}, {available} available)"
            )
        return
    if code == ErrorCode.LIMIT_REACHED.code:
        used_up = [limit for limit in line["limits"] if Decimal(limit["remaining"]) <= 0]
        if used_up:
            option.reasons.extend(_limit_sentence(limit, tz) for limit in used_up)
        else:
            # Refused only because earlier rewards of this page's preview used the room of a
            # shared limit (the engine counts one call's lines against each other).
            left = ", ".join(
                f"{limit['remaining']} left of {limit['constraintLimitValue']}" for limit in line["limits"]
            )
            option.notes.append(f"Shares a limit with other rewards ({left}): the preview tells")
        return
    if code == ErrorCode.COUPON_SERIES_INVALID.code and status["message"] == ErrorCode.COUPON_SERIES_INVALID.message:
        if line.get("couponStock") == 0:
            option.reasons.append("The coupon pool is empty (8004)")
        else:
            option.reasons.append("Its coupon series is missing, disabled or expired (8004)")
        return
    option.reasons.append(f"{status['message']} ({code})")
