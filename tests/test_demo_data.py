"""The demo catalogue and `manage.py load_demo` (docs/catalogue-format.md, "Demo data")."""

import datetime
import importlib.util
import json
import zoneinfo
from decimal import Decimal
from pathlib import Path

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.utils import timezone

from catalogue import models as cm
from catalogue.catalogue_io import jsonio
from catalogue.catalogue_io.exporter import catalogue_export
from catalogue.catalogue_io.importer import catalogue_import, document_load
from catalogue.choices import RedemptionType
from catalogue.management.commands.load_demo import DEMO_FILE
from issuance.eligibility import customer_facts, eligible_rewards_q
from issuance.fake_vendor import FakeVendor
from issuance.groups import API_GROUP
from issuance.models import PointsAccount
from issuance.vendors import vendor_call
from tests.conftest import basic_auth

DEMO_ORG = 4000085
CHILD_ORG = 4000876
FAKE_VENDOR_URL = "http://127.0.0.1:8099"


def table_counts() -> dict[str, int]:
    return {model._meta.label: model.objects.count() for model in apps.get_models()}


@pytest.fixture
def demo(db):
    call_command("load_demo", verbosity=0)


def _generator():
    path = Path(DEMO_FILE).with_name("make_demo.py")
    spec = importlib.util.spec_from_file_location("make_demo", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_demo_file_is_exactly_what_the_generator_writes():
    assert DEMO_FILE.read_text(encoding="utf-8") == jsonio.dumps(_generator().build())


def test_load_demo_refuses_when_demo_data_is_not_allowed(db, settings):
    settings.ALLOW_DEMO_DATA = False
    before = table_counts()
    with pytest.raises(CommandError, match="ALLOW_DEMO_DATA is False"):
        call_command("load_demo")
    assert table_counts() == before
    assert not cm.Organisation.objects.exists()


def test_load_demo_twice_changes_nothing_the_second_time(demo, capsys):
    counts = table_counts()
    stamps = dict(cm.Reward.objects.values_list("pk", "updated_at"))
    call_command("load_demo")
    out = capsys.readouterr().out
    assert "Imported: 0 created, 0 changed." in out
    assert "user admin: unchanged" in out and "user demo_till: unchanged" in out
    assert table_counts() == counts
    assert dict(cm.Reward.objects.values_list("pk", "updated_at")) == stamps


def test_demo_rewards_listing_cache_equals_the_rules(demo):
    """load_demo goes through the importer, which refreshes every reward's cached prices and
    targeting kind (docs/list-api.md, "Prices and targeting")."""
    from catalogue.selectors import reward_listing_drift

    assert cm.Reward.objects.exists()
    assert reward_listing_drift() == []
    assert cm.Reward.objects.exclude(targeting="NONE").exists()
    assert cm.Reward.objects.filter(list_points__isnull=False).exists()


def test_demo_org_brand_till_and_main_customer_of_the_examples(demo):
    org = cm.Organisation.objects.get(pk=DEMO_ORG)
    assert org.name == "Demo Org" and org.allow_skip_validation
    assert cm.Brand.objects.filter(org=org, name="BUKL").exists()
    assert cm.Till.objects.filter(org=org, code="demo_till").exists()
    customer = cm.Customer.objects.get(pk=555567088)  # the list page's userId
    assert (customer.org_id, customer.mobile) == (DEMO_ORG, "11223569865")
    assert customer.points_account.balance == Decimal("1000000")
    child = cm.Organisation.objects.get(pk=CHILD_ORG)
    assert child.parent_id == DEMO_ORG
    assert cm.Brand.objects.filter(org=child).exists() and cm.Reward.objects.filter(org=child).count() >= 3
    assert cm.Customer.objects.filter(org=child).count() >= 2


def test_demo_conversion_ratio_rewards_of_the_bulk_page(demo):
    for reward_id in (311509, 308697):
        reward = cm.Reward.objects.get(pk=reward_id)
        assert (reward.brand.name, reward.redemption_type) == ("BUKL", RedemptionType.MILES)
        (config,) = reward.payment_configs.all()
        assert (config.mode, config.conversion_ratio) == ("CONV_RATIO", Decimal("0.44"))
        assert reward.enabled and reward.start_time < timezone.now() < reward.end_time


def test_demo_coupon_rewards_one_healthy_one_invalid(demo):
    now = timezone.now()
    healthy = cm.Reward.objects.get(pk=125099)
    assert healthy.redemption_type == RedemptionType.INTOUCH_REWARD
    assert healthy.intouch_points == Decimal("10") and not healthy.payment_configs.exists()
    series = healthy.coupon_series
    assert series.enabled and series.valid_till > now + datetime.timedelta(days=365)
    assert series.pool.count() >= 300
    invalid = cm.Reward.objects.get(pk=125101)
    assert invalid.redemption_type == RedemptionType.INTOUCH_REWARD
    bad = invalid.coupon_series
    assert not bad.enabled and bad.valid_till < now and not bad.pool.exists()


SEGMENT_REWARDS = {"r1": 500001, "r2": 500002, "r3": 500003, "r4": 500004}
SEGMENT_USERS = {"user1": "919000000001", "user2": "919000000002", "user3": "919000000003"}


def test_demo_segment_tables_of_the_bulk_page_verbatim(demo):
    def pairs(rows):
        return {(row.partition.segment.name, row.partition.name) for row in rows}

    targets = {name: pairs(cm.RewardSegmentTarget.objects.filter(reward_id=pk)) for name, pk in SEGMENT_REWARDS.items()}
    assert targets == {
        "r1": {("s1", "p1"), ("s2", "p2")},
        "r2": {("s1", "p2"), ("s2", "p1")},
        "r3": {("s1", "p1"), ("s3", "p1")},
        "r4": set(),
    }
    customers = {
        name: cm.Customer.objects.get(org_id=DEMO_ORG, mobile=mobile) for name, mobile in SEGMENT_USERS.items()
    }
    memberships = {name: pairs(c.segment_memberships.all()) for name, c in customers.items()}
    assert memberships == {"user1": {("s2", "p1"), ("s3", "p2")}, "user2": {("s1", "p1")}, "user3": set()}
    # ... and the page's "Reward details" column, by the engine's own eligibility rule.
    expected = {"user1": {"r2", "r4"}, "user2": {"r1", "r3", "r4"}, "user3": {"r4"}}
    for name, customer in customers.items():
        ids = cm.Reward.objects.filter(pk__in=SEGMENT_REWARDS.values()).filter(
            eligible_rewards_q(customer_facts(customer))
        )
        names = {n for n, pk in SEGMENT_REWARDS.items() if pk in set(ids.values_list("pk", flat=True))}
        assert names == expected[name], name


def test_demo_group_vendor_cart_targeting_limits_fields_and_statuses(demo):
    group = cm.CustomerGroup.objects.get(external_id="11223569865")
    assert group.primary_member_id == 555567088 and group.org_id == DEMO_ORG
    assert group.memberships.filter(customer_id=555567088).exists()
    assert PointsAccount.objects.get(group=group).balance > 0
    vendor_reward = cm.Reward.objects.filter(
        org_id=DEMO_ORG, redemption_type="VENDOR_ONLY_REWARD", vendor__isnull=False
    ).first()
    assert vendor_reward.vendor_redemption.url == "http://127.0.0.1:8099/redeem/ok"
    assert vendor_reward.vendor_redemption.vendor_id == vendor_reward.vendor_id
    assert "voucher" in vendor_reward.vendor_redemption.context_map
    assert cm.Reward.objects.filter(
        org_id=DEMO_ORG, redemption_type="CART_PROMOTION", cart_promotion__isnull=False
    ).exists()
    assert cm.Reward.objects.get(pk=500101).card_series.exists()
    assert cm.Reward.objects.get(pk=500102).labels.exists()
    assert cm.Reward.objects.get(pk=500103).target_tiers.exists()
    assert cm.RewardConstraint.objects.filter(reward__isnull=False, level="CUSTOMER", frequency="DAYS").exists()
    assert cm.RewardConstraint.objects.filter(org_id=DEMO_ORG, level="CUSTOMER_REDEMPTION_TYPE").exists()
    field = cm.CustomFieldDefinition.objects.get(org_id=DEMO_ORG, name="issue-reward-1")
    assert (field.scope, field.field_type) == ("ISSUE_REWARD", "STRING")
    statuses = set(cm.FulfillmentStatus.objects.filter(org_id=DEMO_ORG, enabled=True).values_list("name", flat=True))
    assert {"BOOKED", "SHIPPED", "DELIVERED"} <= statuses


def test_demo_vendor_configs_work_against_the_fake_vendor(demo):
    """Every demo config, called by the engine's vendor client against the demo's fake vendor
    (moved to a free port): the ok ones yield the connected-orgs page's vendor entry keys."""
    server = FakeVendor().start()
    try:
        for config in cm.VendorRedemptionConfig.objects.order_by("pk"):
            assert config.url.startswith(FAKE_VENDOR_URL)
            config.url = config.url.replace(FAKE_VENDOR_URL, server.base_url)
            variables = {
                "reference": f"demo-{config.pk}",
                "rewardId": 500201,
                "mobile": "11223569865",
                "externalId": None,
                "points": Decimal("500"),
                "transactionNumber": "t1",
            }
            answer = vendor_call(config, variables=variables)
            if config.url.endswith("/redeem/ok"):
                assert answer.ok, answer.error
                assert answer.context["voucher"] == f"V-demo-{config.pk}"
                assert set(answer.context) == {"voucher", "valid_till", "offer_name", "coupon_series_id"}
            else:
                assert not answer.ok and answer.error == "no voucher in the answer"
        assert server.calls[0]["body"]["reference"] == "demo-7"
        assert server.calls[0]["headers"]["Authorization"] == "Bearer demo-vendor-token"
    finally:
        server.stop()


def test_demo_has_a_few_hundred_rewards_of_every_redemption_type(demo):
    rewards = cm.Reward.objects.filter(org_id=DEMO_ORG)
    assert rewards.count() >= 300
    assert set(rewards.values_list("redemption_type", flat=True)) == set(RedemptionType.values)
    assert cm.Category.objects.filter(org_id=DEMO_ORG, rewards__isnull=False).distinct().count() >= 10


def test_demo_logins(demo):
    users = get_user_model().objects
    admin = users.get(username="admin")
    assert admin.is_staff and admin.is_superuser and admin.check_password("admin-demo")
    assert admin.profile.org_id == DEMO_ORG
    till_user = users.get(username="demo_till")
    assert till_user.check_password("demo-pass")
    assert not till_user.is_staff and not till_user.is_superuser
    assert till_user.profile.org_id == DEMO_ORG
    assert till_user.tills.filter(code="demo_till", org_id=DEMO_ORG).exists()
    assert till_user.groups.filter(name=API_GROUP).exists()
    assert till_user.has_perm("issuance.api_issue")


def test_load_demo_puts_back_a_changed_demo_password(demo):
    admin = get_user_model().objects.get(username="admin")
    admin.set_password("something-else")
    admin.save()
    call_command("load_demo", verbosity=0)
    admin.refresh_from_db()
    assert admin.check_password("admin-demo")


@pytest.mark.django_db(transaction=True)
def test_demo_catalogue_round_trips_through_export_and_import():
    catalogue_import(document=document_load(DEMO_FILE.read_bytes()))
    first = jsonio.dumps(catalogue_export(include_secrets=True))
    call_command("flush", "--noinput", verbosity=0)
    catalogue_import(document=document_load(first))
    assert jsonio.dumps(catalogue_export(include_secrets=True)) == first


def test_demo_rewards_carry_their_creation_dates_from_the_file(demo):
    document = document_load(DEMO_FILE.read_bytes())
    in_file = {r["id"]: r["createdAt"] for r in document["rewards"]}
    assert len(in_file) == cm.Reward.objects.count()
    stored = {
        pk: created.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for pk, created in cm.Reward.objects.values_list("pk", "created_at")
    }
    assert stored == in_file
    as_of = datetime.datetime(2025, 5, 8, tzinfo=datetime.UTC)
    for reward in cm.Reward.objects.all():  # set up before the demo's day, and before it starts
        assert reward.created_at < as_of
        assert reward.created_at < reward.start_time or reward.start_time > as_of


def test_demo_created_on_days_ago_counts_from_the_creation_dates_not_the_load(demo):
    api = Client(HTTP_AUTHORIZATION=basic_auth("demo_till", "demo-pass"))
    url = "/api_gateway/rewards/core/v1/user/reward/brand/BUKL"

    def listing(**params) -> dict:
        response = api.get(url, {"userId": 555567088, "size": 100, **params})
        assert response.status_code == 200, response.content
        return response.json()

    everything = listing()
    total = everything["pagingDto"]["totalElements"]
    assert total > 50
    # Newest first by default, by the file's createdAt.
    first = [r["id"] for r in everything["rewardList"][:5]]
    newest = cm.Reward.objects.filter(pk__in=[r["id"] for r in everything["rewardList"]]).order_by("-created_at", "-pk")
    assert first == list(newest.values_list("pk", flat=True)[:5])
    # Loaded just now, yet every reward was created more than a day ago ...
    assert listing(createdOnDaysAgo=1)["pagingDto"]["totalElements"] == total
    # ... and the ages spread: a cut in mid-2024 splits them, one before the oldest keeps none.
    today = timezone.now().astimezone(zoneinfo.ZoneInfo("Asia/Kolkata")).date()
    middle = listing(createdOnDaysAgo=(today - datetime.date(2024, 6, 1)).days)["pagingDto"]["totalElements"]
    assert 0 < middle < total
    assert listing(createdOnDaysAgo=(today - datetime.date(2022, 10, 1)).days)["pagingDto"]["totalElements"] == 0


def test_demo_vendor_header_values_are_stored_encrypted(demo):
    with connection.cursor() as cursor:
        cursor.execute("SELECT headers FROM catalogue_vendorredemptionconfig ORDER BY id")
        rows = [raw if isinstance(raw, str) else json.dumps(raw) for (raw,) in cursor.fetchall()]
    assert rows and all("demo-vendor-token" not in raw for raw in rows)
    assert all(sorted(json.loads(raw)) == ["Authorization", "X-Offer"] for raw in rows)
    config = cm.VendorRedemptionConfig.objects.get(pk=7)
    assert config.headers["Authorization"] == "Bearer demo-vendor-token"
