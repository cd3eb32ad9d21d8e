"""A coupon pool is empty only when it is: its last codes, taken by a call still in flight,
are waited for, not skipped (issuance/services.py ``_take_codes``; docs/issuance.md).

Concurrent calls take codes with ``FOR UPDATE SKIP LOCKED``, so a call can find the pool's
last codes locked by another call. If that call then rolls back, the codes are back in the
pool: answering "Coupon Series ID is invalid" would refuse a customer while codes remain.

Each test stalls call A right after its pick (inside its transaction, its codes locked) until
call B, from another session, is seen waiting for one of A's locks; then A commits or fails
(rolls back). Real threads, one connection each, on PostgreSQL (see test_issue_concurrency).
"""

import threading
import time
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.db import connection

from catalogue import models as cm
from catalogue.choices import RedemptionType
from issuance import services as engine
from issuance.errors import ErrorCode, IssuanceError
from issuance.models import Issuance, IssuanceLine, IssuedUnit, LedgerEntry
from tests import factories as f
from tests.test_issue_concurrency import (
    OK,
    PARALLEL,
    PARTIAL,
    POOL_EMPTY,
    account_of,
    assert_ledger_consistent,
    balance_of,
    customers_with_points,
    issue_bulk,
    issue_single,
    points_reward,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL (row locks, separate sessions)"),
]

WAIT_LIMIT = 15.0  # seconds the holder waits to see B blocked on its locks


def fail_after_pick():
    """Call A fails after taking its codes (say a lock timeout on a later write: 10004), so its
    transaction rolls back. A refusal, not an exception: Django's test client hands an
    exception raised in one thread's request to every client waiting at that moment."""
    raise IssuanceError(ErrorCode.PARALLEL_CALL)


def failed_after_pick(outcome) -> bool:
    if isinstance(outcome, BaseException):
        return False
    return (outcome.status_code, outcome.json()) == (409, {"status": PARALLEL})


def pool(org, brand, size: int):
    """A 10-point INTOUCH_REWARD with an uploaded pool of ``size`` codes (sorted list)."""
    series = f.CouponSeriesFactory(org=org)
    codes = [f"LAST{i:03d}" for i in range(size)]
    cm.CouponCode.objects.bulk_create(cm.CouponCode(series=series, code=code) for code in codes)
    reward = points_reward(brand, "10", redemption_type=RedemptionType.INTOUCH_REWARD, coupon_series=series)
    return reward, codes


def blocked_by_me() -> bool:
    """Whether another session waits for a lock this session holds (pg_locks is read live,
    unlike pg_stat_activity, which is a snapshot per transaction)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted AND pg_backend_pid() = ANY(pg_blocking_pids(pid)))"
        )
        return cursor.fetchone()[0]


def hold_after_pick(monkeypatch, *, fail: bool, until_other_done: bool = False) -> SimpleNamespace:
    """Stall the engine call of the thread that sets ``state.mine.holder`` right after its
    coupon pick, in its transaction, until another session is blocked on its locks (and, with
    ``until_other_done``, until the other call has answered); then let it commit, or fail (roll back)."""
    state = SimpleNamespace(
        mine=threading.local(), picked=threading.Event(), other_done=threading.Event(), waiter_seen=False
    )
    real = engine._codes_for

    def codes_for(plans, now):
        codes = real(plans, now)
        if getattr(state.mine, "holder", False):
            state.picked.set()
            deadline = time.monotonic() + WAIT_LIMIT
            while time.monotonic() < deadline and not state.other_done.is_set():
                if not state.waiter_seen:
                    state.waiter_seen = blocked_by_me()
                if state.waiter_seen and not until_other_done:
                    break
                time.sleep(0.02)
            if fail:
                fail_after_pick()
        return codes

    monkeypatch.setattr(engine, "_codes_for", codes_for)
    return state


def holder_and_waiter(state, call_a, call_b):
    """Thread 0 makes call A (the holder), thread 1 call B once A holds its codes."""

    def run(i):
        if i == 0:
            state.mine.holder = True
            return call_a()
        assert state.picked.wait(timeout=WAIT_LIMIT), "call A never picked"
        started = time.monotonic()
        try:
            return call_b(), time.monotonic() - started
        finally:
            state.other_done.set()

    return run


def answered_codes(response) -> list[str]:
    body = response.json()
    if "rewards" in body:
        return [u["couponCode"] for u in body["rewards"][0]["intouch"] or []]
    return [body["intouch"]["couponCode"]] if body.get("intouch") else []


# ---------------------------------------------------------------- single: the pool's last code


def test_the_last_code_held_by_a_call_that_rolls_back_goes_to_the_call_that_waited(
    org, brand, api_user, run_concurrently, monkeypatch
):
    reward, [code] = pool(org, brand, 1)
    a, b = customers_with_points(org, 2, "100")
    state = hold_after_pick(monkeypatch, fail=True)

    outcomes = run_concurrently(
        holder_and_waiter(state, lambda: issue_single(api_user, reward, a), lambda: issue_single(api_user, reward, b)),
        threads=2,
    )

    assert failed_after_pick(outcomes[0]), outcomes[0]  # A rolled back: its code is free again
    assert not isinstance(outcomes[1], BaseException), outcomes[1]
    response, _waited = outcomes[1]
    assert (response.status_code, response.json()["status"]) == (200, OK), response.content
    assert answered_codes(response) == [code]
    assert state.waiter_seen  # B waited for A's lock instead of skipping the code
    assert list(IssuedUnit.objects.values_list("coupon_code", flat=True)) == [code]
    assert not cm.CouponCode.objects.exists()
    assert not IssuanceLine.objects.filter(customer=a).exists()
    assert balance_of(account_of(a)) == Decimal("100")
    assert balance_of(account_of(b)) == Decimal("90")
    assert_ledger_consistent(account_of(a), account_of(b))


def test_the_last_code_held_by_a_call_that_commits_leaves_the_waiter_an_empty_pool(
    org, brand, api_user, run_concurrently, monkeypatch
):
    reward, [code] = pool(org, brand, 1)
    a, b = customers_with_points(org, 2, "100")
    state = hold_after_pick(monkeypatch, fail=False)

    outcomes = run_concurrently(
        holder_and_waiter(state, lambda: issue_single(api_user, reward, a), lambda: issue_single(api_user, reward, b)),
        threads=2,
    )

    assert not isinstance(outcomes[0], BaseException), outcomes[0]
    assert (outcomes[0].status_code, outcomes[0].json()["status"]) == (200, OK), outcomes[0].content
    assert answered_codes(outcomes[0]) == [code]
    assert not isinstance(outcomes[1], BaseException), outcomes[1]
    response, _waited = outcomes[1]
    assert (response.status_code, response.json()["status"]) == (422, POOL_EMPTY), response.content
    assert state.waiter_seen  # B answered only once A's code was really gone
    assert list(IssuedUnit.objects.values_list("coupon_code", flat=True)) == [code]
    assert not cm.CouponCode.objects.exists()
    assert balance_of(account_of(a)) == Decimal("90")
    assert balance_of(account_of(b)) == Decimal("100")
    assert not LedgerEntry.objects.filter(account=account_of(b)).exists()
    assert_ledger_consistent(account_of(a), account_of(b))


# ---------------------------------------------------------------- bulk: N of M codes, some held


@pytest.mark.parametrize("a_fails", [True, False], ids=["A rolls back", "A commits"])
def test_a_bulk_call_short_of_free_codes_waits_for_the_held_ones(
    org, brand, api_user, run_concurrently, monkeypatch, a_fails
):
    """Pool of 3: A takes 2 and holds them; B asks for 3, finds 1 free and waits for the rest."""
    reward, codes = pool(org, brand, 3)
    a, b = customers_with_points(org, 2, "100")
    state = hold_after_pick(monkeypatch, fail=a_fails)

    outcomes = run_concurrently(
        holder_and_waiter(
            state,
            lambda: issue_bulk(api_user, a, {"rewardId": reward.pk, "quantity": 2}),
            lambda: issue_bulk(api_user, b, {"rewardId": reward.pk, "quantity": 3}),
        ),
        threads=2,
    )

    assert not isinstance(outcomes[1], BaseException), outcomes[1]
    response, _waited = outcomes[1]
    assert state.waiter_seen
    if a_fails:
        assert failed_after_pick(outcomes[0]), outcomes[0]
        assert (response.status_code, response.json()["status"]) == (200, OK), response.content
        assert sorted(answered_codes(response)) == codes
        assert balance_of(account_of(a)) == Decimal("100")
        assert balance_of(account_of(b)) == Decimal("70")
    else:
        assert (outcomes[0].status_code, outcomes[0].json()["status"]) == (200, OK), outcomes[0].content
        assert (response.status_code, response.json()["status"]) == (200, PARTIAL), response.content
        mine, theirs = answered_codes(response), answered_codes(outcomes[0])
        assert len(mine) == 1 and len(theirs) == 2
        assert sorted(mine + theirs) == codes
        assert balance_of(account_of(a)) == Decimal("80")
        assert balance_of(account_of(b)) == Decimal("90")
    issued = list(IssuedUnit.objects.values_list("coupon_code", flat=True))
    assert sorted(issued) == codes  # each code once, none left, none lost
    assert not cm.CouponCode.objects.exists()
    assert_ledger_consistent(account_of(a), account_of(b))


# ---------------------------------------------------------------- the wait is bounded: 10004


def test_a_call_waiting_for_held_codes_past_the_lock_timeout_answers_10004_and_writes_nothing(
    org, brand, api_user, run_concurrently, monkeypatch
):
    reward, [code] = pool(org, brand, 1)
    a, b = customers_with_points(org, 2, "100")
    monkeypatch.setattr(engine, "LOCK_TIMEOUT_MS", 300)
    state = hold_after_pick(monkeypatch, fail=True, until_other_done=True)

    outcomes = run_concurrently(
        holder_and_waiter(
            state,
            lambda: issue_single(api_user, reward, a),
            lambda: issue_single(api_user, reward, b, requestId="b-1"),
        ),
        threads=2,
    )

    assert failed_after_pick(outcomes[0]), outcomes[0]
    assert not isinstance(outcomes[1], BaseException), outcomes[1]
    response, waited = outcomes[1]
    assert response.status_code == 409, response.content
    assert response.json() == {"status": PARALLEL}
    assert state.waiter_seen
    assert waited < WAIT_LIMIT  # gave up after the lock timeout, did not wait for A to finish
    assert not Issuance.objects.exists()
    assert not IssuanceLine.objects.exists()
    assert not LedgerEntry.objects.exists()
    assert cm.CouponCode.objects.get().code == code  # A rolled back, B wrote nothing

    # Once A is gone, the same request gets the code.
    retry = issue_single(api_user, reward, b, requestId="b-1")
    assert (retry.status_code, retry.json()["status"]) == (200, OK), retry.content
    assert answered_codes(retry) == [code]
    assert balance_of(account_of(b)) == Decimal("90")
    assert_ledger_consistent(account_of(a), account_of(b))


# ---------------------------------------------------------------- two calls short of codes, each holding one


def test_two_calls_each_holding_a_code_the_other_waits_for_both_issue_what_they_hold(
    org, brand, api_user, run_concurrently, monkeypatch
):
    """Pool of 2, two bulk calls of 2: A takes the first code, B (skipping it) the second, then
    each waits for the other's. PostgreSQL fails one of the two waits (deadlock_timeout); that
    call keeps its code and answers partial, and the other, once it has committed, finds the
    pool empty: both partial with one code each, never 10004, no code twice."""
    reward, codes = pool(org, brand, 2)
    a, b = customers_with_points(org, 2, "100")
    mine = threading.local()
    a_picked, b_picked = threading.Event(), threading.Event()
    real = engine._pick_codes

    def pick_codes(series, count, *, skip_locked):
        if skip_locked and getattr(mine, "name", None) == "A":
            # A's scan takes the first code and finds the second just locked by B (the race
            # made deterministic: A picks one, B picks while A holds it, then both go on).
            taken = real(series, 1, skip_locked=True)
            a_picked.set()
            assert b_picked.wait(timeout=WAIT_LIMIT), "call B never picked"
            return taken
        taken = real(series, count, skip_locked=skip_locked)
        if skip_locked and getattr(mine, "name", None) == "B":
            b_picked.set()
        return taken

    monkeypatch.setattr(engine, "_pick_codes", pick_codes)

    def run(i):
        mine.name = "AB"[i]
        if i == 1:
            assert a_picked.wait(timeout=WAIT_LIMIT), "call A never picked"
        return issue_bulk(api_user, (a, b)[i], {"rewardId": reward.pk, "quantity": 2})

    responses = run_concurrently(run, threads=2)

    assert not any(isinstance(r, BaseException) for r in responses), responses
    assert [(r.status_code, r.json()["status"]) for r in responses] == [(200, PARTIAL)] * 2, [
        r.content for r in responses
    ]
    assert [len(answered_codes(r)) for r in responses] == [1, 1]
    assert sorted(answered_codes(responses[0]) + answered_codes(responses[1])) == codes
    assert sorted(IssuedUnit.objects.values_list("coupon_code", flat=True)) == codes
    assert not cm.CouponCode.objects.exists()
    assert balance_of(account_of(a)) == balance_of(account_of(b)) == Decimal("90")
    assert_ledger_consistent(account_of(a), account_of(b))
