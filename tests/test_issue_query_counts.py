"""Query counts of the issue calls (figures quoted in docs/performance.md).

The counts must not grow with how many segments, cards, labels or payment configs a
reward has, nor with how many rewards a bulk call names beyond a fixed cost per line."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalogue import models as cm
from catalogue.choices import PaymentMode, RedemptionType
from tests import factories as f
from tests.conftest import ISSUE_BULK, ISSUE_SINGLE

pytestmark = pytest.mark.django_db

# Measured on PostgreSQL (see docs/performance.md), a single issue of a coupon reward:
# auth user+profile (1), the API permission (1), till with membership (1), customer (1),
# rewards + payment configs (2), custom-field definitions (1), limits that may apply (1),
# customer facts (1, a UNION), reward targets (1, a UNION), savepoint, SET lock_timeout +
# account lock (2), issuance insert/update (2), line insert/update (2), coupon pick +
# delete + unit insert (3), account update + ledger insert (2), release.
SINGLE_ISSUE_MAX_QUERIES = 23
# Per extra bulk line: line insert/update, coupon pick/delete/unit insert, balance update
# and ledger insert.
PER_BULK_LINE_MAX_QUERIES = 7


def rich_rewards(org, brand, customer, count, *, links):
    """Coupon rewards each with ``links`` segment targets and payment configs."""
    segment = f.SegmentFactory(org=org)
    partitions = [f.PartitionFactory(segment=segment) for _ in range(links)]
    cm.SegmentMembership.objects.create(customer=customer, partition=partitions[0])
    series = f.CouponSeriesFactory(org=org)
    cm.CouponCode.objects.bulk_create(cm.CouponCode(series=series, code=f"C{i}") for i in range(count * 3))
    rewards = []
    for i in range(count):
        reward = f.RewardFactory(brand=brand, redemption_type=RedemptionType.INTOUCH_REWARD, coupon_series=series)
        for p in partitions:
            cm.RewardSegmentTarget.objects.create(reward=reward, partition=p)
        configs = [f.PaymentConfigFactory(reward=reward, mode=PaymentMode.POINTS, points=Decimal(5 + n))
                   for n in range(links)]
        rewards.append((reward, configs[0]))
    return rewards


def count_queries(call) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = call()
    assert response.status_code == 200, response.content
    return len(ctx.captured_queries)


@pytest.mark.parametrize("links", [1, 5])
def test_single_issue_query_count_is_bounded(api, org, brand, customer, account, links):
    (reward, config), = rich_rewards(org, brand, customer, 1, links=links)
    api.post(ISSUE_SINGLE.format(reward.pk), {"mobile": customer.mobile, "paymentConfig": {"id": config.pk}},
             format="json")  # warm the per-process auth cache like a busy till
    queries = count_queries(
        lambda: api.post(ISSUE_SINGLE.format(reward.pk), {"mobile": customer.mobile, "paymentConfig": {"id": config.pk}},
                         format="json")
    )
    assert queries <= SINGLE_ISSUE_MAX_QUERIES


def test_query_count_does_not_grow_with_links(api, org, brand, customer, account):
    counts = []
    for links in (1, 6):
        (reward, config), = rich_rewards(org, brand, customer, 1, links=links)
        counts.append(count_queries(
            lambda: api.post(ISSUE_SINGLE.format(reward.pk),
                             {"mobile": customer.mobile, "paymentConfig": {"id": config.pk}}, format="json")
        ))
    assert counts[0] == counts[1]


def test_bulk_of_10_query_count_is_bounded(api, org, brand, customer, account):
    rewards = rich_rewards(org, brand, customer, 10, links=3)
    body = {"mobile": customer.mobile,
            "rewards": [{"rewardId": r.pk, "quantity": 2, "paymentConfig": {"id": c.pk}} for r, c in rewards]}
    one = count_queries(lambda: api.post(ISSUE_BULK, {**body, "rewards": body["rewards"][:1]}, format="json"))
    ten = count_queries(lambda: api.post(ISSUE_BULK, body, format="json"))
    assert ten <= SINGLE_ISSUE_MAX_QUERIES + 10 * PER_BULK_LINE_MAX_QUERIES
    assert ten - one <= 9 * PER_BULK_LINE_MAX_QUERIES
