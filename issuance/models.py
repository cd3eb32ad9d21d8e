"""Points accounts, the append-only ledger, and what was issued.

Invariants (checked by ``issuance.ledger.account_check`` and the tests):
- ``PointsAccount.balance == opening_balance + sum(LedgerEntry.amount)`` for every account;
  both change only together, inside one transaction holding the account's row lock.
- ``PointsAccount.held`` is the sum of ``held_points`` of the account's PENDING lines.
- A coupon code appears on at most one issued unit per series (database constraint).
"""

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q

from catalogue.choices import LedgerEntryKind, OwnerType, PaymentMode, RedemptionType
from catalogue.models import (
    POINTS,
    Brand,
    CartPromotion,
    CouponSeries,
    Customer,
    CustomerGroup,
    FulfillmentStatus,
    Organisation,
    PaymentConfig,
    Reward,
    Till,
)


class PointsAccount(models.Model):
    """A customer's or a customer group's points. Lock it (select_for_update) before
    reading its balance for a change."""

    org = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="points_accounts")
    customer = models.OneToOneField(
        Customer, null=True, blank=True, on_delete=models.PROTECT, related_name="points_account"
    )
    group = models.OneToOneField(
        CustomerGroup, null=True, blank=True, on_delete=models.PROTECT, related_name="points_account"
    )
    opening_balance = models.DecimalField(**POINTS, default=0)
    balance = models.DecimalField(**POINTS, default=0)
    held = models.DecimalField(**POINTS, default=0, help_text="Reserved by PENDING (vendor) issuances.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(customer__isnull=False, group__isnull=True) | Q(customer__isnull=True, group__isnull=False),
                name="account_has_one_owner",
            ),
            models.CheckConstraint(condition=Q(balance__gte=0), name="account_balance_not_negative"),
            models.CheckConstraint(condition=Q(held__gte=0), name="account_held_not_negative"),
            models.CheckConstraint(condition=Q(held__lte=models.F("balance")), name="account_held_within_balance"),
        ]

    def __str__(self) -> str:
        owner = f"customer {self.customer_id}" if self.customer_id else f"group {self.group_id}"
        return f"Account {self.pk} ({owner})"

    @property
    def available(self):
        return self.balance - self.held


class LedgerEntry(models.Model):
    """One change to a balance. Never updated or deleted: a reversal is a new row."""

    account = models.ForeignKey(PointsAccount, on_delete=models.PROTECT, related_name="entries")
    kind = models.CharField(max_length=12, choices=LedgerEntryKind.choices)
    amount = models.DecimalField(**POINTS, help_text="Signed: credits positive, debits negative.")
    balance_after = models.DecimalField(**POINTS)
    reference_id = models.CharField(max_length=32, unique=True, help_text="pointsReferenceId")
    reason = models.CharField(max_length=500)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    line = models.ForeignKey(
        "IssuanceLine", null=True, blank=True, on_delete=models.PROTECT, related_name="ledger_entries"
    )
    reverses = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversed_by"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["account_id", "id"]
        verbose_name_plural = "ledger entries"
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="ledger_amount_not_zero"),
            models.CheckConstraint(condition=Q(balance_after__gte=0), name="ledger_balance_after_not_negative"),
            models.CheckConstraint(
                condition=~Q(kind__in=["CREDIT"]) | Q(amount__gt=0), name="ledger_credit_positive"
            ),
            models.CheckConstraint(
                condition=~Q(kind__in=["DEBIT", "REDEMPTION"]) | Q(amount__lt=0), name="ledger_debit_negative"
            ),
        ]
        indexes = [models.Index(fields=["account", "-created_at"], name="ledger_account_recent")]

    def __str__(self) -> str:
        return f"{self.reference_id} {self.amount:+}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not self._state.adding:
            raise RuntimeError("ledger entries are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise RuntimeError("ledger entries are append-only")


class Channel(models.TextChoices):
    API = "API"
    STAFF = "STAFF"
    BULK_UPLOAD = "BULK_UPLOAD"


class IssuanceStatus(models.TextChoices):
    SUCCESS = "SUCCESS"
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"
    PENDING = "PENDING"


class Issuance(models.Model):
    """One issue call (single, bulk or v1.1): who asked, for whom, on which till."""

    org = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="issuances")
    till = models.ForeignKey(Till, on_delete=models.PROTECT, related_name="issuances")
    brand = models.ForeignKey(Brand, null=True, blank=True, on_delete=models.PROTECT, related_name="issuances")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="issuances")
    account = models.ForeignKey(PointsAccount, on_delete=models.PROTECT, related_name="issuances")
    group = models.ForeignKey(
        CustomerGroup, null=True, blank=True, on_delete=models.PROTECT, related_name="issuances"
    )
    group_loyalty_redemption = models.BooleanField(default=False)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="issuances")
    channel = models.CharField(max_length=12, choices=Channel.choices, default=Channel.API)
    owner_type = models.CharField(max_length=20, choices=OwnerType.choices, blank=True)
    reason = models.CharField(max_length=500, blank=True, help_text="Mandatory for goodwill.")
    transaction_number = models.CharField(max_length=254, blank=True)
    notes = models.TextField(blank=True)
    program_id = models.BigIntegerField(null=True, blank=True)
    event_log_id = models.TextField(blank=True)
    event_date_time = models.DateTimeField(null=True, blank=True)
    params = models.JSONField(encoder=DjangoJSONEncoder, null=True, blank=True)
    status = models.CharField(max_length=10, choices=IssuanceStatus.choices)
    response_code = models.IntegerField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [
            ("api_issue", "Can issue and list rewards through the API"),
            ("staff_issue", "Can issue goodwill rewards from the staff pages"),
            ("approve_goodwill", "Can approve another staff member's goodwill issue"),
        ]
        indexes = [
            models.Index(fields=["org", "-created_at"], name="issuance_org_recent"),
            models.Index(fields=["customer", "-created_at"], name="issuance_customer_recent"),
        ]

    def __str__(self) -> str:
        return f"Issuance {self.pk} ({self.status})"


class LineStatus(models.TextChoices):
    ISSUED = "ISSUED"
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"
    PENDING = "PENDING"


class IssuanceLine(models.Model):
    """One reward of an issue call; its id is the response's ``transactionId``."""

    issuance = models.ForeignKey(Issuance, on_delete=models.PROTECT, related_name="lines")
    org = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="+")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="issuance_lines")
    reward = models.ForeignKey(Reward, on_delete=models.PROTECT, related_name="issuance_lines")
    redemption_type = models.CharField(max_length=32, choices=RedemptionType.choices)
    request_id = models.TextField(null=True, blank=True)
    requested_quantity = models.PositiveIntegerField()
    quantity = models.PositiveIntegerField(default=0, help_text="Units actually issued.")
    planned_units = models.PositiveIntegerField(
        default=0, help_text="Units the price was for (R4: one unit for a CONV_RATIO quantity-as-value line)."
    )
    status = models.CharField(max_length=10, choices=LineStatus.choices)
    error_code = models.IntegerField(null=True, blank=True)
    error_message = models.TextField(blank=True)
    payment_config = models.ForeignKey(
        PaymentConfig, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    payment_mode = models.CharField(max_length=16, choices=PaymentMode.choices, blank=True)
    conversion_ratio = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    points_per_unit = models.DecimalField(**POINTS, default=0)
    redemption_value = models.DecimalField(**POINTS, null=True, blank=True, help_text="Per unit.")
    total_points = models.DecimalField(**POINTS, default=0, help_text="Points actually deducted.")
    held_points = models.DecimalField(**POINTS, default=0, help_text="Points reserved while PENDING.")
    pending_units = models.PositiveIntegerField(default=0, help_text="Units being fetched from the vendor.")
    tender = models.JSONField(encoder=DjangoJSONEncoder, null=True, blank=True)
    custom_fields = models.JSONField(encoder=DjangoJSONEncoder, null=True, blank=True)
    params = models.JSONField(encoder=DjangoJSONEncoder, null=True, blank=True)
    event_log_id = models.TextField(null=True, blank=True)
    fulfillment_status = models.ForeignKey(
        FulfillmentStatus, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    needs_attention = models.BooleanField(default=False, help_text="Flagged for staff by recovery.")
    diagnostic = models.TextField(blank=True, help_text="What went wrong, for staff (never sent to clients).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__lte=models.F("requested_quantity")), name="line_quantity_within_request"
            ),
            models.CheckConstraint(condition=Q(total_points__gte=0), name="line_points_not_negative"),
            models.CheckConstraint(condition=Q(held_points__gte=0), name="line_held_not_negative"),
            models.CheckConstraint(
                condition=Q(status="PENDING") | Q(held_points=0, pending_units=0), name="line_holds_only_while_pending"
            ),
        ]
        indexes = [
            # Limits (R6): per customer and reward, per reward, per customer and type, in a window.
            models.Index(fields=["customer", "reward", "created_at"], name="line_customer_reward_time"),
            models.Index(fields=["reward", "created_at"], name="line_reward_time"),
            models.Index(fields=["customer", "redemption_type", "created_at"], name="line_customer_type_time"),
            models.Index(fields=["org", "request_id"], name="line_org_request_id"),
            models.Index(fields=["status", "created_at"], name="line_status_time"),
        ]

    def __str__(self) -> str:
        return f"Line {self.pk}: reward {self.reward_id} × {self.quantity}/{self.requested_quantity} ({self.status})"


class RewardUsage(models.Model):
    """What a reward's counted lines (ISSUED, PARTIAL, PENDING) add up to per UTC hour of their
    ``created_at``, for every customer together: the REWARD-level limits (R6) read these sums
    instead of every line in their window (issuance.limits). Derived data, written only by
    PostgreSQL itself: statement triggers on ``IssuanceLine`` add what each INSERT, UPDATE and
    DELETE adds or takes away (migration 0007), whatever code path wrote the lines. Empty
    elsewhere (SQLite reads the lines)."""

    pk = models.CompositePrimaryKey("reward", "hour")
    reward = models.ForeignKey(Reward, on_delete=models.CASCADE, db_constraint=False, db_index=False, related_name="+")
    hour = models.DateTimeField(help_text="The UTC hour the lines were created in (its start).")
    units = models.BigIntegerField(help_text="Σ quantity + pending_units.")
    value = models.DecimalField(max_digits=30, decimal_places=4,
                                help_text="Σ a line's contribution to a REDEMPTION_VALUE limit.")

    class Meta:
        ordering = ["reward", "hour"]

    def __str__(self) -> str:
        return f"Reward {self.reward_id} at {self.hour:%Y-%m-%d %H}:00 UTC: {self.units} units, {self.value}"


class IssuedUnit(models.Model):
    """One issued unit of a line: a coupon code, a vendor voucher, a promotion or a value."""

    line = models.ForeignKey(IssuanceLine, on_delete=models.PROTECT, related_name="units")
    coupon_series = models.ForeignKey(
        CouponSeries, null=True, blank=True, on_delete=models.PROTECT, related_name="issued_units"
    )
    coupon_code = models.CharField(max_length=64, null=True, blank=True)
    code_expiry = models.DateTimeField(null=True, blank=True)
    promotion = models.ForeignKey(
        CartPromotion, null=True, blank=True, on_delete=models.PROTECT, related_name="issued_units"
    )
    vendor_response = models.JSONField(
        encoder=DjangoJSONEncoder, null=True, blank=True, help_text="The vendor entry of the response."
    )
    vendor_reference = models.CharField(
        max_length=64, blank=True, help_text="The reference sent to the vendor for this unit (line-unit)."
    )
    points = models.DecimalField(**POINTS, default=0)
    redemption_value = models.DecimalField(**POINTS, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["line_id", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["coupon_series", "coupon_code"],
                condition=Q(coupon_code__isnull=False),
                name="issued_code_once_per_series",
            ),
            models.CheckConstraint(
                condition=Q(coupon_code__isnull=True) | Q(coupon_series__isnull=False), name="issued_code_has_series"
            ),
        ]


class FulfillmentChange(models.Model):
    """History of a line's fulfillment status."""

    line = models.ForeignKey(IssuanceLine, on_delete=models.CASCADE, related_name="fulfillment_history")
    from_status = models.ForeignKey(
        FulfillmentStatus, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    to_status = models.ForeignKey(FulfillmentStatus, on_delete=models.PROTECT, related_name="+")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["line_id", "created_at", "id"]


class IdempotencyState(models.TextChoices):
    IN_FLIGHT = "IN_FLIGHT"
    DONE = "DONE"


class IdempotencyRecord(models.Model):
    """R8: the first attempt with a requestId stores its payload's fingerprint and, once
    done, its exact response text, so replays answer byte for byte."""

    org = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="+")
    request_id = models.TextField()
    fingerprint = models.CharField(max_length=64)
    shape = models.CharField(max_length=10, default="bulk", help_text="Response shape: single, bulk or connected.")
    state = models.CharField(max_length=10, choices=IdempotencyState.choices, default=IdempotencyState.IN_FLIGHT)
    line = models.ForeignKey(IssuanceLine, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True, help_text="Exact JSON text of the stored result.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["org", "request_id"], name="idempotency_unique_per_org"),
        ]


class ValidationCode(models.Model):
    """R3: a one-time code issued to a customer (see issuance.validation_codes)."""

    org = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="+")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="validation_codes")
    nonce = models.CharField(max_length=64, help_text="The code is an HMAC of this under SECRET_KEY; never stored.")
    expires_at = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=0)
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["customer", "expires_at"], name="validation_code_customer")]
