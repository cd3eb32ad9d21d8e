"""The catalogue file: import (validate whole, write atomically, idempotent), export, round trip.

docs/catalogue-format.md is the contract these tests hold the code to.
"""

import copy
import datetime
import json
from decimal import Decimal

import pytest
from cryptography.fernet import Fernet
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from catalogue import models as cm
from catalogue.catalogue_io import jsonio, schema
from catalogue.catalogue_io.exporter import SecretUnreadableError, catalogue_export
from catalogue.catalogue_io.importer import CatalogueFileError, catalogue_import, document_load
from catalogue.catalogue_io.reader import HEADER_MASK
from catalogue.catalogue_io.schema import CONSTRAINTS_CHECKED, IMPORTED_MODELS
from issuance import models as im
from issuance.ledger import points_credit

ORG = 101
CHILD = 102
LIVE = {"startTime": "2024-01-01T00:00:00Z", "endTime": "2035-12-31T23:59:59Z"}


def good_doc() -> dict:
    """A small catalogue that uses every section and most keys."""
    return {
        "formatVersion": 1,
        "orgs": [
            {
                "id": ORG,
                "name": "Test Org",
                "allowSkipValidation": True,
                "timeZone": "Asia/Kolkata",
                "goodwillApprovalThreshold": Decimal("5000"),
            },
            {"id": CHILD, "parentId": ORG, "name": "Test Child", "primaryIdentifier": "EXTERNAL_ID"},
        ],
        "brands": [{"orgId": ORG, "name": "BUKL"}, {"orgId": CHILD, "name": "KID"}],
        "tills": [{"orgId": ORG, "code": "till1", "name": "Till one", "users": ["till1_login"]}],
        "programs": [
            {
                "id": 7,
                "orgId": ORG,
                "name": "Loyalty",
                "tiers": [{"name": "Silver", "serial": 1}, {"name": "Gold", "serial": 2}],
            },
        ],
        "categories": [{"id": 1, "orgId": ORG, "name": "travel"}, {"id": 2, "orgId": ORG, "name": "fuel"}],
        "rewardGroups": [{"id": 1, "orgId": ORG, "name": "Top", "rank": 2}],
        "labels": [{"id": 3, "orgId": ORG, "name": "VIP"}],
        "cardSeries": [{"id": 11, "orgId": ORG, "code": "GOLD", "name": "Gold card"}],
        "segments": [{"orgId": ORG, "name": "s1", "partitions": ["p1", "p2"]}],
        "vendors": [
            {
                "id": 36,
                "orgId": ORG,
                "name": "Vendor",
                "redemptionConfigs": [
                    {
                        "id": 7,
                        "name": "voucher",
                        "url": "http://127.0.0.1:8099/vendor/redeem",
                        "headers": {"Authorization": "Bearer s3cret"},
                        "contextMap": {"voucher": "voucher"},
                        "timeoutSeconds": Decimal("2.5"),
                    },
                ],
            },
        ],
        "couponSeries": [
            {
                "id": 2001,
                "orgId": ORG,
                "name": "pool",
                "validTill": "2030-01-01T05:30:00+05:30",
                "codes": ["A1", "A2", "A3"],
            },
        ],
        "cartPromotions": [{"id": 9001, "orgId": ORG, "name": "Cart", "promotionCode": "CART10"}],
        "customFields": [
            {"orgId": ORG, "name": "issue-reward-1", "scope": "ISSUE_REWARD", "type": "STRING"},
            {
                "orgId": ORG,
                "name": "slot",
                "scope": "ISSUE_REWARD",
                "type": "ENUM",
                "enumValues": ["AM", "PM"],
                "defaultValue": "AM",
            },
            {"orgId": ORG, "name": "sku", "scope": "REWARD", "type": "STRING"},
        ],
        "fulfillmentStatuses": [
            {"orgId": ORG, "name": "BOOKED", "position": 1},
            {"orgId": ORG, "name": "SHIPPED", "position": 2},
        ],
        "customers": [
            {
                "id": 555567088,
                "orgId": ORG,
                "mobile": "11223569865",
                "email": "asha@example.com",
                "firstName": "Asha",
                "openingBalance": Decimal("1000"),
                "tiers": [{"programId": 7, "tier": "Gold"}],
                "labels": [{"labelId": 3, "status": "ACTIVE"}],
                "cards": [{"cardSeriesId": 11, "number": "6070000000000001", "expiresAt": "2030-01-01T00:00:00Z"}],
                "segments": [{"segment": "s1", "partition": "p1"}],
            },
            {"id": 555567089, "orgId": ORG, "mobile": "11223569866", "openingBalance": 50},
            {"id": 600001, "orgId": CHILD, "externalId": "ext-1"},
        ],
        "customerGroups": [
            {
                "id": 124,
                "orgId": ORG,
                "externalId": "11223569865",
                "primaryMemberId": 555567088,
                "memberIds": [555567088, 555567089],
                "openingBalance": 500,
            },
        ],
        "rewards": [
            {
                "id": 311509,
                "orgId": ORG,
                "brand": "BUKL",
                "name": "Miles",
                "redemptionType": "MILES",
                **LIVE,
                "programId": 7,
                "categoryIds": [1],
                "groupIds": [1],
                "segments": [{"segment": "s1", "partition": "p1"}],
                "images": [{"name": "main", "url": "https://cdn.example.com/311509.jpg"}],
                "videos": [{"url": "https://cdn.example.com/311509.mp4", "isExternal": False, "fileId": 44}],
                "languageSpecificInfo": [
                    {"language": "en", "content": "<p>Miles</p>", "defaultValue": "Miles", "isMandatory": True}
                ],
                "customFields": {"sku": "SKU-1"},
                "paymentConfigs": [{"id": 3115, "paymentMode": "CONV_RATIO", "conversionRatio": Decimal("0.44")}],
                "constraints": [
                    {"id": 1, "level": "CUSTOMER", "frequency": "DAYS", "limitValue": 15, "cycleStart": "2025-01-01"}
                ],
            },
            {
                "id": 125099,
                "orgId": ORG,
                "brand": "BUKL",
                "name": "Coupon",
                "redemptionType": "INTOUCH_REWARD",
                **LIVE,
                "intouchPoints": 10,
                "couponSeriesId": 2001,
                "labelIds": [3],
            },
            {
                "id": 500201,
                "orgId": ORG,
                "brand": "BUKL",
                "name": "Vendor",
                "redemptionType": "VENDOR_ONLY_REWARD",
                **LIVE,
                "vendorId": 36,
                "vendorRedemptionConfigId": 7,
                "cardSeriesIds": [11],
                "paymentConfigs": [{"id": 10201, "paymentMode": "POINTS", "points": 500}],
            },
            {
                "id": 500103,
                "orgId": ORG,
                "brand": "BUKL",
                "name": "Tier",
                "redemptionType": "PHYSICAL_REWARD",
                **LIVE,
                "tiers": [{"programId": 7, "tier": "Gold"}],
                "ownerType": "CAMPAIGNS",
                "ownerId": "abc7",
                "paymentConfigs": [
                    {"id": 456, "paymentMode": "POINTS", "points": 100},
                    {"id": 457, "paymentMode": "POINTS_CASH", "points": 60, "cashAmount": Decimal("20.5")},
                ],
            },
            {
                "id": 225087,
                "orgId": ORG,
                "brand": "BUKL",
                "name": "Cart",
                "redemptionType": "CART_PROMOTION",
                **LIVE,
                "cartPromotionId": 9001,
                "paymentConfigs": [{"id": 464, "paymentMode": "FREE"}],
            },
            {
                "id": 350,
                "orgId": CHILD,
                "brand": "KID",
                "name": "Child miles",
                "redemptionType": "MILES",
                **LIVE,
                "paymentConfigs": [{"id": 54, "paymentMode": "CONV_RATIO", "conversionRatio": Decimal("0.5")}],
            },
        ],
        "orgConstraints": [
            {"id": 3, "orgId": ORG, "redemptionType": "MILES", "frequency": "MONTHS", "limitValue": 50},
        ],
    }


def table_counts() -> dict[str, int]:
    return {model._meta.label: model.objects.count() for model in apps.get_models()}


def export_text(**kwargs) -> str:
    return jsonio.dumps(catalogue_export(include_secrets=True, **kwargs))


def refused(document) -> list[tuple[str, str]]:
    with pytest.raises(CatalogueFileError) as info:
        catalogue_import(document=document)
    return info.value.errors


def has_error(errors, path: str, message: str) -> bool:
    return any(p == path and m.startswith(message) for p, m in errors)


@pytest.fixture
def imported(db):
    return catalogue_import(document=good_doc())


# -- a good file -------------------------------------------------------------------------------


def test_good_file_imports_every_section(imported):
    assert imported.created > 0 and imported.changed == 0
    reward = cm.Reward.objects.get(pk=311509)
    assert reward.brand.name == "BUKL" and reward.org_id == ORG and reward.program_id == 7
    assert reward.payment_configs.get().conversion_ratio == Decimal("0.44")
    assert [(t.partition.segment.name, t.partition.name) for t in reward.segment_targets.all()] == [("s1", "p1")]
    assert reward.custom_fields == {"sku": "SKU-1"}
    assert reward.constraints.get().cycle_start.isoformat() == "2025-01-01"
    assert cm.Organisation.objects.get(pk=CHILD).parent_id == ORG
    series = cm.CouponSeries.objects.get(pk=2001)
    assert series.valid_till.isoformat() == "2030-01-01T00:00:00+00:00"  # stored in UTC
    assert sorted(series.pool.values_list("code", flat=True)) == ["A1", "A2", "A3"]
    assert cm.Reward.objects.get(pk=500103).target_tiers.get().name == "Gold"
    assert cm.RewardConstraint.objects.get(pk=3).level == "CUSTOMER_REDEMPTION_TYPE"
    customer = cm.Customer.objects.get(pk=555567088)
    assert customer.primary_value == "11223569865"
    assert customer.cards.get().status == "ACTIVE"
    assert cm.Customer.objects.get(pk=600001).primary_value == "ext-1"  # the child's primary is EXTERNAL_ID
    group = cm.CustomerGroup.objects.get(pk=124)
    assert sorted(group.members.values_list("pk", flat=True)) == [555567088, 555567089]
    assert group.points_account.balance == Decimal("500")


def test_points_are_exact_decimals_never_floats(db):
    text = jsonio.dumps(good_doc()).replace('"conversionRatio": 0.44', '"conversionRatio": 0.1')
    catalogue_import(document=document_load(text))
    assert cm.PaymentConfig.objects.get(pk=3115).conversion_ratio == Decimal("0.1")
    assert '"conversionRatio": 0.1\n' in export_text()


def test_opening_balance_creates_the_account_with_balance_equal_to_it(imported):
    account = im.PointsAccount.objects.get(customer_id=555567088)
    assert account.opening_balance == account.balance == Decimal("1000")
    assert account.entries.count() == 0
    assert not im.PointsAccount.objects.filter(customer_id=600001).exists()  # no openingBalance: no account


def test_till_logins_are_created_without_a_usable_password_in_the_tills_org(imported):
    user = get_user_model().objects.get(username="till1_login")
    assert not user.has_usable_password()
    assert not user.is_staff
    assert user.profile.org_id == ORG
    assert list(cm.Till.objects.get(code="till1").users.all()) == [user]


def test_later_automatic_ids_do_not_collide_with_imported_ones(imported):
    created = cm.Customer.objects.create(org_id=ORG, mobile="919999999999")
    category = cm.Category.objects.create(org_id=ORG, name="new")
    assert created.pk > 600001
    assert category.pk > 2


def test_dry_run_reports_and_writes_nothing(db):
    before = table_counts()
    result = catalogue_import(document=good_doc(), dry_run=True)
    assert result.created > 0 and result.dry_run
    assert table_counts() == before


# -- idempotence ---------------------------------------------------------------------------------


def test_second_import_of_the_same_file_changes_nothing(imported):
    counts, text = table_counts(), export_text()
    stamps = dict(cm.Reward.objects.values_list("pk", "updated_at"))
    second = catalogue_import(document=good_doc())
    assert (second.created, second.changed) == (0, 0)
    assert table_counts() == counts
    assert export_text() == text
    assert dict(cm.Reward.objects.values_list("pk", "updated_at")) == stamps


def test_a_changed_reward_is_updated_and_only_it_gets_a_new_updated_at(imported):
    stamps = dict(cm.Reward.objects.values_list("pk", "updated_at"))
    doc = good_doc()
    doc["rewards"][0]["name"] = "Miles, renamed"
    doc["rewards"][0]["categoryIds"] = [2]
    doc["rewards"][3]["paymentConfigs"].pop()  # config 457 goes
    result = catalogue_import(document=doc)
    assert result.counts["rewards"].updated == 1
    assert result.counts["rewards.categoryIds"].created == 1 and result.counts["rewards.categoryIds"].deleted == 1
    assert result.counts["rewards.paymentConfigs"].deleted == 1
    assert not cm.PaymentConfig.objects.filter(pk=457).exists()
    after = dict(cm.Reward.objects.values_list("pk", "updated_at"))
    assert {pk for pk in after if after[pk] != stamps[pk]} == {311509, 500103}
    assert list(cm.Reward.objects.get(pk=311509).categories.values_list("pk", flat=True)) == [2]


def test_reimport_never_touches_an_existing_points_account_or_its_ledger(imported):
    account = im.PointsAccount.objects.get(customer_id=555567088)
    points_credit(account_id=account.pk, amount=Decimal("25"), reason="test credit")
    doc = good_doc()
    doc["customers"][0]["openingBalance"] = Decimal("999999")
    doc["customerGroups"][0]["openingBalance"] = Decimal("1")
    result = catalogue_import(document=doc)
    account.refresh_from_db()
    assert (account.opening_balance, account.balance) == (Decimal("1000"), Decimal("1025"))
    assert account.entries.count() == 1
    assert im.PointsAccount.objects.get(group_id=124).balance == Decimal("500")
    assert {"customers[0]", "customerGroups[0]"} <= set(result.accounts_kept)
    assert result.changed == 0


def test_an_issued_pool_code_is_never_put_back_by_a_reimport(imported):
    customer = cm.Customer.objects.get(pk=555567088)
    reward = cm.Reward.objects.get(pk=125099)
    user = get_user_model().objects.get(username="till1_login")
    issuance = im.Issuance.objects.create(
        org_id=ORG,
        till=cm.Till.objects.get(code="till1"),
        customer=customer,
        account=customer.points_account,
        actor=user,
        status="SUCCESS",
        response_code=200,
    )
    line = im.IssuanceLine.objects.create(
        issuance=issuance,
        org_id=ORG,
        customer=customer,
        reward=reward,
        redemption_type=reward.redemption_type,
        requested_quantity=1,
        quantity=1,
        status="ISSUED",
    )
    cm.CouponCode.objects.filter(series_id=2001, code="A1").delete()
    im.IssuedUnit.objects.create(line=line, coupon_series_id=2001, coupon_code="A1")
    result = catalogue_import(document=good_doc())
    assert sorted(cm.CouponCode.objects.filter(series_id=2001).values_list("code", flat=True)) == ["A2", "A3"]
    assert result.codes_already_issued == 1 and result.created == 0


# -- bad files: the path of every error, and nothing written ---------------------------------------


def _set(path: list, value):
    def mutate(doc):
        target = doc
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return mutate


def _many_issue_fields(doc):
    doc["customFields"] += [
        {"orgId": ORG, "name": f"extra-{i}", "scope": "ISSUE_REWARD", "type": "STRING"} for i in range(9)
    ]


BAD_FILES = {
    "wrong type": (_set(["rewards", 0, "priority"], "high"), "rewards[0].priority", "must be an integer"),
    "string for a number": (
        _set(["rewards", 1, "intouchPoints"], "10"),
        "rewards[1].intouchPoints",
        "must be a number",
    ),
    "unknown enum": (
        _set(["rewards", 1, "redemptionType"], "TELEPORT"),
        "rewards[1].redemptionType",
        "unknown value 'TELEPORT'; expected one of GAMES, AUCTION",
    ),
    "conversion ratio not positive (R5)": (
        _set(["rewards", 0, "paymentConfigs", 0, "conversionRatio"], Decimal("0")),
        "rewards[0].paymentConfigs[0].conversionRatio",
        "must be > 0",
    ),
    "CONV_RATIO on a coupon reward (R5)": (
        _set(["rewards", 1, "paymentConfigs"], [{"id": 99, "paymentMode": "CONV_RATIO", "conversionRatio": 1}]),
        "rewards[1].paymentConfigs",
        "CONV_RATIO is only allowed for",
    ),
    "FREE combined with POINTS (R5)": (
        _set(
            ["rewards", 4, "paymentConfigs"],
            [{"id": 464, "paymentMode": "FREE"}, {"id": 465, "paymentMode": "POINTS", "points": 5}],
        ),
        "rewards[4].paymentConfigs",
        "FREE cannot be combined with other payment modes",
    ),
    "no config and no points (R5)": (
        _set(["rewards", 1, "intouchPoints"], 0),
        "rewards[1].paymentConfigs",
        "a reward with no payment config and 0 points",
    ),
    "two targeting kinds (R6)": (
        _set(["rewards", 0, "labelIds"], [3]),
        "rewards[0]",
        "a reward is targeted by at most one kind of entity; this one uses segments and labels",
    ),
    "unknown brand": (_set(["rewards", 0, "brand"], "NOPE"), "rewards[0].brand", "unknown brand 'NOPE' in org 101"),
    "unknown segment partition": (
        _set(["rewards", 0, "segments"], [{"segment": "s1", "partition": "p9"}]),
        "rewards[0].segments[0]",
        "unknown segment partition {s1, p9} in org 101",
    ),
    "unknown category": (_set(["rewards", 0, "categoryIds"], [99]), "rewards[0].categoryIds[0]", "unknown category 99"),
    "category of another org": (
        _set(["rewards", 5, "categoryIds"], [1]),
        "rewards[5].categoryIds[0]",
        "category 1 belongs to org 101, not org 102",
    ),
    "unknown tier": (
        _set(["rewards", 3, "tiers"], [{"programId": 7, "tier": "Diamond"}]),
        "rewards[3].tiers[0].tier",
        "program 7 has no tier 'Diamond'",
    ),
    "config of another vendor": (
        _set(["rewards", 2, "vendorId"], None),
        "rewards[2].vendorRedemptionConfigId",
        "vendor redemption config 7 is vendor 36's",
    ),
    "unknown org": (_set(["brands", 0, "orgId"], 999), "brands[0].orgId", "unknown org 999"),
    "bad time zone": (
        _set(["orgs", 0, "timeZone"], "Mars/Olympus"),
        "orgs[0].timeZone",
        "'Mars/Olympus' is not a known IANA time zone",
    ),
    "too many ISSUE_REWARD custom fields (3022)": (
        _many_issue_fields,
        "customFields",
        "org 101: at most 10 custom fields with scope ISSUE_REWARD (3022)",
    ),
    "ENUM default not a value": (
        _set(["customFields", 1, "defaultValue"], "NOON"),
        "customFields[1].defaultValue",
        "the default must be one of the values",
    ),
    "undefined custom field on a reward": (
        _set(["rewards", 0, "customFields"], {"colour": "red"}),
        "rewards[0].customFields.colour",
        "no REWARD custom field 'colour'",
    ),
    "custom field value of the wrong type": (
        _set(["rewards", 0, "customFields"], {"sku": 5}),
        "rewards[0].customFields.sku",
        "must be a string",
    ),
    "end before start": (
        _set(["rewards", 0, "endTime"], "2023-01-01T00:00:00Z"),
        "rewards[0].endTime",
        "must be after the start time",
    ),
    "date-time without offset": (
        _set(["rewards", 0, "startTime"], "2024-01-01T00:00:00"),
        "rewards[0].startTime",
        "must be an ISO-8601 date-time with a UTC offset",
    ),
    "not a date": (
        _set(["rewards", 0, "constraints", 0, "cycleStart"], "yesterday"),
        "rewards[0].constraints[0].cycleStart",
        "must be a date (YYYY-MM-DD)",
    ),
    "unknown key": (_set(["rewards", 0, "colour"], "red"), "rewards[0].colour", "unknown key"),
    "missing required key": (lambda d: d["rewards"][1].pop("name"), "rewards[1].name", "is required"),
    "duplicate id": (_set(["rewards", 1, "id"], 311509), "rewards[1].id", "duplicate reward id 311509"),
    "duplicate natural key": (_set(["categories", 1, "name"], "travel"), "categories[1]", "duplicate category"),
    "negative opening balance": (
        _set(["customers", 1, "openingBalance"], -1),
        "customers[1].openingBalance",
        "must be >= 0",
    ),
    "too many decimal places": (
        _set(["rewards", 2, "paymentConfigs", 0, "points"], Decimal("1.00001")),
        "rewards[2].paymentConfigs[0].points",
        "Ensure that there are no more than 4 decimal",
    ),
    "the org's primary identifier missing": (
        _set(["customers", 1, "mobile"], None),
        "customers[1]",
        "the org's primary identifier (MOBILE) is required",
    ),
    "same mobile twice without dual eligibility": (
        _set(["customers", 1, "mobile"], "11223569865"),
        "customers[1]",
        "duplicate customer with MOBILE '11223569865'",
    ),
    "group primary member not a member": (
        _set(["customerGroups", 0, "memberIds"], [555567089]),
        "customerGroups[0].memberIds",
        "must include the primary member 555567088",
    ),
    "org-level level in a reward": (
        _set(["rewards", 0, "constraints", 0, "level"], "CUSTOMER_REDEMPTION_TYPE"),
        "rewards[0].constraints[0].level",
        "must be one of CUSTOMER, REWARD here",
    ),
    "vendor timeout out of range": (
        _set(["vendors", 0, "redemptionConfigs", 0, "timeoutSeconds"], 500),
        "vendors[0].redemptionConfigs[0].timeoutSeconds",
        "must be > 0 and <= 120",
    ),
    "bad URL": (
        _set(["vendors", 0, "redemptionConfigs", 0, "url"], "not a url"),
        "vendors[0].redemptionConfigs[0].url",
        "Enter a valid URL.",
    ),
    "own parent": (_set(["orgs", 1, "parentId"], CHILD), "orgs[1].parentId", "an org cannot be its own parent"),
    "createdAt without offset": (
        _set(["rewards", 0, "createdAt"], "2024-01-01T00:00:00"),
        "rewards[0].createdAt",
        "must be an ISO-8601 date-time with a UTC offset",
    ),
    "createdAt null": (_set(["rewards", 0, "createdAt"], None), "rewards[0].createdAt", "must not be null"),
    "wrong format version": (_set(["formatVersion"], 2), "formatVersion", "must be 1"),
}


@pytest.mark.parametrize("case", BAD_FILES, ids=list(BAD_FILES))
def test_bad_file_is_refused_with_its_path_and_leaves_the_database_untouched(imported, case):
    mutate, path, message = BAD_FILES[case]
    counts, text = table_counts(), export_text()
    doc = good_doc()
    mutate(doc)
    errors = refused(doc)
    assert has_error(errors, path, message), errors
    assert table_counts() == counts
    assert export_text() == text


def test_the_r5_message_names_the_exact_path(db):
    doc = good_doc()
    doc["rewards"][0]["paymentConfigs"][0]["conversionRatio"] = Decimal("0")
    with pytest.raises(CatalogueFileError) as info:
        catalogue_import(document=doc)
    assert "rewards[0].paymentConfigs[0].conversionRatio: must be > 0" in str(info.value)


def test_bad_json_names_the_document_and_writes_nothing(db, tmp_path):
    before = table_counts()
    with pytest.raises(CatalogueFileError) as info:
        document_load(b'{"orgs": [')
    assert info.value.errors[0][0] == "$" and "not valid JSON" in info.value.errors[0][1]
    with pytest.raises(CatalogueFileError):
        document_load(b'{"formatVersion": NaN}')
    bad = tmp_path / "bad.json"
    bad.write_text('{"orgs": [}')
    with pytest.raises(CommandError, match=r"\$: not valid JSON"):
        call_command("import_catalogue", str(bad))
    assert table_counts() == before


def test_a_bad_file_on_an_empty_database_writes_nothing_at_all(db):
    before = table_counts()
    doc = good_doc()
    doc["rewards"][-1]["endTime"] = "2020-01-01T00:00:00Z"  # the very last row is the bad one
    errors = refused(doc)
    assert errors == [("rewards[5].endTime", "must be after the start time")]
    assert table_counts() == before


def test_every_error_in_the_file_is_reported_not_just_the_first(db):
    doc = good_doc()
    for mutate, _, _ in (
        BAD_FILES["wrong type"],
        BAD_FILES["bad time zone"],
        BAD_FILES["unknown category"],
        BAD_FILES["negative opening balance"],
    ):
        mutate(doc)
    errors = refused(doc)
    for case in ("wrong type", "bad time zone", "unknown category", "negative opening balance"):
        _, path, message = BAD_FILES[case]
        assert has_error(errors, path, message), (case, errors)


def test_the_error_list_is_capped_in_the_message(db):
    doc = good_doc()
    doc["categories"] = [{"id": i, "orgId": ORG, "name": i} for i in range(1, 61)]  # 60 names of the wrong type
    with pytest.raises(CatalogueFileError) as info:
        catalogue_import(document=doc)
    assert len(info.value.errors) >= 60
    assert info.value.summary().count("must be a string") == 50
    assert "... and " in info.value.summary()


# -- checks against what the database already holds -------------------------------------------------


def test_an_id_of_another_orgs_row_is_refused(imported):
    doc = {
        "formatVersion": 1,
        "orgs": [{"id": 103, "name": "Other"}],
        "categories": [{"id": 1, "orgId": 103, "name": "mine"}],
    }
    assert has_error(refused(doc), "categories[0].id", "category 1 already exists in org 101")


def test_a_name_taken_by_a_row_the_file_does_not_list_is_refused(imported):
    doc = {
        "formatVersion": 1,
        "orgs": good_doc()["orgs"][:1],
        "categories": [{"id": 5, "orgId": ORG, "name": "travel"}],
    }
    assert has_error(refused(doc), "categories[0].name", "category name 'travel' is already used by id 1")


def test_a_customer_identifier_taken_in_the_database_is_refused(imported):
    doc = {
        "formatVersion": 1,
        "orgs": good_doc()["orgs"][:1],
        "customers": [{"id": 42, "orgId": ORG, "mobile": "11223569865"}],
    }
    assert has_error(refused(doc), "customers[0]", "customer 555567088 already has MOBILE '11223569865' in org 101")


def test_a_login_of_another_org_cannot_be_listed_on_a_till(imported):
    other = cm.Organisation.objects.create(name="Elsewhere")
    user = get_user_model().objects.create_user("stranger", password="x")
    cm.UserProfile.objects.create(user=user, org=other)
    doc = good_doc()
    doc["tills"][0]["users"].append("stranger")
    assert has_error(refused(doc), "tills[0].users[1]", "user 'stranger' acts in org")


def test_parent_may_be_an_org_already_in_the_database(imported):
    doc = {"formatVersion": 1, "orgs": [{"id": 104, "parentId": ORG, "name": "Late child"}]}
    catalogue_import(document=doc)
    assert cm.Organisation.objects.get(pk=104).parent_id == ORG
    unknown = {"formatVersion": 1, "orgs": [{"id": 105, "parentId": 999, "name": "Orphan"}]}
    assert has_error(refused(unknown), "orgs[0].parentId", "unknown org 999")


def test_issue_reward_custom_fields_already_stored_count_towards_the_limit(imported):
    for i in range(9):  # with the file's two: 11
        cm.CustomFieldDefinition.objects.create(
            org_id=ORG, name=f"stored-{i}", scope="ISSUE_REWARD", field_type="STRING"
        )
    assert has_error(refused(good_doc()), "customFields", "org 101: at most 10 custom fields")


# -- export ----------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_round_trip_export_import_into_an_empty_database_export_is_identical():
    catalogue_import(document=good_doc())
    first = export_text()
    call_command("flush", "--noinput", verbosity=0)
    assert not cm.Reward.objects.exists()
    catalogue_import(document=document_load(first))
    assert export_text() == first


def test_export_masks_vendor_headers_unless_asked_and_reimport_keeps_the_secret(imported):
    masked = catalogue_export()
    assert masked["vendors"][0]["redemptionConfigs"][0]["headers"] == {"Authorization": HEADER_MASK}
    clear = catalogue_export(include_secrets=True)
    assert clear["vendors"][0]["redemptionConfigs"][0]["headers"] == {"Authorization": "Bearer s3cret"}
    result = catalogue_import(document=document_load(jsonio.dumps(masked)))
    assert (result.created, result.changed) == (0, 0)
    assert cm.VendorRedemptionConfig.objects.get(pk=7).headers == {"Authorization": "Bearer s3cret"}


@pytest.mark.django_db(transaction=True)
def test_a_masked_export_cannot_be_imported_where_the_secret_is_unknown():
    catalogue_import(document=good_doc())
    masked = jsonio.dumps(catalogue_export())
    call_command("flush", "--noinput", verbosity=0)
    errors = refused(document_load(masked))
    assert has_error(errors, "vendors[0].redemptionConfigs[0].headers.Authorization", "is masked")
    assert not cm.Organisation.objects.exists()


def test_export_of_one_org_holds_only_its_rows(imported):
    doc = catalogue_export(org_ids=[CHILD])
    assert [o["id"] for o in doc["orgs"]] == [CHILD]
    assert [r["id"] for r in doc["rewards"]] == [350]
    assert {row["orgId"] for section in ("brands", "customers", "rewards") for row in doc[section]} == {CHILD}


def test_export_writes_opening_balances_not_live_balances(imported):
    account = im.PointsAccount.objects.get(customer_id=555567088)
    points_credit(account_id=account.pk, amount=Decimal("25"), reason="test")
    customer = next(c for c in catalogue_export()["customers"] if c["id"] == 555567088)
    assert customer["openingBalance"] == Decimal("1000")


# -- the commands ----------------------------------------------------------------------------------


def test_import_command_reports_counts_and_zero_on_the_second_run(db, tmp_path, capsys):
    path = tmp_path / "catalogue.json"
    path.write_text(jsonio.dumps(good_doc()))
    call_command("import_catalogue", str(path))
    assert "created, 0 changed" in capsys.readouterr().out
    call_command("import_catalogue", str(path))
    assert "Imported: 0 created, 0 changed." in capsys.readouterr().out


def test_import_command_fails_with_the_paths_and_writes_nothing(db, tmp_path):
    doc = good_doc()
    doc["rewards"][0]["paymentConfigs"][0]["conversionRatio"] = Decimal("-1")
    path = tmp_path / "bad.json"
    path.write_text(jsonio.dumps(doc))
    before = table_counts()
    with pytest.raises(CommandError, match=r"rewards\[0\]\.paymentConfigs\[0\]\.conversionRatio: must be > 0"):
        call_command("import_catalogue", str(path))
    with pytest.raises(CommandError, match="cannot read"):
        call_command("import_catalogue", str(tmp_path / "missing.json"))
    assert table_counts() == before


def test_export_command_writes_the_file_and_refuses_unknown_orgs(imported, tmp_path):
    out = tmp_path / "out.json"
    call_command("export_catalogue", "-o", str(out), "--include-secrets")
    assert out.read_text() == export_text()
    with pytest.raises(CommandError, match="unknown org id"):
        call_command("export_catalogue", "--org", "999")


def test_every_database_constraint_of_the_imported_tables_is_checked_before_writing():
    names = {constraint.name for model in IMPORTED_MODELS for constraint in model._meta.constraints}
    assert names - set(CONSTRAINTS_CHECKED) == set(), "add the check to the importer and to CONSTRAINTS_CHECKED"


def test_good_doc_is_not_mutated_by_import(db):
    doc = good_doc()
    snapshot = copy.deepcopy(doc)
    catalogue_import(document=doc)
    assert doc == snapshot


# Per model: the schema tables that carry its plain fields, and the fields the format carries
# another way (ids, references, list position, derived values).
FORMAT_COVERAGE = {
    cm.Organisation: ((schema.ORG,), {"id", "parent", "created_at"}),
    cm.Brand: ((schema.BRAND,), {"id", "org", "created_at"}),
    cm.Till: ((schema.TILL,), {"id", "org", "users"}),
    cm.Customer: ((schema.CUSTOMER,), {"id", "org", "primary_value", "created_at"}),
    cm.CustomerGroup: ((schema.CUSTOMER_GROUP,), {"id", "org", "primary_member", "members"}),
    cm.Program: ((schema.PROGRAM,), {"id", "org"}),
    cm.Tier: ((schema.TIER,), {"id", "program"}),
    cm.Category: ((schema.CATEGORY,), {"id", "org"}),
    cm.RewardGroup: ((schema.REWARD_GROUP,), {"id", "org"}),
    cm.Label: ((schema.LABEL,), {"id", "org"}),
    cm.CustomerLabel: ((schema.CUSTOMER_LABEL,), {"id", "customer", "label"}),
    cm.CardSeries: ((schema.CARD_SERIES,), {"id", "org"}),
    cm.Card: ((schema.CARD,), {"id", "series", "customer"}),
    cm.Segment: ((schema.SEGMENT,), {"id", "org"}),
    cm.Vendor: ((schema.VENDOR,), {"id", "org"}),
    cm.VendorRedemptionConfig: ((schema.VENDOR_CONFIG,), {"id", "vendor"}),
    cm.CouponSeries: ((schema.COUPON_SERIES,), {"id", "org"}),
    cm.CartPromotion: ((schema.CART_PROMOTION,), {"id", "org"}),
    cm.Reward: (
        (schema.REWARD,),
        {
            "id",
            "org",
            "brand",
            "program",
            "vendor",
            "vendor_redemption",
            "coupon_series",
            "cart_promotion",
            "categories",
            "groups",
            "target_partitions",
            "card_series",
            "labels",
            "target_tiers",
            "updated_at",
            # The listing cache: derived from the configs, intouch_points and the targets,
            # recomputed by the importer (catalogue.services.reward_listing_refresh).
            "list_points",
            "list_cash",
            "targeting",
        },
    ),
    cm.RewardMedia: ((schema.MEDIA,), {"id", "reward", "kind", "position"}),
    cm.RewardLanguageContent: ((schema.LANGUAGE,), {"id", "reward"}),
    cm.PaymentConfig: ((schema.PAYMENT_CONFIG,), {"id", "reward"}),
    cm.RewardConstraint: ((schema.REWARD_CONSTRAINT, schema.ORG_CONSTRAINT), {"id", "org", "reward"}),
    cm.CustomFieldDefinition: ((schema.CUSTOM_FIELD,), {"id", "org"}),
    cm.FulfillmentStatus: ((schema.FULFILLMENT_STATUS,), {"id", "org"}),
}


@pytest.mark.parametrize("model", FORMAT_COVERAGE, ids=lambda m: m.__name__)
def test_every_model_field_has_a_place_in_the_format(model):
    tables, outside = FORMAT_COVERAGE[model]
    mapped = {key.attr for table in tables for key in table}
    fields = {f.name for f in model._meta.get_fields() if f.concrete or (f.many_to_many and not f.auto_created)}
    missing = fields - mapped - outside
    assert not missing, f"{model.__name__}: {sorted(missing)} would be lost by export and import"


# -- createdAt -------------------------------------------------------------------------------------


def _created(reward_id: int) -> datetime.datetime:
    return cm.Reward.objects.get(pk=reward_id).created_at


def test_created_at_absent_on_a_new_reward_is_the_time_of_the_import(db):
    before = timezone.now()
    catalogue_import(document=good_doc())
    after = timezone.now()
    assert all(before <= stamp <= after for stamp in cm.Reward.objects.values_list("created_at", flat=True))


def test_created_at_present_is_applied_to_a_new_reward_in_utc(db):
    doc = good_doc()
    doc["rewards"][0]["createdAt"] = "2023-05-01T10:00:00.250000+05:30"
    catalogue_import(document=doc)
    assert _created(311509) == datetime.datetime(2023, 5, 1, 4, 30, 0, 250000, tzinfo=datetime.UTC)
    exported = next(r for r in catalogue_export()["rewards"] if r["id"] == 311509)
    assert exported["createdAt"] == "2023-05-01T04:30:00.250000Z"


def test_created_at_absent_on_reimport_keeps_the_stored_value(imported):
    old = datetime.datetime(2022, 2, 2, 2, 2, tzinfo=datetime.UTC)
    cm.Reward.objects.filter(pk=311509).update(created_at=old)
    stamps = dict(cm.Reward.objects.values_list("pk", "updated_at"))
    result = catalogue_import(document=good_doc())  # good_doc has no createdAt
    assert (result.created, result.changed) == (0, 0)
    assert _created(311509) == old
    assert dict(cm.Reward.objects.values_list("pk", "updated_at")) == stamps


def test_created_at_present_on_reimport_replaces_the_stored_value(imported):
    stamps = dict(cm.Reward.objects.values_list("pk", "updated_at"))
    doc = good_doc()
    doc["rewards"][1]["createdAt"] = "2021-12-31T23:00:00Z"
    result = catalogue_import(document=doc)
    assert result.counts["rewards"].updated == 1
    assert _created(125099) == datetime.datetime(2021, 12, 31, 23, tzinfo=datetime.UTC)
    after = dict(cm.Reward.objects.values_list("pk", "updated_at"))
    assert {pk for pk in after if after[pk] != stamps[pk]} == {125099}
    again = catalogue_import(document=doc)  # the same value again: nothing to do
    assert (again.created, again.changed) == (0, 0)


def test_created_at_is_always_exported_and_survives_the_round_trip(imported):
    cm.Reward.objects.filter(pk=350).update(created_at=datetime.datetime(2020, 1, 2, 3, 4, 5, 6, tzinfo=datetime.UTC))
    doc = catalogue_export(include_secrets=True)
    assert all("createdAt" in reward for reward in doc["rewards"])
    assert next(r for r in doc["rewards"] if r["id"] == 350)["createdAt"] == "2020-01-02T03:04:05.000006Z"
    text = jsonio.dumps(doc)
    result = catalogue_import(document=document_load(text))
    assert (result.created, result.changed) == (0, 0)
    assert export_text() == text


# -- vendor header values: encrypted at rest ---------------------------------------------------------


def raw_headers(config_id: int) -> tuple[str, dict]:
    """The headers column as the database holds it (text, and parsed)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT headers FROM catalogue_vendorredemptionconfig WHERE id = %s", [config_id])
        (raw,) = cursor.fetchone()
    text = raw if isinstance(raw, str) else json.dumps(raw)
    return text, json.loads(text)


def test_imported_header_values_are_stored_encrypted_with_readable_names(imported):
    text, stored = raw_headers(7)
    assert "s3cret" not in text
    assert list(stored) == ["Authorization"] and stored["Authorization"].startswith("gAAAAA")
    assert cm.VendorRedemptionConfig.objects.get(pk=7).headers == {"Authorization": "Bearer s3cret"}


def test_a_header_value_changed_by_a_reimport_is_stored_encrypted(imported):
    doc = good_doc()
    doc["vendors"][0]["redemptionConfigs"][0]["headers"] = {"Authorization": "Bearer n3w", "X-Key": "k3y"}
    result = catalogue_import(document=doc)  # an update: bulk_update
    assert result.counts["vendors.redemptionConfigs"].updated == 1
    text, stored = raw_headers(7)
    assert "n3w" not in text and "k3y" not in text and sorted(stored) == ["Authorization", "X-Key"]
    assert cm.VendorRedemptionConfig.objects.get(pk=7).headers == {"Authorization": "Bearer n3w", "X-Key": "k3y"}


def test_reimporting_the_same_header_values_rewrites_nothing(imported):
    """Encryption is randomised: a value is compared decrypted, so the same file leaves the
    stored token alone."""
    before, _ = raw_headers(7)
    assert (catalogue_import(document=good_doc()).changed, raw_headers(7)[0]) == (0, before)


def test_masked_export_import_export_is_identical_and_keeps_the_stored_token(imported):
    before, _ = raw_headers(7)
    masked = jsonio.dumps(catalogue_export())
    assert "s3cret" not in masked and "gAAAAA" not in masked  # neither the secret nor its ciphertext
    result = catalogue_import(document=document_load(masked))
    assert (result.created, result.changed) == (0, 0)
    assert jsonio.dumps(catalogue_export()) == masked
    assert raw_headers(7)[0] == before


def test_a_header_value_no_key_decrypts_stops_an_export_with_secrets_only(imported, settings):
    before, _ = raw_headers(7)
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # not the key it was stored with
    with pytest.raises(SecretUnreadableError, match=r"config 7: the value of header Authorization cannot be decrypted"):
        catalogue_export(include_secrets=True)
    with pytest.raises(CommandError, match="cannot be decrypted"):
        call_command("export_catalogue", "--include-secrets")
    masked = catalogue_export()  # names only: still fine
    assert masked["vendors"][0]["redemptionConfigs"][0]["headers"] == {"Authorization": HEADER_MASK}
    # A masked re-import keeps the stored (unreadable) token as it is ...
    assert catalogue_import(document=document_load(jsonio.dumps(masked))).changed == 0
    assert raw_headers(7)[0] == before
    # ... and a file with the value stores it again under the current key.
    catalogue_import(document=good_doc())
    assert cm.VendorRedemptionConfig.objects.get(pk=7).headers == {"Authorization": "Bearer s3cret"}
