"""R8: requestId makes issue calls safe to retry (sequential cases; the concurrent ones are
in test_issue_concurrency.py)."""

from decimal import Decimal

import pytest

from catalogue import models as cm
from catalogue.choices import ConstraintLevel, Frequency, PaymentMode, RedemptionType
from issuance.models import IdempotencyRecord, Issuance, IssuanceLine, IssuedUnit, LedgerEntry, PointsAccount
from tests import factories as f
from tests.conftest import ISSUE_BULK, ISSUE_SINGLE

pytestmark = pytest.mark.django_db


@pytest.fixture
def points_reward(brand):
    reward = f.RewardFactory(pk=10, brand=brand, redemption_type=RedemptionType.PHYSICAL_REWARD)
    f.PaymentConfigFactory(reward=reward, mode=PaymentMode.POINTS, points=Decimal("25"))
    return reward


def balance(account):
    return PointsAccount.objects.get(pk=account.pk).balance


def test_single_replay_returns_the_stored_response_byte_for_byte(api, account, points_reward):
    body = {"mobile": "11223569865", "brand": "BUKL", "requestId": "r-1", "eventLogId": "e-1"}
    first = api.post(ISSUE_SINGLE.format(10), body, format="json")
    assert first.status_code == 200
    second = api.post(ISSUE_SINGLE.format(10), body, format="json")
    assert second.status_code == 200
    assert second.content == first.content
    assert balance(account) == Decimal("99975")
    assert IssuanceLine.objects.count() == 1 and LedgerEntry.objects.count() == 1


def test_replay_after_the_reward_changed_still_answers_the_stored_result(api, account, points_reward):
    body = {"mobile": "11223569865", "requestId": "r-2"}
    first = api.post(ISSUE_SINGLE.format(10), body, format="json")
    cm.Reward.objects.filter(pk=10).update(enabled=False)
    second = api.post(ISSUE_SINGLE.format(10), body, format="json")
    assert (second.status_code, second.content) == (first.status_code, first.content)


def test_same_request_id_different_payload_is_10003(api, account, points_reward):
    api.post(ISSUE_SINGLE.format(10), {"mobile": "11223569865", "requestId": "r-3"}, format="json")
    response = api.post(ISSUE_SINGLE.format(10), {"mobile": "11223569865", "requestId": "r-3", "notes": "x"},
                        format="json")
    assert response.status_code == 422
    assert response.json() == {
        "status": {"success": False, "code": 10003, "message": "Request payload is not matching for the passed requestId/s"}
    }
    assert LedgerEntry.objects.count() == 1


def test_bulk_retry_replays_done_lines_and_issues_new_ones(api, account, points_reward, brand):
    other = f.RewardFactory(pk=11, brand=brand)
    f.PaymentConfigFactory(reward=other, mode=PaymentMode.POINTS, points=Decimal("5"))
    body = {"mobile": "11223569865", "rewards": [{"rewardId": 10, "quantity": 2, "requestId": "b-1"}]}
    first = api.post(ISSUE_BULK, body, format="json")
    retry = api.post(ISSUE_BULK, {**body, "rewards": body["rewards"] + [{"rewardId": 11, "requestId": "b-2"}]},
                     format="json")
    assert retry.status_code == 200
    assert retry.json()["rewards"][0] == first.json()["rewards"][0]
    assert retry.json()["rewards"][1]["status"]["code"] == 200
    assert balance(account) == Decimal("100000") - 50 - 5
    assert IssuanceLine.objects.count() == 2


def test_partial_first_attempt_retry_issues_only_the_outstanding_units(api, account, org, points_reward):
    limit = cm.RewardConstraint.objects.create(
        org=org, reward=points_reward, level=ConstraintLevel.CUSTOMER, frequency=Frequency.DAYS, limit_value=1
    )
    body = {"mobile": "11223569865", "rewards": [{"rewardId": 10, "quantity": 3, "requestId": "p-1"}]}
    first = api.post(ISSUE_BULK, body, format="json").json()["rewards"][0]
    assert (first["quantity"], first["status"]["code"]) == (1, 8010)
    assert balance(account) == Decimal("99975")

    limit.limit_value = 10
    limit.save()
    retry = api.post(ISSUE_BULK, body, format="json")
    line = retry.json()["rewards"][0]
    assert retry.status_code == 200
    assert line["status"]["code"] == 200
    assert (line["requestedQuantity"], line["quantity"]) == (3, 3)  # answers for the whole
    assert line["transactionId"] == first["transactionId"]
    assert len(line["pointsReferenceIds"]) == 2
    assert line["totalPointsRedeemed"] == 75
    assert balance(account) == Decimal("99925")  # only the two outstanding units were paid for now

    again = api.post(ISSUE_BULK, body, format="json")
    assert again.json()["rewards"][0] == line
    assert balance(account) == Decimal("99925")
    assert IdempotencyRecord.objects.get().line_id == first["transactionId"]


def test_failed_outcome_is_stored_and_retried(api, account, org, brand):
    """A per-reward failure (here 12005) is stored; a retry re-evaluates what is outstanding."""
    reward = f.RewardFactory(pk=12, brand=brand)
    f.PaymentConfigFactory(reward=reward, mode=PaymentMode.FREE, points=None)
    limit = cm.RewardConstraint.objects.create(
        org=org, reward=reward, level=ConstraintLevel.CUSTOMER, frequency=Frequency.DAYS, limit_value=0
    )
    body = {"mobile": "11223569865", "requestId": "f-1"}
    failed = api.post(ISSUE_SINGLE.format(12), body, format="json")
    assert failed.json()["status"]["code"] == 12005
    assert IdempotencyRecord.objects.count() == 1
    limit.delete()
    ok = api.post(ISSUE_SINGLE.format(12), body, format="json")
    assert ok.json()["status"]["code"] == 200
    assert ok.json()["transactionId"] == failed.json()["transactionId"]
    assert IssuedUnit.objects.count() == 1


def test_validation_failures_are_not_stored(api, account, points_reward):
    bad = api.post(ISSUE_SINGLE.format(10), {"mobile": "11223569865", "requestId": "v-1", "quantity": 0},
                   format="json")
    assert bad.status_code == 400
    assert not IdempotencyRecord.objects.exists()
    good = api.post(ISSUE_SINGLE.format(10), {"mobile": "11223569865", "requestId": "v-1"}, format="json")
    assert good.status_code == 200


def test_request_ids_are_scoped_per_org(api, account, points_reward):
    other_org = f.OrganisationFactory()
    IdempotencyRecord.objects.create(org=other_org, request_id="shared", fingerprint="x" * 64)
    response = api.post(ISSUE_SINGLE.format(10), {"mobile": "11223569865", "requestId": "shared"}, format="json")
    assert response.status_code == 200
    assert IdempotencyRecord.objects.filter(request_id="shared").count() == 2


def test_requests_without_request_id_issue_every_time(api, account, points_reward):
    for _ in range(3):
        assert api.post(ISSUE_SINGLE.format(10), {"mobile": "11223569865"}, format="json").status_code == 200
    assert Issuance.objects.count() == 3 and balance(account) == Decimal("99925")
