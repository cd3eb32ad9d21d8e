from django.db import models


class GoodwillStatus(models.TextChoices):
    PENDING = "PENDING", "Waiting for approval"
    APPROVED = "APPROVED", "Approved, issuing"
    REJECTED = "REJECTED", "Rejected"
    ISSUED = "ISSUED", "Issued"
    FAILED = "FAILED", "Approved, issue failed"


class BulkJobStatus(models.TextChoices):
    VALIDATED = "VALIDATED", "Validated, not started"
    RUNNING = "RUNNING", "Issuing"
    DONE = "DONE", "Done"
    CANCELLED = "CANCELLED", "Cancelled"


class BulkRowStatus(models.TextChoices):
    INVALID = "INVALID", "Invalid (not issued)"
    PENDING = "PENDING", "Waiting"
    ISSUED = "ISSUED", "Issued"
    PARTIAL = "PARTIAL", "Partly issued"
    FAILED = "FAILED", "Failed"
    SKIPPED = "SKIPPED", "Skipped (job cancelled)"


BULK_ROW_FINISHED = (BulkRowStatus.ISSUED, BulkRowStatus.PARTIAL, BulkRowStatus.FAILED, BulkRowStatus.SKIPPED)
