"""The engine's limit look-up reads the limits through indexes (docs/performance.md, "Limits
look-up"): on an org with thousands of reward-level limits, "the rewards' own limits OR the
org's limits of their redemption types" is a BitmapOr of two index scans, never a scan of
every limit (it was: 1.3 ms of database CPU per issue call with 5,000 limits in the bench).

The statement runs prepared (issuance.rawsql), so PostgreSQL may switch to a generic plan
after five calls: both the custom and the generic plan are checked."""

import json
from decimal import Decimal

import pytest
from django.db import connection

from catalogue import models as cm
from catalogue.choices import ConstraintLevel, Frequency, RedemptionType
from issuance import services
from tests import factories as f

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL plans"),
]

LIMITS = 5_000


def nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


@pytest.fixture
def many_limits(org, brand):
    """LIMITS rewards, each with its own limit, two org-level limits by type, analysed."""
    template = f.RewardFactory(org=org, brand=brand, redemption_type=RedemptionType.INTOUCH_REWARD)
    reward_table = connection.ops.quote_name(cm.Reward._meta.db_table)
    columns = [fld.column for fld in cm.Reward._meta.concrete_fields if fld.column not in ("id", "name")]
    quoted = ", ".join(connection.ops.quote_name(c) for c in columns)
    limit = cm.RewardConstraint.objects.create(org=org, reward=template, level=ConstraintLevel.REWARD,
                                               frequency=Frequency.DAYS, limit_value=Decimal(5))
    limit_table = connection.ops.quote_name(cm.RewardConstraint._meta.db_table)
    limit_columns = [fld.column for fld in cm.RewardConstraint._meta.concrete_fields
                     if fld.column not in ("id", "reward_id")]
    limit_quoted = ", ".join(connection.ops.quote_name(c) for c in limit_columns)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {reward_table} (name, {quoted}) "
            f"SELECT 'copy ' || g, {quoted} FROM {reward_table}, generate_series(1, %s) g WHERE id = %s",
            [LIMITS - 1, template.pk],
        )
        cursor.execute(
            f"INSERT INTO {limit_table} (reward_id, {limit_quoted}) "
            f"SELECT r.id, {', '.join('c.' + connection.ops.quote_name(c) for c in limit_columns)} "
            f"FROM {reward_table} r, {limit_table} c WHERE r.org_id = %s AND r.id <> %s AND c.id = %s",
            [org.pk, template.pk, limit.pk],
        )
    for redemption_type in (RedemptionType.VOUCHER, RedemptionType.INTOUCH_REWARD):
        cm.RewardConstraint.objects.create(org=org, redemption_type=redemption_type, limit_value=Decimal(3),
                                           level=ConstraintLevel.CUSTOMER_REDEMPTION_TYPE, frequency=Frequency.DAYS)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {reward_table}")
        cursor.execute(f"ANALYZE {limit_table}")
    return template


@pytest.mark.parametrize("mode", ["force_custom_plan", "force_generic_plan"])
def test_limits_of_a_reward_are_read_through_indexes(org, many_limits, mode):
    reward = many_limits
    found = services._constraints_for(org, [reward])
    assert [(c.reward_id, c.redemption_type) for c in found] == [(reward.pk, ""), (None, "INTOUCH_REWARD")]

    sql = services._constraints_sql(1, 1)
    numbered = sql
    for n in range(1, sql.count("%s") + 1):
        numbered = numbered.replace("%s", f"${n}", 1)
    params = [org.pk, True, reward.pk, ConstraintLevel.CUSTOMER_REDEMPTION_TYPE, reward.redemption_type]
    with connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL plan_cache_mode = {mode}")
        cursor.execute(f"PREPARE limits_plan AS {numbered}")
        try:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE limits_plan(%s, %s, %s, %s, %s)", params)
            plan = cursor.fetchone()[0]
        finally:
            cursor.execute("DEALLOCATE limits_plan")
    plan = (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]
    scans = {node["Node Type"] for node in nodes(plan) if node.get("Relation Name") == "catalogue_rewardconstraint"}
    assert "Seq Scan" not in scans, json.dumps(plan, indent=1)
    assert plan["Shared Hit Blocks"] + plan["Shared Read Blocks"] < 30, json.dumps(plan, indent=1)
    assert plan["Actual Rows"] == 2
