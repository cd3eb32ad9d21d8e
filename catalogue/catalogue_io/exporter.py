"""Export organisations' catalogues in the import format (docs/catalogue-format.md).

The document is complete (every key written, defaults included) and canonical (lists in a
fixed order, decimals in their shortest exact form), so export → import into an empty
database → export gives the same bytes. Vendor header values are secrets (stored encrypted,
catalogue.encryption): without ``include_secrets`` each value is replaced by ``HEADER_MASK``,
which the importer reads as "keep the stored value"; with it they are written decrypted, and a
value the configured keys cannot decrypt stops the export (``SecretUnreadableError``). Points
accounts appear as their opening balance only; the live balance and the ledger are not
catalogue data.
"""

from collections import defaultdict
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from catalogue import models as cm
from catalogue.encryption import unreadable_names
from issuance.models import PointsAccount

from . import schema
from .reader import FORMAT_VERSION, HEADER_MASK, SECTIONS


class SecretUnreadableError(CommandError):
    """``include_secrets`` and a stored header value that FIELD_ENCRYPTION_KEYS cannot decrypt.
    (A CommandError, so ``export_catalogue`` prints the message, not a traceback.)"""


def catalogue_export(*, org_ids: list[int] | None = None, include_secrets: bool = False) -> dict[str, Any]:
    """The catalogue of ``org_ids`` (every org when None) as a document. Reads only."""
    orgs = cm.Organisation.objects.order_by("id")
    if org_ids is not None:
        orgs = orgs.filter(pk__in=org_ids)
    orgs = list(orgs)
    ids = [org.pk for org in orgs]
    doc: dict[str, Any] = {"formatVersion": FORMAT_VERSION}
    exporter = _Exporter(ids, include_secrets)
    for section in SECTIONS:
        doc[section] = getattr(exporter, section)() if section != "orgs" else [exporter.org(o) for o in orgs]
    return doc


def _org_rows(model, org_ids, *order):
    return model.objects.filter(org_id__in=org_ids).order_by(*order)


class _Exporter:
    def __init__(self, org_ids: list[int], include_secrets: bool):
        self.org_ids = org_ids
        self.include_secrets = include_secrets

    def org(self, org: cm.Organisation) -> dict:
        return {"id": org.pk, "parentId": org.parent_id, **schema.fields_out(org, schema.ORG)}

    def simple(self, model, keys, *order, with_id=True) -> list[dict]:
        out = []
        for obj in _org_rows(model, self.org_ids, *order):
            head = {"id": obj.pk} if with_id else {}
            out.append({**head, "orgId": obj.org_id, **schema.fields_out(obj, keys)})
        return out

    def brands(self):
        return self.simple(cm.Brand, schema.BRAND, "org_id", "name", with_id=False)

    def tills(self):
        username = get_user_model().USERNAME_FIELD
        out = []
        for till in _org_rows(cm.Till, self.org_ids, "org_id", "code").prefetch_related("users"):
            users = sorted(getattr(user, username) for user in till.users.all())
            out.append({"orgId": till.org_id, **schema.fields_out(till, schema.TILL), "users": users})
        return out

    def programs(self):
        out = []
        for program in _org_rows(cm.Program, self.org_ids, "id").prefetch_related("tiers"):
            tiers = [
                schema.fields_out(t, schema.TIER) for t in sorted(program.tiers.all(), key=lambda t: (t.serial, t.name))
            ]
            out.append(
                {
                    "id": program.pk,
                    "orgId": program.org_id,
                    **schema.fields_out(program, schema.PROGRAM),
                    "tiers": tiers,
                }
            )
        return out

    def categories(self):
        return self.simple(cm.Category, schema.CATEGORY, "id")

    def rewardGroups(self):  # noqa: N802 (section names are the file's keys)
        return self.simple(cm.RewardGroup, schema.REWARD_GROUP, "id")

    def labels(self):
        return self.simple(cm.Label, schema.LABEL, "id")

    def cardSeries(self):  # noqa: N802
        return self.simple(cm.CardSeries, schema.CARD_SERIES, "id")

    def segments(self):
        out = []
        for segment in _org_rows(cm.Segment, self.org_ids, "org_id", "name").prefetch_related("partitions"):
            partitions = sorted(p.name for p in segment.partitions.all())
            out.append(
                {"orgId": segment.org_id, **schema.fields_out(segment, schema.SEGMENT), "partitions": partitions}
            )
        return out

    def vendors(self):
        out = []
        for vendor in _org_rows(cm.Vendor, self.org_ids, "id").prefetch_related("redemption_configs"):
            configs = []
            for config in sorted(vendor.redemption_configs.all(), key=lambda c: c.pk):
                data = {"id": config.pk, **schema.fields_out(config, schema.VENDOR_CONFIG)}
                if not self.include_secrets:
                    data["headers"] = dict.fromkeys(data["headers"], HEADER_MASK)
                elif unreadable := unreadable_names(config.headers):
                    raise SecretUnreadableError(
                        f"vendor redemption config {config.pk}: the value of header {', '.join(unreadable)} "
                        "cannot be decrypted with FIELD_ENCRYPTION_KEYS; export without --include-secrets "
                        f"(values are then written as {HEADER_MASK!r}) or configure the key it was stored with"
                    )
                configs.append(data)
            out.append(
                {
                    "id": vendor.pk,
                    "orgId": vendor.org_id,
                    **schema.fields_out(vendor, schema.VENDOR),
                    "redemptionConfigs": configs,
                }
            )
        return out

    def couponSeries(self):  # noqa: N802
        codes = defaultdict(list)
        for series_id, code in cm.CouponCode.objects.filter(series__org_id__in=self.org_ids).values_list(
            "series_id", "code"
        ):
            codes[series_id].append(code)
        out = []
        for series in _org_rows(cm.CouponSeries, self.org_ids, "id"):
            out.append(
                {
                    "id": series.pk,
                    "orgId": series.org_id,
                    **schema.fields_out(series, schema.COUPON_SERIES),
                    "codes": sorted(codes[series.pk]),
                }
            )
        return out

    def cartPromotions(self):  # noqa: N802
        return self.simple(cm.CartPromotion, schema.CART_PROMOTION, "id")

    def customFields(self):  # noqa: N802
        return self.simple(cm.CustomFieldDefinition, schema.CUSTOM_FIELD, "org_id", "scope", "name", with_id=False)

    def fulfillmentStatuses(self):  # noqa: N802
        return self.simple(cm.FulfillmentStatus, schema.FULFILLMENT_STATUS, "org_id", "position", "name", with_id=False)

    def customers(self):
        opening = dict(
            PointsAccount.objects.filter(customer__org_id__in=self.org_ids).values_list(
                "customer_id", "opening_balance"
            )
        )
        tiers, labels, cards, segments = defaultdict(list), defaultdict(list), defaultdict(list), defaultdict(list)
        memberships = cm.ProgramMembership.objects.filter(customer__org_id__in=self.org_ids).select_related("tier")
        for m in memberships.order_by("customer_id", "program_id"):
            tiers[m.customer_id].append({"programId": m.program_id, "tier": m.tier.name})
        for cl in cm.CustomerLabel.objects.filter(customer__org_id__in=self.org_ids).order_by(
            "customer_id", "label_id"
        ):
            labels[cl.customer_id].append({"labelId": cl.label_id, **schema.fields_out(cl, schema.CUSTOMER_LABEL)})
        for card in cm.Card.objects.filter(customer__org_id__in=self.org_ids).order_by(
            "customer_id", "series_id", "number"
        ):
            cards[card.customer_id].append({"cardSeriesId": card.series_id, **schema.fields_out(card, schema.CARD)})
        members = cm.SegmentMembership.objects.filter(customer__org_id__in=self.org_ids).values_list(
            "customer_id", "partition__segment__name", "partition__name"
        )
        for customer_id, segment, partition in sorted(members):
            segments[customer_id].append({"segment": segment, "partition": partition})
        out = []
        for c in _org_rows(cm.Customer, self.org_ids, "id"):
            out.append(
                {
                    "id": c.pk,
                    "orgId": c.org_id,
                    **schema.fields_out(c, schema.CUSTOMER),
                    "openingBalance": opening.get(c.pk),
                    "tiers": tiers[c.pk],
                    "labels": labels[c.pk],
                    "cards": cards[c.pk],
                    "segments": segments[c.pk],
                }
            )
        return out

    def customerGroups(self):  # noqa: N802
        opening = dict(
            PointsAccount.objects.filter(group__org_id__in=self.org_ids).values_list("group_id", "opening_balance")
        )
        members = defaultdict(list)
        for group_id, customer_id in cm.GroupMembership.objects.filter(group__org_id__in=self.org_ids).values_list(
            "group_id", "customer_id"
        ):
            members[group_id].append(customer_id)
        out = []
        for g in _org_rows(cm.CustomerGroup, self.org_ids, "id"):
            out.append(
                {
                    "id": g.pk,
                    "orgId": g.org_id,
                    **schema.fields_out(g, schema.CUSTOMER_GROUP),
                    "primaryMemberId": g.primary_member_id,
                    "memberIds": sorted(members[g.pk]),
                    "openingBalance": opening.get(g.pk),
                }
            )
        return out

    def rewards(self):
        rewards = (
            _org_rows(cm.Reward, self.org_ids, "id")
            .select_related("brand")
            .prefetch_related(
                "categories",
                "groups",
                "card_series",
                "labels",
                "target_tiers",
                "media",
                "language_content",
                "payment_configs",
                "constraints",
                "segment_targets__partition__segment",
            )
        )
        out = []
        for r in rewards:
            media = sorted(r.media.all(), key=lambda m: (m.position, m.pk))
            tiers = sorted((t.program_id, t.name) for t in r.target_tiers.all())
            pairs = sorted((t.partition.segment.name, t.partition.name) for t in r.segment_targets.all())
            out.append(
                {
                    "id": r.pk,
                    "orgId": r.org_id,
                    "brand": r.brand.name,
                    **schema.fields_out(r, schema.REWARD),
                    "programId": r.program_id,
                    "vendorId": r.vendor_id,
                    "vendorRedemptionConfigId": r.vendor_redemption_id,
                    "couponSeriesId": r.coupon_series_id,
                    "cartPromotionId": r.cart_promotion_id,
                    "categoryIds": sorted(c.pk for c in r.categories.all()),
                    "groupIds": sorted(g.pk for g in r.groups.all()),
                    "segments": [{"segment": s, "partition": p} for s, p in pairs],
                    "cardSeriesIds": sorted(c.pk for c in r.card_series.all()),
                    "labelIds": sorted(label.pk for label in r.labels.all()),
                    "tiers": [{"programId": program_id, "tier": name} for program_id, name in tiers],
                    "images": [
                        schema.fields_out(m, schema.MEDIA) for m in media if m.kind == cm.choices.MediaKind.IMAGE
                    ],
                    "videos": [
                        schema.fields_out(m, schema.MEDIA) for m in media if m.kind == cm.choices.MediaKind.VIDEO
                    ],
                    "languageSpecificInfo": [
                        schema.fields_out(content, schema.LANGUAGE)
                        for content in sorted(r.language_content.all(), key=lambda c: c.language)
                    ],
                    "paymentConfigs": [
                        {"id": c.pk, **schema.fields_out(c, schema.PAYMENT_CONFIG)}
                        for c in sorted(r.payment_configs.all(), key=lambda c: c.pk)
                    ],
                    "constraints": [
                        {"id": c.pk, **schema.fields_out(c, schema.REWARD_CONSTRAINT)}
                        for c in sorted(r.constraints.all(), key=lambda c: c.pk)
                    ],
                }
            )
        return out

    def orgConstraints(self):  # noqa: N802
        rows = cm.RewardConstraint.objects.filter(org_id__in=self.org_ids, reward__isnull=True).order_by("id")
        return [{"id": c.pk, "orgId": c.org_id, **schema.fields_out(c, schema.ORG_CONSTRAINT)} for c in rows]
