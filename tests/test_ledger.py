"""The points ledger (R9): balance == opening balance + sum of entries, always — after every
service call, after refusals, and under concurrent writers on PostgreSQL."""

import re
import threading
import time
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command, execute_from_command_line
from django.db import DatabaseError, connection, transaction
from django.db.models import F

from catalogue.choices import LedgerEntryKind
from issuance import ledger
from issuance.ledger import LedgerError
from issuance.models import LedgerEntry, PointsAccount
from tests.factories import PointsAccountFactory, UserFactory

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL (row locks, triggers, concurrent writers)"
)

BASE62_10 = re.compile(r"^[A-Za-z0-9]{10}$")


@pytest.fixture
def account(db):
    return PointsAccountFactory(opening_balance=Decimal("100"))


def _balance(account_id: int) -> Decimal:
    return PointsAccount.objects.values_list("balance", flat=True).get(pk=account_id)


# --- credit, debit, entry contents -----------------------------------------------------


def test_credit_then_debit_keeps_balance_equal_to_opening_plus_entries(account):
    ledger.points_credit(account_id=account.pk, amount=Decimal("25.5"), reason="goodwill")
    ledger.points_debit(account_id=account.pk, amount=Decimal("40.25"), reason="correction")

    account.refresh_from_db()
    assert account.balance == Decimal("85.25")
    entries_sum = sum(e.amount for e in account.entries.all())
    assert account.balance == account.opening_balance + entries_sum
    check = ledger.account_check(account.pk)
    assert check.ok
    assert (check.balance, check.opening_balance, check.entries_sum) == (
        Decimal("85.25"),
        Decimal("100"),
        Decimal("-14.75"),
    )


def test_entries_carry_kind_signed_amount_balance_after_reference_reason_and_actor(account):
    staff = UserFactory()
    credit = ledger.points_credit(account_id=account.pk, amount=Decimal("10"), reason="welcome bonus", actor=staff)
    debit = ledger.points_debit(account_id=account.pk, amount=Decimal("3.5"), reason="fix typo", actor=staff)

    credit.refresh_from_db()
    debit.refresh_from_db()
    assert (credit.kind, credit.amount, credit.balance_after) == (
        LedgerEntryKind.CREDIT,
        Decimal("10"),
        Decimal("110"),
    )
    assert (debit.kind, debit.amount, debit.balance_after) == (
        LedgerEntryKind.DEBIT,
        Decimal("-3.5"),
        Decimal("106.5"),
    )
    assert (credit.reason, debit.reason) == ("welcome bonus", "fix typo")
    assert credit.actor == debit.actor == staff
    assert credit.account_id == debit.account_id == account.pk
    assert BASE62_10.match(credit.reference_id) and BASE62_10.match(debit.reference_id)
    assert credit.reference_id != debit.reference_id


def test_reference_ids_are_distinct_ten_char_base62(account):
    for _ in range(50):
        ledger.points_credit(account_id=account.pk, amount=Decimal("1"), reason="r")
    refs = list(LedgerEntry.objects.filter(account=account).values_list("reference_id", flat=True))
    assert len(refs) == len(set(refs)) == 50
    assert all(BASE62_10.match(ref) for ref in refs)


def test_actor_is_optional(account):
    entry = ledger.points_credit(account_id=account.pk, amount=Decimal("1"), reason="system")
    assert entry.actor is None


# --- refusals write nothing ------------------------------------------------------------


def test_debit_beyond_available_points_is_refused_and_writes_nothing(account):
    PointsAccount.objects.filter(pk=account.pk).update(held=Decimal("30"))  # available = 100 - 30

    with pytest.raises(LedgerError):
        ledger.points_debit(account_id=account.pk, amount=Decimal("70.0001"), reason="too much")

    assert _balance(account.pk) == Decimal("100")
    assert not LedgerEntry.objects.filter(account=account).exists()


def test_debit_of_exactly_the_available_points_succeeds(account):
    PointsAccount.objects.filter(pk=account.pk).update(held=Decimal("30"))
    entry = ledger.points_debit(account_id=account.pk, amount=Decimal("70"), reason="all of it")
    assert entry.balance_after == Decimal("30")
    assert ledger.account_check(account.pk).ok


@pytest.mark.parametrize("service", [ledger.points_credit, ledger.points_debit])
@pytest.mark.parametrize("amount", [Decimal("0"), Decimal("-0"), Decimal("-5"), Decimal("-0.0001")])
def test_zero_and_negative_amounts_are_refused(account, service, amount):
    with pytest.raises(LedgerError):
        service(account_id=account.pk, amount=amount, reason="bad")
    assert _balance(account.pk) == Decimal("100")
    assert not LedgerEntry.objects.exists()


@pytest.mark.parametrize("service", [ledger.points_credit, ledger.points_debit])
@pytest.mark.parametrize("amount", [1.5, -1.5, 0.0])
def test_float_amounts_are_refused_with_type_error(account, service, amount):
    with pytest.raises(TypeError):
        service(account_id=account.pk, amount=amount, reason="float")
    assert not LedgerEntry.objects.exists()


def test_redeem_refuses_float_too(account):
    with transaction.atomic():
        locked = ledger.account_lock(account.pk)
        with pytest.raises(TypeError):
            ledger.points_redeem_locked(locked, amount=2.5, reason="float")
    assert not LedgerEntry.objects.exists()


@pytest.mark.parametrize("service", [ledger.points_credit, ledger.points_debit])
@pytest.mark.parametrize("amount", ["0.00001", "1.00005", "NaN", "Infinity", "1e14"])
def test_amounts_the_ledger_cannot_store_exactly_are_refused(account, service, amount):
    # The columns hold 4 decimal places and 14 integer digits; anything finer would be
    # rounded separately in the balance and in the entry, and the two would drift apart.
    with pytest.raises(LedgerError):
        service(account_id=account.pk, amount=Decimal(amount), reason="odd")
    assert _balance(account.pk) == Decimal("100")
    assert not LedgerEntry.objects.exists()


def test_trailing_zeros_beyond_four_places_are_fine(account):
    entry = ledger.points_credit(account_id=account.pk, amount=Decimal("1.500000"), reason="r")
    assert entry.amount == Decimal("1.5")
    assert ledger.account_check(account.pk).ok


def test_many_small_credits_and_debits_never_drift(account):
    for i in range(1, 40):
        ledger.points_credit(account_id=account.pk, amount=Decimal(i) / 10000 + Decimal("0.3333"), reason="r")
        ledger.points_debit(account_id=account.pk, amount=Decimal("0.1111"), reason="r")
    assert ledger.account_check(account.pk).ok
    assert ledger.accounts_check_all() == []


# --- reversals -------------------------------------------------------------------------


def test_entry_reverse_writes_an_opposite_reversal_entry(account):
    staff = UserFactory()
    debit = ledger.points_debit(account_id=account.pk, amount=Decimal("12.5"), reason="mistake")

    reversal = ledger.entry_reverse(entry_id=debit.pk, reason="undo mistake", actor=staff)

    reversal.refresh_from_db()
    assert reversal.kind == LedgerEntryKind.REVERSAL
    assert reversal.amount == Decimal("12.5")
    assert reversal.reverses_id == debit.pk
    assert reversal.balance_after == Decimal("100")
    assert reversal.actor == staff
    assert reversal.reason == "undo mistake"
    assert reversal.reference_id != debit.reference_id
    assert _balance(account.pk) == Decimal("100")
    assert ledger.account_check(account.pk).ok


def test_entry_reversed_twice_is_refused(account):
    credit = ledger.points_credit(account_id=account.pk, amount=Decimal("5"), reason="r")
    ledger.entry_reverse(entry_id=credit.pk, reason="undo")

    with pytest.raises(LedgerError):
        ledger.entry_reverse(entry_id=credit.pk, reason="undo again")

    assert LedgerEntry.objects.filter(account=account).count() == 2
    assert _balance(account.pk) == Decimal("100")


def test_reversing_a_credit_already_spent_is_refused(account):
    credit = ledger.points_credit(account_id=account.pk, amount=Decimal("50"), reason="r")
    ledger.points_debit(account_id=account.pk, amount=Decimal("120"), reason="spend")  # 30 left

    with pytest.raises(LedgerError):
        ledger.entry_reverse(entry_id=credit.pk, reason="undo")

    assert _balance(account.pk) == Decimal("30")
    assert LedgerEntry.objects.filter(account=account).count() == 2


# --- append-only -----------------------------------------------------------------------


def test_saving_an_existing_ledger_entry_raises(account):
    entry = ledger.points_credit(account_id=account.pk, amount=Decimal("5"), reason="r")
    entry.amount = Decimal("500")
    with pytest.raises(RuntimeError):
        entry.save()
    fresh = LedgerEntry.objects.get(pk=entry.pk)
    with pytest.raises(RuntimeError):
        fresh.save()
    assert LedgerEntry.objects.get(pk=entry.pk).amount == Decimal("5")


def test_deleting_a_ledger_entry_raises(account):
    entry = ledger.points_credit(account_id=account.pk, amount=Decimal("5"), reason="r")
    with pytest.raises(RuntimeError):
        entry.delete()
    assert LedgerEntry.objects.filter(pk=entry.pk).exists()


@postgresql_only
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE issuance_ledgerentry SET amount = 999 WHERE id = %s",
        "DELETE FROM issuance_ledgerentry WHERE id = %s",
    ],
)
def test_raw_sql_update_or_delete_of_a_ledger_row_is_refused_by_the_database(account, sql):
    entry = ledger.points_credit(account_id=account.pk, amount=Decimal("5"), reason="r")

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(sql, [entry.pk])

    assert LedgerEntry.objects.get(pk=entry.pk).amount == Decimal("5")


@postgresql_only
@pytest.mark.parametrize(
    "tamper",
    [
        lambda qs: qs.update(amount=F("amount") * 2),
        lambda qs: qs.delete(),
    ],
    ids=["queryset-update", "queryset-delete"],
)
def test_bulk_queryset_writes_to_ledger_rows_are_refused_by_the_database(account, tamper):
    entry = ledger.points_credit(account_id=account.pk, amount=Decimal("5"), reason="r")

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        tamper(LedgerEntry.objects.filter(pk=entry.pk))

    assert LedgerEntry.objects.get(pk=entry.pk).amount == Decimal("5")


# --- audit: accounts_check_all and the check_ledger command ---------------------------


def test_accounts_check_all_is_empty_when_every_account_agrees(db):
    accounts = [PointsAccountFactory(opening_balance=Decimal(n)) for n in (0, 7, 1000)]
    for acc in accounts:
        ledger.points_credit(account_id=acc.pk, amount=Decimal("3"), reason="r")
        ledger.points_credit(account_id=acc.pk, amount=Decimal("4"), reason="r")
        ledger.points_debit(account_id=acc.pk, amount=Decimal("2"), reason="r")
    assert ledger.accounts_check_all() == []


def test_accounts_check_all_finds_a_tampered_balance(db):
    healthy, tampered = PointsAccountFactory(opening_balance=Decimal("10")), PointsAccountFactory()
    for acc in (healthy, tampered):
        ledger.points_credit(account_id=acc.pk, amount=Decimal("5"), reason="r")
    PointsAccount.objects.filter(pk=tampered.pk).update(balance=F("balance") + 1)

    bad = ledger.accounts_check_all()

    assert [c.account_id for c in bad] == [tampered.pk]
    assert (bad[0].balance, bad[0].opening_balance, bad[0].entries_sum) == (Decimal("6"), Decimal("0"), Decimal("5"))
    assert not ledger.account_check(tampered.pk).ok
    assert ledger.account_check(healthy.pk).ok


def test_accounts_check_all_finds_an_account_with_entries_but_a_stale_balance(db):
    acc = PointsAccountFactory(opening_balance=Decimal("10"))
    ledger.points_credit(account_id=acc.pk, amount=Decimal("5"), reason="r")
    PointsAccount.objects.filter(pk=acc.pk).update(opening_balance=Decimal("0"), balance=Decimal("10"))
    assert [c.account_id for c in ledger.accounts_check_all()] == [acc.pk]


def test_check_ledger_command_exits_zero_when_all_agree(db, capsys):
    acc = PointsAccountFactory(opening_balance=Decimal("10"))
    ledger.points_credit(account_id=acc.pk, amount=Decimal("5"), reason="r")

    execute_from_command_line(["manage.py", "check_ledger"])  # returns, i.e. no SystemExit

    assert "ledger ok" in capsys.readouterr().out


def test_check_ledger_command_exits_non_zero_listing_the_tampered_account(db, capsys):
    healthy, tampered = PointsAccountFactory(), PointsAccountFactory()
    for acc in (healthy, tampered):
        ledger.points_credit(account_id=acc.pk, amount=Decimal("5"), reason="r")
    PointsAccount.objects.filter(pk=tampered.pk).update(balance=Decimal("1"))

    with pytest.raises(SystemExit) as excinfo:
        execute_from_command_line(["manage.py", "check_ledger"])

    assert excinfo.value.code == 1
    err = capsys.readouterr().err
    assert f"account {tampered.pk}:" in err
    assert f"account {healthy.pk}:" not in err


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL keeps the hourly reward usage")
def test_check_ledger_command_lists_a_reward_usage_that_disagrees_with_the_lines(db, capsys):
    from catalogue.models import RewardConstraint
    from issuance.models import RewardUsage
    from tests.factories import IssuanceLineFactory

    line = IssuanceLineFactory(quantity=2, requested_quantity=2)
    RewardConstraint.objects.create(org=line.org, reward=line.reward, level="REWARD", limit_value=9,
                                    frequency="DAYS")
    call_command("check_ledger")  # the trigger's sums agree
    RewardUsage.objects.filter(reward=line.reward).update(units=5)
    with pytest.raises(CommandError, match="^1 hourly reward usage sum"):
        call_command("check_ledger")
    assert f"reward {line.reward_id} at " in capsys.readouterr().err


def test_check_ledger_command_raises_command_error_via_call_command(db):
    acc = PointsAccountFactory()
    ledger.points_credit(account_id=acc.pk, amount=Decimal("5"), reason="r")
    PointsAccount.objects.filter(pk=acc.pk).update(balance=Decimal("0"))
    with pytest.raises(CommandError, match="1 points account"):
        call_command("check_ledger")


# --- concurrency (PostgreSQL, real threads, one connection each) ----------------------


@postgresql_only
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_concurrent_credits_on_one_account_lose_nothing(run_concurrently):
    acc = PointsAccountFactory(opening_balance=Decimal("100"))

    def credit_ten_times(_):
        for _ in range(10):
            ledger.points_credit(account_id=acc.pk, amount=Decimal("1.5"), reason="concurrent")

    outcomes = run_concurrently(credit_ten_times, threads=20)

    assert outcomes == [None] * 20
    assert _balance(acc.pk) == Decimal("100") + 20 * 10 * Decimal("1.5")
    assert ledger.account_check(acc.pk).ok
    refs = list(LedgerEntry.objects.filter(account_id=acc.pk).values_list("reference_id", flat=True))
    assert len(refs) == len(set(refs)) == 200
    # balance_after values are exactly the 200 successive balances: no two writers read the same one.
    afters = sorted(LedgerEntry.objects.filter(account_id=acc.pk).values_list("balance_after", flat=True))
    assert afters == [Decimal("100") + Decimal("1.5") * i for i in range(1, 201)]


@postgresql_only
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_concurrent_debits_never_overdraw(run_concurrently):
    acc = PointsAccountFactory(opening_balance=Decimal("95"))

    outcomes = run_concurrently(
        lambda _: ledger.points_debit(account_id=acc.pk, amount=Decimal("10"), reason="race"), threads=20
    )

    succeeded = [o for o in outcomes if isinstance(o, LedgerEntry)]
    refused = [o for o in outcomes if isinstance(o, LedgerError)]
    assert len(succeeded) == 9, outcomes
    assert len(refused) == 11, outcomes
    assert _balance(acc.pk) == Decimal("5")
    assert ledger.account_check(acc.pk).ok
    assert LedgerEntry.objects.filter(account_id=acc.pk).count() == 9


@postgresql_only
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_concurrent_reversals_of_one_entry_reverse_it_once(run_concurrently):
    acc = PointsAccountFactory(opening_balance=Decimal("100"))
    debit = ledger.points_debit(account_id=acc.pk, amount=Decimal("40"), reason="mistake")

    outcomes = run_concurrently(lambda _: ledger.entry_reverse(entry_id=debit.pk, reason="undo"), threads=10)

    assert sum(isinstance(o, LedgerEntry) for o in outcomes) == 1, outcomes
    assert sum(isinstance(o, LedgerError) for o in outcomes) == 9, outcomes
    assert _balance(acc.pk) == Decimal("100")
    assert ledger.account_check(acc.pk).ok


@postgresql_only
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_accounts_lock_in_opposite_orders_does_not_deadlock(run_concurrently):
    a, b = PointsAccountFactory(), PointsAccountFactory()
    holders = 0
    max_holders = 0
    counter = threading.Lock()

    def lock_repeatedly(i):
        nonlocal holders, max_holders
        order = [a.pk, b.pk] if i % 2 == 0 else [b.pk, a.pk]
        for _ in range(50):
            with transaction.atomic():
                locked = ledger.accounts_lock(order)
                assert set(locked) == {a.pk, b.pk}
                with counter:
                    holders += 1
                    max_holders = max(max_holders, holders)
                time.sleep(0.002)
                with counter:
                    holders -= 1

    # A deadlock would surface as PostgreSQL's "deadlock detected" error (after
    # deadlock_timeout) or as threads still running when the fixture's timeout expires.
    outcomes = run_concurrently(lock_repeatedly, threads=4)

    assert outcomes == [None] * 4
    # Both sets are the same two rows, so the locks must have serialised the holders.
    assert max_holders == 1


@postgresql_only
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_audit_running_during_writes_never_reports_a_healthy_account(run_concurrently):
    accounts = [PointsAccountFactory(opening_balance=Decimal("50")) for _ in range(3)]
    writers = 8
    writers_done = threading.Event()
    finished = []  # list.append is atomic; the last writer to finish releases the auditor

    def work(i):
        if i == writers:  # the auditor
            reports = []
            while not writers_done.is_set():
                reports.extend(ledger.accounts_check_all())
                reports.extend(c for c in (ledger.account_check(a.pk) for a in accounts) if not c.ok)
            return reports
        try:
            for n in range(25):
                acc = accounts[(i + n) % len(accounts)]
                ledger.points_credit(account_id=acc.pk, amount=Decimal("2"), reason="r")
                ledger.points_debit(account_id=acc.pk, amount=Decimal("1"), reason="r")
        finally:
            finished.append(i)
            if len(finished) == writers:
                writers_done.set()

    outcomes = run_concurrently(work, threads=writers + 1)
    writers_done.set()

    assert outcomes[:writers] == [None] * writers
    assert outcomes[writers] == [], "the audit reported accounts that were only being written to"
    assert ledger.accounts_check_all() == []
