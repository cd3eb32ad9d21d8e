"""The list's price filters and sorts read the rewards' listing cache through its indexes
(docs/list-api.md, "Prices and targeting"; docs/performance.md, "List API").

On a brand of 20,000 rewards the page query of ``sortBy=points`` (both orders) and of a
``minPoints``/``maxPoints`` range is re-run under EXPLAIN (ANALYZE, BUFFERS): it must walk a
(brand, list_points) index and stop after the page, never compute a price per reward from the
payment configs (the correlated subqueries that cost ~0.5 s on a 60,000-reward brand) nor sort
the whole brand.

That is the SQL read (``catalogue.selectors.reward_list_for_customer``), which serves the list
with ``LIST_INDEX=false`` and on SQLite; this module turns the in-memory index off.
"""

import json
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from catalogue import models as cm
from catalogue.choices import PaymentMode
from catalogue.services import reward_listing_refresh
from tests import factories as f

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("list_index_off"),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL plans"),
]

URL = "/api_gateway/rewards/core/v1/user/reward/brand/{}"
REWARDS = 20_000
PAGE_BUFFERS = 200  # a walk of the index for one page; reading the brand's rewards is thousands


def many_rewards(brand, count: int) -> None:
    """``count`` copies of one priced reward (points 0–999), written in SQL, then the listing
    cache refreshed by its one writer and the tables analysed."""
    template = f.RewardFactory(brand=brand)
    f.PaymentConfigFactory(reward=template, mode=PaymentMode.POINTS, points=Decimal("5"))
    columns = [fld.column for fld in cm.Reward._meta.concrete_fields if fld.column not in ("id", "name")]
    quoted = ", ".join(connection.ops.quote_name(c) for c in columns)
    reward_table = connection.ops.quote_name(cm.Reward._meta.db_table)
    config_table = connection.ops.quote_name(cm.PaymentConfig._meta.db_table)
    config_columns = [fld.column for fld in cm.PaymentConfig._meta.concrete_fields
                      if fld.column not in ("id", "reward_id", "points")]
    config_quoted = ", ".join(connection.ops.quote_name(c) for c in config_columns)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {reward_table} (name, {quoted}) "
            f"SELECT 'copy ' || g, {quoted} FROM {reward_table}, generate_series(1, %s) g WHERE id = %s",
            [count, template.pk],
        )
        cursor.execute(
            f"INSERT INTO {config_table} (reward_id, points, {config_quoted}) "
            f"SELECT r.id, (r.id %% 1000), {', '.join('c.' + connection.ops.quote_name(c) for c in config_columns)} "
            f"FROM {reward_table} r, {config_table} c WHERE r.brand_id = %s AND r.id <> %s AND c.reward_id = %s",
            [brand.pk, template.pk, template.pk],
        )
    reward_listing_refresh(rewards=cm.Reward.objects.filter(brand=brand))
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {reward_table}")
        cursor.execute(f"ANALYZE {config_table}")


def explained_page_query(api, customer, brand, **params) -> tuple[list, dict]:
    with CaptureQueriesContext(connection) as ctx:
        response = api.get(URL.format(brand.name), {"userId": customer.pk, **params})
    assert response.status_code == 200, response.content
    rewards = response.json()["rewardList"]
    page = next(q["sql"] for q in ctx.captured_queries
                if "list_points" in q["sql"] and "LIMIT" in q["sql"] and "catalogue_reward" in q["sql"])
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + page)
        plan = cursor.fetchone()[0]
        transaction.set_rollback(True)
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return rewards, plan[0]["Plan"]


def nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", ()):
        yield from nodes(child)


@pytest.fixture
def big_brand(brand):
    many_rewards(brand, REWARDS)
    return brand


@pytest.mark.parametrize("params", [
    {"sortBy": "points"},
    {"sortBy": "points", "orderBy": "DESC"},
    {"sortBy": "points", "orderBy": "DESC", "minPoints": "500", "maxPoints": "1000"},
])
def test_price_sorts_and_filters_walk_the_price_index(api, customer, big_brand, params):
    rewards, plan = explained_page_query(api, customer, big_brand, **params)
    points = [r["intouchPoints"] if r.get("paymentConfigs") is None else min(
        Decimal(str(c["points"])) for c in r["paymentConfigs"] if c.get("points") is not None) for r in rewards]
    assert len(rewards) == 20
    assert points == sorted(points, reverse=params.get("orderBy") == "DESC")
    relations = {n.get("Relation Name") for n in nodes(plan)}
    indexes = {n.get("Index Name") for n in nodes(plan)}
    assert "catalogue_paymentconfig" not in relations  # no price computed from the configs
    assert indexes & {"reward_brand_points", "reward_brand_points_desc"}, indexes
    assert not [n for n in nodes(plan) if n["Node Type"] == "Sort" and n.get("Actual Rows", 0) > 1000]
    pages = plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0)
    assert pages <= PAGE_BUFFERS, pages
