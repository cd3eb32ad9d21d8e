"""The pages' point formulas (R4, R5) through the real API: 6818 / 2273 / 7 / 2 at ratio
0.44 and the ratio-0.35 reference points, each asserting the points actually deducted."""

from decimal import Decimal

import pytest

from catalogue.choices import PaymentMode, RedemptionType
from issuance.models import LedgerEntry, PointsAccount
from tests import factories as f
from tests.conftest import ISSUE_BULK, ISSUE_SINGLE

pytestmark = pytest.mark.django_db


def conv_reward(brand, reward_id, ratio):
    reward = f.RewardFactory(pk=reward_id, brand=brand, redemption_type=RedemptionType.MILES, intouch_points=0)
    config = f.PaymentConfigFactory(reward=reward, mode=PaymentMode.CONV_RATIO, points=None,
                                    conversion_ratio=Decimal(ratio))
    return reward, config


def deducted(account):
    account.refresh_from_db()
    return Decimal("100000") - account.balance


@pytest.mark.parametrize(
    ("reward_id", "body_item", "points", "issued", "value"),
    [
        # issue-bulk-reward.md: (1000 / 0.44) × 3 = 6818, three vouchers of 1000 miles
        (311509, {"quantity": 3, "paymentConfig": {"redemptionValue": 1000}}, 6818, 3, 1000),
        # issue-bulk-reward.md: only quantity 3 → one voucher of 3 miles, (3 / 0.44) × 1 = 7
        (308697, {"quantity": 3}, 7, 1, 3),
    ],
)
def test_bulk_conv_ratio_examples_of_the_page(api, brand, account, reward_id, body_item, points, issued, value):
    conv_reward(brand, reward_id, "0.44")
    body = {"mobile": "11223569865", "brand": "BUKL", "rewards": [{"rewardId": reward_id, **body_item}]}
    response = api.post(ISSUE_BULK, body, format="json")
    assert response.status_code == 200, response.content
    line = response.json()["rewards"][0]
    assert line["status"] == {"success": True, "code": 200, "message": "Reward issued successfully"}
    assert line["requestedQuantity"] == 3
    assert line["quantity"] == issued
    assert line["totalPointsRedeemed"] == points
    assert line["redemptionDetails"] == {
        "redemptionType": "MILES",
        "redemptionValue": value,
        "totalRedemptionValue": value * issued,
    }
    assert deducted(account) == points


@pytest.mark.parametrize(
    ("body", "points", "value"),
    [
        # issue-single-reward.txt: (1000 / 0.44) × 1 = 2273
        ({"paymentConfig": {"redemptionValue": 1000}}, 2273, 1000),
        # issue-single-reward.txt: only quantity 1 → (1 / 0.44) × 1 = 2
        ({"quantity": 1}, 2, 1),
    ],
)
def test_single_conv_ratio_examples_of_the_page(api, brand, account, body, points, value):
    conv_reward(brand, 311509, "0.44")
    response = api.post(ISSUE_SINGLE.format(311509), {"mobile": "11223569865", "brand": "BUKL", **body}, format="json")
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["status"] == {"success": True, "code": 200, "message": "Reward issued successfully"}
    assert data["totalPointsRedeemed"] == points
    assert data["paymentConfig"]["paymentMode"] == "CONV_RATIO"
    assert data["redemptionDetails"]["totalRedemptionValue"] == value
    assert deducted(account) == points


@pytest.mark.parametrize(
    ("url_kind", "body", "points", "value", "units"),
    [
        ("single", {}, 3, 1, 1),  # no quantity → 1 / 0.35 = 2.857 → 3
        ("single", {"quantity": 40}, 114, 40, 1),  # 40 / 0.35 = 114.28 → 114
        ("single", {"paymentConfig": {"points": 500}}, 500, 175, 1),  # 500 × 0.35 = 175
        ("single", {"paymentConfig": {"redemptionValue": 100}}, 286, 100, 1),  # 285.71 → 286
        ("bulk", {"quantity": 3, "paymentConfig": {"redemptionValue": 100}}, 857, 100, 3),  # 857.14 → 857
        ("single", {"quantity": "1.56"}, 3, 1, 1),  # integer part taken
    ],
)
def test_ratio_035_reference_points(api, brand, account, url_kind, body, points, value, units):
    conv_reward(brand, 500001, "0.35")
    base = {"mobile": "11223569865", "brand": "BUKL"}
    if url_kind == "single":
        response = api.post(ISSUE_SINGLE.format(500001), {**base, **body}, format="json")
        data = response.json()
        total = data["totalPointsRedeemed"]
        details = data["redemptionDetails"]
    else:
        response = api.post(ISSUE_BULK, {**base, "rewards": [{"rewardId": 500001, **body}]}, format="json")
        data = response.json()["rewards"][0]
        total = data["totalPointsRedeemed"]
        details = data["redemptionDetails"]
        assert data["quantity"] == units
    assert response.status_code == 200, response.content
    assert total == points
    assert details["redemptionValue"] == value
    assert deducted(account) == points


def test_bulk_conv_ratio_quantity_as_value_above_5_is_refused(api, brand, account):
    conv_reward(brand, 308697, "0.44")
    body = {"mobile": "11223569865", "brand": "BUKL", "rewards": [{"rewardId": 308697, "quantity": 6}]}
    response = api.post(ISSUE_BULK, body, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "status": {
            "success": False,
            "code": 400,
            "message": "quantity may not exceed 5 for a CONV_RATIO reward when neither redemptionValue nor "
            "points is given",
        }
    }
    assert deducted(account) == 0


def test_points_config_deducts_points_per_unit_and_records_the_ledger(api, brand, account):
    reward = f.RewardFactory(pk=700, brand=brand, redemption_type=RedemptionType.PHYSICAL_REWARD)
    f.PaymentConfigFactory(reward=reward, mode=PaymentMode.POINTS, points=Decimal("50"))
    body = {"mobile": "11223569865", "brand": "BUKL", "rewards": [{"rewardId": 700, "quantity": 2}]}
    response = api.post(ISSUE_BULK, body, format="json")
    line = response.json()["rewards"][0]
    assert line["totalPointsRedeemed"] == 100
    assert line["paymentConfig"] == {"paymentMode": "POINTS", "id": reward.payment_configs.get().pk, "points": 50.0}
    assert response.content.count(b'"points":50.0000') == 1  # exact decimals, never float
    entry = LedgerEntry.objects.get()
    assert entry.amount == Decimal("-100") and line["pointsReferenceIds"] == [entry.reference_id]
    assert PointsAccount.objects.get(pk=account.pk).balance == Decimal("99900")
