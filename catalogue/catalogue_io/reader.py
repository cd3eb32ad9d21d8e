"""Read and validate a catalogue document without touching the database.

``document_read(document)`` returns a ``Plan`` (model values per row, references resolved to
ids or natural keys) and every problem found as ``(path, message)`` pairs, paths written the
way a person finds them in the file: ``rewards[3].paymentConfigs[0].conversionRatio``.
Checks that need the database (ids or names already used elsewhere, users, effective
custom-field counts) run in ``importer`` afterwards. Catalogue rules come from
``catalogue.validation`` and the models' own ``clean()``; nothing is restated here.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from catalogue import models as cm
from catalogue.choices import REWARD_CONSTRAINT_LEVELS, ConstraintLevel, CustomFieldScope, MediaKind
from catalogue.validation import (
    PaymentConfigSpec,
    custom_field_definition_errors,
    custom_field_value_error,
    payment_configs_errors,
    targeting_errors,
)
from issuance.models import PointsAccount

from . import schema
from .schema import InvalidValueError, Key

FORMAT_VERSION = 1
MAX_ID = 2**63 - 1

# Top-level lists in file (and export) order.
SECTIONS = (
    "orgs",
    "brands",
    "tills",
    "programs",
    "categories",
    "rewardGroups",
    "labels",
    "cardSeries",
    "segments",
    "vendors",
    "couponSeries",
    "cartPromotions",
    "customFields",
    "fulfillmentStatuses",
    "customers",
    "customerGroups",
    "rewards",
    "orgConstraints",
)

# Kinds of rows that carry an explicit id in the file, with the words used in messages.
KIND_NAMES = {
    "org": "org",
    "program": "program",
    "category": "category",
    "rewardGroup": "reward group",
    "label": "label",
    "cardSeries": "card series",
    "vendor": "vendor",
    "vendorConfig": "vendor redemption config",
    "couponSeries": "coupon series",
    "cartPromotion": "cart promotion",
    "customer": "customer",
    "customerGroup": "customer group",
    "reward": "reward",
    "paymentConfig": "payment config",
    "constraint": "reward constraint",
}

OPENING_BALANCE = Key("openingBalance", "opening_balance", check=schema.at_least(0))
HEADER_MASK = "********"


@dataclass
class Row:
    """One row to write: model values in ``attrs`` (foreign keys as ``*_id`` where the target
    has an explicit id), natural-key references and nested lists in ``extra``."""

    path: str
    attrs: dict[str, Any]
    id: int | None = None
    org_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    rows: dict[str, list[Row]] = field(default_factory=lambda: {s: [] for s in SECTIONS})

    def __getitem__(self, section: str) -> list[Row]:
        return self.rows[section]


Errors = list[tuple[str, str]]


def document_read(document: Any) -> tuple[Plan, Errors]:
    reader = _Reader()
    reader.read(document)
    return reader.plan, reader.errors


class _Reader:
    def __init__(self) -> None:
        self.errors: Errors = []
        self.plan = Plan()
        self.ids: dict[str, dict[int, Row]] = defaultdict(dict)
        self.keys: dict[str, dict[tuple, str]] = defaultdict(dict)
        self.brands: set[tuple[int, str]] = set()
        self.tiers: set[tuple[int, str]] = set()
        self.partitions: set[tuple[int, str, str]] = set()
        self.custom_fields: dict[tuple[int, str, str], dict[str, Any]] = {}

    # -- plumbing -------------------------------------------------------------------------

    def error(self, path: str, message: str) -> None:
        self.errors.append((path, message))

    def items(self, container: dict, path: str, key: str) -> list[tuple[str, Any]]:
        where = f"{path}.{key}" if path else key
        value = container.get(key, [])
        if not isinstance(value, list):
            self.error(where, "must be a list")
            return []
        return [(f"{where}[{i}]", item) for i, item in enumerate(value)]

    def objects(self, container: dict, path: str, key: str, allowed) -> list[tuple[str, dict]]:
        out = []
        for where, item in self.items(container, path, key):
            if self.shape(item, where, allowed):
                out.append((where, item))
        return out

    def shape(self, item: Any, path: str, allowed) -> bool:
        if not isinstance(item, dict):
            self.error(path, "must be an object")
            return False
        for key in item:
            if key not in allowed:
                self.error(f"{path}.{key}", "unknown key")
        return True

    def fields(self, item: dict, path: str, model, keys: tuple[Key, ...]) -> tuple[dict[str, Any], bool]:
        """Model values of the plain fields; the flag says whether all of them were valid."""
        attrs: dict[str, Any] = {}
        ok = True
        for key in keys:
            if key.name not in item:
                if key.required:
                    self.error(f"{path}.{key.name}", "is required")
                    ok = False
                elif not key.kept_when_absent:
                    attrs[key.attr] = schema.default_of(model, key)
                continue
            try:
                attrs[key.attr] = schema.value_in(model, key, item[key.name])
            except InvalidValueError as exc:
                self.error(f"{path}.{key.name}", exc.message)
                ok = False
        return attrs, ok

    def positive_id(self, raw: Any, path: str) -> int | None:
        if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_ID:
            self.error(path, "must be a positive integer id")
            return None
        return raw

    def own_id(self, item: dict, path: str, kind: str) -> int | None:
        if item.get("id") is None:
            self.error(f"{path}.id", "is required")
            return None
        row_id = self.positive_id(item["id"], f"{path}.id")
        if row_id is not None and row_id in self.ids[kind]:
            self.error(
                f"{path}.id", f"duplicate {KIND_NAMES[kind]} id {row_id} (first at {self.ids[kind][row_id].path})"
            )
            return None
        return row_id

    def register(self, kind: str, row: Row) -> None:
        if row.id is not None:
            self.ids[kind][row.id] = row

    def unique_key(self, kind: str, key: tuple, path: str, what: str) -> bool:
        first = self.keys[kind].get(key)
        if first is not None:
            self.error(path, f"duplicate {what} (first at {first})")
            return False
        self.keys[kind][key] = path
        return True

    def org_of(self, item: dict, path: str) -> int | None:
        raw = item.get("orgId")
        if raw is None:
            self.error(f"{path}.orgId", "is required")
            return None
        org_id = self.positive_id(raw, f"{path}.orgId")
        if org_id is not None and org_id not in self.ids["org"]:
            self.error(f"{path}.orgId", f"unknown org {org_id}; every org used must be in this file's orgs")
            return None
        return org_id

    def ref(self, raw: Any, path: str, kind: str, org_id: int | None) -> int | None:
        """An id of a row of this file, in the same org."""
        ref_id = self.positive_id(raw, path)
        if ref_id is None:
            return None
        target = self.ids[kind].get(ref_id)
        if target is None:
            self.error(path, f"unknown {KIND_NAMES[kind]} {ref_id}")
            return None
        if org_id is not None and target.org_id != org_id:
            self.error(path, f"{KIND_NAMES[kind]} {ref_id} belongs to org {target.org_id}, not org {org_id}")
            return None
        return ref_id

    def optional_ref(self, item: dict, path: str, key: str, kind: str, org_id: int | None) -> int | None:
        if item.get(key) is None:
            return None
        return self.ref(item[key], f"{path}.{key}", kind, org_id)

    def ref_list(self, item: dict, path: str, key: str, kind: str, org_id: int | None) -> list[int]:
        out: list[int] = []
        for where, raw in self.items(item, path, key):
            ref_id = self.ref(raw, where, kind, org_id)
            if ref_id is None:
                continue
            if ref_id in out:
                self.error(where, f"{KIND_NAMES[kind]} {ref_id} is listed twice")
                continue
            out.append(ref_id)
        return out

    def string(self, raw: Any, path: str, model, attr: str) -> str | None:
        """A required, non-empty string checked by the model field ``attr``."""
        if raw is None:
            self.error(path, "is required")
            return None
        try:
            value = schema.value_in(model, Key(path, attr, required=True), raw)
        except InvalidValueError as exc:
            self.error(path, exc.message)
            return None
        if not value:
            self.error(path, "must not be empty")
            return None
        return value

    def string_map(self, attrs: dict, path: str, attr: str, key: str) -> None:
        """JSON objects of string values (headers, context maps)."""
        value = attrs.get(attr)
        if isinstance(value, dict):
            for name, item in value.items():
                if not isinstance(item, str):
                    self.error(f"{path}.{key}.{name}", "must be a string")

    def segment_pairs(self, item: dict, path: str, org_id: int | None) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for where, pair in self.objects(item, path, "segments", {"segment", "partition"}):
            segment = self.string(pair.get("segment"), f"{where}.segment", cm.Segment, "name")
            partition = self.string(pair.get("partition"), f"{where}.partition", cm.Partition, "name")
            if segment is None or partition is None or org_id is None:
                continue
            if (org_id, segment, partition) not in self.partitions:
                self.error(where, f"unknown segment partition {{{segment}, {partition}}} in org {org_id}")
            elif (segment, partition) in out:
                self.error(where, f"{{{segment}, {partition}}} is listed twice")
            else:
                out.append((segment, partition))
        return out

    def tier_refs(self, item: dict, path: str, org_id: int | None) -> list[tuple[int, str]]:
        out: list[tuple[int, str]] = []
        for where, ref in self.objects(item, path, "tiers", {"programId", "tier"}):
            program_id = self.ref(ref.get("programId"), f"{where}.programId", "program", org_id)
            tier = self.string(ref.get("tier"), f"{where}.tier", cm.Tier, "name")
            if program_id is None or tier is None:
                continue
            if (program_id, tier) not in self.tiers:
                self.error(f"{where}.tier", f"program {program_id} has no tier {tier!r}")
            elif (program_id, tier) in out:
                self.error(where, f"tier {tier!r} of program {program_id} is listed twice")
            else:
                out.append((program_id, tier))
        return out

    def opening_balance(self, item: dict, path: str) -> Decimal | None:
        if item.get("openingBalance") is None:
            return None
        try:
            return schema.value_in(PointsAccount, OPENING_BALANCE, item["openingBalance"])
        except InvalidValueError as exc:
            self.error(f"{path}.openingBalance", exc.message)
            return None

    # -- the document ---------------------------------------------------------------------

    def read(self, document: Any) -> None:
        if not isinstance(document, dict):
            self.error("$", "the document must be a JSON object")
            return
        for key in document:
            if key not in SECTIONS and key != "formatVersion":
                self.error(key, "unknown key")
        version = document.get("formatVersion")
        if type(version) is not int or version != FORMAT_VERSION:
            self.error("formatVersion", f"must be {FORMAT_VERSION}")
        self.read_orgs(document)
        self.read_simple(document)
        self.read_customers(document)
        self.read_customer_groups(document)
        self.read_rewards(document)
        self.read_org_constraints(document)

    def read_orgs(self, doc: dict) -> None:
        allowed = {"id", "parentId", *(k.name for k in schema.ORG)}
        for path, item in self.objects(doc, "", "orgs", allowed):
            org_id = self.own_id(item, path, "org")
            attrs, _ = self.fields(item, path, cm.Organisation, schema.ORG)
            parent_id = None
            if item.get("parentId") is not None:
                parent_id = self.positive_id(item["parentId"], f"{path}.parentId")
                if parent_id is not None and parent_id == org_id:
                    self.error(f"{path}.parentId", "an org cannot be its own parent")
                    parent_id = None
            if "name" in attrs:
                self.unique_key("orgName", (attrs["name"],), f"{path}.name", f"org name {attrs['name']!r}")
            row = Row(path, attrs, id=org_id, org_id=org_id, extra={"parent_id": parent_id})
            self.register("org", row)
            self.plan["orgs"].append(row)

    def simple(self, doc: dict, section: str, kind: str | None, model, keys, natural: tuple[str, ...], extra_keys=()):
        """Rows of one org with plain fields: ``kind`` names id-carrying kinds, ``natural`` the
        fields unique inside the org."""
        allowed = {"orgId", *(k.name for k in keys), *extra_keys} | ({"id"} if kind else set())
        out = []
        for path, item in self.objects(doc, "", section, allowed):
            org_id = self.org_of(item, path)
            row_id = self.own_id(item, path, kind) if kind else None
            attrs, _ = self.fields(item, path, model, keys)
            if natural and org_id is not None and all(a in attrs for a in natural):
                key = (org_id, *(attrs[a] for a in natural))
                names = ", ".join(f"{a}={attrs[a]!r}" for a in natural)
                self.unique_key(section, key, path, f"{model._meta.verbose_name} ({names}) in org {org_id}")
            row = Row(path, attrs, id=row_id, org_id=org_id)
            if kind:
                self.register(kind, row)
            self.plan[section].append(row)
            out.append((path, item, row))
        return out

    def read_simple(self, doc: dict) -> None:
        for _, _, row in self.simple(doc, "brands", None, cm.Brand, schema.BRAND, ("name",)):
            if row.org_id and "name" in row.attrs:
                self.brands.add((row.org_id, row.attrs["name"]))
        self.read_tills(doc)
        self.read_programs(doc)
        self.simple(doc, "categories", "category", cm.Category, schema.CATEGORY, ("name",))
        self.simple(doc, "rewardGroups", "rewardGroup", cm.RewardGroup, schema.REWARD_GROUP, ("name",))
        self.simple(doc, "labels", "label", cm.Label, schema.LABEL, ("name",))
        self.simple(doc, "cardSeries", "cardSeries", cm.CardSeries, schema.CARD_SERIES, ("code",))
        self.read_segments(doc)
        self.read_vendors(doc)
        self.read_coupon_series(doc)
        self.simple(
            doc, "cartPromotions", "cartPromotion", cm.CartPromotion, schema.CART_PROMOTION, ("promotion_code",)
        )
        self.read_custom_fields(doc)
        self.simple(doc, "fulfillmentStatuses", None, cm.FulfillmentStatus, schema.FULFILLMENT_STATUS, ("name",))

    def read_tills(self, doc: dict) -> None:
        user_field = get_user_model()._meta.get_field(get_user_model().USERNAME_FIELD)
        user_orgs: dict[str, tuple[int, str]] = {}
        for path, item, row in self.simple(doc, "tills", None, cm.Till, schema.TILL, ("code",), ("users",)):
            users: list[str] = []
            for where, raw in self.items(item, path, "users"):
                if not isinstance(raw, str) or not raw:
                    self.error(where, "must be a username (a non-empty string)")
                    continue
                try:
                    user_field.clean(raw, None)
                except ValidationError as exc:
                    self.error(where, " ".join(exc.messages))
                    continue
                if raw in users:
                    self.error(where, f"user {raw!r} is listed twice")
                    continue
                first = user_orgs.setdefault(raw, (row.org_id, where))
                if first[0] != row.org_id:
                    self.error(where, f"user {raw!r} is also a login of a till of org {first[0]} ({first[1]})")
                    continue
                users.append(raw)
            row.extra["users"] = users

    def read_programs(self, doc: dict) -> None:
        for path, item, row in self.simple(
            doc, "programs", "program", cm.Program, schema.PROGRAM, ("name",), ("tiers",)
        ):
            tiers = []
            for where, tier in self.objects(item, path, "tiers", {k.name for k in schema.TIER}):
                attrs, ok = self.fields(tier, where, cm.Tier, schema.TIER)
                key = (row.id, attrs.get("name"))
                if ok and row.id is not None and self.unique_key("tiers", key, where, f"tier {key[1]!r}"):
                    self.tiers.add(key)
                    tiers.append(attrs)
            row.extra["tiers"] = tiers

    def read_segments(self, doc: dict) -> None:
        for path, item, row in self.simple(
            doc, "segments", None, cm.Segment, schema.SEGMENT, ("name",), ("partitions",)
        ):
            partitions: list[str] = []
            for where, raw in self.items(item, path, "partitions"):
                name = self.string(raw, where, cm.Partition, "name")
                if name is None:
                    continue
                if name in partitions:
                    self.error(where, f"partition {name!r} is listed twice")
                    continue
                partitions.append(name)
                if row.org_id is not None and "name" in row.attrs:
                    self.partitions.add((row.org_id, row.attrs["name"], name))
            row.extra["partitions"] = partitions

    def read_vendors(self, doc: dict) -> None:
        config_allowed = {"id", *(k.name for k in schema.VENDOR_CONFIG)}
        for path, item, row in self.simple(
            doc, "vendors", "vendor", cm.Vendor, schema.VENDOR, ("name",), ("redemptionConfigs",)
        ):
            configs = []
            for where, config in self.objects(item, path, "redemptionConfigs", config_allowed):
                config_id = self.own_id(config, where, "vendorConfig")
                attrs, _ = self.fields(config, where, cm.VendorRedemptionConfig, schema.VENDOR_CONFIG)
                self.string_map(attrs, where, "headers", "headers")
                self.string_map(attrs, where, "context_map", "contextMap")
                masked = sorted(name for name, value in (attrs.get("headers") or {}).items() if value == HEADER_MASK)
                if row.id is not None and "name" in attrs:
                    self.unique_key(
                        "vendorConfigs", (row.id, attrs["name"]), f"{where}.name", f"config name {attrs['name']!r}"
                    )
                config_row = Row(
                    where, attrs, id=config_id, org_id=row.org_id, extra={"vendor_id": row.id, "masked": masked}
                )
                self.register("vendorConfig", config_row)
                configs.append(config_row)
            row.extra["configs"] = configs

    def read_coupon_series(self, doc: dict) -> None:
        for path, item, row in self.simple(
            doc, "couponSeries", "couponSeries", cm.CouponSeries, schema.COUPON_SERIES, (), ("codes",)
        ):
            codes: list[str] = []
            seen: set[str] = set()
            for where, raw in self.items(item, path, "codes"):
                code = self.string(raw, where, cm.CouponCode, "code")
                if code is None:
                    continue
                if code in seen:
                    self.error(where, f"code {code!r} is listed twice")
                    continue
                seen.add(code)
                codes.append(code)
            row.extra["codes"] = codes

    def read_custom_fields(self, doc: dict) -> None:
        keys = {k.attr: k.name for k in schema.CUSTOM_FIELD}
        for path, _, row in self.simple(
            doc, "customFields", None, cm.CustomFieldDefinition, schema.CUSTOM_FIELD, ("scope", "name")
        ):
            if not all(k in row.attrs for k in keys):
                continue
            problems = custom_field_definition_errors(cm.CustomFieldDefinition(**row.attrs))
            for attr, message in problems.items():
                self.error(f"{path}.{keys.get(attr, attr)}", message)
            if not problems and row.org_id is not None:
                self.custom_fields[(row.org_id, row.attrs["scope"], row.attrs["name"])] = row.attrs

    def read_customers(self, doc: dict) -> None:
        allowed = {"id", "orgId", "openingBalance", "tiers", "labels", "cards", "segments"}
        allowed |= {k.name for k in schema.CUSTOMER}
        orgs = self.ids["org"]
        for path, item in self.objects(doc, "", "customers", allowed):
            org_id = self.org_of(item, path)
            customer_id = self.own_id(item, path, "customer")
            attrs, ok = self.fields(item, path, cm.Customer, schema.CUSTOMER)
            row = Row(path, attrs, id=customer_id, org_id=org_id)
            row.extra["opening_balance"] = self.opening_balance(item, path)
            row.extra["tiers"] = self.tier_refs(item, path, org_id)
            row.extra["labels"] = self.customer_labels(item, path, org_id)
            row.extra["cards"] = self.customer_cards(item, path, org_id)
            row.extra["segments"] = self.segment_pairs(item, path, org_id)
            self.register("customer", row)
            self.plan["customers"].append(row)
            org = orgs[org_id].attrs if org_id is not None else {}
            if not ok or "primary_identifier" not in org:
                continue
            customer = cm.Customer(
                org=cm.Organisation(id=org_id, primary_identifier=org.get("primary_identifier")), **attrs
            )
            try:
                customer.clean()
            except ValidationError as exc:
                self.error(path, " ".join(exc.messages))
                continue
            for attr in ("mobile", "email", "external_id"):
                attrs[attr] = getattr(customer, attr)
            attrs["primary_value"] = customer.identifier(org["primary_identifier"]) or ""
            self.unique_key(
                "customerPrimary",
                (org_id, attrs["primary_value"]),
                path,
                f"customer with {org['primary_identifier']} {attrs['primary_value']!r} in org {org_id}",
            )
            if not org.get("dual_eligibility"):
                for attr, key in (("mobile", "mobile"), ("email", "email"), ("external_id", "externalId")):
                    if attrs[attr] is not None:
                        self.unique_key(
                            f"customer.{attr}",
                            (org_id, attrs[attr]),
                            f"{path}.{key}",
                            f"{key} {attrs[attr]!r} in org {org_id} (dual eligibility is off)",
                        )

    def customer_labels(self, item: dict, path: str, org_id: int | None) -> dict[int, dict]:
        out: dict[int, dict] = {}
        for where, ref in self.objects(item, path, "labels", {"labelId", *(k.name for k in schema.CUSTOMER_LABEL)}):
            label_id = self.ref(ref.get("labelId"), f"{where}.labelId", "label", org_id)
            attrs, ok = self.fields(ref, where, cm.CustomerLabel, schema.CUSTOMER_LABEL)
            if label_id is None or not ok:
                continue
            if label_id in out:
                self.error(where, f"label {label_id} is listed twice")
                continue
            out[label_id] = attrs
        return out

    def customer_cards(self, item: dict, path: str, org_id: int | None) -> dict[tuple[int, str], dict]:
        out: dict[tuple[int, str], dict] = {}
        for where, ref in self.objects(item, path, "cards", {"cardSeriesId", *(k.name for k in schema.CARD)}):
            series_id = self.ref(ref.get("cardSeriesId"), f"{where}.cardSeriesId", "cardSeries", org_id)
            attrs, ok = self.fields(ref, where, cm.Card, schema.CARD)
            if series_id is None or not ok:
                continue
            if self.unique_key(
                "cards", (series_id, attrs["number"]), where, f"card {attrs['number']!r} of card series {series_id}"
            ):
                out[(series_id, attrs.pop("number"))] = attrs
        return out

    def read_customer_groups(self, doc: dict) -> None:
        allowed = {"id", "orgId", "primaryMemberId", "memberIds", "openingBalance"}
        allowed |= {k.name for k in schema.CUSTOMER_GROUP}
        for path, item in self.objects(doc, "", "customerGroups", allowed):
            org_id = self.org_of(item, path)
            group_id = self.own_id(item, path, "customerGroup")
            attrs, ok = self.fields(item, path, cm.CustomerGroup, schema.CUSTOMER_GROUP)
            if ok and attrs["external_id"] == "":
                attrs["external_id"] = None
            if item.get("primaryMemberId") is None:
                self.error(f"{path}.primaryMemberId", "is required")
                primary = None
            else:
                primary = self.ref(item["primaryMemberId"], f"{path}.primaryMemberId", "customer", org_id)
            members = self.ref_list(item, path, "memberIds", "customer", org_id)
            if primary is not None and primary not in members:
                self.error(f"{path}.memberIds", f"must include the primary member {primary}")
            if ok and org_id is not None and attrs["external_id"] is not None:
                self.unique_key(
                    "groupExternalId",
                    (org_id, attrs["external_id"]),
                    f"{path}.externalId",
                    f"group externalId {attrs['external_id']!r} in org {org_id}",
                )
            attrs["primary_member_id"] = primary
            row = Row(
                path,
                attrs,
                id=group_id,
                org_id=org_id,
                extra={"members": members, "opening_balance": self.opening_balance(item, path)},
            )
            self.register("customerGroup", row)
            self.plan["customerGroups"].append(row)

    def read_rewards(self, doc: dict) -> None:
        refs = {
            "programId": ("program_id", "program"),
            "vendorId": ("vendor_id", "vendor"),
            "vendorRedemptionConfigId": ("vendor_redemption_id", "vendorConfig"),
            "couponSeriesId": ("coupon_series_id", "couponSeries"),
            "cartPromotionId": ("cart_promotion_id", "cartPromotion"),
        }
        lists = {
            "categoryIds": ("categories", "category"),
            "groupIds": ("groups", "rewardGroup"),
            "cardSeriesIds": ("card_series", "cardSeries"),
            "labelIds": ("labels", "label"),
        }
        nested = {"segments", "tiers", "images", "videos", "languageSpecificInfo", "paymentConfigs", "constraints"}
        allowed = {"id", "orgId", "brand", *refs, *lists, *nested, *(k.name for k in schema.REWARD)}
        for path, item in self.objects(doc, "", "rewards", allowed):
            org_id = self.org_of(item, path)
            reward_id = self.own_id(item, path, "reward")
            attrs, ok = self.fields(item, path, cm.Reward, schema.REWARD)
            row = Row(path, attrs, id=reward_id, org_id=org_id)
            brand = self.string(item.get("brand"), f"{path}.brand", cm.Brand, "name")
            if brand is not None and org_id is not None and (org_id, brand) not in self.brands:
                self.error(f"{path}.brand", f"unknown brand {brand!r} in org {org_id}")
            row.extra["brand"] = brand
            for key, (attr, kind) in refs.items():
                attrs[attr] = self.optional_ref(item, path, key, kind, org_id)
            config_id = attrs["vendor_redemption_id"]
            if config_id is not None:
                config_vendor = self.ids["vendorConfig"][config_id].extra["vendor_id"]
                if attrs["vendor_id"] != config_vendor:
                    self.error(
                        f"{path}.vendorRedemptionConfigId",
                        f"vendor redemption config {config_id} is vendor {config_vendor}'s; "
                        f"vendorId must be {config_vendor}",
                    )
            for key, (name, kind) in lists.items():
                row.extra[name] = self.ref_list(item, path, key, kind, org_id)
            row.extra["segments"] = self.segment_pairs(item, path, org_id)
            row.extra["tiers"] = self.tier_refs(item, path, org_id)
            for where, message in targeting_errors(
                partitions=len(row.extra["segments"]),
                card_series=len(row.extra["card_series"]),
                labels=len(row.extra["labels"]),
                tiers=len(row.extra["tiers"]),
            ):
                self.error(path + where, message)
            if ok:
                try:
                    cm.Reward(start_time=attrs["start_time"], end_time=attrs["end_time"]).clean()
                except ValidationError as exc:
                    for attr, messages in exc.message_dict.items():
                        key = {"end_time": "endTime", "start_time": "startTime"}.get(attr, attr)
                        self.error(f"{path}.{key}", " ".join(messages))
            if "custom_fields" in attrs and org_id is not None:
                self.reward_custom_fields(attrs["custom_fields"], f"{path}.customFields", org_id)
            row.extra["media"] = self.media(item, path)
            row.extra["languages"] = self.languages(item, path)
            row.extra["payment_configs"] = self.payment_configs(item, path, attrs, reward_id)
            row.extra["constraints"] = self.constraints(
                item, path, "constraints", schema.REWARD_CONSTRAINT, org_id, reward_id
            )
            self.register("reward", row)
            self.plan["rewards"].append(row)

    def reward_custom_fields(self, values: dict, path: str, org_id: int) -> None:
        for name, value in values.items():
            definition = self.custom_fields.get((org_id, CustomFieldScope.REWARD, name))
            if definition is None:
                self.error(f"{path}.{name}", f"no REWARD custom field {name!r} is defined for org {org_id}")
                continue
            problem = custom_field_value_error(definition["field_type"], value, definition["enum_values"])
            if problem:
                self.error(f"{path}.{name}", problem)

    def media(self, item: dict, path: str) -> list[dict]:
        out = []
        allowed = {k.name for k in schema.MEDIA}
        for key, kind in (("images", MediaKind.IMAGE), ("videos", MediaKind.VIDEO)):
            for position, (where, media) in enumerate(self.objects(item, path, key, allowed)):
                attrs, _ = self.fields(media, where, cm.RewardMedia, schema.MEDIA)
                out.append({**attrs, "kind": kind, "position": position})
        return out

    def languages(self, item: dict, path: str) -> list[dict]:
        out = []
        for where, content in self.objects(item, path, "languageSpecificInfo", {k.name for k in schema.LANGUAGE}):
            attrs, ok = self.fields(content, where, cm.RewardLanguageContent, schema.LANGUAGE)
            if not ok:
                continue
            if not self.unique_key(
                "languages", (path, attrs["language"]), f"{where}.language", f"language {attrs['language']!r}"
            ):
                continue
            if attrs["is_mandatory"] and not attrs["default_value"]:
                self.error(f"{where}.defaultValue", "is required when isMandatory is true")
            out.append(attrs)
        return out

    def payment_configs(self, item: dict, path: str, reward: dict, reward_id: int | None) -> list[Row]:
        configs: list[Row] = []
        all_ok = True
        allowed = {"id", *(k.name for k in schema.PAYMENT_CONFIG)}
        base = f"{path}.paymentConfigs"
        for where, config in self.objects(item, path, "paymentConfigs", allowed):
            config_id = self.own_id(config, where, "paymentConfig")
            attrs, ok = self.fields(config, where, cm.PaymentConfig, schema.PAYMENT_CONFIG)
            all_ok = all_ok and ok
            config_row = Row(where, attrs, id=config_id, extra={"reward_id": reward_id})
            self.register("paymentConfig", config_row)
            configs.append(config_row)
        if (
            isinstance(item.get("paymentConfigs", []), list)
            and all_ok
            and {"redemption_type", "intouch_points"} <= reward.keys()
        ):
            specs = [
                PaymentConfigSpec(
                    mode=c.attrs["mode"],
                    points=c.attrs["points"],
                    cash_amount=c.attrs["cash_amount"],
                    conversion_ratio=c.attrs["conversion_ratio"],
                )
                for c in configs
            ]
            for where, message in payment_configs_errors(
                redemption_type=reward["redemption_type"], intouch_points=reward["intouch_points"], configs=specs
            ):
                self.error(base + where, message)
        return configs

    def constraints(self, item: dict, path: str, key: str, keys, org_id, reward_id) -> list[Row]:
        out: list[Row] = []
        for where, constraint in self.objects(item, path, key, {"id", *(k.name for k in keys)}):
            constraint_id = self.own_id(constraint, where, "constraint")
            attrs, ok = self.fields(constraint, where, cm.RewardConstraint, keys)
            if "level" in attrs and attrs["level"] not in REWARD_CONSTRAINT_LEVELS:
                levels = ", ".join(sorted(REWARD_CONSTRAINT_LEVELS))
                self.error(f"{where}.level", f"must be one of {levels} here; org-level limits go in orgConstraints")
            row = Row(where, attrs, id=constraint_id, org_id=org_id, extra={"reward_id": reward_id})
            self.register("constraint", row)
            out.append(row)
        return out

    def read_org_constraints(self, doc: dict) -> None:
        allowed = {"id", "orgId", *(k.name for k in schema.ORG_CONSTRAINT)}
        for path, item in self.objects(doc, "", "orgConstraints", allowed):
            org_id = self.org_of(item, path)
            constraint_id = self.own_id(item, path, "constraint")
            attrs, _ = self.fields(item, path, cm.RewardConstraint, schema.ORG_CONSTRAINT)
            attrs["level"] = ConstraintLevel.CUSTOMER_REDEMPTION_TYPE
            if attrs.get("redemption_type") == "":
                self.error(f"{path}.redemptionType", "is required")
            row = Row(path, attrs, id=constraint_id, org_id=org_id, extra={"reward_id": None})
            self.register("constraint", row)
            self.plan["orgConstraints"].append(row)
