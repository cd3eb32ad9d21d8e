"""Catalogue admin, made for daily use by catalogue administrators.

Conventions of every ModelAdmin here (and in issuance/admin.py):
- changelists run a fixed number of queries whatever the number of rows
  (``list_select_related`` / ``get_queryset``; tests/test_admin.py holds them to it);
- foreign keys and many-to-manys to tables that grow are ``autocomplete_fields``;
- a search term of digits also matches the primary key (reward 311509, customer 555567088);
- a staff member who is not a superuser sees only the rows of the organisation of their
  ``UserProfile`` (none without a profile), in lists, forms and autocompletes alike;
- writes that carry business rules go through ``catalogue.forms`` (R5, R6, custom-field
  count) or a service (coupon upload); vendor header values and card numbers are never shown.
"""

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Count, F, IntegerField, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from . import choices
from .encryption import unreadable_names
from .forms import (
    CardAdminForm,
    CouponCodesUploadForm,
    CustomFieldDefinitionAdminForm,
    PaymentConfigInlineFormSet,
    RewardAdminForm,
    RewardConstraintAdminForm,
    RewardConstraintInlineFormSet,
    RewardSegmentTargetInlineFormSet,
    VendorRedemptionConfigAdminForm,
    headers_masked,
)
from .models import (
    Brand,
    Card,
    CardSeries,
    CartPromotion,
    Category,
    CouponCode,
    CouponSeries,
    Customer,
    CustomerGroup,
    CustomerLabel,
    CustomFieldDefinition,
    FulfillmentStatus,
    GroupMembership,
    Label,
    Organisation,
    Partition,
    PaymentConfig,
    Program,
    ProgramMembership,
    Reward,
    RewardConstraint,
    RewardGroup,
    RewardLanguageContent,
    RewardMedia,
    RewardSegmentTarget,
    Segment,
    SegmentMembership,
    Tier,
    Till,
    UserProfile,
    Vendor,
    VendorRedemptionConfig,
)
from .services import CouponUploadError, coupon_codes_upload
from .validation import MAX_PAYMENT_CONFIGS

UPLOAD_ERRORS_SHOWN = 100  # a refused upload lists this many problems, then a count

# ---------------------------------------------------------------------------------------
# Shared machinery
# ---------------------------------------------------------------------------------------

# Models whose __str__ reads a related row: wherever they are listed or offered as a choice,
# that row is joined, so a page of them costs one query, not one per row.
STR_SELECT_RELATED = {
    Tier: ("program",),
    Partition: ("segment",),
    VendorRedemptionConfig: ("vendor",),
    UserProfile: ("user", "org"),
}


def admin_org_id(request) -> int | None:
    """The org of a non-superuser staff member (their UserProfile), cached on the request."""
    if not hasattr(request, "_admin_org_id"):
        request._admin_org_id = (
            UserProfile.objects.filter(user_id=request.user.pk).values_list("org_id", flat=True).first()
        )
    return request._admin_org_id


def org_scoped(queryset, request, org_path: str | None):
    """Superusers see everything; other staff only their profile org's rows (none without one)."""
    if org_path is None or request.user.is_superuser:
        return queryset
    org_id = admin_org_id(request)
    if org_id is None:
        return queryset.none()
    return queryset.filter(**{org_path: org_id})


class OrgScopedMixin:
    """For ModelAdmins and inlines. ``org_path`` leads from the model to its Organisation
    (``"org"``, ``"reward__org"``, ``"pk"`` for Organisation itself); None: not scoped."""

    org_path: str | None = "org"
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    # A search term of digits also matches this field (None: it does not).
    pk_search_path: str | None = "pk"

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        related = STR_SELECT_RELATED.get(self.model)
        if related:
            queryset = queryset.select_related(*related)
        return org_scoped(queryset, request, self.org_path)

    def get_list_filter(self, request):
        filters = super().get_list_filter(request)
        if request.user.is_superuser:
            return filters
        # Filters listing every organisation would name the other orgs.
        return [f for f in filters if not (isinstance(f, str) and f.split("__")[-1] == "org")]

    def get_search_results(self, request, queryset, search_term):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if self.pk_search_path and term.isdigit() and len(term) <= 18:
            results = results | queryset.filter(**{self.pk_search_path: int(term)})
        return results, may_have_duplicates

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if "queryset" not in kwargs:
            queryset = self._choices_queryset(db_field, request)
            if queryset is not None:
                kwargs["queryset"] = queryset
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if "queryset" not in kwargs:
            queryset = self._choices_queryset(db_field, request)
            if queryset is not None:
                kwargs["queryset"] = queryset
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def _choices_queryset(self, db_field, request):
        """The rows a form may offer (and accept) for a relation: the target's own admin
        scoping, plus the joins its __str__ needs. None: Django's default."""
        model = db_field.remote_field.model
        related_admin = self.admin_site._registry.get(model)
        org_path = getattr(related_admin, "org_path", None)
        related = STR_SELECT_RELATED.get(model)
        if not related and (org_path is None or request.user.is_superuser):
            return None
        queryset = model._default_manager.all()
        ordering = related_admin.get_ordering(request) if related_admin else None
        if ordering:
            queryset = queryset.order_by(*ordering)
        if related:
            queryset = queryset.select_related(*related)
        return org_scoped(queryset, request, org_path)


class ScopedAdmin(OrgScopedMixin, admin.ModelAdmin):
    pass


class ScopedTabularInline(OrgScopedMixin, admin.TabularInline):
    pass


class ScopedStackedInline(OrgScopedMixin, admin.StackedInline):
    pass


class ViewOnlyAdminMixin:
    """No add, change or delete in the admin (rows written by services or by a parent's page)."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def admin_link(obj, label=None):
    """A link to obj's change page (or its label alone when obj is None)."""
    if obj is None:
        return "—"
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, label if label is not None else obj)


def changelist_link(model, label, **filters):
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    query = "&".join(f"{key}={value}" for key, value in filters.items())
    return format_html('<a href="{}?{}">{}</a>', url, query, label)


@admin.display(description="card number")
def masked_card_number(card):
    return card.masked_number if card.pk else "—"


# ---------------------------------------------------------------------------------------
# Organisations, users, brands, tills
# ---------------------------------------------------------------------------------------


@admin.register(Organisation)
class OrganisationAdmin(ScopedAdmin):
    org_path = "pk"
    list_display = (
        "name",
        "parent",
        "primary_identifier",
        "time_zone",
        "allow_skip_validation",
        "dual_eligibility",
        "points_redeemable",
        "max_quantity",
        "created_at",
    )
    list_select_related = ("parent",)
    list_filter = ("primary_identifier", "allow_skip_validation", "dual_eligibility", "points_redeemable")
    search_fields = ("name",)
    autocomplete_fields = ("parent",)
    readonly_fields = ("created_at",)

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


@admin.register(UserProfile)
class UserProfileAdmin(ScopedAdmin):
    list_display = ("user", "org")
    list_select_related = ("user", "org")
    list_filter = ("org",)
    search_fields = ("user__username", "user__email", "org__name")
    autocomplete_fields = ("user", "org")


@admin.register(Brand)
class BrandAdmin(ScopedAdmin):
    list_display = ("name", "org", "created_at")
    list_select_related = ("org",)
    list_filter = ("org",)
    search_fields = ("name",)
    autocomplete_fields = ("org",)
    readonly_fields = ("created_at",)


@admin.register(Till)
class TillAdmin(ScopedAdmin):
    list_display = ("code", "name", "org", "is_active")
    list_select_related = ("org",)
    list_filter = ("is_active", "org")
    search_fields = ("code", "name")
    autocomplete_fields = ("org", "users")


# ---------------------------------------------------------------------------------------
# Customers, groups, programs, labels, cards, segments
# ---------------------------------------------------------------------------------------


class CustomerLabelInline(ScopedTabularInline):
    model = CustomerLabel
    org_path = "customer__org"
    autocomplete_fields = ("label",)
    extra = 0


class CardInline(ScopedTabularInline):
    model = Card
    org_path = "customer__org"
    form = CardAdminForm
    fields = ("series", masked_card_number, "number", "status", "expires_at")
    readonly_fields = (masked_card_number,)
    autocomplete_fields = ("series",)
    extra = 0

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if not self.has_change_permission(request, obj):  # read-only: "number" would print the number
            fields = [f for f in fields if f != "number"]
        return fields


class SegmentMembershipInline(ScopedTabularInline):
    model = SegmentMembership
    org_path = "customer__org"
    autocomplete_fields = ("partition",)
    extra = 0

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("partition__segment")


class ProgramMembershipInline(ScopedTabularInline):
    model = ProgramMembership
    org_path = "customer__org"
    autocomplete_fields = ("program", "tier")
    extra = 0


class CustomerGroupMembershipInline(ScopedTabularInline):
    model = GroupMembership
    org_path = "customer__org"
    fk_name = "customer"
    autocomplete_fields = ("group",)
    readonly_fields = ("joined_at",)
    extra = 0
    verbose_name = "group membership"


@admin.register(Customer)
class CustomerAdmin(ScopedAdmin):
    list_display = ("id", "display_name", "mobile", "email", "external_id", "org", "available_points", "created_at")
    list_display_links = ("id", "display_name")
    list_select_related = ("org", "points_account")
    list_filter = ("points_redeemable", "org")
    # Exact matches on the indexed identifiers; prefixes on names.
    search_fields = ("=mobile", "=email", "=external_id", "^first_name", "^last_name")
    autocomplete_fields = ("org",)
    readonly_fields = ("primary_value", "points_account_link", "created_at")
    fieldsets = (
        (None, {"fields": ("org", "first_name", "last_name", "points_redeemable")}),
        ("Identifiers", {"fields": ("mobile", "email", "external_id", "primary_value")}),
        ("Points", {"fields": ("points_account_link", "created_at")}),
    )
    inlines = (
        CustomerLabelInline,
        CardInline,
        SegmentMembershipInline,
        ProgramMembershipInline,
        CustomerGroupMembershipInline,
    )

    @admin.display(description="available points")
    def available_points(self, obj):
        account = getattr(obj, "points_account", None)  # joined: no query per row
        return account.available if account is not None else "—"

    @admin.display(description="points account")
    def points_account_link(self, obj):
        account = getattr(obj, "points_account", None) if obj.pk else None
        if account is None:
            return "no account yet"
        return admin_link(account, f"{account} — balance {account.balance}, available {account.available}")


class GroupMembershipInline(ScopedTabularInline):
    model = GroupMembership
    org_path = "group__org"
    fk_name = "group"
    autocomplete_fields = ("customer",)
    readonly_fields = ("joined_at",)
    extra = 0


@admin.register(CustomerGroup)
class CustomerGroupAdmin(ScopedAdmin):
    list_display = ("id", "name", "external_id", "primary_member", "member_count", "org")
    ordering = ("id",)  # explicit: the Count annotation (GROUP BY) drops Meta.ordering, and paging needs an order
    list_display_links = ("id", "name")
    list_select_related = ("org", "primary_member")
    list_filter = ("org",)
    search_fields = ("name", "=external_id")
    autocomplete_fields = ("org", "primary_member")
    inlines = (GroupMembershipInline,)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(member_count=Count("memberships"))

    @admin.display(description="members", ordering="member_count")
    def member_count(self, obj):
        return obj.member_count


@admin.register(GroupMembership)
class GroupMembershipAdmin(ScopedAdmin):
    org_path = "group__org"
    list_display = ("group", "customer", "joined_at")
    list_select_related = ("group", "customer")
    search_fields = ("group__name", "=customer__mobile", "=customer__email", "=customer__external_id")
    autocomplete_fields = ("group", "customer")
    readonly_fields = ("joined_at",)


class TierInline(ScopedTabularInline):
    model = Tier
    org_path = "program__org"
    extra = 0


@admin.register(Program)
class ProgramAdmin(ScopedAdmin):
    list_display = ("name", "org", "tier_names")
    list_select_related = ("org",)
    list_filter = ("org",)
    search_fields = ("name",)
    autocomplete_fields = ("org",)
    inlines = (TierInline,)

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("tiers")

    @admin.display(description="tiers")
    def tier_names(self, obj):
        return ", ".join(tier.name for tier in obj.tiers.all())


@admin.register(Tier)
class TierAdmin(ScopedAdmin):
    org_path = "program__org"
    list_display = ("name", "program", "serial")
    list_select_related = ("program",)
    list_filter = ("program__org",)
    search_fields = ("name", "program__name")
    autocomplete_fields = ("program",)


@admin.register(ProgramMembership)
class ProgramMembershipAdmin(ScopedAdmin):
    org_path = "customer__org"
    list_display = ("customer", "program", "tier")
    list_select_related = ("customer", "program", "tier__program")
    search_fields = ("=customer__mobile", "=customer__email", "=customer__external_id", "program__name")
    autocomplete_fields = ("customer", "program", "tier")


@admin.register(Category)
class CategoryAdmin(ScopedAdmin):
    list_display = ("name", "org", "enabled")
    list_select_related = ("org",)
    list_filter = ("enabled", "org")
    search_fields = ("name",)
    autocomplete_fields = ("org",)


@admin.register(RewardGroup)
class RewardGroupAdmin(ScopedAdmin):
    list_display = ("name", "org", "rank")
    list_select_related = ("org",)
    list_filter = ("org",)
    search_fields = ("name",)
    autocomplete_fields = ("org",)


@admin.register(Label)
class LabelAdmin(ScopedAdmin):
    list_display = ("name", "org")
    list_select_related = ("org",)
    list_filter = ("org",)
    search_fields = ("name",)
    autocomplete_fields = ("org",)


@admin.register(CustomerLabel)
class CustomerLabelAdmin(ScopedAdmin):
    org_path = "customer__org"
    list_display = ("customer", "label", "status")
    list_select_related = ("customer", "label")
    list_filter = ("status",)
    search_fields = ("label__name", "=customer__mobile", "=customer__email", "=customer__external_id")
    autocomplete_fields = ("customer", "label")


@admin.register(CardSeries)
class CardSeriesAdmin(ScopedAdmin):
    list_display = ("code", "name", "org")
    list_select_related = ("org",)
    list_filter = ("org",)
    search_fields = ("code", "name")
    autocomplete_fields = ("org",)
    # Cards are not an inline: a series may hold millions. Count and link instead.
    readonly_fields = ("cards_link",)

    @admin.display(description="cards")
    def cards_link(self, obj):
        if not obj.pk:
            return "—"
        return changelist_link(Card, f"{obj.cards.count()} cards", series__id__exact=obj.pk)


@admin.register(Card)
class CardAdmin(ScopedAdmin):
    org_path = "customer__org"
    form = CardAdminForm
    list_display = (masked_card_number, "series", "customer", "status", "expires_at")
    list_select_related = ("series", "customer")
    list_filter = ("status",)
    # Exact number only: finds a card without ever printing its number.
    search_fields = ("=number", "=customer__mobile", "=customer__email", "=customer__external_id")
    autocomplete_fields = ("series", "customer")
    fields = ("series", "customer", masked_card_number, "number", "status", "expires_at")
    readonly_fields = (masked_card_number,)

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if not self.has_change_permission(request, obj):  # read-only: "number" would print the number
            fields = [f for f in fields if f != "number"]
        return fields


class PartitionInline(ScopedTabularInline):
    model = Partition
    org_path = "segment__org"
    extra = 0


@admin.register(Segment)
class SegmentAdmin(ScopedAdmin):
    list_display = ("name", "org", "partition_names")
    list_select_related = ("org",)
    list_filter = ("org",)
    search_fields = ("name",)
    autocomplete_fields = ("org",)
    inlines = (PartitionInline,)

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("partitions")

    @admin.display(description="partitions")
    def partition_names(self, obj):
        return ", ".join(p.name for p in obj.partitions.all())


@admin.register(Partition)
class PartitionAdmin(ScopedAdmin):
    org_path = "segment__org"
    list_display = ("__str__", "segment", "name")
    list_select_related = ("segment",)
    search_fields = ("name", "segment__name")
    autocomplete_fields = ("segment",)


@admin.register(SegmentMembership)
class SegmentMembershipAdmin(ScopedAdmin):
    org_path = "customer__org"
    list_display = ("customer", "partition")
    list_select_related = ("customer", "partition__segment")
    search_fields = ("partition__name", "partition__segment__name", "=customer__mobile", "=customer__external_id")
    autocomplete_fields = ("customer", "partition")


# ---------------------------------------------------------------------------------------
# Vendors (header values are secrets)
# ---------------------------------------------------------------------------------------


@admin.register(Vendor)
class VendorAdmin(ScopedAdmin):
    list_display = ("name", "org", "enabled")
    list_select_related = ("org",)
    list_filter = ("enabled", "org")
    search_fields = ("name",)
    autocomplete_fields = ("org",)
    readonly_fields = ("redemption_configs",)

    @admin.display(description="redemption configs")
    def redemption_configs(self, obj):
        if not obj.pk:
            return "—"
        return format_html_join(", ", "{}", ((admin_link(c, c.name),) for c in obj.redemption_configs.all())) or "—"


@admin.register(VendorRedemptionConfig)
class VendorRedemptionConfigAdmin(ScopedAdmin):
    org_path = "vendor__org"
    form = VendorRedemptionConfigAdminForm
    list_display = ("name", "vendor", "method", "url", "header_names", "timeout_seconds")
    list_select_related = ("vendor",)
    list_filter = ("method", "vendor__org")
    search_fields = ("name", "vendor__name")
    autocomplete_fields = ("vendor",)
    exclude = ("headers",)
    fieldsets = (
        (None, {"fields": ("vendor", "name", "method", "url", "timeout_seconds")}),
        ("Request", {"fields": ("headers_text", "body_template")}),
        ("Response", {"fields": ("context_map", "status_url")}),
    )

    actions = ["test_call"]

    @admin.display(description="headers")
    def header_names(self, obj):
        """Names only (values are secrets, stored encrypted); a value the configured keys
        cannot decrypt is pointed out, as calls with it fail (8003) until it is typed again."""
        shown = headers_masked(obj.headers)
        unreadable = unreadable_names(obj.headers)
        if unreadable:
            shown += f" — cannot be decrypted with FIELD_ENCRYPTION_KEYS: {', '.join(unreadable)}"
        return shown

    @admin.action(description="Test call: send one sample redemption and show the answer")
    def test_call(self, request, queryset):
        """Calls the vendor as the engine would (a sample reference marked as a test) and
        reports the HTTP status, what the context map extracted, and whether a unit would
        count as issued. Header values are sent but never shown."""
        from issuance.vendors import vendor_call

        for config in queryset[:5]:
            variables = {
                "reference": f"admin-test-{config.pk}",
                "lineId": 0,
                "unitIndex": 0,
                "rewardId": 0,
                "rewardName": "admin test call",
                "orgId": config.vendor.org_id,
                "customerId": 0,
                "mobile": "0000000000",
                "email": "test@example.invalid",
                "externalId": "admin-test",
                "points": 0,
                "redemptionValue": None,
                "transactionNumber": "admin-test",
                "requestId": None,
                "till": "admin",
            }
            answer = vendor_call(config, variables=variables)
            verdict = "would be ISSUED" if answer.ok else f"would FAIL (8003): {answer.error}"
            level = messages.SUCCESS if answer.ok else messages.WARNING
            self.message_user(
                request,
                f"{config}: HTTP {answer.http_status or '-'}; extracted {answer.context or '{}'}; {verdict}",
                level=level,
            )

    # Shown instead of the form field when the page is read-only: names, never values.
    headers_text = header_names

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if request.method == "GET":
            config = self.get_object(request, unquote(object_id))
            unreadable = unreadable_names(config.headers) if config is not None else []
            if unreadable:
                self.message_user(
                    request,
                    f"The stored value of header {', '.join(unreadable)} cannot be decrypted with "
                    "FIELD_ENCRYPTION_KEYS (wrong or missing key): calls fail (8003) until the key is configured "
                    "again or a new value is typed here.",
                    level=messages.WARNING,
                )
        return super().change_view(request, object_id, form_url, extra_context)


# ---------------------------------------------------------------------------------------
# Coupon series and their pools
# ---------------------------------------------------------------------------------------


def pool_count_subquery():
    """Codes left in a series' pool, per series row, as a correlated subquery: computed for
    the listed page only, never a join over every code of every pool."""
    counts = (
        CouponCode.objects.filter(series=OuterRef("pk")).order_by().values("series").annotate(n=Count("*")).values("n")
    )
    return Coalesce(Subquery(counts, output_field=IntegerField()), Value(0))


class CouponSeriesChangeList(ChangeList):
    def get_queryset(self, request, exclude_parameters=None):
        # On the root queryset, so the stock filter and the column sort can use it too.
        if "pool_stock_n" not in self.root_queryset.query.annotations:
            self.root_queryset = self.root_queryset.annotate(pool_stock_n=pool_count_subquery())
        return super().get_queryset(request, exclude_parameters)


class PoolStockFilter(admin.SimpleListFilter):
    title = "pool stock"
    parameter_name = "stock"

    def lookups(self, request, model_admin):
        return (("low", "Low (below threshold)"), ("empty", "Empty"))

    def queryset(self, request, queryset):
        uploaded = queryset.filter(generate_codes=False)
        if self.value() == "low":
            return uploaded.filter(pool_stock_n__lt=F("low_stock_threshold"))
        if self.value() == "empty":
            return uploaded.filter(pool_stock_n=0)
        return queryset


@admin.register(CouponSeries)
class CouponSeriesAdmin(ScopedAdmin):
    list_display = ("name", "org", "enabled", "pool_stock", "valid_till")
    list_select_related = ("org",)
    list_filter = ("enabled", "generate_codes", PoolStockFilter, "org")
    search_fields = ("name",)
    autocomplete_fields = ("org",)
    readonly_fields = ("pool_summary", "pool_sample")
    fieldsets = (
        (None, {"fields": ("org", "name", "description", "enabled", "valid_till")}),
        ("Codes", {"fields": ("generate_codes", "code_prefix", "code_length", "low_stock_threshold")}),
        ("Pool", {"fields": ("pool_summary", "pool_sample")}),
    )
    POOL_SAMPLE_SIZE = 10

    def get_changelist(self, request, **kwargs):
        return CouponSeriesChangeList

    def get_urls(self):
        return [
            path(
                "<path:object_id>/upload-codes/",
                self.admin_site.admin_view(self.upload_codes_view),
                name="catalogue_couponseries_upload_codes",
            ),
            *super().get_urls(),
        ]

    @admin.display(description="pool stock", ordering="pool_stock_n")
    def pool_stock(self, obj):
        if obj.generate_codes:
            return "generated"
        if obj.pool_stock_n < obj.low_stock_threshold:
            return format_html('<strong style="color: #ba2121">{} (low)</strong>', obj.pool_stock_n)
        return obj.pool_stock_n

    @admin.display(description="pool")
    def pool_summary(self, obj):
        if not obj.pk:
            return "—"
        if obj.generate_codes:
            return "Codes are generated on issue; the series has no pool."
        available = obj.pool.count()
        issued = obj.issued_units.filter(coupon_code__isnull=False).count()
        return format_html(
            "{} available ({}), {} issued. {} · {}",
            available,
            "below the low-stock threshold" if available < obj.low_stock_threshold else "ok",
            issued,
            changelist_link(CouponCode, "browse the pool", series__id__exact=obj.pk),
            format_html(
                '<a href="{}">upload codes (CSV)</a>',
                reverse("admin:catalogue_couponseries_upload_codes", args=[obj.pk]),
            ),
        )

    @admin.display(description=f"first {POOL_SAMPLE_SIZE} codes")
    def pool_sample(self, obj):
        if not obj.pk or obj.generate_codes:
            return "—"
        codes = obj.pool.order_by("pk").values_list("code", flat=True)[: self.POOL_SAMPLE_SIZE]
        return ", ".join(codes) or "the pool is empty"

    def upload_codes_view(self, request, object_id):
        series = self.get_object(request, unquote(object_id))
        if series is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not (self.has_change_permission(request, series) and request.user.has_perm("catalogue.add_couponcode")):
            raise PermissionDenied
        upload_error = None
        if request.method == "POST":
            form = CouponCodesUploadForm(request.POST, request.FILES)
            if form.is_valid():
                try:
                    result = coupon_codes_upload(series=series, rows=form.cleaned_data["rows"])
                except CouponUploadError as exc:
                    upload_error = exc
                else:
                    self.log_change(request, series, f"Uploaded {result.inserted} coupon codes.")
                    self.message_user(
                        request,
                        f"{result.inserted} codes added to {series}; the pool now holds {result.pool_size}.",
                        messages.SUCCESS,
                    )
                    return redirect("admin:catalogue_couponseries_change", series.pk)
        else:
            form = CouponCodesUploadForm()
        context = {
            **self.admin_site.each_context(request),
            "title": f"Upload coupon codes: {series}",
            "opts": self.opts,
            "original": series,
            "form": form,
            "upload_error": upload_error,
            "shown_errors": upload_error.errors[:UPLOAD_ERRORS_SHOWN] if upload_error else [],
            "hidden_error_count": max(0, len(upload_error.errors) - UPLOAD_ERRORS_SHOWN) if upload_error else 0,
            "has_view_permission": True,
        }
        return TemplateResponse(request, "admin/catalogue/couponseries/upload_codes.html", context)


@admin.register(CouponCode)
class CouponCodeAdmin(ScopedAdmin):
    """Pool browsing. Codes enter through the series' CSV upload (its checks), so no add or
    edit here; deleting a compromised code is allowed."""

    org_path = "series__org"
    list_display = ("code", "series")
    list_select_related = ("series",)
    search_fields = ("=code",)
    pk_search_path = None
    ordering = ("-pk",)
    show_full_result_count = False  # no second COUNT(*) over a pool of millions

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(CartPromotion)
class CartPromotionAdmin(ScopedAdmin):
    list_display = ("name", "promotion_code", "org", "enabled", "valid_till")
    list_select_related = ("org",)
    list_filter = ("enabled", "org")
    search_fields = ("name", "=promotion_code")
    autocomplete_fields = ("org",)


# ---------------------------------------------------------------------------------------
# Rewards
# ---------------------------------------------------------------------------------------


class PaymentConfigInline(ScopedTabularInline):
    model = PaymentConfig
    org_path = "reward__org"
    formset = PaymentConfigInlineFormSet
    fields = ("mode", "points", "cash_amount", "conversion_ratio")
    max_num = MAX_PAYMENT_CONFIGS
    extra = 0


class RewardMediaInline(ScopedTabularInline):
    model = RewardMedia
    org_path = "reward__org"
    fields = ("kind", "position", "name", "url", "is_external", "file_id", "alt_text")
    extra = 0


class RewardLanguageContentInline(ScopedStackedInline):
    model = RewardLanguageContent
    org_path = "reward__org"
    extra = 0


class RewardConstraintInline(ScopedTabularInline):
    model = RewardConstraint
    org_path = "reward__org"
    formset = RewardConstraintInlineFormSet
    fields = (
        "level",
        "kpi",
        "frequency",
        "interval",
        "window_type",
        "cycle_start",
        "week_start_day",
        "limit_value",
        "is_active",
    )
    extra = 0
    verbose_name = "limit"

    def formfield_for_choice_field(self, db_field, request, **kwargs):
        if db_field.name == "level":  # org-level limits have their own page
            kwargs["choices"] = [
                (c.value, c.label) for c in choices.ConstraintLevel if c in choices.REWARD_CONSTRAINT_LEVELS
            ]
        return super().formfield_for_choice_field(db_field, request, **kwargs)


class RewardSegmentTargetInline(ScopedTabularInline):
    model = RewardSegmentTarget
    org_path = "reward__org"
    formset = RewardSegmentTargetInlineFormSet
    autocomplete_fields = ("partition",)
    extra = 0
    verbose_name = "segment target"
    verbose_name_plural = "segment targets (a reward uses one targeting kind at most)"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("partition__segment")


class RewardLifecycleFilter(admin.SimpleListFilter):
    title = "lifecycle"
    parameter_name = "lifecycle"

    def lookups(self, request, model_admin):
        return (("LIVE", "Live"), ("UPCOMING", "Upcoming"), ("ENDED", "Ended"))

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "LIVE":
            return queryset.filter(start_time__lte=now, end_time__gt=now)
        if self.value() == "UPCOMING":
            return queryset.filter(start_time__gt=now)
        if self.value() == "ENDED":
            return queryset.filter(end_time__lte=now)
        return queryset


@admin.register(Reward)
class RewardAdmin(ScopedAdmin):
    form = RewardAdminForm
    list_display = (
        "id",
        "name",
        "brand",
        "redemption_type",
        "payment_modes",
        "lifecycle",
        "enabled",
        "start_time",
        "end_time",
        "org",
    )
    list_display_links = ("id", "name")
    list_select_related = ("brand", "org")
    list_filter = ("enabled", RewardLifecycleFilter, "redemption_type", "org")
    search_fields = ("name", "brand__name")
    autocomplete_fields = (
        "org",
        "brand",
        "program",
        "vendor",
        "vendor_redemption",
        "coupon_series",
        "cart_promotion",
        "categories",
        "groups",
        "card_series",
        "labels",
        "target_tiers",
    )
    readonly_fields = ("created_at", "updated_at", "list_points", "list_cash", "targeting")
    fieldsets = (
        (None, {"fields": ("org", "brand", "name", "description", "redemption_type", "enabled")}),
        ("Validity and order", {"fields": ("start_time", "end_time", "priority", "rank")}),
        ("Price (payment configs below)", {"fields": ("intouch_points",)}),
        ("Fulfilment", {"fields": ("coupon_series", "cart_promotion", "vendor", "vendor_redemption")}),
        ("Catalogue", {"fields": ("categories", "groups", "program", "owner_type", "owner_id", "custom_fields")}),
        (
            "Targeting: one kind at most (segments are below)",
            {"fields": ("card_series", "labels", "target_tiers")},
        ),
        (
            "Media and terms",
            {
                "classes": ("collapse",),
                "fields": ("image_id", "image_url", "thumbnail_id", "thumbnail_url", "terms_id", "terms_url"),
            },
        ),
        (
            # Derived from the configs, intouch_points and the targets when the reward is saved
            # (catalogue.services.reward_listing_refresh); what the list API filters and sorts on.
            "Listing cache (derived)",
            {"classes": ("collapse",), "fields": ("list_points", "list_cash", "targeting")},
        ),
        (None, {"fields": ("created_at", "updated_at")}),
    )
    inlines = (
        PaymentConfigInline,
        RewardSegmentTargetInline,
        RewardConstraintInline,
        RewardMediaInline,
        RewardLanguageContentInline,
    )

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("payment_configs")

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        shown = {type(inline) for inline in self.get_inline_instances(request, obj)}
        form.payment_configs_inline = PaymentConfigInline in shown
        form.segment_targets_inline = RewardSegmentTargetInline in shown
        return form

    @admin.display(description="payment modes")
    def payment_modes(self, obj):
        configs = obj.payment_configs.all()  # prefetched
        if not configs:
            return f"{obj.intouch_points.normalize():f} pts (no config)"
        return ", ".join(f"{c.mode} {c.points.normalize():f}" if c.points is not None else c.mode for c in configs)

    @admin.display(description="lifecycle")
    def lifecycle(self, obj):
        now = timezone.now()
        if obj.start_time > now:
            return "UPCOMING"
        return "LIVE" if obj.end_time > now else "ENDED"


class RewardChildAdmin(ScopedAdmin):
    org_path = "reward__org"
    list_select_related = ("reward",)
    autocomplete_fields = ("reward",)
    search_fields = ("reward__name",)

    @admin.display(description="reward")
    def reward_link(self, obj):
        return admin_link(obj.reward)


@admin.register(PaymentConfig)
class PaymentConfigAdmin(ViewOnlyAdminMixin, RewardChildAdmin):
    """View only: configs are edited on their reward's page, where R5 sees all of them."""

    list_display = ("__str__", "reward_link", "mode", "points", "cash_amount", "conversion_ratio")
    list_filter = ("mode",)


@admin.register(RewardSegmentTarget)
class RewardSegmentTargetAdmin(ViewOnlyAdminMixin, RewardChildAdmin):
    """View only: targets are edited on their reward's page, where R6 sees every kind."""

    list_display = ("reward_link", "partition")
    list_select_related = ("reward", "partition__segment")


@admin.register(RewardMedia)
class RewardMediaAdmin(RewardChildAdmin):
    list_display = ("reward_link", "kind", "position", "name", "url", "is_external")
    list_filter = ("kind", "is_external")


@admin.register(RewardLanguageContent)
class RewardLanguageContentAdmin(RewardChildAdmin):
    list_display = ("reward_link", "language", "is_enabled", "is_mandatory")
    list_filter = ("language", "is_enabled")


@admin.register(RewardConstraint)
class RewardConstraintAdmin(ScopedAdmin):
    form = RewardConstraintAdminForm
    list_display = (
        "id",
        "level",
        "target",
        "kpi",
        "limit_value",
        "interval",
        "frequency",
        "window_type",
        "is_active",
        "org",
    )
    list_select_related = ("org", "reward")
    list_filter = ("level", "kpi", "frequency", "window_type", "is_active", "org")
    search_fields = ("reward__name", "redemption_type")
    autocomplete_fields = ("org", "reward")

    @admin.display(description="applies to")
    def target(self, obj):
        return admin_link(obj.reward) if obj.reward_id else obj.redemption_type


@admin.register(CustomFieldDefinition)
class CustomFieldDefinitionAdmin(ScopedAdmin):
    form = CustomFieldDefinitionAdminForm
    list_display = ("name", "scope", "field_type", "is_mandatory", "default_value", "org")
    list_select_related = ("org",)
    list_filter = ("scope", "field_type", "is_mandatory", "org")
    search_fields = ("name",)
    autocomplete_fields = ("org",)


@admin.register(FulfillmentStatus)
class FulfillmentStatusAdmin(ScopedAdmin):
    list_display = ("name", "org", "enabled", "position")
    list_editable = ("enabled", "position")
    list_select_related = ("org",)
    list_filter = ("enabled", "org")
    search_fields = ("name",)
    autocomplete_fields = ("org",)
