"""What can be issued, and to whom.

Every row belongs to exactly one organisation (directly or through its parent row);
nothing here is shared between orgs. Explicit ids are allowed everywhere so that the
spec pages' examples (reward 311509, customer 555567088, ...) can be reproduced; the
importer resets the sequences after it writes explicit ids.
"""

import contextlib
import zoneinfo
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models, router, transaction
from django.db.models import Q
from django.utils import timezone

from . import choices
from .encryption import EncryptedValuesJSONField

POINTS = {"max_digits": 18, "decimal_places": 4}
MONEY = {"max_digits": 14, "decimal_places": 2}
RATIO = {"max_digits": 12, "decimal_places": 6}


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not a known IANA time zone")


class Organisation(models.Model):
    name = models.CharField(max_length=200, unique=True)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="children",
        help_text="Connected orgs: the parent org may act on its children (R12).",
    )
    allow_skip_validation = models.BooleanField(
        default=False, help_text="ALLOW_SKIPPING_VALIDATION: honour skip_validation=true (R3)."
    )
    dual_eligibility = models.BooleanField(
        default=False,
        help_text="Secondary identifiers may be shared by customers with distinct primary identifiers (R2).",
    )
    primary_identifier = models.CharField(
        max_length=16, choices=choices.PrimaryIdentifier.choices, default=choices.PrimaryIdentifier.MOBILE
    )
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone])
    max_quantity = models.PositiveIntegerField(
        default=100, validators=[MinValueValidator(1)], help_text="Largest quantity one request may ask for (R4)."
    )
    points_redeemable = models.BooleanField(
        default=True, help_text="When off, every points redemption is refused with 8004 / 828 (R6)."
    )
    goodwill_approval_threshold = models.DecimalField(
        **POINTS,
        null=True,
        blank=True,
        help_text="Goodwill issues above this many points need a second staff member's approval.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(max_quantity__gte=1), name="org_max_quantity_positive"),
            models.CheckConstraint(condition=~Q(parent=models.F("id")), name="org_not_own_parent"),
        ]

    def __str__(self) -> str:
        return self.name


class UserProfile(models.Model):
    """The organisation a Django user (staff member or till login) acts in."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    org = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="user_profiles")

    def __str__(self) -> str:
        return f"{self.user} @ {self.org}"


class Brand(models.Model):
    org = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="brands")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["org_id", "name"]
        constraints = [models.UniqueConstraint(fields=["org", "name"], name="brand_unique_name_per_org")]

    def __str__(self) -> str:
        return self.name


class Till(models.Model):
    """A store till; `username` in the API names it. Every transaction records one."""

    org = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="tills")
    code = models.CharField(max_length=150, help_text="The `username` query parameter of the API.")
    name = models.CharField(max_length=200, blank=True)
    users = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="tills", help_text="Logins allowed to book on this till."
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["org_id", "code"]
        constraints = [models.UniqueConstraint(fields=["org", "code"], name="till_unique_code_per_org")]

    def __str__(self) -> str:
        return self.code


class Customer(models.Model):
    org = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="customers")
    mobile = models.CharField(max_length=32, null=True, blank=True)
    email = models.EmailField(max_length=254, null=True, blank=True)
    external_id = models.CharField(max_length=128, null=True, blank=True)
    # The value of the org's primary identifier; unique per org even under dual eligibility.
    primary_value = models.CharField(max_length=254, editable=False)
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    points_redeemable = models.BooleanField(
        default=True, help_text="When off, this customer's redemptions are refused with 8004 / 828."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(mobile__isnull=False) | Q(email__isnull=False) | Q(external_id__isnull=False),
                name="customer_has_an_identifier",
            ),
            models.UniqueConstraint(fields=["org", "primary_value"], name="customer_unique_primary_per_org"),
            models.CheckConstraint(condition=~Q(primary_value=""), name="customer_has_primary_identifier"),
        ]
        indexes = [
            models.Index(fields=["org", "mobile"], name="customer_org_mobile"),
            models.Index(fields=["org", "email"], name="customer_org_email"),
            models.Index(fields=["org", "external_id"], name="customer_org_external_id"),
        ]

    def __str__(self) -> str:
        return f"{self.display_name} ({self.primary_value})"

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip() or f"Customer {self.pk}"

    def identifier(self, kind: str) -> str | None:
        return {
            choices.PrimaryIdentifier.MOBILE: self.mobile,
            choices.PrimaryIdentifier.EMAIL: self.email,
            choices.PrimaryIdentifier.EXTERNAL_ID: self.external_id,
        }[kind]

    def clean(self) -> None:
        for field in ("mobile", "email", "external_id"):
            if getattr(self, field) == "":
                setattr(self, field, None)
        if self.org_id and not self.identifier(self.org.primary_identifier):
            raise ValidationError(
                f"the org's primary identifier ({self.org.primary_identifier}) is required for its customers"
            )

    def save(self, *args, **kwargs):
        if self.org_id:
            self.primary_value = self.identifier(self.org.primary_identifier) or ""
        super().save(*args, **kwargs)


class CustomerGroup(models.Model):
    """user_group2: a group of customers redeeming from one shared points account (R9)."""

    org = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="customer_groups")
    external_id = models.CharField(max_length=128, null=True, blank=True)
    name = models.CharField(max_length=200, blank=True)
    primary_member = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="primary_of_groups")
    members = models.ManyToManyField(Customer, through="GroupMembership", related_name="customer_groups")

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["org", "external_id"],
                condition=Q(external_id__isnull=False),
                name="group_unique_external_id_per_org",
            )
        ]

    def __str__(self) -> str:
        return self.name or f"Group {self.pk}"


class GroupMembership(models.Model):
    group = models.ForeignKey(CustomerGroup, on_delete=models.CASCADE, related_name="memberships")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="group_memberships")
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["group", "customer"], name="group_membership_unique")]


class Program(models.Model):
    org = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="programs")
    name = models.CharField(max_length=200)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["org", "name"], name="program_unique_name_per_org")]

    def __str__(self) -> str:
        return self.name


class Tier(models.Model):
    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="tiers")
    name = models.CharField(max_length=100)
    serial = models.PositiveIntegerField(default=1, help_text="Order of the tier inside its program (1 = lowest).")

    class Meta:
        ordering = ["program_id", "serial"]
        constraints = [models.UniqueConstraint(fields=["program", "name"], name="tier_unique_name_per_program")]

    def __str__(self) -> str:
        return f"{self.program.name} / {self.name}"


class ProgramMembership(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="program_memberships")
    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="memberships")
    tier = models.ForeignKey(Tier, on_delete=models.PROTECT, related_name="memberships")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["customer", "program"], name="program_membership_unique")
        ]

    def clean(self) -> None:
        if self.tier_id and self.program_id and self.tier.program_id != self.program_id:
            raise ValidationError("the tier must belong to the program")


class Category(models.Model):
    org = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="categories")
    name = models.CharField(max_length=200)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["org_id", "name"]
        verbose_name_plural = "categories"
        constraints = [models.UniqueConstraint(fields=["org", "name"], name="category_unique_name_per_org")]

    def __str__(self) -> str:
        return self.name


class RewardGroup(models.Model):
    org = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="reward_groups")
    name = models.CharField(max_length=200)
    rank = models.IntegerField(default=0)

    class Meta:
        ordering = ["org_id", "name"]
        constraints = [models.UniqueConstraint(fields=["org", "name"], name="reward_group_unique_name_per_org")]

    def __str__(self) -> str:
        return self.name


class Label(models.Model):
    org = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="labels")
    name = models.CharField(max_length=200)

    class Meta:
        ordering = ["org_id", "name"]
        constraints = [models.UniqueConstraint(fields=["org", "name"], name="label_unique_name_per_org")]

    def __str__(self) -> str:
        return self.name


class CustomerLabel(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="customer_labels")
    label = models.ForeignKey(Label, on_delete=models.CASCADE, related_name="customer_labels")
    status = models.CharField(
        max_length=16, choices=choices.MembershipStatus.choices, default=choices.MembershipStatus.ACTIVE
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["customer", "label"], name="customer_label_unique")]


class CardSeries(models.Model):
    org = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="card_series")
    code = models.CharField(max_length=100)
    name = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["org_id", "code"]
        verbose_name_plural = "card series"
        constraints = [models.UniqueConstraint(fields=["org", "code"], name="card_series_unique_code_per_org")]

    def __str__(self) -> str:
        return self.code


class Card(models.Model):
    series = models.ForeignKey(CardSeries, on_delete=models.PROTECT, related_name="cards")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="cards")
    number = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=choices.CardStatus.choices, default=choices.CardStatus.ACTIVE)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["series", "number"], name="card_unique_number_per_series")]
        indexes = [models.Index(fields=["customer", "status"], name="card_customer_status")]

    def __str__(self) -> str:
        return self.masked_number

    @property
    def masked_number(self) -> str:
        """Never show a full card number: logs and pages use this."""
        return f"****{self.number[-4:]}" if len(self.number) > 4 else "****"


class Segment(models.Model):
    org = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="segments")
    name = models.CharField(max_length=200)

    class Meta:
        ordering = ["org_id", "name"]
        constraints = [models.UniqueConstraint(fields=["org", "name"], name="segment_unique_name_per_org")]

    def __str__(self) -> str:
        return self.name


class Partition(models.Model):
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="partitions")
    name = models.CharField(max_length=200)

    class Meta:
        ordering = ["segment_id", "name"]
        constraints = [models.UniqueConstraint(fields=["segment", "name"], name="partition_unique_name_per_segment")]

    def __str__(self) -> str:
        return f"{{{self.segment.name}, {self.name}}}"


class SegmentMembership(models.Model):
    """A customer is in a (segment, partition) pair."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="segment_memberships")
    partition = models.ForeignKey(Partition, on_delete=models.CASCADE, related_name="memberships")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["customer", "partition"], name="segment_membership_unique")
        ]


class Vendor(models.Model):
    org = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="vendors")
    name = models.CharField(max_length=200)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["org_id", "name"]
        constraints = [models.UniqueConstraint(fields=["org", "name"], name="vendor_unique_name_per_org")]

    def __str__(self) -> str:
        return self.name


class VendorRedemptionConfig(models.Model):
    """How to call a vendor to redeem one unit (R10). Header values are secrets: encrypted at
    rest (catalogue.encryption), names readable; in Python ``headers`` holds plain text."""

    vendor = models.ForeignKey(Vendor, on_delete=models.PROTECT, related_name="redemption_configs")
    name = models.CharField(max_length=200)
    url = models.URLField(max_length=1000)
    method = models.CharField(max_length=8, choices=choices.HttpMethod.choices, default=choices.HttpMethod.POST)
    headers = EncryptedValuesJSONField(
        default=dict, blank=True, help_text="Request headers {name: value}; the values are stored encrypted."
    )
    body_template = models.TextField(blank=True, help_text="JSON body with {placeholders} filled per unit.")
    timeout_seconds = models.DecimalField(max_digits=6, decimal_places=2, default=Decimal("5.00"))
    context_map = models.JSONField(
        default=dict, blank=True, help_text='Keys (voucher, valid_till, ...) to JSON paths of the vendor\'s answer.'
    )
    status_url = models.URLField(
        max_length=1000, blank=True, help_text="Optional look-up of an earlier redemption, used by recovery."
    )

    class Meta:
        ordering = ["vendor_id", "name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(timeout_seconds__gt=0) & Q(timeout_seconds__lte=120), name="vendor_timeout_sane"
            ),
            models.UniqueConstraint(fields=["vendor", "name"], name="vendor_config_unique_name"),
        ]

    def __str__(self) -> str:
        return f"{self.vendor.name}: {self.name}"


class CouponSeries(models.Model):
    """A pool of coupon codes (uploaded) or a generator of them."""

    org = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="coupon_series")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    valid_till = models.DateTimeField(help_text="Codes issued from this series expire then (UTC).")
    enabled = models.BooleanField(default=True)
    generate_codes = models.BooleanField(
        default=False, help_text="Generate codes on issue instead of taking them from an uploaded pool."
    )
    code_prefix = models.CharField(max_length=20, blank=True)
    code_length = models.PositiveSmallIntegerField(default=10, help_text="Random part of a generated code.")
    low_stock_threshold = models.PositiveIntegerField(default=100)

    class Meta:
        ordering = ["org_id", "name"]
        verbose_name_plural = "coupon series"
        constraints = [
            models.CheckConstraint(
                condition=Q(code_length__gte=6) & Q(code_length__lte=40), name="coupon_code_length_sane"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class CouponCode(models.Model):
    """An AVAILABLE code of an uploaded pool. Issuing a code deletes it from here and
    records it on the issued unit, so the pool only ever holds free codes and picking one
    stays O(1) however far the pool has drained (no scan over used rows)."""

    series = models.ForeignKey(CouponSeries, on_delete=models.CASCADE, related_name="pool")
    code = models.CharField(max_length=64)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["series", "code"], name="coupon_code_unique_per_series")]

    def __str__(self) -> str:
        return self.code


class CartPromotion(models.Model):
    org = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="cart_promotions")
    name = models.CharField(max_length=200)
    promotion_code = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    valid_till = models.DateTimeField(null=True, blank=True)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["org_id", "name"]
        constraints = [
            models.UniqueConstraint(fields=["org", "promotion_code"], name="cart_promotion_unique_code_per_org")
        ]

    def __str__(self) -> str:
        return self.name


class Reward(models.Model):
    org = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="rewards")
    brand = models.ForeignKey(Brand, on_delete=models.PROTECT, related_name="rewards")
    name = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    redemption_type = models.CharField(max_length=32, choices=choices.RedemptionType.choices)
    enabled = models.BooleanField(default=True, help_text="activationStatus ENABLED / DISABLED")
    start_time = models.DateTimeField()
    end_time = models.DateTimeField()
    priority = models.IntegerField(default=0)
    rank = models.IntegerField(default=0)
    intouch_points = models.DecimalField(
        **POINTS, default=Decimal("0"), help_text="Points per unit when the reward has no payment config."
    )
    program = models.ForeignKey(Program, null=True, blank=True, on_delete=models.SET_NULL, related_name="rewards")
    owner_type = models.CharField(max_length=20, choices=choices.OwnerType.choices, blank=True)
    owner_id = models.CharField(max_length=100, blank=True)

    image_id = models.BigIntegerField(null=True, blank=True)
    image_url = models.URLField(max_length=1000, blank=True)
    thumbnail_id = models.BigIntegerField(null=True, blank=True)
    thumbnail_url = models.URLField(max_length=1000, blank=True)
    terms_id = models.BigIntegerField(null=True, blank=True)
    terms_url = models.URLField(max_length=1000, blank=True)

    vendor = models.ForeignKey(Vendor, null=True, blank=True, on_delete=models.PROTECT, related_name="rewards")
    vendor_redemption = models.ForeignKey(
        VendorRedemptionConfig, null=True, blank=True, on_delete=models.PROTECT, related_name="rewards"
    )
    coupon_series = models.ForeignKey(
        CouponSeries, null=True, blank=True, on_delete=models.PROTECT, related_name="rewards"
    )
    cart_promotion = models.ForeignKey(
        CartPromotion, null=True, blank=True, on_delete=models.PROTECT, related_name="rewards"
    )

    categories = models.ManyToManyField(Category, blank=True, related_name="rewards")
    groups = models.ManyToManyField(RewardGroup, blank=True, related_name="rewards")
    # Targeting (R6): at most one of these four kinds is used by a reward.
    target_partitions = models.ManyToManyField(
        Partition, blank=True, through="RewardSegmentTarget", related_name="targeted_rewards"
    )
    card_series = models.ManyToManyField(CardSeries, blank=True, related_name="rewards")
    labels = models.ManyToManyField(Label, blank=True, related_name="rewards")
    target_tiers = models.ManyToManyField(Tier, blank=True, related_name="targeted_rewards")

    custom_fields = models.JSONField(default=dict, blank=True, help_text="Values of REWARD-scope custom fields.")
    # A default rather than auto_now_add, so that the catalogue importer can carry it
    # (``createdAt``; bulk_create honours a value set on the row, auto_now_add would overwrite it).
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    # The listing cache: derived from the payment configs, intouch_points and the targeting
    # link rows, never edited, not in the catalogue file format. The rules are
    # catalogue.selectors.reward_points_expression / reward_cash_expression /
    # reward_targeting_expression; catalogue.services.reward_listing_refresh is the one
    # writer (every write path calls it: docs/list-api.md, "Prices and targeting";
    # `manage.py check_catalogue` reports drift). The list API filters and sorts on them.
    list_points = models.DecimalField(
        **POINTS, null=True, blank=True, editable=False,
        help_text="Derived: the price in points the list filters and sorts on (NULL: no points price).",
    )
    list_cash = models.DecimalField(
        **MONEY, null=True, blank=True, editable=False,
        help_text="Derived: the lowest cash price (NULL: no cash price).",
    )
    targeting = models.CharField(
        max_length=16, choices=choices.TargetingKind.choices, default=choices.TargetingKind.NONE, editable=False,
        help_text="Derived: which kind of targets the reward has (R6).",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(end_time__gt=models.F("start_time")), name="reward_ends_after_start"),
            models.CheckConstraint(condition=Q(intouch_points__gte=0), name="reward_points_not_negative"),
        ]
        indexes = [
            models.Index(fields=["brand", "enabled", "-created_at"], name="reward_brand_enabled_created"),
            models.Index(fields=["brand", "redemption_type"], name="reward_brand_type"),
            models.Index(fields=["brand", "end_time"], name="reward_brand_end"),
            models.Index(fields=["brand", "start_time"], name="reward_brand_start"),
            # The list's price sorts (price, then id, unpriced last: catalogue.filters) walk
            # these and stop after a page; min/max prices are a range of them. On PostgreSQL,
            # migration 0003 adds what SQLite cannot express (no INCLUDE, no NULLS LAST in an
            # index; Django's state does not list them): the DESC NULLS LAST twins
            # reward_brand_points_desc / reward_brand_cash_desc (a backward scan of these puts
            # NULLs first), and reward_brand_enabled_created covering the columns the list's
            # count reads (INCLUDE end_time, start_time, org_id, targeting, id).
            models.Index(fields=["brand", "list_points", "id"], name="reward_brand_points"),
            models.Index(fields=["brand", "list_cash", "id"], name="reward_brand_cash"),
        ]

    def __str__(self) -> str:
        return f"{self.pk} {self.name}"

    def save(self, **kwargs):
        """A save that may write ``intouch_points`` (the price of a reward without payment
        configs) — any full save, or ``update_fields`` naming it — refreshes the reward's
        listing cache, in the same transaction."""
        update_fields = kwargs.get("update_fields")
        with _write_transaction(self, kwargs.get("using")) as using:
            super().save(**kwargs)
            if update_fields is None or "intouch_points" in update_fields:
                _listing_refresh([self.pk], using=using)

    def clean(self) -> None:
        if self.brand_id and self.org_id and self.brand.org_id != self.org_id:
            raise ValidationError({"brand": "the brand belongs to another org"})
        if self.start_time and self.end_time and self.end_time <= self.start_time:
            raise ValidationError({"end_time": "must be after the start time"})


class RewardListingSource:
    """A row a reward's listing cache is derived from (it has ``reward_id``): saving or
    deleting it refreshes that reward's cache in the same transaction."""

    def save(self, **kwargs):
        with _write_transaction(self, kwargs.get("using")) as using:
            super().save(**kwargs)
            _listing_refresh([self.reward_id], using=using)

    def delete(self, **kwargs):
        reward_id = self.reward_id
        with _write_transaction(self, kwargs.get("using")) as using:
            deleted = super().delete(**kwargs)
            _listing_refresh([reward_id], using=using)
        return deleted


class RewardSegmentTarget(RewardListingSource, models.Model):
    # Reward.targeting follows these rows.
    reward = models.ForeignKey(Reward, on_delete=models.CASCADE, related_name="segment_targets")
    partition = models.ForeignKey(Partition, on_delete=models.CASCADE, related_name="reward_targets")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["reward", "partition"], name="reward_segment_target_unique")]



class RewardMedia(models.Model):
    reward = models.ForeignKey(Reward, on_delete=models.CASCADE, related_name="media")
    kind = models.CharField(max_length=8, choices=choices.MediaKind.choices, default=choices.MediaKind.IMAGE)
    name = models.CharField(max_length=200, blank=True)
    alt_text = models.CharField(max_length=500, blank=True)
    file_id = models.BigIntegerField(null=True, blank=True, help_text="Internally stored file; empty for external.")
    url = models.URLField(max_length=1000)
    is_external = models.BooleanField(default=True)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["reward_id", "kind", "position", "id"]
        verbose_name_plural = "reward media"


class RewardLanguageContent(models.Model):
    """languageSpecificInfo: rich content per language."""

    reward = models.ForeignKey(Reward, on_delete=models.CASCADE, related_name="language_content")
    language = models.CharField(max_length=16, default="en")
    content = models.TextField(blank=True)
    is_enabled = models.BooleanField(default=True)
    default_value = models.TextField(blank=True)
    is_mandatory = models.BooleanField(default=False)

    class Meta:
        ordering = ["reward_id", "language"]
        constraints = [
            models.UniqueConstraint(fields=["reward", "language"], name="reward_language_unique"),
            models.CheckConstraint(
                condition=Q(is_mandatory=False) | ~Q(default_value=""), name="mandatory_content_has_default"
            ),
        ]


class PaymentConfig(RewardListingSource, models.Model):
    """How a reward is paid for (R5). The cross-row rules (at most 5, FREE/CONV_RATIO
    alone, CONV_RATIO only for some types) live in catalogue.validation. Reward.list_points
    / list_cash follow these rows (RewardListingSource)."""

    reward = models.ForeignKey(Reward, on_delete=models.CASCADE, related_name="payment_configs")
    mode = models.CharField(max_length=16, choices=choices.PaymentMode.choices)
    points = models.DecimalField(**POINTS, null=True, blank=True, help_text="Points per unit (POINTS, POINTS_CASH).")
    cash_amount = models.DecimalField(**MONEY, null=True, blank=True, help_text="Cash per unit (CASH, POINTS_CASH).")
    conversion_ratio = models.DecimalField(
        **RATIO, null=True, blank=True, help_text="CONV_RATIO: redemption value per point."
    )

    class Meta:
        ordering = ["reward_id", "id"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(mode="CONV_RATIO") | Q(conversion_ratio__isnull=False, conversion_ratio__gt=0),
                name="conv_ratio_positive",
            ),
            models.CheckConstraint(
                condition=~Q(mode__in=["POINTS", "POINTS_CASH"]) | Q(points__isnull=False, points__gte=0),
                name="points_config_has_points",
            ),
            models.CheckConstraint(
                condition=~Q(mode__in=["CASH", "POINTS_CASH"]) | Q(cash_amount__isnull=False, cash_amount__gte=0),
                name="cash_config_has_cash",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.mode} #{self.pk}"


class RewardConstraint(models.Model):
    """A limit on a KPI per window (R6). Reward-level (REWARD, CUSTOMER) rows name a
    reward; org-level rows (CUSTOMER_REDEMPTION_TYPE) name a redemption type instead."""

    org = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="reward_constraints")
    reward = models.ForeignKey(
        Reward, null=True, blank=True, on_delete=models.CASCADE, related_name="constraints"
    )
    redemption_type = models.CharField(max_length=32, choices=choices.RedemptionType.choices, blank=True)
    level = models.CharField(max_length=32, choices=choices.ConstraintLevel.choices)
    kpi = models.CharField(max_length=20, choices=choices.ConstraintKpi.choices, default=choices.ConstraintKpi.QUANTITY)
    frequency = models.CharField(max_length=10, choices=choices.Frequency.choices)
    interval = models.PositiveIntegerField(default=1, help_text="Length of a window in frequency units.")
    window_type = models.CharField(
        max_length=8, choices=choices.WindowType.choices, default=choices.WindowType.FIXED
    )
    cycle_start = models.DateField(null=True, blank=True, help_text="DAYS windows count from this date.")
    week_start_day = models.CharField(
        max_length=10, choices=choices.Weekday.choices, default=choices.Weekday.MONDAY
    )
    limit_value = models.DecimalField(**POINTS)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["org_id", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(limit_value__gte=0), name="constraint_limit_not_negative"),
            models.CheckConstraint(condition=Q(interval__gte=1), name="constraint_interval_positive"),
            models.CheckConstraint(
                condition=(
                    Q(level__in=["REWARD", "CUSTOMER"], reward__isnull=False, redemption_type="")
                    | Q(level="CUSTOMER_REDEMPTION_TYPE", reward__isnull=True) & ~Q(redemption_type="")
                ),
                name="constraint_level_matches_target",
            ),
        ]
        indexes = [
            # The engine's limit look-up (issuance.services._constraints_for) is "the rewards'
            # own limits OR the org's limits of their redemption types": with the reward_id
            # index this makes it a BitmapOr of two index scans instead of a sequential scan of
            # every limit (5,000 limits in the 100k bench: 1.3 ms of database CPU per issue).
            # Not partial: the statement is prepared, and a generic plan (level = $n) could not
            # use an index WHERE level = 'CUSTOMER_REDEMPTION_TYPE'.
            models.Index(fields=["org", "level", "redemption_type"], name="constraint_org_level_type"),
        ]

    def __str__(self) -> str:
        target = f"reward {self.reward_id}" if self.reward_id else self.redemption_type
        return f"{self.level} {self.kpi} ≤ {self.limit_value} per {self.interval} {self.frequency} ({target})"


class CustomFieldDefinition(models.Model):
    org = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="custom_field_definitions")
    name = models.CharField(max_length=100)
    scope = models.CharField(max_length=24, choices=choices.CustomFieldScope.choices)
    field_type = models.CharField(max_length=10, choices=choices.CustomFieldType.choices)
    enum_values = models.JSONField(default=list, blank=True, help_text="ENUM: at most 30 values of ≤ 80 characters.")
    default_value = models.CharField(max_length=255, blank=True)
    is_mandatory = models.BooleanField(default=False)

    class Meta:
        ordering = ["org_id", "scope", "name"]
        constraints = [
            models.UniqueConstraint(fields=["org", "scope", "name"], name="custom_field_unique_name_per_scope")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.scope}, {self.field_type})"

    def clean(self) -> None:
        from .validation import custom_field_definition_errors

        errors = custom_field_definition_errors(self)
        if errors:
            raise ValidationError(errors)


class FulfillmentStatus(models.Model):
    org = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="fulfillment_statuses")
    name = models.CharField(max_length=50)
    enabled = models.BooleanField(default=True)
    position = models.PositiveIntegerField(default=0, help_text="Order in which statuses are normally reached.")

    class Meta:
        ordering = ["org_id", "position", "name"]
        verbose_name_plural = "fulfillment statuses"
        constraints = [models.UniqueConstraint(fields=["org", "name"], name="fulfillment_status_unique_per_org")]

    def __str__(self) -> str:
        return self.name


# ---------------------------------------------------------------- the rewards' listing cache

# R6's four kinds of targets and the table linking a reward to its targets of each kind:
# what Reward.targeting is computed from (catalogue.selectors.reward_targeting_expression)
# and what issuance.eligibility.eligible_rewards_q reads it against.
TARGETING_LINKS: dict[str, type[models.Model]] = {
    choices.TargetingKind.SEGMENTS: RewardSegmentTarget,
    choices.TargetingKind.CARD_SERIES: Reward.card_series.through,
    choices.TargetingKind.LABELS: Reward.labels.through,
    choices.TargetingKind.TIERS: Reward.target_tiers.through,
}


@contextlib.contextmanager
def _write_transaction(instance: models.Model, using: str | None):
    """The database ``instance`` is written to, inside a transaction (no savepoint within an
    outer one): a row and the listing cache it changes are committed together."""
    alias = using or router.db_for_write(type(instance), instance=instance)
    with transaction.atomic(using=alias, savepoint=False):
        yield alias


def _listing_refresh(reward_ids, *, using: str) -> None:
    from .services import reward_listing_refresh  # services import the models

    reward_listing_refresh(reward_ids=reward_ids, using=using)


class CatalogueVersion(models.Model):
    """One row (id 1): a number that changes with every statement that writes a table the
    list API shows (``LIST_TABLES``), so that catalogue.list_index can keep what it built
    for as long as the number stays. On PostgreSQL a statement trigger on each of those
    tables sets it from a sequence, before the statement runs (migration 0005): the number
    commits with the write, is never reused after a rollback, and the first catalogue write
    of a transaction locks this row before any row of the catalogue (so catalogue writers
    queue here rather than deadlock). Not maintained on SQLite, where the list index is off."""

    value = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = "catalogue version"


# The tables whose rows the list API shows or filters on: a write to any of them changes
# CatalogueVersion (their triggers: migration 0005; tests/test_list_index.py checks the two agree).
LIST_TABLES = (
    Reward,
    Reward.categories.through,
    Reward.groups.through,
    Reward.card_series.through,
    Reward.labels.through,
    Reward.target_tiers.through,
    RewardSegmentTarget,
    RewardMedia,
    RewardLanguageContent,
    PaymentConfig,
    RewardConstraint,
    Category,
    RewardGroup,
    Label,
    CardSeries,
    Tier,
    Brand,
)
