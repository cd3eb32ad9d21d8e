"""The list API's response body, field for field as the spec page (list-user-rewards).

Plain functions over already-loaded rows (``catalogue.selectors.with_list_details``
prefetches everything into ``list_*`` attributes): nothing here queries the database. Numbers are exact Decimals
with trailing zeros dropped (``50.0000`` → ``50``, ``0.350000`` → ``0.35``); times are
UTC. Choices we made where the page is silent are in docs/list-api.md.
"""

import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from simplejson import RawJSON

from catalogue.choices import MediaKind
from catalogue.models import Reward, RewardConstraint
from catalogue.selectors import ConstraintUsage, RewardList, RewardPage
from issuance import jsonio

SUCCESS = {"success": True, "code": 200, "message": "Rewards fetched successfully"}


def number(value) -> Decimal | None:
    """Exact, without trailing zeros, never in exponent notation."""
    if value is None:
        return None
    value = Decimal(value)
    integral = value.to_integral_value()
    return integral.quantize(Decimal(1)) if value == integral else value.normalize()


def time_ms(value: datetime.datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.SSSZ`` (startTime, endTime)."""
    utc = value.astimezone(datetime.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def time_s(value: datetime.datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` (startDateTime, endDateTime)."""
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(value: str) -> str | None:
    return value or None


def _custom_value(value):
    """customFields is a Map<String, String> on the page."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _media(item) -> dict:
    return {
        "name": item.name,
        "altText": item.alt_text,
        "id": item.file_id,
        "url": item.url,
        "isExternal": item.is_external,
    }


def constraint_body(constraint: RewardConstraint, usage: ConstraintUsage) -> dict:
    """One limit and what the customer consumed of it in its current window."""
    body = {
        "rewardConstraintId": constraint.pk,
        "orgId": constraint.org_id,
        "kpi": constraint.kpi,
        "constraintLevel": constraint.level,
        "frequencyType": constraint.frequency,
        "constraintLimitValue": number(constraint.limit_value),
        "consumed": number(usage.consumed),
        "isActive": constraint.is_active,
        "isValid": usage.is_valid,
    }
    if constraint.reward_id is None:
        body["redemptionType"] = constraint.redemption_type
    else:
        body["rewardId"] = constraint.reward_id
    return body


def restrictions_body(constraints: Iterable[RewardConstraint], usages: dict[int, ConstraintUsage]) -> dict:
    """rewardRestrictions: the reward's own limits (REWARD: all customers together;
    CUSTOMER: this customer), valid when none of them is used up."""
    levels = {"REWARD": [], "CUSTOMER": []}
    for constraint in constraints:
        levels.setdefault(constraint.level, []).append(constraint_body(constraint, usages[constraint.pk]))
    entries = [e for group in levels.values() for e in group]
    return {
        "isValid": all(e["isValid"] for e in entries),
        "rewardLevel": levels["REWARD"],
        "customerLevel": levels["CUSTOMER"],
    }


# Per constraint object, its texts by (consumed, isValid), at most this many: a constraint's
# object is kept per catalogue version (catalogue.list_index) and its body differs between
# customers only by those two values, mostly (0, true).
_TEXTS_PER_CONSTRAINT = 8


def constraint_text(constraint: RewardConstraint, usage: ConstraintUsage) -> str:
    """``constraint_body`` as JSON text, kept on the constraint object (which nothing changes
    once loaded: a changed limit is a new object of a new catalogue version)."""
    texts = constraint.__dict__.get("_list_texts")
    if texts is None:
        texts = constraint.__dict__["_list_texts"] = {}
    key = (usage.consumed, usage.is_valid)
    text = texts.get(key)
    if text is None:
        text = jsonio.dumps(constraint_body(constraint, usage))
        if len(texts) < _TEXTS_PER_CONSTRAINT:
            texts[key] = text
    return text


def _true(value: bool) -> str:
    return "true" if value else "false"


def restrictions_text(constraints: Iterable[RewardConstraint], usages: dict[int, ConstraintUsage]) -> str:
    """``restrictions_body`` as JSON text, from the constraints' texts."""
    levels: dict[str, list[str]] = {"REWARD": [], "CUSTOMER": []}
    valid = True
    for constraint in constraints:
        usage = usages[constraint.pk]
        valid = valid and usage.is_valid
        levels.setdefault(constraint.level, []).append(constraint_text(constraint, usage))
    return (f'{{"isValid":{_true(valid)},"rewardLevel":[{",".join(levels["REWARD"])}],'
            f'"customerLevel":[{",".join(levels["CUSTOMER"])}]}}')


def org_restrictions_text(constraints: list[RewardConstraint], usages: dict[int, ConstraintUsage]) -> str:
    """orgLevelRestrictions: the org's limits per redemption type, valid when none is used up."""
    valid = all(usages[c.pk].is_valid for c in constraints)
    entries = ",".join(constraint_text(c, usages[c.pk]) for c in constraints)
    return f'{{"isValid":{_true(valid)},"customerRedemptionTypeLevel":[{entries}]}}'


# The fields of a reward object that depend on the call, in the order they appear.
CALL_FIELDS = ("expired", "started", "rewardRestrictions")


@dataclass(frozen=True)
class ListedReward:
    """A reward of a list page, rendered but for the fields that depend on the call (the time:
    expired, started; the customer: rewardRestrictions), which ``reward_text`` fills in.
    catalogue.list_index keeps these for as long as the catalogue does not change.

    Kept as JSON text around the per-call fields (``parts``: the text before ``expired``,
    between ``expired`` and ``started``, between ``started`` and ``rewardRestrictions``, after
    it): encoding 20 rich reward objects was ~15 % of a list call's CPU; now only the per-call
    fields are encoded per call, the rest is joined as it was written (``reward_list_body``)."""

    pk: int
    start_time: datetime.datetime
    end_time: datetime.datetime
    constraints: tuple[RewardConstraint, ...]
    parts: tuple[str, str, str, str]

    @classmethod
    def of(cls, reward: Reward) -> "ListedReward":
        """From a reward loaded with ``catalogue.selectors.with_list_details``."""
        body = _static_body(reward)
        marks = {name: f"\x00{name}\x00" for name in CALL_FIELDS}
        text = jsonio.dumps({**body, **marks})
        parts = []
        for name in CALL_FIELDS:
            before, text = text.split(jsonio.dumps(marks[name]), 1)
            parts.append(before)
        parts.append(text)
        return cls(pk=reward.pk, start_time=reward.start_time, end_time=reward.end_time,
                   constraints=tuple(reward.list_constraints), parts=tuple(parts))


_NO_LIMITS = jsonio.dumps(restrictions_body((), {}))  # most rewards' rewardRestrictions


def reward_text(reward: ListedReward, *, now: datetime.datetime, usages: dict[int, ConstraintUsage]) -> str:
    """The reward object of the list's body, as JSON text."""
    expired, started = reward.end_time <= now, reward.start_time <= now
    restrictions = restrictions_text(reward.constraints, usages) if reward.constraints else _NO_LIMITS
    head, between, before_restrictions, tail = reward.parts
    return (f"{head}{'true' if expired else 'false'}{between}{'true' if started else 'false'}"
            f"{before_restrictions}{restrictions}{tail}")


def _static_body(reward: Reward) -> dict:
    groups, labels, tiers, media = reward.list_groups, reward.list_labels, reward.list_tiers, reward.list_media
    return {
        "id": reward.pk,
        "name": reward.name,
        "description": reward.description,
        "imageId": reward.image_id,
        "imageUrl": _text(reward.image_url),
        "thumbnailId": reward.thumbnail_id,
        "thumbnailUrl": _text(reward.thumbnail_url),
        "termAndConditionsId": reward.terms_id,
        "termAndConditionsUrl": _text(reward.terms_url),
        # Singular tier / label / group: the first in with_list_details order (tiers by program and
        # serial, labels and groups by name), or null.
        "tier": tiers[0].name if tiers else None,
        "label": labels[0].name if labels else None,
        "priority": reward.priority,
        "intouchPoints": number(reward.intouch_points),
        "group": groups[0].name if groups else None,
        "startTime": time_ms(reward.start_time),
        "endTime": time_ms(reward.end_time),
        "expired": None,  # reward_text
        "started": None,
        "programId": reward.program_id,
        "categoryList": [{"id": c.pk, "name": c.name, "enabled": c.enabled} for c in reward.list_categories],
        "customFields": {key: _custom_value(value) for key, value in (reward.custom_fields or {}).items()},
        "loyaltyProgramCriteria": [{"programId": t.program_id, "tierId": t.pk, "tierName": t.name} for t in tiers],
        "groups": [{"id": g.pk, "name": g.name, "rank": g.rank} for g in groups],
        "rewardRestrictions": None,  # reward_text
        "rewardRank": reward.rank,
        "images": [_media(m) for m in media if m.kind == MediaKind.IMAGE],
        "videos": [_media(m) for m in media if m.kind == MediaKind.VIDEO],
        "paymentConfigs": [
            {
                "paymentMode": p.mode,
                "id": p.pk,
                "points": number(p.points),
                "cashAmount": number(p.cash_amount),
                "conversionRatio": number(p.conversion_ratio),
            }
            for p in reward.list_payment_configs
        ],
        "cardSeries": [{"id": s.pk, "code": s.code} for s in reward.list_card_series],
        "labels": [label.pk for label in labels],
        "startDateTime": time_s(reward.start_time),
        "endDateTime": time_s(reward.end_time),
        "languageSpecificInfo": [
            {
                "language": content.language,
                "richContentRO": {"content": content.content, "isEnabled": content.is_enabled},
                "defaultValue": content.default_value,
            }
            for content in reward.list_language_content
        ],
        "vendorId": str(reward.vendor_id) if reward.vendor_id is not None else None,
        "redemptionType": reward.redemption_type,
    }


def paging_body(page: RewardPage) -> dict:
    return {
        "last": page.last,
        "totalElements": page.total,
        "totalPages": page.total_pages,
        "numberOfElements": len(page.rewards),
        "first": page.first,
        "size": page.size,
        "number": page.number,
    }


_SUCCESS_TEXT = jsonio.dumps(SUCCESS)


def reward_list_body(result: RewardList) -> RawJSON:
    """The whole body as JSON text (``issuance.jsonio.dumps`` writes it as it is): the page's
    reward objects are text already, and joining them is a fraction of encoding a list of them."""
    rewards = ",".join(
        reward_text(r if isinstance(r, ListedReward) else ListedReward.of(r), now=result.now, usages=result.usages)
        for r in result.page.rewards
    )
    return RawJSON(
        f'{{"status":{_SUCCESS_TEXT},"rewardList":[{rewards}],"pagingDto":{jsonio.dumps(paging_body(result.page))},'
        f'"orgLevelRestrictions":{org_restrictions_text(result.org_constraints, result.usages)}}}'
    )
