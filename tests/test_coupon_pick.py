"""Taking a coupon code costs the same however far the pool has drained and whatever else the
pool table holds (STYLE.md, "Known traps"; docs/performance.md, "Coupon pools").

The pick of an issue call is re-run under EXPLAIN (ANALYZE, BUFFERS): it must touch a handful of
pages, for a series stored after another series' 40,000 codes and for a series whose first 90 %
was issued. A plain scan of the table (no ORDER BY) reads every page before the first free code
of the series — hundreds here, thousands on a real pool — and gets slower with every code issued.
"""

import json
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from catalogue import models as cm
from catalogue.choices import PaymentMode, RedemptionType
from tests import factories as f
from tests.conftest import ISSUE_SINGLE

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL plans and SKIP LOCKED"),
]

BIG = 40_000
PAGES_PER_PICK = 20  # index root, a leaf or two, the row's heap page; far below a scan's hundreds


def coupon_reward(brand, series) -> cm.Reward:
    reward = f.RewardFactory(brand=brand, redemption_type=RedemptionType.INTOUCH_REWARD, coupon_series=series,
                             intouch_points=Decimal("10"))
    f.PaymentConfigFactory(reward=reward, mode=PaymentMode.POINTS, points=Decimal("10"))
    return reward


def fill(series, prefix: str, count: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {cm.CouponCode._meta.db_table} (series_id, code) "
            "SELECT %s, %s || lpad(g::text, 7, '0') FROM generate_series(1, %s) g",
            [series.pk, prefix, count],
        )


def issue_and_explain_pick(api, reward) -> tuple[str, int]:
    """Issue one unit through the API; return the code and the pages its pick query touches."""
    with CaptureQueriesContext(connection) as ctx:
        response = api.post(ISSUE_SINGLE.format(reward.pk), {"mobile": "11223569865"}, format="json")
    assert response.status_code == 200, response.content
    pick = next(q["sql"] for q in ctx.captured_queries if "SKIP LOCKED" in q["sql"] and "couponcode" in q["sql"])
    with transaction.atomic(), connection.cursor() as cursor:
        # As on a production server: shared_buffers large enough that PostgreSQL does not
        # "synchronise" scans of this table (which would start a scan where the last one stopped).
        cursor.execute("SET LOCAL synchronize_seqscans = off")
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + pick)
        plan = cursor.fetchone()[0]
        transaction.set_rollback(True)
    plan = json.loads(plan) if isinstance(plan, str) else plan
    top = plan[0]["Plan"]
    return response.json()["intouch"]["couponCode"], top["Shared Hit Blocks"] + top["Shared Read Blocks"]


def test_a_pick_reads_a_few_pages_behind_other_series_and_in_a_90_percent_drained_pool(api, account, org, brand):
    first = f.CouponSeriesFactory(org=org, name="first")
    second = f.CouponSeriesFactory(org=org, name="second")
    fill(first, "A", BIG)  # stored first: a plain scan for `second` would read all of these
    fill(second, "B", 1_000)
    first_reward, second_reward = coupon_reward(brand, first), coupon_reward(brand, second)
    with connection.cursor() as cursor:
        cursor.execute(  # 90 % of `first` issued: the codes a pick takes first
            f"DELETE FROM {cm.CouponCode._meta.db_table} WHERE series_id = %s AND code <= %s",
            [first.pk, f"A{int(BIG * 0.9):07d}"],
        )
        cursor.execute(f"VACUUM ANALYZE {cm.CouponCode._meta.db_table}")  # what autovacuum does meanwhile

    code, pages = issue_and_explain_pick(api, second_reward)
    assert code == "B0000001"  # the first free code of the series, then gone from the pool
    assert pages <= PAGES_PER_PICK, pages
    code, pages = issue_and_explain_pick(api, first_reward)
    assert code == f"A{int(BIG * 0.9) + 1:07d}"
    assert pages <= PAGES_PER_PICK, pages
    assert not cm.CouponCode.objects.filter(code__in=["B0000001", code]).exists()
    assert cm.CouponCode.objects.filter(series=first).count() == BIG - int(BIG * 0.9) - 1
