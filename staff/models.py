"""Goodwill requests waiting for a second staff member, and bulk goodwill jobs.

Nothing here issues anything: every issue goes through ``issuance.services.rewards_issue``
(see staff/services.py). These rows record who asked, who decided, and which
``IssuanceLine`` came out of it.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from catalogue.models import POINTS, Customer, Organisation, PaymentConfig, Reward, Till
from issuance.models import IssuanceLine

from .choices import BulkJobStatus, BulkRowStatus, GoodwillStatus


class GoodwillRequest(models.Model):
    """A goodwill issue above the org's ``goodwill_approval_threshold``: issued only when a
    second staff member (not the requester) approves it, re-priced at that moment."""

    org = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="+")
    requester = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="goodwill_requests")
    reward = models.ForeignKey(Reward, on_delete=models.PROTECT, related_name="+")
    till = models.ForeignKey(Till, on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField()
    payment_config = models.ForeignKey(
        PaymentConfig, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    redemption_value = models.DecimalField(**POINTS, null=True, blank=True, help_text="CONV_RATIO: value per unit.")
    reason = models.CharField(max_length=500)
    points_quoted = models.DecimalField(**POINTS, help_text="Points of the dry run the requester saw.")
    points_charged = models.DecimalField(**POINTS, null=True, blank=True, help_text="Points actually deducted.")
    status = models.CharField(max_length=10, choices=GoodwillStatus.choices, default=GoodwillStatus.PENDING)
    submit_token = models.CharField(max_length=64, unique=True, help_text="One request per confirmed preview.")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.CharField(max_length=500, blank=True)
    line = models.ForeignKey(IssuanceLine, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    result_code = models.IntegerField(null=True, blank=True)
    result_message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gte=1), name="goodwill_quantity_positive"),
            models.CheckConstraint(
                condition=Q(status="PENDING") | Q(decided_by__isnull=False), name="goodwill_decided_has_decider"
            ),
            models.CheckConstraint(
                condition=~Q(decided_by=models.F("requester")), name="goodwill_not_decided_by_requester"
            ),
        ]
        indexes = [models.Index(fields=["org", "status", "-created_at"], name="goodwill_org_status")]

    def __str__(self) -> str:
        return f"Goodwill request {self.pk} ({self.status})"

    @property
    def request_id(self) -> str:
        """The engine requestId: approving twice can never issue twice."""
        return f"goodwill-{self.pk}"


class BulkJob(models.Model):
    """One uploaded CSV of goodwill rows, issued row by row by a worker (staff/worker.py)."""

    org = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="+")
    till = models.ForeignKey(Till, on_delete=models.PROTECT, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    file_name = models.CharField(max_length=255)
    status = models.CharField(max_length=10, choices=BulkJobStatus.choices, default=BulkJobStatus.VALIDATED)
    total_rows = models.PositiveIntegerField(default=0)
    invalid_rows = models.PositiveIntegerField(default=0)
    # The worker holding the job renews this while it works; an expired lease means the
    # worker died and any worker may resume the job.
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "lease_until"], name="bulkjob_status_lease")]

    def __str__(self) -> str:
        return f"Bulk job {self.pk} ({self.file_name})"


class BulkJobRow(models.Model):
    job = models.ForeignKey(BulkJob, on_delete=models.CASCADE, related_name="rows")
    row_number = models.PositiveIntegerField(help_text="Data row of the file, 1-based (the header is row 0).")
    identifier = models.CharField(max_length=254)
    identifier_kind = models.CharField(max_length=12, blank=True, help_text="mobile, email or external_id")
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    reward_ref = models.CharField(max_length=255)
    reward = models.ForeignKey(Reward, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField(default=0)
    payment_config = models.ForeignKey(
        PaymentConfig, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=500, blank=True)
    request_id = models.CharField(max_length=200)
    status = models.CharField(max_length=8, choices=BulkRowStatus.choices)
    errors = models.TextField(blank=True, help_text="Why the row is invalid (validation report).")
    attempts = models.PositiveSmallIntegerField(default=0)
    result_code = models.IntegerField(null=True, blank=True)
    result_message = models.TextField(blank=True)
    line = models.ForeignKey(IssuanceLine, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    quantity_issued = models.PositiveIntegerField(default=0)
    points = models.DecimalField(**POINTS, default=0)
    coupon_codes = models.TextField(blank=True)
    vouchers = models.TextField(blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job_id", "row_number"]
        constraints = [
            models.UniqueConstraint(fields=["job", "row_number"], name="bulk_row_unique_number"),
            models.UniqueConstraint(fields=["job", "request_id"], name="bulk_row_unique_request_id"),
        ]
        indexes = [models.Index(fields=["job", "status", "row_number"], name="bulk_row_job_status")]

    def __str__(self) -> str:
        return f"Row {self.row_number} of job {self.job_id} ({self.status})"
