"""The admin: every registered ModelAdmin renders with a bounded number of queries, the
read-only ones refuse writes, and the reward / vendor / card / custom-field pages enforce
their rules."""

import datetime
import itertools
import re
from decimal import Decimal

import pytest
from django import forms
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.forms.widgets import Input
from django.test.client import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from catalogue import choices
from catalogue import models as cm
from issuance import models as im
from issuance.ledger import points_credit
from staff.choices import BulkJobStatus, BulkRowStatus, GoodwillStatus
from staff.models import BulkJob, BulkJobRow, GoodwillRequest
from tests import factories as f
from tests.axes_factories import ADMIN_BUILDERS as AXES_ADMIN_BUILDERS
from tests.oauth_factories import ADMIN_BUILDERS as OAUTH_ADMIN_BUILDERS

_seq = itertools.count(1)


def _n() -> int:
    return next(_seq)


# ---------------------------------------------------------------------------------------
# One row of each registered model, with whatever it needs around it.
# ---------------------------------------------------------------------------------------


def _customer_group():
    return f.CustomerGroupFactory()


def _group_membership():
    group = f.CustomerGroupFactory()
    return cm.GroupMembership.objects.create(group=group, customer=group.primary_member)


def _program():
    return cm.Program.objects.create(org=f.OrganisationFactory(), name=f"program{_n()}")


def _tier():
    return cm.Tier.objects.create(program=_program(), name=f"tier{_n()}")


def _program_membership():
    tier = _tier()
    customer = f.CustomerFactory(org=tier.program.org)
    return cm.ProgramMembership.objects.create(customer=customer, program=tier.program, tier=tier)


def _customer_label():
    customer = f.CustomerFactory()
    return cm.CustomerLabel.objects.create(customer=customer, label=f.LabelFactory(org=customer.org))


def _card():
    customer = f.CustomerFactory()
    series = f.CardSeriesFactory(org=customer.org)
    return cm.Card.objects.create(series=series, customer=customer, number=f"4000{_n():012d}")


def _segment_membership():
    partition = f.PartitionFactory()
    return cm.SegmentMembership.objects.create(
        customer=f.CustomerFactory(org=partition.segment.org), partition=partition
    )


def _vendor_config():
    return cm.VendorRedemptionConfig.objects.create(
        vendor=f.VendorFactory(), name=f"config{_n()}", url="https://vendor.example/redeem", headers={"X-Key": "secret"}
    )


def _coupon_code():
    return cm.CouponCode.objects.create(series=f.CouponSeriesFactory(), code=f"CODE{_n()}")


def _cart_promotion():
    return cm.CartPromotion.objects.create(org=f.OrganisationFactory(), name=f"promo{_n()}", promotion_code=f"P{_n()}")


def _reward_segment_target():
    reward = f.RewardFactory()
    partition = f.PartitionFactory(segment__org=reward.org)
    return cm.RewardSegmentTarget.objects.create(reward=reward, partition=partition)


def _reward_media():
    return cm.RewardMedia.objects.create(reward=f.RewardFactory(), url="https://cdn.example/a.png")


def _reward_language_content():
    return cm.RewardLanguageContent.objects.create(reward=f.RewardFactory(), language="en", content="Hello")


def _reward_constraint():
    reward = f.RewardFactory()
    return cm.RewardConstraint.objects.create(
        org=reward.org,
        reward=reward,
        level=choices.ConstraintLevel.CUSTOMER,
        frequency=choices.Frequency.DAYS,
        limit_value=Decimal("2"),
    )


def _custom_field_definition():
    return cm.CustomFieldDefinition.objects.create(
        org=f.OrganisationFactory(),
        name=f"field{_n()}",
        scope=choices.CustomFieldScope.ISSUE_REWARD,
        field_type=choices.CustomFieldType.STRING,
    )


def _ledger_entry():
    account = f.PointsAccountFactory()
    return points_credit(account_id=account.pk, amount=Decimal("5"), reason="test credit")


def _issued_unit():
    line = f.IssuanceLineFactory()
    series = f.CouponSeriesFactory(org=line.org)
    return im.IssuedUnit.objects.create(line=line, coupon_series=series, coupon_code=f"ISSUED{_n()}")


def _fulfillment_change():
    line = f.IssuanceLineFactory()
    return im.FulfillmentChange.objects.create(line=line, to_status=f.FulfillmentStatusFactory(org=line.org))


def _idempotency_record():
    return im.IdempotencyRecord.objects.create(
        org=f.OrganisationFactory(), request_id=f"req-{_n()}", fingerprint="f" * 64
    )


def _validation_code():
    customer = f.CustomerFactory()
    return im.ValidationCode.objects.create(
        org=customer.org,
        customer=customer,
        nonce="not-a-real-nonce",
        expires_at=timezone.now() + datetime.timedelta(minutes=5),
    )


def _goodwill_request():
    """Every other one decided (rejected), so the "approved / rejected by" column has a name."""
    n = _n()
    customer = f.CustomerFactory()
    org = customer.org
    decided = n % 2 == 0
    return GoodwillRequest.objects.create(
        org=org,
        requester=f.UserFactory(),
        customer=customer,
        reward=f.RewardFactory(brand__org=org),
        till=f.TillFactory(org=org),
        quantity=1,
        reason="Late delivery",
        points_quoted=Decimal("1500"),
        submit_token=f"token{n}",
        status=GoodwillStatus.REJECTED if decided else GoodwillStatus.PENDING,
        decided_by=f.UserFactory() if decided else None,
        decided_at=timezone.now() if decided else None,
    )


def _bulk_job():
    """A job of two rows: one waiting, one invalid."""
    till = f.TillFactory()
    customer = f.CustomerFactory(org=till.org)
    job = BulkJob.objects.create(
        org=till.org,
        till=till,
        created_by=f.UserFactory(),
        file_name=f"goodwill{_n()}.csv",
        status=BulkJobStatus.VALIDATED,
        total_rows=2,
        invalid_rows=1,
    )
    BulkJobRow.objects.bulk_create(
        [
            BulkJobRow(
                job=job,
                row_number=1,
                identifier=customer.mobile,
                identifier_kind="mobile",
                customer=customer,
                reward_ref="1",
                quantity=1,
                reason="Storm damage",
                request_id=f"bulk-{job.pk}-1",
                status=BulkRowStatus.PENDING,
            ),
            BulkJobRow(
                job=job,
                row_number=2,
                identifier=f"nobody{job.pk}@example.com",
                reward_ref="no such reward",
                request_id=f"file-request-{job.pk}",
                status=BulkRowStatus.INVALID,
                errors="identifier: no such customer",
            ),
        ]
    )
    return job


BUILDERS = {
    apps.get_model("auth", "User"): lambda: f.UserFactory(),
    Group: lambda: Group.objects.create(name=f"group{_n()}"),
    cm.Organisation: f.OrganisationFactory,
    cm.UserProfile: f.UserProfileFactory,
    cm.Brand: f.BrandFactory,
    cm.Till: f.TillFactory,
    cm.Customer: f.CustomerFactory,
    cm.CustomerGroup: _customer_group,
    cm.GroupMembership: _group_membership,
    cm.Program: _program,
    cm.Tier: _tier,
    cm.ProgramMembership: _program_membership,
    cm.Category: f.CategoryFactory,
    cm.RewardGroup: lambda: cm.RewardGroup.objects.create(org=f.OrganisationFactory(), name=f"rg{_n()}"),
    cm.Label: f.LabelFactory,
    cm.CustomerLabel: _customer_label,
    cm.CardSeries: f.CardSeriesFactory,
    cm.Card: _card,
    cm.Segment: f.SegmentFactory,
    cm.Partition: f.PartitionFactory,
    cm.SegmentMembership: _segment_membership,
    cm.Vendor: f.VendorFactory,
    cm.VendorRedemptionConfig: _vendor_config,
    cm.CouponSeries: f.CouponSeriesFactory,
    cm.CouponCode: _coupon_code,
    cm.CartPromotion: _cart_promotion,
    cm.Reward: lambda: f.PaymentConfigFactory().reward,
    cm.RewardSegmentTarget: _reward_segment_target,
    cm.RewardMedia: _reward_media,
    cm.RewardLanguageContent: _reward_language_content,
    cm.PaymentConfig: f.PaymentConfigFactory,
    cm.RewardConstraint: _reward_constraint,
    cm.CustomFieldDefinition: _custom_field_definition,
    cm.FulfillmentStatus: f.FulfillmentStatusFactory,
    im.PointsAccount: f.PointsAccountFactory,
    im.LedgerEntry: _ledger_entry,
    im.Issuance: f.IssuanceFactory,
    im.IssuanceLine: f.IssuanceLineFactory,
    im.IssuedUnit: _issued_unit,
    im.FulfillmentChange: _fulfillment_change,
    im.IdempotencyRecord: _idempotency_record,
    im.ValidationCode: _validation_code,
    GoodwillRequest: _goodwill_request,
    BulkJob: _bulk_job,
}
BUILDERS.update(OAUTH_ADMIN_BUILDERS)  # apiclients.ApiClient, the toolkit's Application and AccessToken
BUILDERS.update(AXES_ADMIN_BUILDERS)  # django-axes' sign-in attempts (lock-outs, cleared by staff)

# Written by services only: the admin shows them and nothing else.
READ_ONLY_MODELS = {
    im.LedgerEntry,
    im.Issuance,
    im.IssuanceLine,
    im.IssuedUnit,
    im.IdempotencyRecord,
    im.FulfillmentChange,
    im.ValidationCode,
    GoodwillRequest,  # staff pages' services only (docs/staff-pages.md)
    BulkJob,
}

# A changelist page: session + user, the COUNT of the filtered rows (+ the unfiltered one
# unless show_full_result_count is off), the page of rows with its joins, one query per
# prefetch, one per related-model list filter. Never one per row.
CHANGELIST_MAX_QUERIES = 10
# A change page: session + user, the object, one query per inline and per readonly field that
# reads related rows, the selected values of autocomplete widgets. Bounded, not per row.
CHANGE_FORM_MAX_QUERIES = 25

REGISTERED = sorted(admin.site._registry, key=lambda m: m._meta.label)


def _url(model, view, *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def _superuser_request(user):
    request = RequestFactory().get("/admin/")
    request.user = user
    return request


# Kept by the database, edited by nobody (PostgreSQL triggers): the catalogue version and the
# hourly reward usage (`manage.py check_ledger` audits the latter against the lines).
NOT_IN_THE_ADMIN = {"catalogue.CatalogueVersion", "issuance.RewardUsage"}


def test_every_model_of_catalogue_and_issuance_is_registered():
    missing = [
        model._meta.label
        for app_label in ("catalogue", "issuance")
        for model in apps.get_app_config(app_label).get_models()
        if model not in admin.site._registry and model._meta.label not in NOT_IN_THE_ADMIN
    ]
    assert missing == []


def test_every_registered_model_has_a_row_builder_here():
    assert [m._meta.label for m in REGISTERED if m not in BUILDERS] == []


@pytest.mark.django_db
@pytest.mark.parametrize("model", REGISTERED, ids=lambda m: m._meta.label)
def test_changelist_lists_rows_in_the_same_number_of_queries_for_3_and_20_rows(model, admin_client):
    build = BUILDERS[model]
    rows = [build() for _ in range(3)]
    url = _url(model, "changelist")
    assert admin_client.get(url).status_code == 200  # warm caches (content types, permissions)

    with CaptureQueriesContext(connection) as few:
        response = admin_client.get(url)
    assert response.status_code == 200
    content = response.content.decode()
    for row in rows:
        assert _url(model, "change", row.pk) in content

    for _ in range(17):
        build()
    with CaptureQueriesContext(connection) as many:
        response = admin_client.get(url)
    assert response.status_code == 200
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]
    assert len(many) <= CHANGELIST_MAX_QUERIES, [q["sql"] for q in many.captured_queries]


@pytest.mark.django_db
@pytest.mark.parametrize("model", REGISTERED, ids=lambda m: m._meta.label)
def test_changelist_search_by_id_and_by_text_renders(model, admin_client):
    obj = BUILDERS[model]()
    url = _url(model, "changelist")

    by_id = admin_client.get(url, {"q": str(obj.pk)})
    assert by_id.status_code == 200
    if model in (apps.get_model("auth", "User"), Group) or not admin.site._registry[model].search_fields:
        return
    if getattr(admin.site._registry[model], "pk_search_path", None) == "pk":  # django-axes' admins have none
        assert _url(model, "change", obj.pk) in by_id.content.decode()
    assert admin_client.get(url, {"q": "no such thing 'quoted'"}).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("model", REGISTERED, ids=lambda m: m._meta.label)
def test_change_and_add_forms_render_with_bounded_queries(
    model, admin_client, admin_user, django_assert_max_num_queries
):
    obj = BUILDERS[model]()
    with django_assert_max_num_queries(CHANGE_FORM_MAX_QUERIES):
        response = admin_client.get(_url(model, "change", obj.pk))
    assert response.status_code == 200

    model_admin = admin.site._registry[model]
    if model_admin.has_add_permission(_superuser_request(admin_user)):
        with django_assert_max_num_queries(CHANGE_FORM_MAX_QUERIES):
            response = admin_client.get(_url(model, "add"))
        assert response.status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("model", sorted(READ_ONLY_MODELS, key=lambda m: m._meta.label), ids=lambda m: m._meta.label)
def test_ledger_and_transaction_admins_refuse_add_change_and_delete(model, admin_client, admin_user):
    model_admin = admin.site._registry[model]
    request = _superuser_request(admin_user)
    obj = BUILDERS[model]()
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, obj)
    assert not model_admin.has_delete_permission(request, obj)

    assert admin_client.post(_url(model, "add"), {}).status_code == 403
    assert admin_client.post(_url(model, "change", obj.pk), {}).status_code == 403
    assert admin_client.post(_url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403
    assert model.objects.filter(pk=obj.pk).exists()
    # Still viewable.
    assert admin_client.get(_url(model, "change", obj.pk)).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("model", [cm.PaymentConfig, cm.RewardSegmentTarget], ids=lambda m: m._meta.label)
def test_reward_rule_rows_are_edited_only_on_the_reward_page(model, admin_client):
    obj = BUILDERS[model]()
    assert admin_client.post(_url(model, "add"), {}).status_code == 403
    assert admin_client.post(_url(model, "change", obj.pk), {}).status_code == 403
    assert admin_client.post(_url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403


def _autocomplete_fields():
    pairs = set()
    for model, model_admin in admin.site._registry.items():
        pairs.update((model, name) for name in model_admin.autocomplete_fields)
        for inline in model_admin.inlines:
            pairs.update((inline.model, name) for name in inline.autocomplete_fields)
    return sorted(pairs, key=lambda pair: (pair[0]._meta.label, pair[1]))


@pytest.mark.django_db
@pytest.mark.parametrize(
    "source_model, field_name", _autocomplete_fields(), ids=lambda v: v if isinstance(v, str) else v._meta.label
)
def test_autocomplete_answers_in_the_same_number_of_queries_for_2_and_8_choices(admin_client, source_model, field_name):
    target = source_model._meta.get_field(field_name).remote_field.model
    params = {
        "app_label": source_model._meta.app_label,
        "model_name": source_model._meta.model_name,
        "field_name": field_name,
        "term": "",
    }
    url = reverse("admin:autocomplete")
    counts = []
    for total in (2, 8):
        while target.objects.count() < total:
            BUILDERS[target]()
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(url, params)
        assert response.status_code == 200
        assert len(response.json()["results"]) >= total
        counts.append(len(queries))
    assert counts[0] == counts[1]


# ---------------------------------------------------------------------------------------
# POST data as the browser would send it from a rendered change / add page.
# ---------------------------------------------------------------------------------------


def _bound_field_data(bound_field) -> dict:
    name, field, value = bound_field.html_name, bound_field.field, bound_field.value()
    widget = getattr(field.widget, "widget", field.widget)  # unwrap RelatedFieldWidgetWrapper
    if isinstance(widget, forms.MultiWidget):
        parts = widget.decompress(value) if value else [None] * len(widget.widgets)
        return {
            f"{name}{suffix}": "" if part is None else str(part)
            for suffix, part in zip(widget.widgets_names, parts, strict=True)
        }
    if isinstance(field, forms.BooleanField):
        return {name: "on"} if value else {}
    if isinstance(field, forms.ModelMultipleChoiceField):
        return {name: [str(v) for v in value or []]}
    if isinstance(widget, Input):  # what the page holds (a write-only input holds nothing)
        value = widget.get_context(name, value, {})["widget"]["value"]
    return {name: "" if value is None else str(value)}


def _form_data(form) -> dict:
    data = {}
    for bound_field in form:
        data.update(_bound_field_data(bound_field))
    return data


def page_data(response) -> dict:
    """The main form and every inline formset (stored rows only) of a rendered admin page."""
    data = _form_data(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        data.update(_form_data(formset.management_form))
        data[f"{formset.prefix}-TOTAL_FORMS"] = str(formset.initial_form_count())
        for form in formset.initial_forms:
            data.update(_form_data(form))
    return data


def add_inline_row(data: dict, prefix: str, values: dict) -> None:
    index = int(data[f"{prefix}-TOTAL_FORMS"])
    data[f"{prefix}-TOTAL_FORMS"] = str(index + 1)
    for name, value in values.items():
        data[f"{prefix}-{index}-{name}"] = value


# ---------------------------------------------------------------------------------------
# Rewards: R5 payment configs and R6 targeting
# ---------------------------------------------------------------------------------------


@pytest.fixture
def shop():
    return f.BrandFactory(name="SHOP")


def reward_add_data(client, brand, **fields) -> dict:
    data = page_data(client.get(_url(cm.Reward, "add")))
    data.update(
        {
            "org": str(brand.org_id),
            "brand": str(brand.pk),
            "name": "Coffee mug",
            "redemption_type": choices.RedemptionType.PHYSICAL_REWARD,
            "intouch_points": "0",
            "start_time_0": "2025-01-01",
            "start_time_1": "00:00:00",
            "end_time_0": "2035-01-01",
            "end_time_1": "00:00:00",
            **fields,
        }
    )
    return data


def _errors_of(response) -> str:
    assert response.status_code == 200, "expected the form again, with errors"
    return response.content.decode()


@pytest.mark.django_db
def test_reward_with_free_and_points_configs_is_refused_and_nothing_saved(admin_client, shop):
    data = reward_add_data(admin_client, shop)
    add_inline_row(data, "payment_configs", {"mode": "FREE"})
    add_inline_row(data, "payment_configs", {"mode": "POINTS", "points": "100"})

    content = _errors_of(admin_client.post(_url(cm.Reward, "add"), data))

    assert "FREE cannot be combined with other payment modes" in content
    assert not cm.Reward.objects.exists()
    assert not cm.PaymentConfig.objects.exists()


@pytest.mark.django_db
def test_conv_ratio_config_on_a_voucher_is_refused(admin_client, shop):
    data = reward_add_data(admin_client, shop, redemption_type=choices.RedemptionType.VOUCHER)
    add_inline_row(data, "payment_configs", {"mode": "CONV_RATIO", "conversion_ratio": "0.35"})

    content = _errors_of(admin_client.post(_url(cm.Reward, "add"), data))

    assert "CONV_RATIO is only allowed for" in content
    assert not cm.Reward.objects.exists()


@pytest.mark.django_db
def test_six_payment_configs_are_refused(admin_client, shop):
    data = reward_add_data(admin_client, shop)
    for points in range(1, 7):
        add_inline_row(data, "payment_configs", {"mode": "POINTS", "points": str(points)})

    content = _errors_of(admin_client.post(_url(cm.Reward, "add"), data))

    assert "at most 5 payment configs per reward" in content
    assert not cm.Reward.objects.exists()


@pytest.mark.django_db
def test_reward_without_config_and_without_points_is_refused(admin_client, shop):
    data = reward_add_data(admin_client, shop, intouch_points="0")

    content = _errors_of(admin_client.post(_url(cm.Reward, "add"), data))

    assert "must have a FREE payment config" in content
    assert not cm.Reward.objects.exists()


@pytest.mark.django_db
def test_conv_ratio_config_without_ratio_is_refused_on_its_row(admin_client, shop):
    data = reward_add_data(admin_client, shop, redemption_type=choices.RedemptionType.MILES)
    add_inline_row(data, "payment_configs", {"mode": "CONV_RATIO"})

    content = _errors_of(admin_client.post(_url(cm.Reward, "add"), data))

    assert "must be &gt; 0" in content
    assert not cm.Reward.objects.exists()


@pytest.mark.django_db
def test_valid_reward_with_points_and_cash_configs_saves(admin_client, shop):
    data = reward_add_data(admin_client, shop)
    add_inline_row(data, "payment_configs", {"mode": "POINTS", "points": "100"})
    add_inline_row(data, "payment_configs", {"mode": "POINTS_CASH", "points": "50", "cash_amount": "2.50"})

    response = admin_client.post(_url(cm.Reward, "add"), data)

    assert response.status_code == 302, response.content.decode()[:2000]
    reward = cm.Reward.objects.get()
    assert sorted(reward.payment_configs.values_list("mode", flat=True)) == ["POINTS", "POINTS_CASH"]


@pytest.mark.django_db
def test_conv_ratio_reward_saves_alone(admin_client, shop):
    data = reward_add_data(admin_client, shop, redemption_type=choices.RedemptionType.MILES)
    add_inline_row(data, "payment_configs", {"mode": "CONV_RATIO", "conversion_ratio": "0.35"})

    assert admin_client.post(_url(cm.Reward, "add"), data).status_code == 302
    assert cm.Reward.objects.get().payment_configs.get().conversion_ratio == Decimal("0.35")


@pytest.mark.django_db
def test_adding_a_free_config_to_a_points_reward_changes_nothing(admin_client):
    config = f.PaymentConfigFactory(points=Decimal("50"))
    reward = config.reward
    url = _url(cm.Reward, "change", reward.pk)
    data = page_data(admin_client.get(url))
    data["name"] = "Renamed"
    add_inline_row(data, "payment_configs", {"mode": "FREE"})

    content = _errors_of(admin_client.post(url, data))

    assert "FREE cannot be combined" in content
    reward.refresh_from_db()
    assert reward.name != "Renamed"
    assert list(reward.payment_configs.values_list("mode", flat=True)) == ["POINTS"]


@pytest.mark.django_db
def test_replacing_a_points_config_by_free_on_the_same_page_saves(admin_client):
    config = f.PaymentConfigFactory(points=Decimal("50"))
    reward = config.reward
    url = _url(cm.Reward, "change", reward.pk)
    data = page_data(admin_client.get(url))
    data["payment_configs-0-DELETE"] = "on"
    add_inline_row(data, "payment_configs", {"mode": "FREE"})

    assert admin_client.post(url, data).status_code == 302
    assert list(reward.payment_configs.values_list("mode", flat=True)) == ["FREE"]


@pytest.mark.django_db
def test_reward_targeted_by_card_series_and_labels_is_refused(admin_client, shop):
    card_series = f.CardSeriesFactory(org=shop.org)
    label = f.LabelFactory(org=shop.org)
    data = reward_add_data(admin_client, shop, card_series=[str(card_series.pk)], labels=[str(label.pk)])
    add_inline_row(data, "payment_configs", {"mode": "FREE"})

    content = _errors_of(admin_client.post(_url(cm.Reward, "add"), data))

    assert "at most one kind of entity" in content
    assert not cm.Reward.objects.exists()


@pytest.mark.django_db
def test_reward_targeted_by_segments_and_labels_is_refused(admin_client, shop):
    partition = f.PartitionFactory(segment__org=shop.org)
    label = f.LabelFactory(org=shop.org)
    data = reward_add_data(admin_client, shop, labels=[str(label.pk)])
    add_inline_row(data, "payment_configs", {"mode": "FREE"})
    add_inline_row(data, "segment_targets", {"partition": str(partition.pk)})

    content = _errors_of(admin_client.post(_url(cm.Reward, "add"), data))

    assert "uses segments and labels" in content
    assert not cm.Reward.objects.exists()
    assert not cm.RewardSegmentTarget.objects.exists()


@pytest.mark.django_db
def test_reward_targeted_by_segments_only_saves(admin_client, shop):
    partition = f.PartitionFactory(segment__org=shop.org)
    data = reward_add_data(admin_client, shop)
    add_inline_row(data, "payment_configs", {"mode": "FREE"})
    add_inline_row(data, "segment_targets", {"partition": str(partition.pk)})

    assert admin_client.post(_url(cm.Reward, "add"), data).status_code == 302
    assert list(cm.Reward.objects.get().target_partitions.all()) == [partition]


@pytest.mark.django_db
def test_reward_linking_another_orgs_coupon_series_is_refused(admin_client, shop):
    foreign_series = f.CouponSeriesFactory()
    data = reward_add_data(
        admin_client, shop, redemption_type=choices.RedemptionType.VOUCHER, coupon_series=str(foreign_series.pk)
    )
    add_inline_row(data, "payment_configs", {"mode": "FREE"})

    content = _errors_of(admin_client.post(_url(cm.Reward, "add"), data))

    assert "belongs to another organisation" in content
    assert not cm.Reward.objects.exists()


@pytest.mark.django_db
def test_reward_level_limit_added_inline_takes_the_rewards_org(admin_client, shop):
    data = reward_add_data(admin_client, shop)
    add_inline_row(data, "payment_configs", {"mode": "FREE"})
    add_inline_row(
        data,
        "constraints",
        {
            "level": "CUSTOMER",
            "kpi": "QUANTITY",
            "frequency": "DAYS",
            "interval": "1",
            "window_type": "FIXED",
            "week_start_day": "MONDAY",
            "limit_value": "2",
            "is_active": "on",
        },
    )

    assert admin_client.post(_url(cm.Reward, "add"), data).status_code == 302
    constraint = cm.RewardConstraint.objects.get()
    assert constraint.org_id == shop.org_id
    assert constraint.reward == cm.Reward.objects.get()


@pytest.mark.django_db
def test_reward_changelist_shows_payment_modes_and_finds_a_reward_by_id(admin_client):
    config = f.PaymentConfigFactory(points=Decimal("50"))
    other = f.RewardFactory(name="Unrelated", brand__name="Other")  # no digits: the term is only an id

    response = admin_client.get(_url(cm.Reward, "changelist"), {"q": str(config.reward.pk)})

    content = response.content.decode()
    assert "POINTS 50" in content
    assert _url(cm.Reward, "change", config.reward.pk) in content
    assert _url(cm.Reward, "change", other.pk) not in content


# ---------------------------------------------------------------------------------------
# Custom field definitions: at most 10 ISSUE_REWARD per org
# ---------------------------------------------------------------------------------------


def _definition_data(org, name, scope=choices.CustomFieldScope.ISSUE_REWARD):
    return {
        "org": str(org.pk),
        "name": name,
        "scope": scope,
        "field_type": choices.CustomFieldType.STRING,
        "enum_values": "[]",
        "default_value": "",
    }


@pytest.mark.django_db
def test_eleventh_issue_reward_custom_field_is_refused(admin_client):
    org = f.OrganisationFactory()
    for i in range(10):
        cm.CustomFieldDefinition.objects.create(
            org=org, name=f"f{i}", scope=choices.CustomFieldScope.ISSUE_REWARD, field_type="STRING"
        )

    response = admin_client.post(_url(cm.CustomFieldDefinition, "add"), _definition_data(org, "f10"))

    assert "at most 10 custom fields with scope ISSUE_REWARD" in _errors_of(response)
    assert cm.CustomFieldDefinition.objects.filter(org=org).count() == 10
    # Other scopes and other orgs are not limited by it.
    add = admin_client.post(
        _url(cm.CustomFieldDefinition, "add"), _definition_data(org, "r1", choices.CustomFieldScope.REWARD)
    )
    assert add.status_code == 302
    other_org = admin_client.post(
        _url(cm.CustomFieldDefinition, "add"), _definition_data(f.OrganisationFactory(), "f10")
    )
    assert other_org.status_code == 302


@pytest.mark.django_db
def test_enum_custom_field_without_default_is_refused(admin_client):
    org = f.OrganisationFactory()
    data = {**_definition_data(org, "size"), "field_type": "ENUM", "enum_values": '["S", "M"]'}

    assert "an ENUM needs a default value" in _errors_of(admin_client.post(_url(cm.CustomFieldDefinition, "add"), data))


# ---------------------------------------------------------------------------------------
# Secrets: vendor header values, card numbers
# ---------------------------------------------------------------------------------------


@pytest.fixture
def vendor_config():
    return cm.VendorRedemptionConfig.objects.create(
        vendor=f.VendorFactory(),
        name="redeem",
        url="https://vendor.example/redeem",
        headers={"Authorization": "Bearer s3cr3t-token", "X-Api-Key": "k3y-value"},
    )


@pytest.mark.django_db
def test_vendor_header_values_are_never_shown(admin_client, admin_user, vendor_config):
    pages = [
        admin_client.get(_url(cm.VendorRedemptionConfig, "changelist")),
        admin_client.get(_url(cm.VendorRedemptionConfig, "change", vendor_config.pk)),
    ]
    for page in pages:
        content = page.content.decode()
        assert page.status_code == 200
        assert "s3cr3t-token" not in content and "k3y-value" not in content
        assert "Authorization" in content and "X-Api-Key" in content

    # A staff member who may only view the config sees the names, not the values.
    viewer = f.UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_vendorredemptionconfig"))
    f.UserProfileFactory(user=viewer, org=vendor_config.vendor.org)
    admin_client.force_login(viewer)
    content = admin_client.get(_url(cm.VendorRedemptionConfig, "change", vendor_config.pk)).content.decode()
    assert "Authorization" in content
    assert "s3cr3t-token" not in content


@pytest.mark.django_db
def test_vendor_headers_left_unchanged_keep_their_stored_values(admin_client, vendor_config):
    url = _url(cm.VendorRedemptionConfig, "change", vendor_config.pk)
    data = page_data(admin_client.get(url))
    # jsonb keeps its own key order: compare as a set of lines.
    assert sorted(data["headers_text"].splitlines()) == ["Authorization: (unchanged)", "X-Api-Key: (unchanged)"]
    data["headers_text"] = "Authorization: (unchanged)\nx-api-key:\nX-Trace: on"

    assert admin_client.post(url, data).status_code == 302
    vendor_config.refresh_from_db()
    assert vendor_config.headers == {"Authorization": "Bearer s3cr3t-token", "x-api-key": "k3y-value", "X-Trace": "on"}

    data["headers_text"] = "Authorization: Bearer rotated"
    assert admin_client.post(url, data).status_code == 302
    vendor_config.refresh_from_db()
    assert vendor_config.headers == {"Authorization": "Bearer rotated"}


@pytest.mark.django_db
def test_new_vendor_header_without_a_value_is_refused(admin_client, vendor_config):
    url = _url(cm.VendorRedemptionConfig, "change", vendor_config.pk)
    data = page_data(admin_client.get(url))
    data["headers_text"] = "Authorization: (unchanged)\nX-New:"

    assert "X-New has no stored value" in _errors_of(admin_client.post(url, data))
    vendor_config.refresh_from_db()
    assert "X-New" not in vendor_config.headers


@pytest.mark.django_db
def test_card_numbers_are_never_shown_in_full(admin_client):
    card = _card()
    card.number = "4000123412349876"
    card.save()
    pages = [
        admin_client.get(_url(cm.Card, "changelist")),
        admin_client.get(_url(cm.Card, "change", card.pk)),
        admin_client.get(_url(cm.Customer, "change", card.customer_id)),
        admin_client.get(_url(cm.Card, "changelist"), {"q": "nothing"}),
    ]
    for page in pages:
        assert page.status_code == 200
        assert "4000123412349876" not in page.content.decode()
    assert "****9876" in pages[0].content.decode()


@pytest.mark.django_db
def test_card_saved_with_a_blank_number_keeps_it(admin_client):
    card = _card()
    number = card.number
    url = _url(cm.Card, "change", card.pk)
    data = page_data(admin_client.get(url))
    assert data["number"] == ""
    data["status"] = choices.CardStatus.SUSPENDED

    assert admin_client.post(url, data).status_code == 302
    card.refresh_from_db()
    assert (card.number, card.status) == (number, choices.CardStatus.SUSPENDED)

    data["number"] = "5500000000000004"
    assert admin_client.post(url, data).status_code == 302
    card.refresh_from_db()
    assert card.number == "5500000000000004"


# ---------------------------------------------------------------------------------------
# Coupon series: stock on the list
# ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_coupon_series_list_shows_pool_stock_and_filters_low_stock(admin_client):
    low = f.CouponSeriesFactory(name="Low series", low_stock_threshold=5)
    full = f.CouponSeriesFactory(name="Full series", low_stock_threshold=2)
    cm.CouponCode.objects.bulk_create(
        [cm.CouponCode(series=low, code=f"L{i}") for i in range(3)]
        + [cm.CouponCode(series=full, code=f"F{i}") for i in range(4)]
    )

    content = admin_client.get(_url(cm.CouponSeries, "changelist")).content.decode()
    assert "3 (low)" in content
    assert ">4<" in content

    content = admin_client.get(_url(cm.CouponSeries, "changelist"), {"stock": "low"}).content.decode()
    assert _url(cm.CouponSeries, "change", low.pk) in content
    assert _url(cm.CouponSeries, "change", full.pk) not in content

    response = admin_client.get(_url(cm.CouponSeries, "changelist"), {"o": "4"})  # sort by stock
    assert response.status_code == 200


@pytest.mark.django_db
def test_coupon_series_page_shows_counts_a_sample_and_the_upload_link(admin_client):
    series = f.CouponSeriesFactory()
    cm.CouponCode.objects.bulk_create([cm.CouponCode(series=series, code=f"S{i:03}") for i in range(25)])

    content = admin_client.get(_url(cm.CouponSeries, "change", series.pk)).content.decode()

    assert "25 available" in content
    assert "S000, S001" in content and "S010" not in content
    assert reverse("admin:catalogue_couponseries_upload_codes", args=[series.pk]) in content


# ---------------------------------------------------------------------------------------
# Staff who are not superusers see their own org only
# ---------------------------------------------------------------------------------------


@pytest.fixture
def org_staff_client(client):
    org = f.OrganisationFactory(name="Own org")
    user = f.UserFactory(is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_reward", "change_reward", "view_brand", "view_organisation"])
    )
    f.UserProfileFactory(user=user, org=org)
    client.force_login(user)
    client.org = org
    return client


@pytest.mark.django_db
def test_staff_see_only_their_orgs_rewards(org_staff_client):
    own = f.RewardFactory(brand__org=org_staff_client.org)
    foreign = f.RewardFactory()

    content = org_staff_client.get(_url(cm.Reward, "changelist")).content.decode()

    assert _url(cm.Reward, "change", own.pk) in content
    assert _url(cm.Reward, "change", foreign.pk) not in content
    assert org_staff_client.get(_url(cm.Reward, "change", own.pk)).status_code == 200
    assert org_staff_client.get(_url(cm.Reward, "change", foreign.pk)).status_code == 302  # "does not exist"


@pytest.mark.django_db
def test_staff_autocomplete_offers_only_their_orgs_brands(org_staff_client):
    own = f.BrandFactory(org=org_staff_client.org, name="OWNBRAND")
    f.BrandFactory(name="FOREIGNBRAND")

    response = org_staff_client.get(
        reverse("admin:autocomplete"),
        {"app_label": "catalogue", "model_name": "reward", "field_name": "brand", "term": "BRAND"},
    )

    assert response.status_code == 200
    assert [r["id"] for r in response.json()["results"]] == [str(own.pk)]


@pytest.mark.django_db
def test_staff_without_a_profile_see_nothing(client):
    user = f.UserFactory(is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_reward"))
    client.force_login(user)
    reward = f.RewardFactory()

    content = client.get(_url(cm.Reward, "changelist")).content.decode()

    assert _url(cm.Reward, "change", reward.pk) not in content


# ---------------------------------------------------------------------------------------
# Goodwill requests and bulk jobs (staff/admin.py): look-ups only, scoped like the rest
# ---------------------------------------------------------------------------------------


def test_goodwill_requests_and_bulk_jobs_are_registered_but_not_bulk_rows():
    # A job's rows (up to 20,000) are counted on its page and listed on the staff page.
    assert {GoodwillRequest, BulkJob} <= set(admin.site._registry)
    assert BulkJobRow not in admin.site._registry


def _org_viewer(client, org, *codenames):
    user = f.UserFactory(is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="staff", codename__in=codenames))
    f.UserProfileFactory(user=user, org=org)
    client.force_login(user)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize(
    "model, searches",
    [
        (GoodwillRequest, lambda gr: [str(gr.pk), f"goodwill-{gr.pk}", f"staff-{gr.submit_token}", gr.customer.mobile]),
        (BulkJob, lambda job: [str(job.pk), f"bulk-{job.pk}-1", f"file-request-{job.pk}", job.file_name,
                               job.rows.get(row_number=1).customer.external_id, f"nobody{job.pk}@example.com"]),
    ],
    ids=["GoodwillRequest", "BulkJob"],
)
def test_staff_of_one_org_never_see_another_orgs_goodwill_requests_or_bulk_jobs(client, admin_client, model, searches):
    own, foreign = BUILDERS[model](), BUILDERS[model]()
    assert own.org_id != foreign.org_id
    viewer = _org_viewer(client, own.org, f"view_{model._meta.model_name}")
    changelist = _url(model, "changelist")

    content = viewer.get(changelist).content.decode()
    assert _url(model, "change", own.pk) in content
    assert _url(model, "change", foreign.pk) not in content
    assert not re.search(rf"(?<![\w-]){re.escape(foreign.org.name)}(?![\w-])", content)  # no org filter
    for term in searches(foreign):
        found = viewer.get(changelist, {"q": term}).content.decode()
        assert _url(model, "change", foreign.pk) not in found, term
    for term in searches(own):
        assert _url(model, "change", own.pk) in viewer.get(changelist, {"q": term}).content.decode(), term

    # Another org's row answers exactly like an id that exists nowhere ("does not exist").
    assert viewer.get(_url(model, "change", own.pk)).status_code == 200
    for view in ("change", "history", "delete"):
        foreign_answer = viewer.get(_url(model, view, foreign.pk))
        unknown_answer = viewer.get(_url(model, view, 2_000_000_001))
        assert foreign_answer.status_code == unknown_answer.status_code, view
        assert foreign_answer.get("Location") == unknown_answer.get("Location"), view
    assert viewer.get(_url(model, "change", foreign.pk)).status_code == 302  # to the index: "does not exist"

    # Superusers see every org, and find the other org's row by the same searches.
    everything = admin_client.get(changelist).content.decode()
    assert _url(model, "change", own.pk) in everything and _url(model, "change", foreign.pk) in everything
    for term in searches(foreign):
        found = admin_client.get(changelist, {"q": term}).content.decode()
        assert _url(model, "change", foreign.pk) in found, term
        assert _url(model, "change", own.pk) not in found, term


@pytest.mark.django_db
def test_goodwill_request_and_bulk_job_pages_show_who_and_link_to_the_staff_pages(admin_client):
    decided = _goodwill_request()
    if decided.decided_by is None:
        decided = _goodwill_request()
    listed = admin_client.get(_url(GoodwillRequest, "changelist")).content.decode()
    assert "Approved / rejected by" in listed and decided.decided_by.username in listed
    assert decided.requester.username in listed
    page = admin_client.get(_url(GoodwillRequest, "change", decided.pk)).content.decode()
    assert f"goodwill-{decided.pk}" in page and reverse("staff:goodwill_request", args=[decided.pk]) in page

    job = _bulk_job()
    page = admin_client.get(_url(BulkJob, "change", job.pk)).content.decode()
    assert "Invalid (not issued): 1" in page and "Waiting: 1" in page
    assert reverse("staff:bulk_job", args=[job.pk]) in page
    assert job.created_by.username in page
