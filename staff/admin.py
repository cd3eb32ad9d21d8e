"""Goodwill requests and bulk goodwill jobs in the Django admin: to look things up, never to
change them.

Both are written by the staff pages' services only (``staff.services``: submit, approve,
reject; upload, start, resume, retry, cancel) and by the bulk worker, which hold the rules (a
second person's approval, re-pricing, leases, requestIds). So here, for everyone including
superusers: no add, no change, no delete. A request or a job is the audit trail of what was
issued, by whom and on whose approval; the issued lines point back at it (``PROTECT``), and
deleting a job would drop its rows, with the running worker's lease, under the worker's feet.

Scoping is the catalogue's ``OrgScopedMixin`` (through ``ScopedAdmin``): a staff member who
is not a superuser sees the rows of their profile's org only, in lists, search and change
pages (another org's id answers like an unknown one); the org list filter is hidden from them.
Seeing these pages needs ``staff.view_goodwillrequest`` / ``staff.view_bulkjob``.
"""

import re

from django.contrib import admin
from django.db.models import Count, Q
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from catalogue.admin import ScopedAdmin, ViewOnlyAdminMixin
from catalogue.models import Customer

from .choices import BulkRowStatus
from .models import BulkJob, BulkJobRow, GoodwillRequest

# requestIds the staff pages give the engine (docs/staff-pages.md).
GOODWILL_REQUEST_ID = re.compile(r"goodwill-(\d{1,18})")
STAFF_REQUEST_ID = re.compile(r"staff-(.{1,64})")
BULK_REQUEST_ID = re.compile(r"bulk-(\d{1,18})-\d{1,9}")


class StaffRecordAdmin(ViewOnlyAdminMixin, ScopedAdmin):
    """Read-only, org-scoped (see the module docstring)."""

    show_full_result_count = False
    ordering = ("-created_at", "-id")


def _customers_matching(term: str):
    """Customers whose mobile, email (any case) or external id is ``term``: a subquery."""
    return Customer.objects.filter(Q(mobile=term) | Q(email__iexact=term) | Q(external_id=term)).values("pk")


@admin.register(GoodwillRequest)
class GoodwillRequestAdmin(StaffRecordAdmin):
    list_display = (
        "id",
        "status",
        "org",
        "customer",
        "reward",
        "quantity",
        "points_quoted",
        "points_charged",
        "requested_by",
        "decided_by_display",
        "created_at",
        "decided_at",
    )
    list_select_related = ("org", "customer", "reward", "requester", "decided_by")
    list_filter = ("status", "org", "created_at", "decided_at")
    # Also found by: its requestId (goodwill-{id}, staff-{token}), a customer's mobile, email
    # or external id (get_search_results), digits = its id (OrgScopedMixin).
    search_fields = ("=submit_token",)
    search_help_text = "requestId (goodwill-…, staff-…), customer mobile / email / external id, or the request id."
    fieldsets = (
        (None, {"fields": ("status", "org", "customer", "reward", "quantity", "till", "staff_page")}),
        ("Price", {"fields": ("payment_config", "redemption_value", "points_quoted", "points_charged")}),
        ("Who", {"fields": ("requester", "reason", "created_at", "decided_by", "decided_at", "decision_note")}),
        ("Result", {"fields": ("request_id", "line", "result_code", "result_message", "updated_at")}),
    )
    readonly_fields = ("staff_page", "request_id", "created_at", "updated_at")

    def get_queryset(self, request):
        # The change page reads each relation it shows: joined here, one query in all.
        return (
            super()
            .get_queryset(request)
            .select_related("org", "customer", "reward", "till", "payment_config", "requester", "decided_by", "line")
        )

    def get_search_results(self, request, queryset, search_term):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if not term:
            return results, may_have_duplicates
        extra = Q(customer__in=_customers_matching(term))
        if match := GOODWILL_REQUEST_ID.fullmatch(term):
            extra |= Q(pk=int(match[1]))
        if match := STAFF_REQUEST_ID.fullmatch(term):
            extra |= Q(submit_token=match[1])
        return results | queryset.filter(extra), may_have_duplicates

    @admin.display(description="requested by", ordering="requester__username")
    def requested_by(self, obj):
        return obj.requester

    @admin.display(description="approved / rejected by", ordering="decided_by__username")
    def decided_by_display(self, obj):
        return obj.decided_by or "—"

    @admin.display(description="requestId")
    def request_id(self, obj):
        return obj.request_id

    @admin.display(description="staff page")
    def staff_page(self, obj):
        url = reverse("staff:goodwill_request", args=[obj.pk])
        return format_html('<a href="{}">{}</a> (approve or reject there)', url, url)


@admin.register(BulkJob)
class BulkJobAdmin(StaffRecordAdmin):
    list_display = (
        "id",
        "file_name",
        "status",
        "org",
        "till",
        "requested_by",
        "total_rows",
        "invalid_rows",
        "created_at",
        "started_at",
        "finished_at",
    )
    list_select_related = ("org", "till", "created_by")
    list_filter = ("status", "org", "created_at")
    # Also found by a row's requestId or a row's customer (mobile, email, external id, as
    # given in the file or resolved): get_search_results; digits = the job's id.
    search_fields = ("=file_name",)
    search_help_text = (
        "File name, a row's requestId (bulk-…-… or the file's), a customer's mobile / email / external id, "
        "or the job id."
    )
    fieldsets = (
        (None, {"fields": ("status", "org", "till", "created_by", "file_name", "staff_page")}),
        ("Rows", {"fields": ("total_rows", "invalid_rows", "rows_by_status")}),
        ("When", {"fields": ("created_at", "started_at", "finished_at", "lease_owner", "lease_until")}),
    )
    readonly_fields = ("staff_page", "rows_by_status", "created_at")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("org", "till", "created_by")

    def get_search_results(self, request, queryset, search_term):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if not term:
            return results, may_have_duplicates
        if match := BULK_REQUEST_ID.fullmatch(term):
            rows = BulkJobRow.objects.filter(job_id=int(match[1]), request_id=term)
        else:
            # No index leads on a row's requestId or identifier: this reads the rows of the
            # jobs in scope (the user's org, the list filters), through the (job, …) index.
            rows = BulkJobRow.objects.filter(
                Q(request_id=term) | Q(identifier=term) | Q(customer__in=_customers_matching(term)),
                job_id__in=queryset.order_by().values("pk"),
            )
        jobs = rows.order_by().values("job_id")
        return results | queryset.filter(pk__in=jobs), may_have_duplicates

    @admin.display(description="requested by", ordering="created_by__username")
    def requested_by(self, obj):
        return obj.created_by

    @admin.display(description="rows by status")
    def rows_by_status(self, obj):
        counts = dict(
            BulkJobRow.objects.filter(job=obj).order_by().values_list("status").annotate(n=Count("id"))
        )
        shown = [(BulkRowStatus(s).label, counts[s]) for s in BulkRowStatus.values if counts.get(s)]
        return format_html_join(", ", "{}: {}", shown) or "no rows"

    @admin.display(description="staff page")
    def staff_page(self, obj):
        url = reverse("staff:bulk_job", args=[obj.pk])
        result = reverse("staff:bulk_result", args=[obj.pk])
        return format_html(
            '<a href="{}">{}</a> (start, resume, retry, cancel there); <a href="{}">result CSV</a>', url, url, result
        )
