"""Issuance admin: accounts, the ledger and what was issued.

The ledger and the transaction records are read-only here (no add, change or delete): they
are written by the issuance engine and by ``issuance.ledger`` only. A points account is
changed in one way, the "credit / debit points" form (per account, or as an action on the
selected accounts), which calls ``points_credit`` / ``points_debit`` with the staff member as
actor and a mandatory reason.
"""

from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html, format_html_join

from catalogue.admin import ScopedAdmin, ScopedTabularInline, ViewOnlyAdminMixin, admin_link, changelist_link
from catalogue.models import POINTS

from .ledger import LedgerError, points_credit, points_debit
from .models import (
    FulfillmentChange,
    IdempotencyRecord,
    Issuance,
    IssuanceLine,
    IssuedUnit,
    LedgerEntry,
    PointsAccount,
    ValidationCode,
)

RECENT_ENTRIES_SHOWN = 20
# One credit/debit request locks every selected account until it commits; keep it small.
MAX_ACCOUNTS_PER_ADJUSTMENT = 100


class PointsAdjustmentForm(forms.Form):
    CREDIT, DEBIT = "credit", "debit"

    operation = forms.ChoiceField(choices=((CREDIT, "Credit (add points)"), (DEBIT, "Debit (take points away)")))
    amount = forms.DecimalField(
        max_digits=POINTS["max_digits"], decimal_places=POINTS["decimal_places"], min_value=Decimal("0.0001")
    )
    reason = forms.CharField(
        max_length=LedgerEntry._meta.get_field("reason").max_length,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text="Recorded on the ledger entry with your name.",
    )


def adjust_accounts(*, account_ids: list[int], operation: str, amount: Decimal, reason: str, actor) -> list:
    """Credit or debit every account, all or none: the ledger calls nest in one transaction
    and lock the accounts in primary-key order; a LedgerError rolls every entry back."""
    change = points_credit if operation == PointsAdjustmentForm.CREDIT else points_debit
    with transaction.atomic():
        return [
            change(account_id=account_id, amount=amount, reason=reason, actor=actor)
            for account_id in sorted(account_ids)
        ]


class PointsAccountAddForm(forms.ModelForm):
    class Meta:
        model = PointsAccount
        fields = ("customer", "group")

    def clean(self):
        cleaned = super().clean()
        if bool(cleaned.get("customer")) == bool(cleaned.get("group")):
            raise forms.ValidationError("An account belongs to a customer or to a group: choose exactly one.")
        return cleaned


@admin.register(PointsAccount)
class PointsAccountAdmin(ScopedAdmin):
    list_display = ("id", "owner", "org", "balance", "held", "available_points", "updated_at")
    list_select_related = ("org", "customer", "group")
    list_filter = ("org",)
    search_fields = (
        "=customer__mobile",
        "=customer__email",
        "=customer__external_id",
        "group__name",
        "=group__external_id",
    )
    autocomplete_fields = ("customer", "group")
    actions = ("adjust_points",)
    change_fields = (
        "org",
        "owner",
        "opening_balance",
        "balance",
        "held",
        "available_points",
        "updated_at",
        "recent_entries",
    )

    # Balances move only through the ledger: the change page is read-only (no change
    # permission); credits and debits go through the adjustment form, gated by the
    # "change points account" model permission.
    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_adjust_permission(self, request, obj=None):
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    def get_fields(self, request, obj=None):
        return ("customer", "group") if obj is None else self.change_fields

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.change_fields

    def save_model(self, request, obj, form, change):
        owner = obj.customer or obj.group
        obj.org_id = owner.org_id
        super().save_model(request, obj, form, change)

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = PointsAccountAddForm
        return super().get_form(request, obj, change, **kwargs)

    def get_urls(self):
        return [
            path(
                "<path:object_id>/points/",
                self.admin_site.admin_view(self.adjust_points_view),
                name="issuance_pointsaccount_adjust_points",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "can_adjust_points": self.has_adjust_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="owner")
    def owner(self, obj):
        return obj.customer or obj.group

    @admin.display(description="available")
    def available_points(self, obj):
        return obj.available

    @admin.display(description=f"latest {RECENT_ENTRIES_SHOWN} ledger entries")
    def recent_entries(self, obj):
        entries = obj.entries.select_related("actor").order_by("-id")[:RECENT_ENTRIES_SHOWN]
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    admin_link(e, e.reference_id),
                    e.created_at,
                    e.kind,
                    e.amount,
                    e.balance_after,
                    e.actor or "",
                    e.reason,
                )
                for e in entries
            ),
        )
        if not rows:
            return "no entries"
        return format_html(
            "<table><thead><tr><th>reference</th><th>when</th><th>kind</th><th>amount</th><th>balance after</th>"
            "<th>by</th><th>reason</th></tr></thead><tbody>{}</tbody></table><p>{}</p>",
            rows,
            changelist_link(LedgerEntry, "all entries of this account", account__id__exact=obj.pk),
        )

    @admin.action(description="Credit or debit points of the selected accounts", permissions=["adjust"])
    def adjust_points(self, request, queryset):
        accounts = list(queryset.select_related("customer", "group").order_by("pk")[: MAX_ACCOUNTS_PER_ADJUSTMENT + 1])
        if len(accounts) > MAX_ACCOUNTS_PER_ADJUSTMENT:
            self.message_user(
                request, f"Select at most {MAX_ACCOUNTS_PER_ADJUSTMENT} accounts at a time.", messages.ERROR
            )
            return None
        form = PointsAdjustmentForm(request.POST if "apply" in request.POST else None)
        if form.is_valid() and self._adjust(request, form, accounts):
            return None  # back to the changelist, with the message
        return self._adjust_page(request, form, accounts, action=True)

    def adjust_points_view(self, request, object_id):
        account = self.get_object(request, unquote(object_id))
        if account is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_adjust_permission(request, account):
            raise PermissionDenied
        form = PointsAdjustmentForm(request.POST if request.method == "POST" else None)
        if form.is_valid() and self._adjust(request, form, [account]):
            return redirect("admin:issuance_pointsaccount_change", account.pk)
        return self._adjust_page(request, form, [account], action=False)

    def _adjust(self, request, form, accounts) -> bool:
        data = form.cleaned_data
        try:
            entries = adjust_accounts(
                account_ids=[a.pk for a in accounts],
                operation=data["operation"],
                amount=data["amount"],
                reason=data["reason"],
                actor=request.user,
            )
        except LedgerError as exc:
            self.message_user(request, f"Nothing was changed: {exc}", messages.ERROR)
            return False
        verb = "Credited" if data["operation"] == PointsAdjustmentForm.CREDIT else "Debited"
        refs = ", ".join(e.reference_id for e in entries)
        self.message_user(
            request, f"{verb} {data['amount']} points on {len(entries)} account(s) (ledger {refs}).", messages.SUCCESS
        )
        return True

    def _adjust_page(self, request, form, accounts, *, action: bool):
        context = {
            **self.admin_site.each_context(request),
            "title": "Credit or debit points",
            "opts": self.opts,
            "form": form,
            "accounts": accounts,
            "action": action,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "original": accounts[0] if not action else None,
        }
        return TemplateResponse(request, "admin/issuance/pointsaccount/adjust_points.html", context)


class ReadOnlyAdmin(ViewOnlyAdminMixin, ScopedAdmin):
    """The ledger and the transaction records: written by services, only shown here."""


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    org_path = "account__org"
    list_display = ("reference_id", "created_at", "account", "kind", "amount", "balance_after", "actor", "reason")
    list_select_related = ("account", "actor")
    list_filter = ("kind", "created_at")
    search_fields = ("=reference_id", "=account__customer__mobile", "=account__customer__external_id")
    ordering = ("-id",)
    show_full_result_count = False


class IssuanceLineInline(ViewOnlyAdminMixin, ScopedTabularInline):
    model = IssuanceLine
    org_path = "org"
    fields = (
        "line_link",
        "reward",
        "status",
        "requested_quantity",
        "quantity",
        "payment_mode",
        "total_points",
        "error_code",
        "error_message",
    )
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("reward")

    @admin.display(description="transaction id")
    def line_link(self, obj):
        return admin_link(obj, obj.pk)


@admin.register(Issuance)
class IssuanceAdmin(ReadOnlyAdmin):
    list_display = ("id", "created_at", "status", "response_code", "customer", "till", "channel", "actor", "org")
    list_select_related = ("org", "customer", "till", "actor")
    list_filter = ("status", "channel", "group_loyalty_redemption", "org")
    search_fields = ("=customer__mobile", "=customer__email", "=customer__external_id", "=transaction_number")
    ordering = ("-created_at", "-id")
    show_full_result_count = False
    inlines = (IssuanceLineInline,)


class IssuedUnitInline(ViewOnlyAdminMixin, ScopedTabularInline):
    model = IssuedUnit
    org_path = "line__org"
    fields = ("coupon_series", "coupon_code", "code_expiry", "promotion", "points", "redemption_value")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("coupon_series", "promotion")


class FulfillmentChangeInline(ViewOnlyAdminMixin, ScopedTabularInline):
    model = FulfillmentChange
    org_path = "line__org"
    fields = ("created_at", "from_status", "to_status", "actor", "note")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("from_status", "to_status", "actor")


@admin.register(IssuanceLine)
class IssuanceLineAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "created_at",
        "status",
        "reward",
        "customer",
        "redemption_type",
        "quantity_issued",
        "total_points",
        "error_code",
        "fulfillment_status",
        "needs_attention",
    )
    list_select_related = ("reward", "customer", "fulfillment_status")
    list_filter = ("status", "needs_attention", "redemption_type", "payment_mode", "org")
    search_fields = ("=request_id", "=customer__mobile", "=customer__external_id")
    ordering = ("-created_at", "-id")
    show_full_result_count = False
    inlines = (IssuedUnitInline, FulfillmentChangeInline)

    @admin.display(description="issued / asked")
    def quantity_issued(self, obj):
        return f"{obj.quantity} / {obj.requested_quantity}"


@admin.register(IssuedUnit)
class IssuedUnitAdmin(ReadOnlyAdmin):
    org_path = "line__org"
    list_display = ("id", "line", "coupon_series", "coupon_code", "code_expiry", "promotion", "points", "created_at")
    list_select_related = ("line", "coupon_series", "promotion")
    search_fields = ("=coupon_code",)
    ordering = ("-id",)
    show_full_result_count = False


@admin.register(FulfillmentChange)
class FulfillmentChangeAdmin(ReadOnlyAdmin):
    org_path = "line__org"
    list_display = ("line", "created_at", "from_status", "to_status", "actor", "note")
    list_select_related = ("line", "from_status", "to_status", "actor")
    search_fields = ("note",)
    pk_search_path = "line_id"  # digits find the history of that line (transaction id)


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyAdmin):
    list_display = ("request_id", "org", "state", "http_status", "line", "created_at", "updated_at")
    list_select_related = ("org", "line")
    list_filter = ("state", "org")
    search_fields = ("=request_id",)
    ordering = ("-id",)


@admin.register(ValidationCode)
class ValidationCodeAdmin(ReadOnlyAdmin):
    list_display = ("id", "customer", "org", "expires_at", "attempts", "used_at", "created_at")
    list_select_related = ("customer", "org")
    list_filter = ("org",)
    search_fields = ("=customer__mobile", "=customer__email", "=customer__external_id")
    exclude = ("nonce",)  # the code derives from it: never shown
    ordering = ("-id",)
