"""The writes of an issue call as one statement (issuance.rawsql.batched, PostgreSQL).

Inside the block ``Insert.run`` and ``rawsql.update`` are queued with ids taken beforehand
and sent together, as data-modifying CTEs of one statement, at the end of the block or
before any other statement on the connection; the database ends up exactly as if each write
had run at once (docs/performance.md, "The writes as one statement")."""

from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext

from catalogue import models as cm
from catalogue.choices import PaymentMode, RedemptionType
from issuance import ledger, rawsql
from issuance.models import IdempotencyRecord, IssuanceLine, IssuedUnit, LedgerEntry, PointsAccount
from tests import factories as f
from tests.conftest import ISSUE_BULK, ISSUE_SINGLE

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the batch is PostgreSQL's"),
]


@pytest.fixture(autouse=True)
def sequences_known():
    """The sequences' names are looked up once per process: not inside the counted blocks."""
    for model in (LedgerEntry, PointsAccount):
        rawsql._sequence("default", model._meta.db_table, model._meta.pk.column)


def sqls(ctx) -> list[str]:
    return [q["sql"] for q in ctx.captured_queries]


def redeem(account, *amounts) -> list[LedgerEntry]:
    return ledger.points_redeem_many_locked(account, [(Decimal(a), f"r{a}", None) for a in amounts])


def test_writes_are_queued_and_sent_as_one_statement(account):
    with transaction.atomic(), CaptureQueriesContext(connection) as ctx:
        locked = ledger.account_lock(account.pk)
        with rawsql.batched({LedgerEntry: 2}):
            entries = redeem(locked, 3, 4)
            ids = [e.pk for e in entries]
            inside = sqls(ctx)
    assert len(inside) == 2 and inside[1].startswith("SELECT ARRAY(SELECT nextval(")  # lock, ids
    assert all(e.pk for e in entries)
    written = sqls(ctx)[2:]
    assert len(written) == 1 and written[0].startswith("WITH w0 AS (UPDATE \"issuance_pointsaccount\"")
    assert ids == sorted(ids) and len(set(ids)) == 2  # in the order they were made
    rows = list(LedgerEntry.objects.filter(account=account).order_by("pk").values_list("pk", "amount", "balance_after"))
    assert rows == [(ids[0], Decimal(-3), Decimal(99997)), (ids[1], Decimal(-4), Decimal(99993))]
    account.refresh_from_db()
    assert account.balance == Decimal(99993)
    assert ledger.account_check(account.pk).ok
    assert not entries[0]._state.adding and entries[0]._state.db == "default"


def test_a_read_inside_the_block_sees_the_writes_before_it(account):
    with transaction.atomic(), CaptureQueriesContext(connection) as ctx:
        locked = ledger.account_lock(account.pk)
        with rawsql.batched({LedgerEntry: 1}):
            redeem(locked, 5)
            assert LedgerEntry.objects.filter(account=account).count() == 1
            assert PointsAccount.objects.get(pk=account.pk).balance == Decimal(99995)
            redeem(locked, 6)  # queued again, sent at the end: too few ids taken, so at once
    statements = sqls(ctx)
    assert statements[2].startswith("WITH w0 AS") and "COUNT(*)" in statements[3].upper()
    assert ledger.account_check(account.pk).ok
    assert list(LedgerEntry.objects.filter(account=account).order_by("pk").values_list("balance_after", flat=True)) \
        == [Decimal(99995), Decimal(99989)]


def test_too_few_ids_taken_inserts_at_once(account):
    with transaction.atomic():
        locked = ledger.account_lock(account.pk)
        with rawsql.batched({LedgerEntry: 1}):
            entries = redeem(locked, 1, 2)  # two rows, one id: both inserted at once instead
    assert [e.pk for e in entries] == list(LedgerEntry.objects.filter(account=account).order_by("pk")
                                           .values_list("pk", flat=True))
    assert ledger.account_check(account.pk).ok


def test_no_ids_to_take_no_statement_and_updates_still_queued(account):
    """An idempotent replay inserts nothing: no ``nextval`` statement for it."""
    with transaction.atomic():
        locked = ledger.account_lock(account.pk)
        with CaptureQueriesContext(connection) as ctx:
            with rawsql.batched({LedgerEntry: 0, PointsAccount: 0}):
                locked.balance -= 5
                rawsql.update(locked, "balance", "updated_at")
                assert sqls(ctx) == []  # queued
    assert len(sqls(ctx)) == 1 and sqls(ctx)[0].startswith('WITH w0 AS (UPDATE "issuance_pointsaccount"')
    account.refresh_from_db()
    assert account.balance == Decimal(99995)


def test_an_update_of_a_row_queued_in_the_same_batch_sends_the_queue_first(customer):
    new = PointsAccount(org=customer.org, customer=customer, opening_balance=Decimal(7), balance=Decimal(7))
    with transaction.atomic(), CaptureQueriesContext(connection) as ctx:
        with rawsql.batched({PointsAccount: 1}):
            rawsql.Insert(PointsAccount).run([new])
            new.balance = Decimal(9)
            rawsql.update(new, "balance", "updated_at")  # a sibling CTE would not see the inserted row
            rawsql.update(new, "balance", "updated_at")  # nor the same row updated twice
    assert [q.split(" (")[0] for q in sqls(ctx)[1:]] == ["WITH w0 AS", "WITH w0 AS", "WITH w0 AS"]
    assert PointsAccount.objects.get(pk=new.pk).balance == Decimal(9)


def test_an_update_that_finds_no_row_fails_as_save_does(account):
    gone = PointsAccount.objects.get(pk=account.pk)
    gone.pk = 10**12
    with pytest.raises(DatabaseError, match="did not affect any rows"):
        with transaction.atomic(), rawsql.batched({}):
            rawsql.update(gone, "balance", "updated_at")
    with pytest.raises(DatabaseError, match="did not affect any rows"):
        with transaction.atomic():
            rawsql.update(gone, "balance", "updated_at")  # the same without a batch


def test_an_error_in_the_block_discards_the_queue(account):
    with pytest.raises(RuntimeError), transaction.atomic():
        locked = ledger.account_lock(account.pk)
        with rawsql.batched({LedgerEntry: 1}):
            redeem(locked, 8)
            raise RuntimeError("boom")
    assert "_rawsql_batch" not in connection.__dict__
    assert not LedgerEntry.objects.filter(account=account).exists()
    with transaction.atomic():  # later writes run at once again
        with CaptureQueriesContext(connection) as ctx:
            redeem(ledger.account_lock(account.pk), 2)
    assert [q.split(" ")[0] for q in sqls(ctx)] == ["SELECT", "UPDATE", "INSERT"]


def test_a_savepoint_in_the_block_comes_after_the_writes_before_it(account):
    """(The engine's generated coupon codes are saved in savepoints.)"""
    with transaction.atomic(), CaptureQueriesContext(connection) as ctx:
        locked = ledger.account_lock(account.pk)
        with rawsql.batched({LedgerEntry: 1}):
            redeem(locked, 8)
            with transaction.atomic():
                assert LedgerEntry.objects.filter(account=account).count() == 1
    statements = sqls(ctx)
    assert statements[2].startswith("WITH w0 AS") and statements[3].startswith("SAVEPOINT")


def test_nested_batches_are_one(account):
    with transaction.atomic(), CaptureQueriesContext(connection) as ctx:
        locked = ledger.account_lock(account.pk)
        with rawsql.batched({LedgerEntry: 2}), rawsql.batched({LedgerEntry: 5}):
            redeem(locked, 1, 2)
    assert len(sqls(ctx)) == 3  # lock, ids, writes
    assert ledger.account_check(account.pk).ok


# ---------------------------------------------------------------- the engine, batched or not


@pytest.fixture
def shop(org, brand, customer, account):
    """A pool coupon reward (three codes), a generated-code reward with a fulfillment status,
    a reward with no coupon: enough for partial lines, fulfillment changes and records."""
    series = f.CouponSeriesFactory(org=org)
    cm.CouponCode.objects.bulk_create(cm.CouponCode(series=series, code=f"P{i}") for i in range(3))
    generated = f.CouponSeriesFactory(org=org, generate_codes=True)
    rewards = [
        f.RewardFactory(brand=brand, redemption_type=RedemptionType.INTOUCH_REWARD, coupon_series=series),
        f.RewardFactory(brand=brand, redemption_type=RedemptionType.INTOUCH_REWARD, coupon_series=generated),
        f.RewardFactory(brand=brand, redemption_type=RedemptionType.CART_PROMOTION),
    ]
    for points, reward in zip((5, 7, 11), rewards, strict=True):
        f.PaymentConfigFactory(reward=reward, mode=PaymentMode.POINTS, points=Decimal(points))
    status = f.FulfillmentStatusFactory(org=org, name="PACKED", enabled=True)
    return rewards, status


def calls(api, customer, rewards, status):
    pool, generated, other = rewards
    bulk = {"mobile": customer.mobile, "rewards": [
        {"rewardId": pool.pk, "quantity": 2, "requestId": "a"},
        {"rewardId": generated.pk, "quantity": 2, "requestId": "b", "fulfillmentDetails": {"status": status.name}},
        {"rewardId": other.pk, "quantity": 1},
    ]}
    yield api.post(ISSUE_BULK, bulk, format="json")
    yield api.post(ISSUE_BULK, bulk, format="json")  # a replay
    yield api.post(ISSUE_SINGLE.format(pool.pk), {"mobile": customer.mobile, "quantity": 2, "requestId": "c"},
                   format="json")  # one code left: partial
    yield api.post(ISSUE_SINGLE.format(pool.pk), {"mobile": customer.mobile, "requestId": "d"}, format="json")


def outcome(api, customer, account, rewards, status) -> tuple[list, dict]:
    """What the calls answer and write, with ids, codes and references left out."""
    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items() if k not in (
                "transactionId", "pointsReferenceId", "pointsReferenceIds", "code", "couponCode", "eventDateTime",
                "codeExpiryDateTime", "codeExpiry", "rewardId", "id")}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    answers = [(r.status_code, plain(r.json())) for r in calls(api, customer, rewards, status)]
    names = dict(zip([r.pk for r in rewards], ["pool", "generated", "promotion"], strict=True))
    account.refresh_from_db()
    rows = {
        "balance": account.balance,
        "entries": list(LedgerEntry.objects.filter(account=account).order_by("pk").values_list("amount", "balance_after")),
        "lines": [(names[reward], *rest) for reward, *rest in IssuanceLine.objects.order_by("pk").values_list(
            "reward_id", "status", "quantity", "total_points", "request_id", "fulfillment_status__name")],
        "units": IssuedUnit.objects.count(),
        "records": list(IdempotencyRecord.objects.order_by("request_id").values_list("request_id", "state",
                                                                                      "http_status")),
        "ok": ledger.account_check(account.pk).ok,
    }
    return answers, rows


@pytest.mark.parametrize("batch", [True, False])
def test_the_engine_answers_and_writes_the_same_batched_or_not(api, customer, account, shop, settings, batch):
    settings.ISSUE_WRITE_BATCH = batch
    rewards, status = shop
    answers, rows = outcome(api, customer, account, rewards, status)
    ok, partial = {"success": True, "message": "Reward issued successfully"}, {"success": False, "message": "Reward issued partially"}
    coupon = {"pointsRedeemed": "5"}
    assert [code for code, _ in answers] == [200, 200, 200, 422]
    assert answers[1] == answers[0]  # the replay
    assert answers[0][1]["status"] == partial
    assert [(r["status"], r["quantity"], r["requestId"], r["fulfillmentDetails"], r["totalPointsRedeemed"])
            for r in answers[0][1]["rewards"]] == [
        (ok, 2, "a", None, 10), (ok, 2, "b", {"status": "PACKED"}, 14),
        ({"success": False, "message": "fail to issue reward"}, 0, None, None, 0)]
    assert answers[2][1]["status"] == ok and answers[2][1]["intouch"] == coupon
    assert answers[3][1]["status"] == {"success": False,
                                       "message": "fail to issue reward as Coupon Series ID is invalid"}
    failed = ("FAILED", 0, Decimal(0))
    assert rows == {
        "balance": Decimal(99971),
        "entries": [(Decimal(-10), Decimal(99990)), (Decimal(-14), Decimal(99976)), (Decimal(-5), Decimal(99971))],
        "lines": [("pool", "ISSUED", 2, Decimal(10), "a", None), ("generated", "ISSUED", 2, Decimal(14), "b", "PACKED"),
                  ("promotion", *failed, None, None), ("promotion", *failed, None, None),
                  ("pool", "ISSUED", 1, Decimal(5), "c", None), ("pool", *failed, "d", None)],
        "units": 5,
        "records": [("a", "DONE", 200), ("b", "DONE", 200), ("c", "DONE", 200), ("d", "DONE", 422)],
        "ok": True,
    }


def test_a_long_statement_is_turned_into_dollar_placeholders_once_per_process(monkeypatch):
    """psycopg caches the ``%s`` → ``$1`` conversion only for texts under 4,096 bytes with at
    most 50 parameters; the hot path's cursor converts each of its texts (the batch: ~100
    parameters) once. Fails if psycopg's internals this relies on move."""
    from psycopg import _queries

    if not rawsql.prepares(connection):
        pytest.skip("prepared statements are off")
    converted = []
    real = _queries._query2pg_nocache
    monkeypatch.setattr(_queries, "_query2pg_nocache", lambda query, encoding: converted.append(query)
                        or real(query, encoding))
    values = list(range(60))
    sql = f"SELECT {', '.join(['%s'] * len(values))} -- {id(converted)}"  # a text not seen before
    assert rawsql.fetch(sql, values) == [tuple(values)]
    assert rawsql.fetch(sql, values[::-1]) == [tuple(values[::-1])]
    assert [q for q in converted if q.startswith(b"SELECT")] == [sql.encode()]


def test_if_psycopgs_internals_move_the_hot_path_uses_psycopgs_own_conversion(monkeypatch, caplog):
    from psycopg import _queries

    assert rawsql._converted_once_query() is not None  # this psycopg: the cached conversion
    monkeypatch.delattr(_queries, "_query2pg_nocache")
    with caplog.at_level("WARNING", logger="issuance.rawsql"):
        assert rawsql._converted_once_query() is None  # slower, never wrong
    assert "not cached" in caplog.text
