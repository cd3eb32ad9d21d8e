"""Which JSON key of the catalogue file is which model field, and how a value crosses over.

The importer and the exporter both read these tables, so the two directions cannot drift.
Plain fields are validated by the model field itself (``Field.clean``: lengths, choices,
URL/e-mail/time-zone validators, decimal digits); the few database check constraints a
field validator does not express are restated as ``check`` functions here, and
``CONSTRAINTS_CHECKED`` records where each constraint of the imported tables is checked
(tests/test_import_export.py fails when a model gains a constraint nobody checks).
References (``orgId``, ``brand``, ``categoryIds`` ...) and nested lists are handled by the
importer and exporter directly.
"""

import copy
import datetime
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.utils.dateparse import parse_datetime

from catalogue import models as cm
from issuance.models import PointsAccount

Check = Callable[[Any], str | None]


def at_least(low) -> Check:
    return lambda v: None if v >= low else f"must be >= {low}"


def between(low, high) -> Check:
    return lambda v: None if low <= v <= high else f"must be between {low} and {high}"


def above_at_most(low, high) -> Check:
    return lambda v: None if low < v <= high else f"must be > {low} and <= {high}"


@dataclass(frozen=True)
class Key:
    name: str  # camelCase key in the file
    attr: str  # model field name
    required: bool = False
    check: Check | None = None
    # Absent from the file: a new row takes the model's default (e.g. now), an existing row
    # keeps its stored value (instead of the default replacing it, as for other optional keys).
    kept_when_absent: bool = False


ORG = (
    Key("name", "name", required=True),
    Key("allowSkipValidation", "allow_skip_validation"),
    Key("dualEligibility", "dual_eligibility"),
    Key("primaryIdentifier", "primary_identifier"),
    Key("timeZone", "time_zone"),
    Key("maxQuantity", "max_quantity"),
    Key("pointsRedeemable", "points_redeemable"),
    Key("goodwillApprovalThreshold", "goodwill_approval_threshold", check=at_least(0)),
)
BRAND = (Key("name", "name", required=True), Key("description", "description"))
TILL = (Key("code", "code", required=True), Key("name", "name"), Key("isActive", "is_active"))
CUSTOMER = (
    Key("mobile", "mobile"),
    Key("email", "email"),
    Key("externalId", "external_id"),
    Key("firstName", "first_name"),
    Key("lastName", "last_name"),
    Key("pointsRedeemable", "points_redeemable"),
)
CUSTOMER_GROUP = (Key("externalId", "external_id"), Key("name", "name"))
PROGRAM = (Key("name", "name", required=True),)
TIER = (Key("name", "name", required=True), Key("serial", "serial"))
CATEGORY = (Key("name", "name", required=True), Key("enabled", "enabled"))
REWARD_GROUP = (Key("name", "name", required=True), Key("rank", "rank"))
LABEL = (Key("name", "name", required=True),)
CARD_SERIES = (Key("code", "code", required=True), Key("name", "name"))
CARD = (Key("number", "number", required=True), Key("status", "status"), Key("expiresAt", "expires_at"))
CUSTOMER_LABEL = (Key("status", "status"),)
SEGMENT = (Key("name", "name", required=True),)
VENDOR = (Key("name", "name", required=True), Key("enabled", "enabled"))
VENDOR_CONFIG = (
    Key("name", "name", required=True),
    Key("url", "url", required=True),
    Key("method", "method"),
    Key("headers", "headers"),
    Key("bodyTemplate", "body_template"),
    Key("timeoutSeconds", "timeout_seconds", check=above_at_most(0, 120)),
    Key("contextMap", "context_map"),
    Key("statusUrl", "status_url"),
)
COUPON_SERIES = (
    Key("name", "name", required=True),
    Key("description", "description"),
    Key("validTill", "valid_till", required=True),
    Key("enabled", "enabled"),
    Key("generateCodes", "generate_codes"),
    Key("codePrefix", "code_prefix"),
    Key("codeLength", "code_length", check=between(6, 40)),
    Key("lowStockThreshold", "low_stock_threshold"),
)
CART_PROMOTION = (
    Key("name", "name", required=True),
    Key("promotionCode", "promotion_code", required=True),
    Key("description", "description"),
    Key("validTill", "valid_till"),
    Key("enabled", "enabled"),
)
CUSTOM_FIELD = (
    Key("name", "name", required=True),
    Key("scope", "scope", required=True),
    Key("type", "field_type", required=True),
    Key("enumValues", "enum_values"),
    Key("defaultValue", "default_value"),
    Key("isMandatory", "is_mandatory"),
)
FULFILLMENT_STATUS = (Key("name", "name", required=True), Key("enabled", "enabled"), Key("position", "position"))
REWARD = (
    Key("name", "name", required=True),
    Key("description", "description"),
    Key("redemptionType", "redemption_type", required=True),
    Key("enabled", "enabled"),
    Key("startTime", "start_time", required=True),
    Key("endTime", "end_time", required=True),
    Key("createdAt", "created_at", kept_when_absent=True),
    Key("priority", "priority"),
    Key("rank", "rank"),
    Key("intouchPoints", "intouch_points", check=at_least(0)),
    Key("ownerType", "owner_type"),
    Key("ownerId", "owner_id"),
    Key("imageId", "image_id"),
    Key("imageUrl", "image_url"),
    Key("thumbnailId", "thumbnail_id"),
    Key("thumbnailUrl", "thumbnail_url"),
    Key("termAndConditionsId", "terms_id"),
    Key("termAndConditionsUrl", "terms_url"),
    Key("customFields", "custom_fields"),
)
MEDIA = (
    Key("name", "name"),
    Key("altText", "alt_text"),
    Key("fileId", "file_id"),
    Key("url", "url", required=True),
    Key("isExternal", "is_external"),
)
LANGUAGE = (
    Key("language", "language", required=True),
    Key("content", "content"),
    Key("isEnabled", "is_enabled"),
    Key("defaultValue", "default_value"),
    Key("isMandatory", "is_mandatory"),
)
# paymentMode / points / cashAmount / conversionRatio are judged by
# catalogue.validation.payment_configs_errors; here only their JSON types and digits.
PAYMENT_CONFIG = (
    Key("paymentMode", "mode", required=True),
    Key("points", "points"),
    Key("cashAmount", "cash_amount"),
    Key("conversionRatio", "conversion_ratio"),
)
_CONSTRAINT_COMMON = (
    Key("kpi", "kpi"),
    Key("frequency", "frequency", required=True),
    Key("interval", "interval", check=at_least(1)),
    Key("windowType", "window_type"),
    Key("cycleStart", "cycle_start"),
    Key("weekStartDay", "week_start_day"),
    Key("limitValue", "limit_value", required=True, check=at_least(0)),
    Key("isActive", "is_active"),
)
REWARD_CONSTRAINT = (Key("level", "level", required=True), *_CONSTRAINT_COMMON)
ORG_CONSTRAINT = (Key("redemptionType", "redemption_type", required=True), *_CONSTRAINT_COMMON)

# Where each database constraint of the imported tables is checked before writing.
CONSTRAINTS_CHECKED = {
    "org_max_quantity_positive": "maxQuantity: the field's MinValueValidator",
    "org_not_own_parent": "orgs[].parentId: importer (with cycles)",
    "customer_has_an_identifier": "customers[]: Customer.clean (the org's primary identifier)",
    "customer_has_primary_identifier": "customers[]: Customer.clean (the org's primary identifier)",
    "customer_unique_primary_per_org": "customers[]: importer, file and database",
    "group_unique_external_id_per_org": "customerGroups[].externalId: importer, file and database",
    "group_membership_unique": "customerGroups[].memberIds: duplicates refused",
    "program_unique_name_per_org": "programs[].name: importer, file and database",
    "tier_unique_name_per_program": "programs[].tiers: natural key",
    "program_membership_unique": "customers[].tiers: one tier per program",
    "category_unique_name_per_org": "categories[].name: importer, file and database",
    "reward_group_unique_name_per_org": "rewardGroups[].name: importer, file and database",
    "label_unique_name_per_org": "labels[].name: importer, file and database",
    "customer_label_unique": "customers[].labels: duplicates refused",
    "card_series_unique_code_per_org": "cardSeries[].code: importer, file and database",
    "card_unique_number_per_series": "customers[].cards: natural key, duplicates refused",
    "segment_unique_name_per_org": "segments[]: natural key",
    "partition_unique_name_per_segment": "segments[].partitions: natural key",
    "segment_membership_unique": "customers[].segments: duplicates refused",
    "vendor_unique_name_per_org": "vendors[].name: importer, file and database",
    "vendor_timeout_sane": "timeoutSeconds: schema check",
    "vendor_config_unique_name": "vendors[].redemptionConfigs[].name: importer, file and database",
    "coupon_code_length_sane": "codeLength: schema check",
    "coupon_code_unique_per_series": "couponSeries[].codes: duplicates refused, existing codes kept",
    "cart_promotion_unique_code_per_org": "cartPromotions[].promotionCode: importer, file and database",
    "reward_ends_after_start": "rewards[].endTime: Reward.clean",
    "reward_points_not_negative": "intouchPoints: schema check",
    "reward_segment_target_unique": "rewards[].segments: duplicates refused",
    "reward_language_unique": "rewards[].languageSpecificInfo: duplicates refused",
    "mandatory_content_has_default": "rewards[].languageSpecificInfo: importer",
    "conv_ratio_positive": "catalogue.validation.payment_configs_errors",
    "points_config_has_points": "catalogue.validation.payment_configs_errors",
    "cash_config_has_cash": "catalogue.validation.payment_configs_errors",
    "constraint_limit_not_negative": "limitValue: schema check",
    "constraint_interval_positive": "interval: schema check",
    "constraint_level_matches_target": "constraints nested in rewards vs orgConstraints",
    "custom_field_unique_name_per_scope": "customFields[]: natural key",
    "fulfillment_status_unique_per_org": "fulfillmentStatuses[]: natural key",
    "brand_unique_name_per_org": "brands[]: natural key",
    "till_unique_code_per_org": "tills[]: natural key",
    "account_has_one_owner": "accounts are created for one customer or one group",
    "account_balance_not_negative": "openingBalance: must be >= 0",
    "account_held_not_negative": "accounts are created with nothing held",
    "account_held_within_balance": "accounts are created with nothing held",
}

IMPORTED_MODELS = (
    cm.Organisation,
    cm.Brand,
    cm.Till,
    cm.Customer,
    cm.CustomerGroup,
    cm.GroupMembership,
    cm.Program,
    cm.Tier,
    cm.ProgramMembership,
    cm.Category,
    cm.RewardGroup,
    cm.Label,
    cm.CustomerLabel,
    cm.CardSeries,
    cm.Card,
    cm.Segment,
    cm.Partition,
    cm.SegmentMembership,
    cm.Vendor,
    cm.VendorRedemptionConfig,
    cm.CouponSeries,
    cm.CouponCode,
    cm.CartPromotion,
    cm.Reward,
    cm.RewardSegmentTarget,
    cm.RewardMedia,
    cm.RewardLanguageContent,
    cm.PaymentConfig,
    cm.RewardConstraint,
    cm.CustomFieldDefinition,
    cm.FulfillmentStatus,
    PointsAccount,
)


class InvalidValueError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _is_blank_choice(field: models.Field) -> bool:
    return bool(field.choices) and field.blank and not field.null


def value_in(model: type[models.Model], key: Key, raw: Any) -> Any:
    """The model value for a JSON value, or ``InvalidValueError`` with the message for the file."""
    field = model._meta.get_field(key.attr)
    if raw is None:
        if field.null:
            return None
        if isinstance(field, (models.CharField, models.TextField)) and field.blank:
            return ""
        raise InvalidValueError("must not be null")
    value = _typed(field, raw)
    if field.choices and value not in {c[0] for c in field.flatchoices} and not (field.blank and value == ""):
        allowed = ", ".join(str(c[0]) for c in field.flatchoices)
        raise InvalidValueError(f"unknown value {raw!r}; expected one of {allowed}")
    try:
        value = field.clean(value, None)
    except ValidationError as exc:
        raise InvalidValueError(" ".join(exc.messages)) from exc
    if key.check is not None and value is not None:
        problem = key.check(value)
        if problem:
            raise InvalidValueError(problem)
    return value


def _typed(field: models.Field, raw: Any) -> Any:
    if isinstance(field, models.BooleanField):
        if not isinstance(raw, bool):
            raise InvalidValueError("must be true or false")
        return raw
    if isinstance(field, models.DecimalField):
        if isinstance(raw, bool) or not isinstance(raw, (int, Decimal)):
            raise InvalidValueError("must be a number")
        return Decimal(raw)
    if isinstance(field, models.IntegerField):
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise InvalidValueError("must be an integer")
        return raw
    if isinstance(field, models.DateTimeField):
        return datetime_in(raw)
    if isinstance(field, models.DateField):
        if not isinstance(raw, str):
            raise InvalidValueError("must be a date (YYYY-MM-DD)")
        try:
            return datetime.date.fromisoformat(raw)
        except ValueError:
            raise InvalidValueError("must be a date (YYYY-MM-DD)") from None
    if isinstance(field, models.JSONField):
        expected = type(field.get_default())
        if not isinstance(raw, expected):
            raise InvalidValueError("must be an object" if expected is dict else "must be a list")
        return copy.deepcopy(raw)
    if isinstance(field, (models.CharField, models.TextField)):
        if not isinstance(raw, str):
            raise InvalidValueError("must be a string")
        return raw
    raise TypeError(f"no JSON mapping for {field!r}")


def datetime_in(raw: Any) -> datetime.datetime:
    """An ISO-8601 date-time with an explicit offset, as UTC."""
    message = "must be an ISO-8601 date-time with a UTC offset, e.g. 2025-01-31T00:00:00Z"
    if not isinstance(raw, str):
        raise InvalidValueError(message)
    try:
        value = parse_datetime(raw)
    except ValueError:
        value = None
    if value is None:
        raise InvalidValueError(message)
    if value.tzinfo is None:
        raise InvalidValueError(f"{message} (the offset is missing)")
    return value.astimezone(datetime.UTC)


def datetime_out(value: datetime.datetime | None) -> str | None:
    if value is None:
        return None
    value = value.astimezone(datetime.UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}"
    return text + "Z"


def value_out(model: type[models.Model], key: Key, value: Any) -> Any:
    field = model._meta.get_field(key.attr)
    if value is None:
        return None
    if isinstance(field, models.DateTimeField):
        return datetime_out(value)
    if isinstance(field, models.DateField):
        return value.isoformat()
    if isinstance(field, models.DecimalField):
        return Decimal(value)
    if value == "" and _is_blank_choice(field):
        return None
    return value


def fields_out(obj: models.Model, keys: tuple[Key, ...]) -> dict[str, Any]:
    return {key.name: value_out(type(obj), key, getattr(obj, key.attr)) for key in keys}


def default_of(model: type[models.Model], key: Key) -> Any:
    """The value a missing optional key stands for: the model field's default."""
    field = model._meta.get_field(key.attr)
    if field.has_default():
        return field.get_default()
    if field.null:
        return None
    if isinstance(field, (models.CharField, models.TextField)):
        return ""
    raise LookupError(f"{model.__name__}.{key.attr} has no default; {key.name} must be required")
