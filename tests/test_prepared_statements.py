"""The hot path's statements as prepared statements on PostgreSQL (issuance.rawsql.cursor):
prepared once per connection and reused, still logged and error-wrapped as Django's cursors
are, correct after a rollback (psycopg forgets its prepared statements then), and off with
``DATABASE_PREPARED_STATEMENTS=false``."""

from decimal import Decimal

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from catalogue.choices import PaymentMode, RedemptionType
from issuance import rawsql
from tests import factories as f
from tests.conftest import ISSUE_SINGLE

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements: PostgreSQL only"),
]


def prepared() -> dict[str, tuple[int, int]]:
    """This session's prepared statements: text → (generic plans, custom plans) executed."""
    with connection.cursor() as cursor:  # Django's own cursor: never prepared itself
        cursor.execute("SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements")
        return {text: (generic, custom) for text, generic, custom in cursor.fetchall()}


def test_on_by_default_for_postgresql():
    assert connection.settings_dict["OPTIONS"]["prepare_threshold"] == 5
    assert rawsql.prepares(connection)


def test_a_statement_is_prepared_once_and_reused():
    sql = "SELECT %s::int + 1 AS prepared_probe"
    assert [rawsql.fetch(sql, [n]) for n in (1, 2, 3)] == [[(2,)], [(3,)], [(4,)]]
    probes = {text: plans for text, plans in prepared().items() if "prepared_probe" in text}
    assert list(probes) == ["SELECT $1::int + 1 AS prepared_probe"]  # bound on the server, one statement
    generic, custom = probes["SELECT $1::int + 1 AS prepared_probe"]
    assert generic + custom == 3


def test_statements_are_logged_like_djangos():
    with CaptureQueriesContext(connection) as ctx:
        rawsql.fetch("SELECT %s::text AS logged_probe", ["x"])
    assert [q["sql"] for q in ctx.captured_queries] == ["SELECT $1::text AS logged_probe"]  # as psycopg sent it


def test_errors_are_djangos_and_a_rollback_does_not_break_later_calls():
    """psycopg deallocates every prepared statement of the connection at a rollback; the
    statements are prepared again on their next use."""
    rawsql.fetch("SELECT %s::int AS rollback_probe", [1])
    with pytest.raises(IntegrityError):  # django.db's, not psycopg's
        with transaction.atomic():
            assert rawsql.fetch("SELECT 1 WHERE %s", [False]) == []
            rawsql.fetch('INSERT INTO "catalogue_organisation" ("id") VALUES (%s)', [None])
    assert rawsql.fetch("SELECT %s::int AS rollback_probe", [2]) == [(2,)]
    with pytest.raises(DatabaseError), transaction.atomic():
        rawsql.fetch("SELECT 1 / %s", [0])
    assert rawsql.fetch("SELECT %s::int AS rollback_probe", [3]) == [(3,)]


def test_an_issue_call_prepares_its_statements_and_the_next_call_reuses_them(api, org, brand, customer, account):
    series = f.CouponSeriesFactory(org=org)
    from catalogue.models import CouponCode

    CouponCode.objects.bulk_create(CouponCode(series=series, code=f"P{i}") for i in range(5))
    reward = f.RewardFactory(brand=brand, redemption_type=RedemptionType.INTOUCH_REWARD, coupon_series=series)
    config = f.PaymentConfigFactory(reward=reward, mode=PaymentMode.POINTS, points=Decimal(5))

    def issue():
        response = api.post(ISSUE_SINGLE.format(reward.pk), {"mobile": customer.mobile, "paymentConfig": {"id": config.pk}},
                            format="json")
        assert response.status_code == 200 and response.json()["status"]["code"] == 200, response.content

    issue()
    first = prepared()
    # The reads and writes of the engine: the customer, the targets, the account lock, the inserts.
    assert any('FROM "catalogue_customer"' in text for text in first)
    assert any('INSERT INTO "issuance_issuanceline"' in text for text in first)
    assert any('"issuance_pointsaccount"' in text and "FOR UPDATE" in text for text in first)
    issue()
    second = prepared()
    assert set(second) == set(first)  # nothing new: the same statements, executed again
    assert all(sum(second[text]) == sum(first[text]) + 1 for text in first if 'INSERT INTO "issuance_issuanceline"' in text)


def test_off_switch(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@127.0.0.1:5432/db")
    from rewards_site.settings.base import _database_from_env

    assert _database_from_env()["OPTIONS"]["prepare_threshold"] == 5
    monkeypatch.setenv("DATABASE_JIT_OFF_OPTION", "false")  # behind PgBouncer: no OPTIONS from it
    assert _database_from_env()["OPTIONS"] == {"prepare_threshold": 5}
    monkeypatch.setenv("DATABASE_PREPARED_STATEMENTS", "false")
    assert "prepare_threshold" not in _database_from_env().get("OPTIONS", {})

    monkeypatch.delitem(connection.settings_dict["OPTIONS"], "prepare_threshold")
    assert not rawsql.prepares(connection)
    rawsql.fetch("SELECT %s::int AS unprepared_probe", [1])
    assert not [text for text in prepared() if "unprepared_probe" in text]


def test_one_cursor_is_kept_per_connection_unless_queries_are_logged():
    kept = rawsql.cursor()
    with kept as c:
        c.execute("SELECT %s::int", [1])
    assert rawsql.cursor() is kept and not kept.cursor.closed  # leaving the block kept it open
    with CaptureQueriesContext(connection):
        logging = rawsql.cursor()
    assert logging is not kept and type(logging).__name__ == "CursorDebugWrapper"


@pytest.mark.django_db(transaction=True)
def test_a_new_connection_gets_a_new_cursor():
    kept = rawsql.cursor()
    connection.close()
    fresh = rawsql.cursor()
    assert fresh is not kept and fresh.cursor.connection is connection.connection
    assert rawsql.fetch("SELECT %s::int", [7]) == [(7,)]


def test_one_prepared_statement_whatever_the_size_of_an_integer():
    """psycopg would bind 4 as a smallint and 40,000 as an integer: two prepared statements
    for one text. Every int is bound as a bigint instead."""
    sql = "SELECT %s + 0 AS int_probe, %s::text AS int_probe_text"
    assert [rawsql.fetch(sql, [n, n]) for n in (4, 40_000, 2**40)] == [
        [(4, "4")], [(40_000, "40000")], [(2**40, "1099511627776")]]
    assert len([text for text in prepared() if "int_probe" in text]) == 1
