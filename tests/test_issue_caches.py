"""The engine's per-process caches of catalogue metadata (issuance/caches.py; docs/issuance.md,
"What the engine caches"): what they hold, when a change shows, and what is never cached."""

from decimal import Decimal

import pytest

from catalogue import models as cm
from catalogue.choices import ConstraintLevel, Frequency, PaymentMode
from issuance import caches
from issuance.models import IssuanceLine
from tests import factories as f
from tests.conftest import ISSUE_SINGLE

pytestmark = pytest.mark.django_db

MOBILE = "11223569865"


@pytest.fixture
def reward(brand):
    reward = f.RewardFactory(brand=brand, intouch_points=0)
    f.PaymentConfigFactory(reward=reward, mode=PaymentMode.FREE, points=None)
    return reward


def issue(api, reward, **body):
    return api.post(ISSUE_SINGLE.format(reward.pk), {"mobile": MOBILE, "brand": "BUKL", **body}, format="json")


def code(response) -> int:
    return response.json()["status"]["code"]


@pytest.fixture
def later(monkeypatch):
    """Move the caches' clock past their time to live."""

    def move(seconds=caches.TTL_SECONDS + 1):
        now = caches._clock()
        monkeypatch.setattr(caches, "_clock", lambda: now + seconds)

    return move


# ---------------------------------------------------------------- the cache itself


def test_entries_expire_after_the_time_to_live(later):
    cache = caches.TTLCache("test", ttl=30)
    cache.set("k", 1)
    assert cache.get("k") == 1
    later(29)
    assert cache.get("k") == 1
    later(30)
    assert cache.get("k") is None
    assert len(cache) == 0


def test_the_oldest_entries_go_first_when_full():
    cache = caches.TTLCache("test", max_entries=2)
    cache.set("a", 1)
    cache.set("b", 2)
    cache.set("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (None, 2, 3)


def test_the_time_to_live_is_thirty_seconds():
    assert caches.TTL_SECONDS == 30
    assert all(cache.ttl == 30 for cache in caches.ALL)


def test_a_missing_value_is_computed_once():
    cache, calls = caches.TTLCache("test"), []
    assert cache.get_or_set("k", lambda: calls.append(1) or "v") == "v"
    assert cache.get_or_set("k", lambda: calls.append(1) or "w") == "v"
    assert calls == [1]


# ---------------------------------------------------------------- changes saved through the ORM show at once


def test_a_brand_renamed_is_seen_at_once(api, account, brand, reward):
    assert code(issue(api, reward)) == 200
    brand.name = "RENAMED"
    brand.save()
    assert code(issue(api, reward)) == 3004
    assert code(api.post(ISSUE_SINGLE.format(reward.pk), {"mobile": MOBILE, "brand": "RENAMED"}, format="json")) == 200


def test_a_till_taken_from_the_user_is_refused_at_once(api, api_user, account, org, reward):
    assert code(issue(api, reward)) == 200
    cm.Till.objects.get(org=org, code="till1").users.remove(api_user)
    response = issue(api, reward)
    assert response.status_code == 403
    assert response.json()["status"]["message"] == "The till is not available to this user"


def test_a_deactivated_till_is_refused_at_once(api, account, org, reward):
    assert code(issue(api, reward)) == 200
    till = cm.Till.objects.get(org=org, code="till1")
    till.is_active = False
    till.save()
    assert issue(api, reward).status_code == 403


def test_a_new_mandatory_custom_field_applies_at_once(api, account, org, reward):
    assert code(issue(api, reward)) == 200
    cm.CustomFieldDefinition.objects.create(org=org, name="store", scope="ISSUE_REWARD", field_type="STRING",
                                            is_mandatory=True)
    response = issue(api, reward)
    assert response.status_code == 400
    assert response.json()["status"]["message"] == "customFields.store: is mandatory"
    assert code(issue(api, reward, customFields={"store": "S1"})) == 200


def test_a_new_limit_applies_at_once(api, account, org, reward):
    assert code(issue(api, reward)) == 200
    limit = cm.RewardConstraint.objects.create(org=org, reward=reward, level=ConstraintLevel.CUSTOMER,
                                               frequency=Frequency.DAYS, limit_value=1)
    assert code(issue(api, reward)) == 12005
    limit.delete()
    assert code(issue(api, reward)) == 200


def test_a_new_org_level_limit_applies_at_once(api, account, org, reward):
    assert code(issue(api, reward)) == 200
    cm.RewardConstraint.objects.create(org=org, redemption_type=reward.redemption_type,
                                       level=ConstraintLevel.CUSTOMER_REDEMPTION_TYPE, frequency=Frequency.DAYS,
                                       limit_value=1)
    assert code(issue(api, reward)) == 12005


def test_a_new_segment_target_applies_at_once(api, account, org, customer, reward):
    assert code(issue(api, reward)) == 200
    partition = f.PartitionFactory(segment=f.SegmentFactory(org=org))
    cm.RewardSegmentTarget.objects.create(reward=reward, partition=partition)
    assert code(issue(api, reward)) == 12034


def test_a_new_label_target_applies_at_once(api, account, org, reward):
    assert code(issue(api, reward)) == 200
    reward.labels.add(f.LabelFactory(org=org))
    assert code(issue(api, reward)) == 12050


# ---------------------------------------------------------------- bulk writes show within the time to live


def test_a_change_that_sends_no_signal_shows_within_the_time_to_live(api, account, org, reward, later):
    """QuerySet.update (like the importer's bulk writes) is seen once the entry expires."""
    assert code(issue(api, reward)) == 200
    cm.Brand.objects.filter(org=org, name="BUKL").update(name="RENAMED")
    assert code(issue(api, reward)) == 200  # stale: the former name still resolves
    later()
    assert code(issue(api, reward)) == 3004


# ---------------------------------------------------------------- never cached


def test_what_the_customer_holds_is_read_on_every_call(api, account, org, customer, reward):
    partition = f.PartitionFactory(segment=f.SegmentFactory(org=org))
    cm.RewardSegmentTarget.objects.create(reward=reward, partition=partition)
    assert code(issue(api, reward)) == 12034
    membership = cm.SegmentMembership.objects.create(customer=customer, partition=partition)
    assert code(issue(api, reward)) == 200
    cm.SegmentMembership.objects.filter(pk=membership.pk).delete()  # no signal the caches hear
    assert code(issue(api, reward)) == 12034


def test_prices_and_reward_state_are_read_on_every_call(api, account, brand):
    reward = f.RewardFactory(brand=brand)
    config = f.PaymentConfigFactory(reward=reward, mode=PaymentMode.POINTS, points=Decimal("10"))
    assert issue(api, reward).json()["totalPointsRedeemed"] == 10
    cm.PaymentConfig.objects.filter(pk=config.pk).update(points=Decimal("7"))
    assert issue(api, reward).json()["totalPointsRedeemed"] == 7
    cm.Reward.objects.filter(pk=reward.pk).update(enabled=False)
    assert code(issue(api, reward)) != 200


def test_limits_and_targets_written_without_signals_apply_at_once(api, account, org, customer, reward):
    """Limits and targets decide who may take what: never cached, even when a bulk write
    (the importer's) sends no signal."""
    assert code(issue(api, reward)) == 200
    cm.RewardConstraint.objects.bulk_create([cm.RewardConstraint(
        org=org, reward=reward, level=ConstraintLevel.CUSTOMER, frequency=Frequency.DAYS, limit_value=1)])
    assert code(issue(api, reward)) == 12005
    cm.RewardConstraint.objects.filter(reward=reward).delete()
    partition = f.PartitionFactory(segment=f.SegmentFactory(org=org))
    cm.RewardSegmentTarget.objects.bulk_create([cm.RewardSegmentTarget(reward=reward, partition=partition)])
    assert code(issue(api, reward)) == 12034


def test_limit_consumption_is_counted_on_every_call(api, account, org, reward):
    cm.RewardConstraint.objects.create(org=org, reward=reward, level=ConstraintLevel.CUSTOMER,
                                       frequency=Frequency.DAYS, limit_value=2)
    assert [code(issue(api, reward)) for _ in range(3)] == [200, 200, 12005]
    IssuanceLine.objects.filter(reward=reward).update(status="FAILED")  # no longer counted
    assert code(issue(api, reward)) == 200


def test_a_deactivated_user_is_refused_at_once(api, api_user, account, reward):
    assert code(issue(api, reward)) == 200
    type(api_user).objects.filter(pk=api_user.pk).update(is_active=False)
    assert issue(api, reward).status_code == 401
