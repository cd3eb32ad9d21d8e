"""Query counts of the issue calls (figures quoted in docs/performance.md, "Queries per issue call").

The counts must not grow with how many segments, cards, labels or payment configs a
reward has, nor with how many rewards a bulk call names beyond a fixed cost per line; a bearer
token costs what HTTP Basic costs; rows are written once, with their outcome."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalogue import models as cm
from catalogue.choices import PaymentMode, RedemptionType
from issuance import caches
from tests import factories as f
from tests.conftest import ISSUE_BULK, ISSUE_SINGLE
from tests.oauth_factories import access_token_for, api_client_for, bearer

pytestmark = pytest.mark.django_db

# Measured on PostgreSQL (see docs/performance.md), a single issue of a coupon reward with the
# per-process caches warm (issuance/caches.py: till, brand, custom fields), no requestId: auth
# user + profile + org + API permission (1), customer (1), rewards with their payment configs (1), the
# rewards' targets with what the customer holds (1, a UNION ALL), active limits (1), savepoint, account lock with the lock timeout (1), coupon pick-and-delete (1),
# issuance insert (1), line insert (1), unit insert (1), account update + ledger insert (2),
# release. A requestId adds its record lock and its record insert. On PostgreSQL, see BATCHED.
# Elsewhere (SQLite) the coupon pick is two statements: a select and a delete.
PICK_QUERIES = 1 if connection.vendor == "postgresql" else 2
# On PostgreSQL the writes are one statement (issuance.rawsql.batched): the five inserts and
# the account update become the ids taken for the new rows (1) and the writes (1).
BATCHED = connection.vendor == "postgresql"
SINGLE_ISSUE_MAX_QUERIES = (10 if BATCHED else 13) + PICK_QUERIES
REQUEST_ID_QUERIES = 1 if BATCHED else 2
# Cold caches add at most: till, custom field definitions (and the brand when the call names
# one).
COLD_CACHE_MAX_QUERIES = 2
# Per extra bulk line: nothing. Its line, units, coupon pick (for a series already drawn on),
# ledger entry (with the one account update) and record share the call's statements.
PER_BULK_LINE_MAX_QUERIES = 0


def rich_rewards(org, brand, customer, count, *, links, codes=None):
    """Coupon rewards (one series) each with ``links`` segment targets and payment configs."""
    segment = f.SegmentFactory(org=org)
    partitions = [f.PartitionFactory(segment=segment) for _ in range(links)]
    cm.SegmentMembership.objects.create(customer=customer, partition=partitions[0])
    series = f.CouponSeriesFactory(org=org)
    cm.CouponCode.objects.bulk_create(cm.CouponCode(series=series, code=f"C{i}") for i in range(codes or count * 3))
    rewards = []
    for i in range(count):
        reward = f.RewardFactory(brand=brand, redemption_type=RedemptionType.INTOUCH_REWARD, coupon_series=series)
        for p in partitions:
            cm.RewardSegmentTarget.objects.create(reward=reward, partition=p)
        configs = [f.PaymentConfigFactory(reward=reward, mode=PaymentMode.POINTS, points=Decimal(5 + n))
                   for n in range(links)]
        rewards.append((reward, configs[0]))
    return rewards


def captured(call):
    with CaptureQueriesContext(connection) as ctx:
        response = call()
    assert response.status_code == 200, response.content
    assert response.json()["status"]["code"] == 200, response.content
    return [q["sql"] for q in ctx.captured_queries]


def count_queries(call) -> int:
    return len(captured(call))


def single(api, reward, config, **extra):
    return lambda: api.post(ISSUE_SINGLE.format(reward.pk),
                            {"mobile": "11223569865", "paymentConfig": {"id": config.pk}, **extra}, format="json")


@pytest.mark.parametrize("links", [1, 5])
def test_single_issue_query_count_is_bounded(api, org, brand, customer, account, links):
    (reward, config), = rich_rewards(org, brand, customer, 1, links=links)
    single(api, reward, config)()  # warm the per-process caches like a busy till
    assert count_queries(single(api, reward, config)) <= SINGLE_ISSUE_MAX_QUERIES


def test_a_request_id_adds_its_record_lock_and_insert(api, org, brand, customer, account):
    (reward, config), = rich_rewards(org, brand, customer, 1, links=1)
    single(api, reward, config, requestId="warm")()
    assert count_queries(single(api, reward, config, requestId="r-1")) <= SINGLE_ISSUE_MAX_QUERIES + REQUEST_ID_QUERIES


def test_cold_caches_cost_a_bounded_few_more(api, org, brand, customer, account):
    (reward, config), = rich_rewards(org, brand, customer, 1, links=1)
    single(api, reward, config)()
    caches.clear_all()
    cold = count_queries(single(api, reward, config))
    warm = count_queries(single(api, reward, config))
    assert warm <= SINGLE_ISSUE_MAX_QUERIES
    assert cold <= warm + COLD_CACHE_MAX_QUERIES


def test_query_count_does_not_grow_with_links(api, org, brand, customer, account):
    counts = []
    for links in (1, 6):
        (reward, config), = rich_rewards(org, brand, customer, 1, links=links)
        single(api, reward, config)()
        counts.append(count_queries(single(api, reward, config)))
    assert counts[0] == counts[1]


def test_rows_are_written_once_with_their_outcome(api, org, brand, customer, account):
    """No UPDATE of the issuance or the line after their INSERT, nothing read back."""
    (reward, config), = rich_rewards(org, brand, customer, 1, links=1)
    single(api, reward, config)()
    sqls = captured(single(api, reward, config, requestId="once"))
    assert not [q for q in sqls if q.startswith(("UPDATE \"issuance_issuance\"", "UPDATE \"issuance_issuanceline\""))]
    inserts = ["INSERT INTO \"issuance_issuance\" ", "INSERT INTO \"issuance_issuanceline\"",
               "INSERT INTO \"issuance_issuedunit\"", "INSERT INTO \"issuance_ledgerentry\"",
               "INSERT INTO \"issuance_idempotencyrecord\""]
    if BATCHED:
        # One statement: each insert and the account update a data-modifying CTE of it.
        writes = [q for q in sqls if "INSERT" in q or q.startswith("UPDATE")]
        assert len(writes) == 1 and writes[0].startswith("WITH w0 AS (INSERT INTO"), writes
        assert [table for table in inserts if table in writes[0]] == inserts
        assert writes[0].count("INSERT INTO") == 5
        assert writes[0].count("UPDATE \"issuance_pointsaccount\" SET") == 1
    else:
        assert [q for q in sqls if q.startswith("INSERT")] == [q for q in sqls if q.startswith(tuple(inserts))]
        assert len([q for q in sqls if q.startswith("INSERT")]) == 5
    assert not [q for q in sqls if "FROM \"issuance_ledgerentry\"" in q or "FROM \"issuance_issuedunit\"" in q]


def test_targets_and_what_the_customer_holds_are_one_query(api, org, brand, customer, account):
    (reward, config), = rich_rewards(org, brand, customer, 1, links=1)
    single(api, reward, config)()
    sqls = captured(single(api, reward, config))
    reads = [q for q in sqls if "catalogue_segmentmembership" in q or "catalogue_rewardsegmenttarget" in q]
    assert len(reads) == 1
    assert "catalogue_segmentmembership" in reads[0] and "catalogue_rewardsegmenttarget" in reads[0]


def test_a_bearer_token_costs_what_http_basic_costs(api, api_user, org, brand, customer, account):
    (reward, config), = rich_rewards(org, brand, customer, 1, links=1, codes=10)
    till = cm.Till.objects.get(org=org, code="till1")
    client, _ = api_client_for(till)
    from rest_framework.test import APIClient

    oauth = APIClient()
    oauth.credentials(HTTP_AUTHORIZATION=bearer(access_token_for(client)))
    # Warm, with requestIds: the first idempotency record of a process looks its sequence up once.
    single(api, reward, config, requestId="b-0")()
    single(oauth, reward, config, requestId="o-0")()
    basic_count = count_queries(single(api, reward, config, requestId="b-1"))
    bearer_count = count_queries(single(oauth, reward, config, requestId="o-1"))
    assert bearer_count == basic_count <= SINGLE_ISSUE_MAX_QUERIES + REQUEST_ID_QUERIES


def test_a_bearer_token_costs_what_http_basic_costs_on_the_list(api, api_user, org, brand, customer):
    """Through the whole of a list call (and of the issue call above): no column the token's
    query leaves out (issuance.api.authentication._TOKEN_UNREAD) is read afterwards."""
    from rest_framework.test import APIClient

    f.RewardFactory(brand=brand)
    till = cm.Till.objects.get(org=org, code="till1")
    client, _ = api_client_for(till)
    oauth = APIClient()
    oauth.credentials(HTTP_AUTHORIZATION=bearer(access_token_for(client)))
    url = f"/api_gateway/rewards/core/v1/user/reward/brand/{brand.name}?userId={customer.pk}"
    counts = {}
    for name, caller in (("basic", api), ("bearer", oauth)):
        assert caller.get(url).status_code == 200  # warm
        counts[name] = count_queries(lambda caller=caller: caller.get(url))
    assert counts["bearer"] == counts["basic"]


def test_bulk_of_10_query_count_is_bounded(api, org, brand, customer, account):
    rewards = rich_rewards(org, brand, customer, 10, links=3, codes=60)
    body = {"mobile": customer.mobile,
            "rewards": [{"rewardId": r.pk, "quantity": 2, "paymentConfig": {"id": c.pk}} for r, c in rewards]}
    api.post(ISSUE_BULK, {**body, "rewards": body["rewards"][:1]}, format="json")  # warm
    api.post(ISSUE_BULK, body, format="json")
    one = count_queries(lambda: api.post(ISSUE_BULK, {**body, "rewards": body["rewards"][:1]}, format="json"))
    ten = count_queries(lambda: api.post(ISSUE_BULK, body, format="json"))
    assert ten <= SINGLE_ISSUE_MAX_QUERIES + 9 * PER_BULK_LINE_MAX_QUERIES
    assert ten - one <= 9 * PER_BULK_LINE_MAX_QUERIES


def test_bulk_lines_on_different_series_add_one_pick_each(api, org, brand, customer, account):
    rewards = [rich_rewards(org, brand, customer, 1, links=1)[0] for _ in range(3)]  # a series each
    lines = [{"rewardId": r.pk, "paymentConfig": {"id": c.pk}} for r, c in rewards]
    body = {"mobile": customer.mobile, "rewards": lines}
    api.post(ISSUE_BULK, body, format="json")  # warm
    one = count_queries(lambda: api.post(ISSUE_BULK, {**body, "rewards": body["rewards"][:1]}, format="json"))
    three = count_queries(lambda: api.post(ISSUE_BULK, body, format="json"))
    assert three - one <= 2 * (PER_BULK_LINE_MAX_QUERIES + PICK_QUERIES)


def test_limits_and_targets_are_read_on_every_call(api, org, brand, customer, account):
    """They decide who may take what: never served from the per-process caches."""
    rewards = rich_rewards(org, brand, customer, 3, links=1, codes=20)
    lines = [{"rewardId": r.pk, "paymentConfig": {"id": c.pk}} for r, c in rewards]
    api.post(ISSUE_BULK, {"mobile": customer.mobile, "rewards": lines}, format="json")
    sqls = captured(lambda: api.post(ISSUE_BULK, {"mobile": customer.mobile, "rewards": lines}, format="json"))
    assert [q for q in sqls if "catalogue_rewardconstraint" in q]
    assert [q for q in sqls if "catalogue_rewardsegmenttarget" in q]
