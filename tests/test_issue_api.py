"""The single and bulk issue APIs: the pages' examples, every error code, bad input."""

import datetime
from decimal import Decimal

import pytest
from django.utils import timezone

from catalogue import models as cm
from catalogue.choices import CardStatus, ConstraintLevel, Frequency, MembershipStatus, PaymentMode, RedemptionType
from issuance.models import Issuance, IssuanceLine, IssuedUnit, LedgerEntry, PointsAccount
from tests import factories as f
from tests.conftest import ISSUE_BULK, ISSUE_SINGLE, api_user_for, basic_auth

pytestmark = pytest.mark.django_db

OK = {"success": True, "code": 200, "message": "Reward issued successfully"}
VALIDATION_CODE = "/api_gateway/rewards/core/v1/user/validation_code?username=till1"


def status_of(response):
    return response.json()["status"]


def bulk(api, *items, **top):
    body = {"mobile": "11223569865", "brand": "BUKL", **top, "rewards": list(items)}
    return api.post(ISSUE_BULK, body, format="json")


def single(api, reward_id, **body):
    return api.post(ISSUE_SINGLE.format(reward_id), {"mobile": "11223569865", "brand": "BUKL", **body}, format="json")


def balance(account):
    return PointsAccount.objects.get(pk=account.pk).balance


def free_reward(brand, pk, **kwargs):
    reward = f.RewardFactory(pk=pk, brand=brand, intouch_points=0, **kwargs)
    f.PaymentConfigFactory(reward=reward, mode=PaymentMode.FREE, points=None)
    return reward


# ---------------------------------------------------------------- segment tables (verbatim)


@pytest.fixture
def segment_world(org, brand, api):
    """The bulk page's tables: r1–r4 targets and user1–user3 memberships."""
    return f.segment_tables(
        org,
        make_reward=lambda index, name: free_reward(brand, 9001 + index, name=name),
        make_customer=lambda index: f.CustomerFactory(org=org, mobile=f"9000000000{index + 1}"),
    )


@pytest.mark.parametrize(
    ("user", "issued", "refused"),
    [
        ("user1", {"r2", "r4"}, {"r1", "r3"}),
        ("user2", {"r1", "r3", "r4"}, {"r2"}),
        ("user3", {"r4"}, {"r1", "r2", "r3"}),
    ],
)
def test_bulk_segment_table_of_the_page(api, segment_world, user, issued, refused):
    rewards, users = segment_world
    body = {
        "mobile": users[user].mobile,
        "brand": "BUKL",
        "rewards": [{"rewardId": rewards[r].pk, "quantity": 1} for r in ("r1", "r2", "r3", "r4")],
    }
    response = api.post(ISSUE_BULK, body, format="json")
    assert response.status_code == 200
    by_name = {rewards_name: line for rewards_name, line in zip(("r1", "r2", "r3", "r4"), response.json()["rewards"])}
    assert {n for n, line in by_name.items() if line["status"]["success"]} == issued
    for name in refused:
        assert by_name[name]["status"] == {
            "success": False,
            "code": 12034,
            "message": "User Doesn't Belong To Segment Partition Defined For Reward Segment",
        }
        assert by_name[name]["quantity"] == 0
    assert status_of(response) == {"success": False, "code": 8010, "message": "Reward issued partially"}


@pytest.mark.parametrize(("user", "reward", "ok"), [("user1", "r1", False), ("user1", "r2", True), ("user3", "r4", True)])
def test_single_segment_table_of_the_page(api, segment_world, user, reward, ok):
    rewards, users = segment_world
    response = api.post(ISSUE_SINGLE.format(rewards[reward].pk), {"mobile": users[user].mobile}, format="json")
    if ok:
        assert response.status_code == 200 and status_of(response) == OK
    else:
        assert response.status_code == 422
        assert status_of(response)["code"] == 12034


# ---------------------------------------------------------------- coupons and the partial-issue example


@pytest.fixture
def coupon_rewards(org, brand):
    good = f.CouponSeriesFactory(org=org, valid_till=datetime.datetime(2030, 12, 27, tzinfo=datetime.UTC))
    cm.CouponCode.objects.bulk_create(cm.CouponCode(series=good, code=f"3221363{i:04d}") for i in range(5))
    expired = f.CouponSeriesFactory(org=org, valid_till=timezone.now() - datetime.timedelta(days=1))
    r1 = f.RewardFactory(pk=125099, brand=brand, redemption_type=RedemptionType.INTOUCH_REWARD, coupon_series=good)
    f.PaymentConfigFactory(reward=r1, mode=PaymentMode.POINTS, points=Decimal("10"))
    r2 = f.RewardFactory(pk=125101, brand=brand, redemption_type=RedemptionType.INTOUCH_REWARD, coupon_series=expired)
    f.PaymentConfigFactory(reward=r2, mode=PaymentMode.POINTS, points=Decimal("10"))
    return r1, r2


def test_partial_issue_example_of_the_page(api, account, coupon_rewards):
    response = bulk(
        api,
        {"rewardId": 125099, "quantity": 2, "requestId": "req3"},
        {"rewardId": 125101, "quantity": 2, "requestId": "req4"},
        transactionNumber="2344s4",
        notes="This is test",
        eventLogId="eventLogId124",
    )
    assert response.status_code == 200
    data = response.json()
    line1, line2 = data["rewards"]
    ref = LedgerEntry.objects.get().reference_id
    assert data["status"] == {"success": False, "code": 8010, "message": "Reward issued partially"}
    assert line1 == {
        "status": OK,
        "transactionId": line1["transactionId"],
        "rewardId": 125099,
        "requestedQuantity": 2,
        "quantity": 2,
        "pointsReferenceId": ref,
        "pointsReferenceIds": [ref],
        "eventLogId": "eventLogId124",
        "requestId": "req3",
        "intouch": [
            {"pointsRedeemed": "10", "couponCode": c.coupon_code, "codeExpiry": "2030-12-27 00:00:00",
             "codeExpiryDateTime": "2030-12-27T00:00:00Z"}
            for c in IssuedUnit.objects.filter(line_id=line1["transactionId"]).order_by("id")
        ],
        "promotions": [],
        "vendor": [],
        "eventDateTime": None,
        "restrictions": None,
        "paymentConfig": {"paymentMode": "POINTS", "id": coupon_rewards[0].payment_configs.get().pk, "points": 10.0},
        "fulfillmentDetails": None,
        "customFields": None,
        "redemptionDetails": None,
        "totalPointsRedeemed": 20,
    }
    assert line2 == {
        "status": {"success": False, "code": 8004, "message": "fail to issue reward as Coupon Series ID is invalid"},
        "transactionId": line2["transactionId"],
        "rewardId": 125101,
        "requestedQuantity": 2,
        "quantity": 0,
        "pointsReferenceId": None,
        "pointsReferenceIds": [],
        "eventLogId": "eventLogId124",
        "requestId": "req4",
        "intouch": None,
        "promotions": [],
        "vendor": [],
        "eventDateTime": None,
        "restrictions": None,
        "paymentConfig": {"paymentMode": "POINTS", "id": coupon_rewards[1].payment_configs.get().pk, "points": 10.0},
        "fulfillmentDetails": None,
        "customFields": None,
        "redemptionDetails": None,
        "totalPointsRedeemed": 0,
    }
    assert line1["transactionId"] != line2["transactionId"]
    assert balance(account) == Decimal("99980")  # only the issued coupons were paid for
    assert cm.CouponCode.objects.count() == 3


def test_a_coupon_pool_running_dry_issues_what_is_left(api, account, coupon_rewards):
    response = bulk(api, {"rewardId": 125099, "quantity": 7})
    line = response.json()["rewards"][0]
    assert response.status_code == 200
    assert line["quantity"] == 5 and line["requestedQuantity"] == 7
    assert line["status"] == {"success": False, "code": 8010, "message": "Reward issued partially"}
    assert balance(account) == Decimal("99950")
    assert len({u["couponCode"] for u in line["intouch"]}) == 5


def test_single_issue_of_a_coupon_reward_shape(api, account, coupon_rewards):
    response = single(api, 125099, quantity=3, requestId="s1", eventLogId="eventLogId124")
    data = response.json()
    unit = IssuedUnit.objects.get()
    assert response.status_code == 200
    assert data == {
        "status": OK,
        "intouch": {"pointsRedeemed": "10", "couponCode": unit.coupon_code, "codeExpiry": "2030-12-27 00:00:00",
                    "codeExpiryDateTime": "2030-12-27T00:00:00Z"},
        "transactionId": unit.line_id,
        "promotion": None,
        "vendor": None,
        "paymentConfig": {"paymentMode": "POINTS", "id": coupon_rewards[0].payment_configs.get().pk, "points": 10.0},
        "redemptionDetails": None,
        "fulfillmentDetails": None,
        "customFields": None,
        "eventLogId": "eventLogId124",
        "requestId": "s1",
        "totalPointsRedeemed": 10,
    }


# ---------------------------------------------------------------- R7: all-or-nothing on points


def test_bulk_fails_whole_when_points_short(api, customer, brand):
    account = f.PointsAccountFactory(customer=customer, opening_balance=Decimal("99"))
    for pk in (1, 2):
        reward = f.RewardFactory(pk=pk, brand=brand)
        f.PaymentConfigFactory(reward=reward, mode=PaymentMode.POINTS, points=Decimal("50"))
    response = bulk(api, {"rewardId": 1}, {"rewardId": 2})
    assert response.status_code == 422
    assert response.json() == {
        "status": {"success": False, "code": 8004, "message": "fail to issue reward as points are not redeemable"}
    }
    assert balance(account) == Decimal("99")
    assert not IssuanceLine.objects.exists() and not LedgerEntry.objects.exists()


def test_ineligible_rewards_do_not_count_towards_the_points_needed(api, customer, brand):
    account = f.PointsAccountFactory(customer=customer, opening_balance=Decimal("60"))
    ok = f.RewardFactory(pk=1, brand=brand)
    f.PaymentConfigFactory(reward=ok, mode=PaymentMode.POINTS, points=Decimal("50"))
    disabled = f.RewardFactory(pk=2, brand=brand, enabled=False)
    f.PaymentConfigFactory(reward=disabled, mode=PaymentMode.POINTS, points=Decimal("50"))
    response = bulk(api, {"rewardId": 1}, {"rewardId": 2})
    assert response.status_code == 200
    assert response.json()["rewards"][1]["status"] == {
        "success": False,
        "code": 8003,
        "message": "fail to issue reward as reward is disabled or not started yet or expired",
    }
    assert balance(account) == Decimal("10")


def test_none_issued_answers_the_failure_code(api, account, brand):
    f.RewardFactory(pk=5, brand=brand, enabled=False)
    response = bulk(api, {"rewardId": 5})
    assert response.status_code == 422
    assert status_of(response) == {
        "success": False,
        "code": 8003,
        "message": "fail to issue reward as reward is disabled or not started yet or expired",
    }


@pytest.mark.parametrize(
    "times",
    [
        {"start_time": timezone.now() + datetime.timedelta(days=1), "end_time": timezone.now() + datetime.timedelta(days=2)},
        {"start_time": timezone.now() - datetime.timedelta(days=2), "end_time": timezone.now() - datetime.timedelta(days=1)},
    ],
    ids=["not-started", "ended"],
)
def test_single_not_live_reward_is_8003(api, account, brand, times):
    free_reward(brand, 6, **times)
    response = single(api, 6)
    assert response.status_code == 422
    assert status_of(response)["code"] == 8003
    assert response.json()["transactionId"] == IssuanceLine.objects.get().pk


# ---------------------------------------------------------------- payment config choice (R5)


@pytest.fixture
def two_config_reward(brand):
    reward = f.RewardFactory(pk=77, brand=brand)
    a = f.PaymentConfigFactory(reward=reward, mode=PaymentMode.POINTS, points=Decimal("5"))
    b = f.PaymentConfigFactory(reward=reward, mode=PaymentMode.POINTS_CASH, points=Decimal("2"), cash_amount=Decimal("3"))
    return reward, a, b


def test_single_without_payment_config_id_when_several_is_400(api, account, two_config_reward):
    response = single(api, 77)
    assert response.status_code == 400
    assert response.json() == {
        "status": {"success": False, "code": 400, "message": "Invalid payment mode passed.,Payment configuration id is mandatory"}
    }


def test_bulk_without_payment_config_id_when_several_fails_that_item_with_12035(api, account, two_config_reward, brand):
    free_reward(brand, 78)
    response = bulk(api, {"rewardId": 77}, {"rewardId": 78})
    assert response.status_code == 200
    assert response.json()["rewards"][0]["status"] == {
        "success": False,
        "code": 12035,
        "message": "Payment Mode needs to be passed when multiple payment Payment Config Exists",
    }
    assert response.json()["rewards"][1]["status"] == OK


def test_unknown_payment_config_id_is_12016(api, account, two_config_reward):
    response = single(api, 77, paymentConfig={"id": 999999})
    assert response.status_code == 422
    assert response.json() == {
        "status": {"success": False, "code": 12016, "message": "Invalid payment mode passed."},
        "intouch": None,
        "transactionId": IssuanceLine.objects.get().pk,
        "promotion": None,
        "vendor": None,
        "paymentConfig": None,
        "redemptionDetails": None,
        "fulfillmentDetails": None,
        "customFields": None,
        "eventLogId": None,
        "requestId": None,
        "totalPointsRedeemed": 0,
    }


def test_chosen_payment_config_prices_the_reward(api, account, two_config_reward):
    _, _, points_cash = two_config_reward
    response = single(api, 77, paymentConfig={"id": points_cash.pk, "tender": {"totalAmount": 3, "amount": 3}})
    assert response.json()["paymentConfig"] == {
        "paymentMode": "POINTS_CASH", "id": points_cash.pk, "points": 2.0, "cashAmount": 3.0
    }
    assert balance(account) == Decimal("99998")
    assert IssuanceLine.objects.get().tender == {"totalAmount": "3.00", "amount": "3.00"}


def test_tender_that_does_not_add_up_is_400(api, account, two_config_reward):
    _, _, points_cash = two_config_reward
    tender = {"totalAmount": 10, "tenders": [{"amount": 3}, {"amount": 4}]}
    response = single(api, 77, paymentConfig={"id": points_cash.pk, "tender": tender})
    assert response.status_code == 400
    assert status_of(response)["message"] == "paymentConfig.tender: the amounts must add up to totalAmount"


# ---------------------------------------------------------------- cards, labels, tiers, ownership (R6)


def test_card_series_reward_needs_an_active_card(api, account, customer, org, brand):
    series = f.CardSeriesFactory(org=org)
    reward = free_reward(brand, 40)
    reward.card_series.add(series)
    refused = single(api, 40)
    assert refused.status_code == 422
    assert status_of(refused) == {
        "success": False, "code": 12050, "message": "User has no valid cards from card series linked to the reward."
    }
    cm.Card.objects.create(series=series, customer=customer, number="4111111111111111", status=CardStatus.SUSPENDED)
    assert single(api, 40).status_code == 422
    cm.Card.objects.filter(customer=customer).update(status=CardStatus.ACTIVE)
    assert single(api, 40).status_code == 200


def test_label_reward_needs_an_active_label(api, account, customer, org, brand):
    label = f.LabelFactory(org=org)
    reward = free_reward(brand, 41)
    reward.labels.add(label)
    assert status_of(single(api, 41))["code"] == 12050
    cm.CustomerLabel.objects.create(customer=customer, label=label, status=MembershipStatus.INACTIVE)
    assert status_of(single(api, 41))["code"] == 12050
    cm.CustomerLabel.objects.filter(customer=customer).update(status=MembershipStatus.ACTIVE)
    assert status_of(single(api, 41)) == OK


def test_tier_reward_needs_the_tier(api, account, customer, org, brand):
    program = cm.Program.objects.create(org=org, name="Loyalty")
    gold = cm.Tier.objects.create(program=program, name="Gold", serial=2)
    silver = cm.Tier.objects.create(program=program, name="Silver", serial=1)
    reward = free_reward(brand, 42)
    reward.target_tiers.add(gold)
    cm.ProgramMembership.objects.create(customer=customer, program=program, tier=silver)
    assert status_of(single(api, 42)) == {
        "success": False, "code": 12051, "message": "User's loyalty tier is not eligible for the reward."
    }
    cm.ProgramMembership.objects.filter(customer=customer).update(tier=gold)
    assert status_of(single(api, 42)) == OK


def test_ownership_is_checked_only_when_given(api, account, brand):
    free_reward(brand, 43, owner_type="CAMPAIGNS", owner_id="abc7")
    assert status_of(single(api, 43)) == OK
    assert status_of(single(api, 43, rewardOwnershipRO={"ownerType": "CAMPAIGNS", "ownerId": "abc7"})) == OK
    wrong = single(api, 43, rewardOwnershipRO={"ownerType": "JOURNEYS", "ownerId": "abc7"})
    assert status_of(wrong) == {"success": False, "code": 8011, "message": "Reward ownership validation failed"}


# ---------------------------------------------------------------- limits (12005)


def test_customer_limit_cuts_the_quantity_then_refuses(api, account, org, brand):
    reward = free_reward(brand, 50)
    cm.RewardConstraint.objects.create(
        org=org, reward=reward, level=ConstraintLevel.CUSTOMER, frequency=Frequency.DAYS, limit_value=3
    )
    first = bulk(api, {"rewardId": 50, "quantity": 2})
    assert first.json()["rewards"][0]["quantity"] == 2
    second = bulk(api, {"rewardId": 50, "quantity": 2})
    line = second.json()["rewards"][0]
    assert line["quantity"] == 1 and line["status"]["code"] == 8010
    third = bulk(api, {"rewardId": 50, "quantity": 1})
    assert third.status_code == 422
    assert status_of(third) == {
        "success": False,
        "code": 12005,
        "message": "Reward constraint evaluation failed. Request failed. Max limit for the DAYS is reached. "
        "Allowed limit is 3 for level CUSTOMER",
    }


def test_org_level_redemption_type_limit(api, account, org, brand):
    free_reward(brand, 51, redemption_type=RedemptionType.GIFT_CARD)
    free_reward(brand, 52, redemption_type=RedemptionType.GIFT_CARD)
    cm.RewardConstraint.objects.create(
        org=org, redemption_type=RedemptionType.GIFT_CARD, level=ConstraintLevel.CUSTOMER_REDEMPTION_TYPE,
        frequency=Frequency.MONTHS, limit_value=1,
    )
    response = bulk(api, {"rewardId": 51}, {"rewardId": 52})
    assert [line["status"]["code"] for line in response.json()["rewards"]] == [200, 12005]


# ---------------------------------------------------------------- group redemption (R9)


@pytest.fixture
def group(org, customer):
    group = cm.CustomerGroup.objects.create(org=org, external_id="G-1", primary_member=customer, name="Family")
    cm.GroupMembership.objects.create(group=group, customer=customer)
    f.PointsAccountFactory(customer=None, group=group, org=org, opening_balance=Decimal("500"))
    return group


def test_group_redemption_takes_points_from_the_group(api, account, group, brand):
    reward = f.RewardFactory(pk=60, brand=brand)
    f.PaymentConfigFactory(reward=reward, mode=PaymentMode.POINTS, points=Decimal("100"))
    response = single(api, 60, user_group2_primary_user_id="11223569865")
    assert status_of(response) == OK
    assert group.points_account.__class__.objects.get(group=group).balance == Decimal("400")
    assert balance(account) == Decimal("100000")
    assert Issuance.objects.get().group_loyalty_redemption is True


def test_unknown_group_is_8004_with_1632(api, account, group, brand):
    free_reward(brand, 61)
    response = single(api, 61, user_group2_id="381751178")
    assert response.status_code == 422
    assert response.json() == {
        "status": {
            "success": False,
            "code": 8004,
            "message": "fail to issue reward as points are not redeemable",
            "partnerError": {"codes": ["1632"], "messages": ["group id/externalId/primary userId 381751178 passed is not valid"]},
        }
    }


def test_customer_outside_the_group_is_8004_with_1620(api, account, group, org, brand):
    free_reward(brand, 62)
    other = f.CustomerFactory(org=org, mobile="919999999999")
    f.PointsAccountFactory(customer=other)
    response = api.post(ISSUE_SINGLE.format(62), {"mobile": other.mobile, "user_group2_id": group.pk}, format="json")
    message = f"user {other.pk} does not belong to group {group.pk}"
    assert response.json() == {
        "status": {
            "success": False,
            "code": 8004,
            "message": f"fail to issue reward as {message}",
            "partnerError": {"codes": ["1620"], "messages": [message]},
        }
    }


def test_org_not_redeemable_is_8004_with_828(api, account, org, brand):
    reward = f.RewardFactory(pk=63, brand=brand)
    f.PaymentConfigFactory(reward=reward, mode=PaymentMode.POINTS, points=Decimal("1"))
    cm.Organisation.objects.filter(pk=org.pk).update(points_redeemable=False)
    response = single(api, 63)
    assert response.json() == {
        "status": {
            "success": False,
            "code": 8004,
            "message": "fail to issue reward as points are not redeemable",
            "partnerError": {"codes": ["828"], "messages": ["points redemption rules/configuration not allowing redemption"]},
        }
    }


# ---------------------------------------------------------------- look-ups (R1–R3)


def test_missing_identifier_is_15006(api, account, brand):
    free_reward(brand, 70)
    response = api.post(ISSUE_SINGLE.format(70), {"brand": "BUKL", "emailId": ""}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "status": {"success": False, "code": 15006, "message": "The request is missing the primary identifier."}
    }


def test_unknown_customer_is_1014(api, account, brand):
    free_reward(brand, 71)
    response = api.post(ISSUE_SINGLE.format(71), {"mobile": 919000000001}, format="json")
    assert response.status_code == 404
    assert response.json() == {
        "status": {"success": False, "code": 1014, "message": "The provided identifier does not match any existing customer."}
    }


def test_identifiers_of_two_customers_are_1014(api, account, org, brand):
    free_reward(brand, 72)
    other = f.CustomerFactory(org=org)
    response = api.post(ISSUE_SINGLE.format(72), {"mobile": "11223569865", "email": other.email}, format="json")
    assert status_of(response)["code"] == 1014


def test_mobile_as_a_json_number_and_email_id_are_accepted(api, account, brand):
    free_reward(brand, 73)
    assert status_of(api.post(ISSUE_SINGLE.format(73), {"mobile": 11223569865}, format="json")) == OK
    assert status_of(api.post(ISSUE_SINGLE.format(73), {"emailId": "c1@example.com"}, format="json")) == OK
    assert status_of(api.post(ISSUE_SINGLE.format(73), {"externalId": "ext-c1"}, format="json")) == OK


def test_dual_eligibility_ambiguous_secondary_is_8015(api, org, brand):
    org.dual_eligibility = True
    org.save()
    f.CustomerFactory(org=org, mobile="1", email="shared@example.com")
    f.CustomerFactory(org=org, mobile="2", email="shared@example.com")
    free_reward(brand, 74)
    response = api.post(ISSUE_SINGLE.format(74), {"email": "shared@example.com"}, format="json")
    assert response.status_code == 422
    assert status_of(response)["code"] == 8015
    # With the primary identifier the customer is unambiguous.
    ok = api.post(ISSUE_SINGLE.format(74), {"email": "shared@example.com", "mobile": "2"}, format="json")
    assert status_of(ok) == OK


def test_unknown_brand_is_3004(api, account, brand):
    free_reward(brand, 75)
    response = api.post(ISSUE_SINGLE.format(75), {"mobile": "11223569865", "brand": "NOPE"}, format="json")
    assert response.status_code == 404
    assert response.json() == {"status": {"success": False, "code": 3004, "message": "Brand not found"}}


def test_reward_of_another_brand_or_org_is_not_found(api, account, org, brand):
    other_brand = f.BrandFactory(org=org, name="OTHER")
    free_reward(other_brand, 76)
    foreign = free_reward(f.BrandFactory(name="BUKL2"), 79)
    assert single(api, 76).status_code == 404
    response = api.post(ISSUE_SINGLE.format(foreign.pk), {"mobile": "11223569865"}, format="json")
    assert response.status_code == 404
    assert response.json() == {"status": {"success": False, "code": 404, "message": "Reward not found: 79"}}
    missing = api.post(ISSUE_SINGLE.format(999999), {"mobile": "11223569865"}, format="json")
    assert missing.json() == {"status": {"success": False, "code": 404, "message": "Reward not found: 999999"}}


def test_missing_till_is_400_and_foreign_till_is_403(api, account, brand, org):
    free_reward(brand, 80)
    no_till = api.post("/api_gateway/rewards/core/v1/user/reward/80/issue?skip_validation=true",
                       {"mobile": "11223569865"}, format="json")
    assert no_till.status_code == 400
    assert status_of(no_till)["message"] == "username (the till) is required"
    other_org = f.OrganisationFactory()
    f.TillFactory(org=other_org, code="foreign")
    f.TillFactory(org=org, code="not-mine")
    for code in ("foreign", "not-mine", "unknown"):
        response = api.post(f"/api_gateway/rewards/core/v1/user/reward/80/issue?username={code}&skip_validation=true",
                            {"mobile": "11223569865"}, format="json")
        assert response.status_code == 403
        assert response.json() == {
            "status": {"success": False, "code": 403, "message": "The till is not available to this user"}
        }
    assert not IssuanceLine.objects.exists()


def test_no_credentials_or_wrong_password_is_401(client, account, brand):
    free_reward(brand, 81)
    response = client.post(ISSUE_SINGLE.format(81), {"mobile": "11223569865"}, content_type="application/json")
    assert response.status_code == 401
    assert response.json()["status"]["code"] == 401
    assert response["WWW-Authenticate"].startswith("Basic")
    wrong = client.post(ISSUE_SINGLE.format(81), {"mobile": "11223569865"}, content_type="application/json",
                        HTTP_AUTHORIZATION=basic_auth("till_user", "nope"))
    unknown = client.post(ISSUE_SINGLE.format(81), {"mobile": "11223569865"}, content_type="application/json",
                          HTTP_AUTHORIZATION=basic_auth("nobody", "nope"))
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {
        "status": {"success": False, "code": 401, "message": "Invalid username/password."}
    }


def test_user_without_the_api_group_is_403(client, org, account, brand):
    user = f.UserFactory(username="staffer")
    f.UserProfileFactory(user=user, org=org)
    response = client.post(ISSUE_SINGLE.format(1), {"mobile": "1"}, content_type="application/json",
                           HTTP_AUTHORIZATION=basic_auth("staffer", "pass"))
    assert response.status_code == 403
    assert response.json() == {
        "status": {"success": False, "code": 403, "message": "This user may not use the rewards API"}
    }


# ---------------------------------------------------------------- validation codes (R3)


def test_skip_validation_is_honoured_only_when_the_org_allows_it(
    api, account, org, brand, mailoutbox, django_capture_on_commit_callbacks
):
    free_reward(brand, 90)
    org.allow_skip_validation = False
    org.save()
    refused = single(api, 90)
    assert refused.status_code == 422
    assert refused.json() == {"status": {"success": False, "code": 808, "message": "Validation code is invalid"}}
    with django_capture_on_commit_callbacks(execute=True):
        sent = api.post(VALIDATION_CODE, {"mobile": "11223569865"}, format="json")
    assert sent.status_code == 200 and "code" not in sent.json()
    with django_capture_on_commit_callbacks(execute=True):
        again = api.post(VALIDATION_CODE, {"mobile": "11223569865"}, format="json")
    assert again.status_code == 200
    code = mailoutbox[0].body.split("Your code is ")[1][:6]
    assert mailoutbox[1].body == mailoutbox[0].body  # the same code inside the validity window
    assert status_of(single(api, 90, validationCode="000000" if code != "000000" else "111111"))["code"] == 808
    assert status_of(single(api, 90, validationCode=code)) == OK
    assert status_of(single(api, 90, validationCode=code))["code"] == 808  # one-time


def test_validation_code_needs_a_till_of_the_caller(api, account, org):
    missing = api.post("/api_gateway/rewards/core/v1/user/validation_code", {"mobile": "11223569865"}, format="json")
    assert missing.status_code == 400
    f.TillFactory(code="foreign")
    foreign = api.post("/api_gateway/rewards/core/v1/user/validation_code?username=foreign",
                       {"mobile": "11223569865"}, format="json")
    assert foreign.status_code == 403
    assert foreign.json()["status"]["message"] == "The till is not available to this user"


# ---------------------------------------------------------------- request validation


def test_duplicate_request_id_in_one_call_is_400(api, account, brand):
    free_reward(brand, 91)
    response = bulk(api, {"rewardId": 91, "requestId": "a"}, {"rewardId": 91, "requestId": "a"})
    assert response.status_code == 400
    assert response.json() == {"status": {"success": False, "code": 400, "message": "Duplicate requestId"}}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"rewards": []}, "rewards: This list may not be empty."),
        ({"rewards": [{"rewardId": 1, "quantity": 0}]}, "rewards[0].quantity: must be at least 1"),
        ({"rewards": [{"rewardId": 1, "quantity": -3}]}, "rewards[0].quantity: must be at least 1"),
        ({"rewards": [{"rewardId": 1, "quantity": "abc"}]}, "rewards[0].quantity: must be a number"),
        ({"rewards": [{"rewardId": 1, "quantity": True}]}, "rewards[0].quantity: must be a number"),
        ({"rewards": [{"rewardId": 1, "quantity": 10**30}]}, "rewards[0].quantity: is too large"),
        ({"rewards": [{"rewardId": 1, "quantity": 101}]}, "rewards[0].quantity: must be at most 100"),
        ({"rewards": [{"rewardId": "x"}]}, "rewards[0].rewardId: A valid integer is required."),
        ({"rewards": [{"quantity": 1}]}, "rewards[0].rewardId: This field is required."),
        ({"rewards": "nope"}, 'rewards: Expected a list of items but got type "str".'),
        ({"rewards": [{"rewardId": 1, "paymentConfig": {"redemptionValue": -5}}]},
         "rewards[0].paymentConfig.redemptionValue: Ensure this value is greater than or equal to 0.0001."),
        ({"mobile": ["x"], "rewards": [{"rewardId": 1}]}, "mobile: must be a string or an integer"),
        ({"eventDateTime": "yesterday", "rewards": [{"rewardId": 1}]},
         "eventDateTime: Datetime has wrong format. Use one of these formats instead: "
         "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."),
        ({"rewards": [{"rewardId": 1, "customFields": {"nope": 1}}]},
         "rewards[0].customFields.nope: no such custom field with scope ISSUE_REWARD"),
        ({"rewards": [{"rewardId": 1, "fulfillmentDetails": {"status": "LOST"}}]},
         "rewards[0].fulfillmentDetails.status: 'LOST' is not an enabled fulfillment status"),
    ],
)
def test_bad_bulk_bodies_are_400_naming_the_field(api, account, brand, body, message):
    free_reward(brand, 1)
    response = api.post(ISSUE_BULK, {"mobile": "11223569865", **body}, format="json")
    assert response.status_code == 400, response.content
    assert response.json() == {"status": {"success": False, "code": 400, "message": message}}
    assert not IssuanceLine.objects.exists()


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "message"),
    [
        (b"{not json", "application/json", 400, None),
        (b"", "application/json", 400, "The request body is empty"),
        (b"[1, 2]", "application/json", 400, "The request body must be a JSON object"),
        (b'{"mobile": "1", "mobile": "2", "rewards": []}', "application/json", 400, "Malformed JSON: duplicate key 'mobile'"),
        (b'{"rewards": [{"rewardId": NaN}]}', "application/json", 400, "Malformed JSON: NaN is not valid JSON"),
        (b"\xff\xfe", "application/json", 400, "The request body is not UTF-8"),
        (b"[" * 100000 + b"]" * 100000, "application/json", 400, "Malformed JSON: nested too deeply"),
        (b'{"mobile": "1"}', "text/plain", 415, None),
        (b'{"mobile": "1"}', "", 415, None),
    ],
)
def test_malformed_bodies_are_4xx_not_500(api, account, raw, content_type, status, message):
    response = api.generic("POST", ISSUE_BULK, raw, content_type=content_type)
    assert response.status_code == status, response.content
    body = response.json()
    assert body["status"]["success"] is False and body["status"]["code"] == status
    if message:
        assert body["status"]["message"] == message


def test_bodies_over_the_size_limit_are_413(api, account, settings):
    settings.API_MAX_BODY_BYTES = 1000
    response = api.post(ISSUE_BULK, {"mobile": "1", "notes": "x" * 2000, "rewards": [{"rewardId": 1}]}, format="json")
    assert response.status_code == 413
    assert status_of(response)["code"] == 413


def test_more_rewards_than_the_maximum_is_400(api, account, settings):
    settings.API_MAX_BULK_REWARDS = 3
    response = bulk(api, *[{"rewardId": i} for i in range(1, 5)])
    assert response.status_code == 400
    assert status_of(response)["message"] == "rewards: at most 3 rewards per call"


def test_custom_fields_and_fulfillment_are_checked_and_echoed(api, account, org, brand):
    free_reward(brand, 92)
    cm.CustomFieldDefinition.objects.create(org=org, name="issue-reward-1", scope="ISSUE_REWARD", field_type="STRING")
    cm.CustomFieldDefinition.objects.create(org=org, name="count", scope="ISSUE_REWARD", field_type="INTEGER")
    f.FulfillmentStatusFactory(org=org, name="SHIPPED")
    bad = bulk(api, {"rewardId": 92, "customFields": {"count": "many"}})
    assert status_of(bad) == {"success": False, "code": 400, "message": "rewards[0].customFields.count: must be an integer"}
    response = bulk(api, {"rewardId": 92, "customFields": {"issue-reward-1": "issue-reward-values"},
                          "fulfillmentDetails": {"status": "SHIPPED"}})
    line = response.json()["rewards"][0]
    assert line["customFields"] == {"issue-reward-1": "issue-reward-values"}
    assert line["fulfillmentDetails"] == {"status": "SHIPPED"}
    assert IssuanceLine.objects.get(pk=line["transactionId"]).fulfillment_history.count() == 1


def test_cart_promotion_reward_earns_the_promotion(api, account, org, brand):
    promotion = cm.CartPromotion.objects.create(org=org, name="10% off", promotion_code="CART10")
    free_reward(brand, 93, redemption_type=RedemptionType.CART_PROMOTION, cart_promotion=promotion)
    response = single(api, 93)
    assert response.json()["promotion"] == {
        "id": promotion.pk, "name": "10% off", "promotionCode": "CART10", "validTill": None
    }


def test_vendor_reward_fails_cleanly_until_vendor_calls_exist(api, account, brand):
    reward = f.RewardFactory(pk=94, brand=brand, redemption_type=RedemptionType.VENDOR_ONLY_REWARD)
    f.PaymentConfigFactory(reward=reward, mode=PaymentMode.POINTS, points=Decimal("5"))
    response = single(api, 94)
    assert response.status_code == 422
    assert status_of(response) == {"success": False, "code": 8003, "message": "fail to issue reward as voucher is not present"}
    assert balance(account) == Decimal("100000")


def test_dry_run_prices_and_checks_and_changes_nothing(api, account, coupon_rewards):
    url = ISSUE_BULK + "&dryRun=true"
    body = {"mobile": "11223569865", "brand": "BUKL", "rewards": [{"rewardId": 125099, "quantity": 2},
                                                                  {"rewardId": 125101, "quantity": 1}]}
    response = api.post(url, body, format="json")
    assert response.status_code == 200
    data = response.json()
    assert data["dryRun"] is True
    assert data["status"] == {"success": False, "code": 8010, "message": "Reward issued partially"}
    assert data["pointsRequired"] == 20 and data["pointsAvailable"] == 100000
    assert data["rewards"][0]["quantity"] == 2 and data["rewards"][0]["couponStock"] == 2
    assert data["rewards"][1]["status"]["code"] == 8004
    assert not IssuanceLine.objects.exists() and not LedgerEntry.objects.exists()
    assert cm.CouponCode.objects.count() == 5


def test_staff_channels_need_no_customer_validation_code(api_user, account, org, brand):
    """R3 guards a customer's points against API callers; goodwill staff are signed in and audited."""
    from issuance.models import Channel
    from issuance.resolution import Identifiers
    from issuance.services import SINGLE, IssueItem, IssueRequest, rewards_issue

    free_reward(brand, 95)
    org.allow_skip_validation = False
    org.save()

    def issue(channel):
        return rewards_issue(IssueRequest(
            org=org, actor=api_user, till_code="till1", mode=SINGLE, channel=channel,
            identifiers=Identifiers(mobile="11223569865"), items=[IssueItem(reward_id=95)],
        ))

    from issuance.errors import IssuanceError

    with pytest.raises(IssuanceError) as refused:
        issue(Channel.API)
    assert refused.value.code == 808
    for channel in (Channel.STAFF, Channel.BULK_UPLOAD):
        result = issue(channel)
        assert result.body["status"] == OK and result.issuance.channel == channel


def test_long_transaction_numbers_are_kept_whole(api, account, brand):
    free_reward(brand, 96)
    number = "T" * 254
    assert status_of(single(api, 96, transactionNumber=number)) == OK
    assert Issuance.objects.get().transaction_number == number
    too_long = single(api, 96, transactionNumber="T" * 255)
    assert too_long.status_code == 400


def test_a_generating_series_draws_fresh_codes(api, account, org, brand):
    series = f.CouponSeriesFactory(org=org, generate_codes=True, code_prefix="GW-", code_length=8)
    reward = f.RewardFactory(pk=97, brand=brand, redemption_type=RedemptionType.VOUCHER, coupon_series=series)
    f.PaymentConfigFactory(reward=reward, mode=PaymentMode.FREE, points=None)
    response = bulk(api, {"rewardId": 97, "quantity": 3})
    codes = [u["couponCode"] for u in response.json()["rewards"][0]["intouch"]]
    assert len(set(codes)) == 3
    assert all(c.startswith("GW-") and len(c) == 11 for c in codes)
    assert sorted(codes) == sorted(IssuedUnit.objects.values_list("coupon_code", flat=True))
