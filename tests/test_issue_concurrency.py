"""The issue APIs under real concurrency: threads (one connection each) and OS processes
against PostgreSQL, through the whole stack (URL → HTTP Basic → serializer → engine).

Every test states an exact outcome (how many calls issue, what the others answer) and
then checks the ledger: balance == opening + sum(entries) for the accounts involved and
for the whole database (what ``manage.py check_ledger`` runs).

Each thread builds its own client: Django connections are per thread, so each thread is
its own database session, and ``django_db(transaction=True)`` commits the test data so
those sessions (and the child processes) see it.
"""

import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, connections, transaction
from rest_framework.test import APIClient

from catalogue import models as cm
from catalogue.choices import ConstraintKpi, ConstraintLevel, Frequency, PaymentMode, RedemptionType
from issuance import ledger
from issuance import services as engine
from issuance.models import IdempotencyRecord, Issuance, IssuanceLine, IssuedUnit, LedgerEntry, LineStatus, PointsAccount
from tests import factories as f
from tests.conftest import ISSUE_BULK, ISSUE_SINGLE, basic_auth

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="needs PostgreSQL (row locks, SKIP LOCKED, separate sessions)"
    ),
]

OK = {"success": True, "code": 200, "message": "Reward issued successfully"}
POINTS_SHORT = {"success": False, "code": 8004, "message": "fail to issue reward as points are not redeemable"}
POOL_EMPTY = {"success": False, "code": 8004, "message": "fail to issue reward as Coupon Series ID is invalid"}
PAYLOAD_MISMATCH = {
    "success": False,
    "code": 10003,
    "message": "Request payload is not matching for the passed requestId/s",
}
PARALLEL = {"success": False, "code": 10004, "message": "Parallel calls are not allowed for same customer"}
PARTIAL = {"success": False, "code": 8010, "message": "Reward issued partially"}


def limit_status(limit: int, level: str) -> dict:
    return {
        "success": False,
        "code": 12005,
        "message": "Reward constraint evaluation failed. Request failed. Max limit for the DAYS is reached. "
        f"Allowed limit is {limit} for level {level}",
    }


# ---------------------------------------------------------------- helpers


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=basic_auth(user.username, "pass"))
    return client


def issue_single(user, reward, customer, **body):
    """One single-issue call from a fresh client (call it inside the thread)."""
    payload = {"mobile": customer.mobile, "brand": reward.brand.name, **body}
    return client_for(user).post(ISSUE_SINGLE.format(reward.pk), payload, format="json")


def issue_bulk(user, customer, *items, brand="BUKL"):
    payload = {"mobile": customer.mobile, "brand": brand, "rewards": list(items)}
    return client_for(user).post(ISSUE_BULK, payload, format="json")


def responses_of(outcomes: list) -> list:
    """The HTTP responses; any exception a thread raised (a 500 re-raised by the test
    client, a deadlock, a broken connection) fails the test with all of them listed."""
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert not errors, f"{len(errors)} calls raised: {errors!r}"
    server_errors = [(r.status_code, r.content[:300]) for r in outcomes if r.status_code >= 500]
    assert not server_errors, server_errors
    return outcomes


def flattened(outcomes: list) -> list:
    """Threads that made several calls return a list of responses (or raised)."""
    return [r for o in outcomes for r in (o if isinstance(o, list) else [o])]


def status_counts(responses) -> Counter:
    """(HTTP status, body status code) → number of responses."""
    return Counter((r.status_code, r.json()["status"]["code"]) for r in responses)


def balance_of(account) -> Decimal:
    return PointsAccount.objects.get(pk=account.pk).balance


def assert_ledger_consistent(*accounts) -> None:
    for account in accounts:
        check = ledger.account_check(account.pk)
        assert check.ok, check
    assert ledger.accounts_check_all() == []


def points_reward(brand, points="10", **kwargs):
    reward = f.RewardFactory(brand=brand, intouch_points=Decimal(points), **kwargs)
    f.PaymentConfigFactory(reward=reward, mode=PaymentMode.POINTS, points=Decimal(points))
    return reward


def customers_with_points(org, count: int, points: str) -> list:
    customers = [f.CustomerFactory(org=org) for _ in range(count)]
    for customer in customers:
        f.PointsAccountFactory(customer=customer, opening_balance=Decimal(points))
    return customers


def account_of(customer) -> PointsAccount:
    return PointsAccount.objects.get(customer=customer)


# ---------------------------------------------------------------- points: no double spend


def test_concurrent_single_issues_never_spend_more_than_the_balance(org, brand, api_user, customer, run_concurrently):
    account = f.PointsAccountFactory(customer=customer, opening_balance=Decimal("100"))
    reward = points_reward(brand, "10")

    responses = responses_of(run_concurrently(lambda _: issue_single(api_user, reward, customer), threads=24))

    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    assert len(ok) == 10, status_counts(responses)
    assert all(r.json()["status"] == OK for r in ok)
    # 10004 only if a caller waited longer than the lock timeout; by then the balance is gone.
    assert all(
        (r.status_code, r.json()["status"]) in [(422, POINTS_SHORT), (409, PARALLEL)] for r in refused
    ), status_counts(responses)
    assert len({r.json()["transactionId"] for r in ok}) == 10
    assert balance_of(account) == Decimal("0")
    assert LedgerEntry.objects.filter(account=account).count() == 10
    assert IssuanceLine.objects.filter(status=LineStatus.ISSUED).count() == 10
    # A refusal of the whole call (8004 on points) writes nothing, not even a failed issuance.
    assert Issuance.objects.count() == 10
    assert_ledger_consistent(account)


# ---------------------------------------------------------------- coupon pool: a code goes to one customer


@pytest.fixture
def coupon_pool(org, brand):
    """An INTOUCH_REWARD costing 10 points with an uploaded pool of 20 codes."""
    series = f.CouponSeriesFactory(org=org)
    codes = {f"POOL{i:05d}" for i in range(20)}
    cm.CouponCode.objects.bulk_create(cm.CouponCode(series=series, code=code) for code in sorted(codes))
    reward = points_reward(brand, "10", redemption_type=RedemptionType.INTOUCH_REWARD, coupon_series=series)
    return reward, codes


def test_concurrent_single_coupon_issues_hand_out_each_code_once(org, api_user, coupon_pool, run_concurrently):
    reward, codes = coupon_pool
    customers = customers_with_points(org, 30, "100")

    responses = responses_of(
        run_concurrently(lambda i: issue_single(api_user, reward, customers[i]), threads=30)
    )

    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    assert len(ok) == 20, status_counts(responses)
    assert len(refused) == 10
    assert all(r.status_code == 422 and r.json()["status"] == POOL_EMPTY for r in refused), status_counts(responses)
    answered = [r.json()["intouch"]["couponCode"] for r in ok]
    issued = list(IssuedUnit.objects.values_list("coupon_code", flat=True))
    assert len(issued) == len(set(issued)) == 20
    assert set(answered) == set(issued) == codes
    assert not cm.CouponCode.objects.exists()
    accounts = [account_of(c) for c in customers]
    assert sorted(a.balance for a in accounts) == [Decimal("90")] * 20 + [Decimal("100")] * 10
    assert LedgerEntry.objects.count() == 20
    assert_ledger_consistent(*accounts)


def test_concurrent_bulk_coupon_issues_share_the_pool_without_duplicates(
    org, api_user, coupon_pool, run_concurrently
):
    reward, codes = coupon_pool
    customers = customers_with_points(org, 10, "100")

    responses = responses_of(
        run_concurrently(
            lambda i: issue_bulk(api_user, customers[i], {"rewardId": reward.pk, "quantity": 3}),
            threads=10,
        )
    )

    lines = [r.json()["rewards"][0] for r in responses]
    assert sum(line["quantity"] for line in lines) == 20, status_counts(responses)
    for response, line in zip(responses, lines, strict=True):
        body_status = response.json()["status"]
        if line["quantity"] == 3:
            assert (response.status_code, body_status) == (200, OK)
        elif line["quantity"]:
            assert (response.status_code, body_status) == (200, PARTIAL)
        else:
            assert (response.status_code, body_status) == (422, POOL_EMPTY)
        assert len(line["intouch"] or []) == line["quantity"]
    answered = [entry["couponCode"] for line in lines for entry in line["intouch"] or []]
    issued = list(IssuedUnit.objects.values_list("coupon_code", flat=True))
    assert len(issued) == len(set(issued)) == 20
    assert set(answered) == set(issued) == codes
    assert not cm.CouponCode.objects.exists()
    # Points are deducted only for the codes actually issued.
    for customer, line in zip(customers, lines, strict=True):
        assert balance_of(account_of(customer)) == Decimal("100") - 10 * line["quantity"]
    assert_ledger_consistent(*[account_of(c) for c in customers])


# ---------------------------------------------------------------- limits (R6 12005) hold under concurrency


def test_concurrent_issues_respect_a_customer_limit(org, brand, api_user, customer, run_concurrently):
    account = f.PointsAccountFactory(customer=customer, opening_balance=Decimal("1000"))
    reward = points_reward(brand, "10")
    cm.RewardConstraint.objects.create(
        org=org, reward=reward, level=ConstraintLevel.CUSTOMER, frequency=Frequency.DAYS,
        kpi=ConstraintKpi.QUANTITY, limit_value=5,
    )

    responses = responses_of(run_concurrently(lambda _: issue_single(api_user, reward, customer), threads=20))

    assert status_counts(responses) == {(200, 200): 5, (422, 12005): 15}
    refused = [r.json()["status"] for r in responses if r.status_code == 422]
    assert all(s == limit_status(5, "CUSTOMER") for s in refused)
    assert IssuanceLine.objects.filter(customer=customer, status=LineStatus.ISSUED).count() == 5
    assert balance_of(account) == Decimal("950")
    assert_ledger_consistent(account)


def test_concurrent_issues_of_many_customers_respect_a_reward_limit(org, brand, api_user, run_concurrently):
    reward = points_reward(brand, "10")
    cm.RewardConstraint.objects.create(
        org=org, reward=reward, level=ConstraintLevel.REWARD, frequency=Frequency.DAYS,
        kpi=ConstraintKpi.QUANTITY, limit_value=7,
    )
    customers = customers_with_points(org, 20, "100")

    responses = responses_of(
        run_concurrently(lambda i: issue_single(api_user, reward, customers[i]), threads=20)
    )

    assert status_counts(responses) == {(200, 200): 7, (422, 12005): 13}
    refused = [r.json()["status"] for r in responses if r.status_code == 422]
    assert all(s == limit_status(7, "REWARD") for s in refused)
    assert IssuanceLine.objects.filter(reward=reward, status=LineStatus.ISSUED).count() == 7
    accounts = [account_of(c) for c in customers]
    assert sorted(a.balance for a in accounts) == [Decimal("90")] * 7 + [Decimal("100")] * 13
    assert_ledger_consistent(*accounts)


# ---------------------------------------------------------------- group loyalty (R9): one account, many members


def test_concurrent_group_redemptions_by_several_members_never_overspend_the_group(
    org, brand, api_user, run_concurrently
):
    members = customers_with_points(org, 4, "1000")
    group = cm.CustomerGroup.objects.create(org=org, external_id="G-1", primary_member=members[0], name="Family")
    for member in members:
        cm.GroupMembership.objects.create(group=group, customer=member)
    group_account = f.PointsAccountFactory(customer=None, group=group, org=org, opening_balance=Decimal("100"))
    reward = points_reward(brand, "10")

    def member_issues(i):
        return [
            issue_single(api_user, reward, members[i % 4], user_group2_external_id="G-1") for _ in range(2)
        ]

    outcomes = run_concurrently(member_issues, threads=12)

    responses = responses_of(flattened(outcomes))
    counts = status_counts(responses)
    assert counts[(200, 200)] == 10, counts
    assert set(counts) <= {(200, 200), (422, 8004), (409, 10004)}, counts
    assert balance_of(group_account) == Decimal("0")
    assert [balance_of(account_of(m)) for m in members] == [Decimal("1000")] * 4
    assert Issuance.objects.filter(group_loyalty_redemption=True).count() == 10
    assert_ledger_consistent(group_account, *[account_of(m) for m in members])


# ---------------------------------------------------------------- idempotency (R8)


def test_concurrent_retries_of_one_request_id_issue_once_and_replay_the_answer(
    org, brand, api_user, customer, run_concurrently
):
    account = f.PointsAccountFactory(customer=customer, opening_balance=Decimal("1000"))
    reward = points_reward(brand, "10")

    responses = responses_of(
        run_concurrently(lambda _: issue_single(api_user, reward, customer, requestId="till1-0001"), threads=20)
    )

    ok = [r for r in responses if r.status_code == 200]
    # R8 allows 409 "still in flight" for a duplicate; the account lock makes it wait instead.
    assert all(r.status_code in (200, 409) for r in responses), status_counts(responses)
    assert ok
    assert len({r.content for r in ok}) == 1, {r.content for r in ok}  # the stored answer, byte for byte
    assert ok[0].json()["status"] == OK and ok[0].json()["requestId"] == "till1-0001"
    assert IssuanceLine.objects.count() == 1
    assert Issuance.objects.count() == 1
    assert LedgerEntry.objects.filter(account=account).count() == 1
    assert IdempotencyRecord.objects.count() == 1
    assert balance_of(account) == Decimal("990")
    assert_ledger_consistent(account)


def test_one_request_id_with_different_payloads_at_once_issues_once(org, brand, api_user, run_concurrently):
    """Different customers do not share an account lock: the idempotency record's unique
    constraint has to decide. Several rounds, to meet both orders and true overlaps."""
    reward = points_reward(brand, "10")
    customers = customers_with_points(org, 6, "100")

    for round_ in range(3):
        request_id = f"shared-{round_}"
        responses = responses_of(
            run_concurrently(lambda i: issue_single(api_user, reward, customers[i], requestId=request_id), threads=6)
        )

        assert status_counts(responses) == {(200, 200): 1, (422, 10003): 5}, (round_, status_counts(responses))
        assert all(r.json()["status"] == PAYLOAD_MISMATCH for r in responses if r.status_code == 422)
        assert IssuanceLine.objects.filter(request_id=request_id).count() == 1
        assert IdempotencyRecord.objects.filter(request_id=request_id).count() == 1

    accounts = [account_of(c) for c in customers]
    assert sum(a.balance for a in accounts) == 6 * Decimal("100") - 3 * Decimal("10")
    assert LedgerEntry.objects.count() == 3
    assert_ledger_consistent(*accounts)


def test_bulk_calls_sharing_request_ids_in_opposite_orders_issue_each_once(org, brand, api_user, run_concurrently):
    """Two customers' bulk calls reuse the same two requestIds, listed in opposite orders:
    each requestId issues exactly once; the other call is refused (10003, or 409 when the
    two calls waited on each other's records) and nothing of it is kept."""
    rewards = [points_reward(brand, "10"), points_reward(brand, "10")]
    customers = customers_with_points(org, 2, "100")

    for round_ in range(4):
        ids = [f"pair-{round_}-a", f"pair-{round_}-b"]

        def call(i):
            items = [{"rewardId": r.pk, "requestId": rid} for r, rid in zip(rewards, ids, strict=True)]
            return issue_bulk(api_user, customers[i], *(items if i == 0 else items[::-1]))

        responses = responses_of(run_concurrently(call, threads=2))

        counts = status_counts(responses)
        assert counts[(200, 200)] == 1, (round_, counts)
        assert set(counts) <= {(200, 200), (422, 10003), (409, 10004)}, (round_, counts)
        for request_id in ids:
            assert IssuanceLine.objects.filter(request_id=request_id).count() == 1
            assert IdempotencyRecord.objects.filter(request_id=request_id).count() == 1

    accounts = [account_of(c) for c in customers]
    assert sum(a.balance for a in accounts) == Decimal("200") - 4 * 2 * Decimal("10")
    assert LedgerEntry.objects.count() == 4 * 2  # one entry per issued line
    assert_ledger_consistent(*accounts)


# ---------------------------------------------------------------- 10004: the account lock is held elsewhere


def test_a_call_that_cannot_get_the_account_lock_answers_10004_and_writes_nothing(
    org, brand, api_user, customer, run_concurrently, monkeypatch
):
    account = f.PointsAccountFactory(customer=customer, opening_balance=Decimal("100"))
    reward = points_reward(brand, "10")
    monkeypatch.setattr(engine, "LOCK_TIMEOUT_MS", 300)
    hold_seconds = 2.5
    locked = threading.Event()

    def hold_or_issue(i):
        if i == 0:
            with transaction.atomic():
                PointsAccount.objects.select_for_update().get(pk=account.pk)
                locked.set()
                time.sleep(hold_seconds)
            return None
        assert locked.wait(timeout=10)
        started = time.monotonic()
        response = issue_single(api_user, reward, customer, requestId="blocked-1")
        return response, time.monotonic() - started

    outcomes = run_concurrently(hold_or_issue, threads=2)

    assert outcomes[0] is None, outcomes
    assert not isinstance(outcomes[1], BaseException), outcomes[1]
    response, waited = outcomes[1]
    assert response.status_code == 409, response.content
    assert response.json() == {"status": PARALLEL}
    assert waited < hold_seconds  # gave up after the lock timeout, did not wait for the holder
    assert not Issuance.objects.exists()
    assert not IssuanceLine.objects.exists()
    assert not IdempotencyRecord.objects.exists()  # a 10004 is not an outcome to replay
    assert not LedgerEntry.objects.exists()
    assert balance_of(account) == Decimal("100")
    assert_ledger_consistent(account)

    # Once the lock is free, the same request goes through.
    retry = issue_single(api_user, reward, customer, requestId="blocked-1")
    assert retry.status_code == 200 and retry.json()["status"] == OK
    assert balance_of(account) == Decimal("90")
    assert_ledger_consistent(account)


# ---------------------------------------------------------------- first use of an account, concurrently


def test_concurrent_first_issues_for_a_customer_without_an_account_all_succeed(
    org, brand, api_user, customer, run_concurrently
):
    reward = f.RewardFactory(brand=brand, intouch_points=0)
    f.PaymentConfigFactory(reward=reward, mode=PaymentMode.FREE, points=None)
    assert not PointsAccount.objects.filter(customer=customer).exists()

    responses = responses_of(run_concurrently(lambda _: issue_single(api_user, reward, customer), threads=10))

    assert status_counts(responses) == {(200, 200): 10}
    assert PointsAccount.objects.filter(customer=customer).count() == 1
    assert IssuanceLine.objects.filter(customer=customer, status=LineStatus.ISSUED).count() == 10
    assert_ledger_consistent(account_of(customer))


# ---------------------------------------------------------------- separate OS processes

# Runs in a fresh interpreter: Django set up from scratch on the test database, its own
# connection, its own auth cache. It reports "ready", waits for "go" on stdin (so all
# children start together), makes its calls and prints [[http status, body code], ...].
_CHILD = r"""
import json, sys
import django
django.setup()
from django.db import connection
from django.test.utils import setup_test_environment
from rest_framework.test import APIClient

setup_test_environment()  # 'testserver' in ALLOWED_HOSTS, as in the parent
args = json.loads(sys.argv[1])
client = APIClient()
client.credentials(HTTP_AUTHORIZATION=args["auth"])
client.post(args["url"], {}, format="json")  # warm up: imports, auth cache (400: no identifier)
print("ready", flush=True)
sys.stdin.readline()
results = []
for _ in range(args["calls"]):
    response = client.post(args["url"], args["body"], format="json")
    results.append([response.status_code, response.json()["status"]["code"]])
connection.close()
print(json.dumps(results), flush=True)
"""


def _child_env() -> dict:
    """The parent's environment, pointed at the test database pytest-django created."""
    env = dict(os.environ)
    url = urllib.parse.urlsplit(env["DATABASE_URL"])
    env["DATABASE_URL"] = url._replace(path="/" + connection.settings_dict["NAME"]).geturl()
    env["DJANGO_SETTINGS_MODULE"] = "rewards_site.settings.test"
    root = str(Path(settings.BASE_DIR))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def test_concurrent_issues_from_separate_processes_never_overspend(org, brand, api_user, customer):
    account = f.PointsAccountFactory(customer=customer, opening_balance=Decimal("250"))
    reward = points_reward(brand, "10")
    args = json.dumps(
        {
            "auth": basic_auth(api_user.username, "pass"),
            "url": ISSUE_SINGLE.format(reward.pk),
            "body": {"mobile": customer.mobile, "brand": brand.name},
            "calls": 10,
        }
    )
    connections.close_all()  # nothing of ours is open while the children work
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, args],
            env=_child_env(),
            cwd=settings.BASE_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        for child in children:
            line = child.stdout.readline()
            assert line.strip() == "ready", (line, child.stderr.read() if child.poll() is not None else "")
        for child in children:
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [child.communicate(timeout=60) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()

    results = []
    for child, (stdout, stderr) in zip(children, outputs, strict=True):
        assert child.returncode == 0, stderr
        results.extend(tuple(r) for r in json.loads(stdout))
    counts = Counter(results)
    assert counts[(200, 200)] == 25, counts
    assert set(counts) <= {(200, 200), (422, 8004), (409, 10004)}, counts
    assert sum(counts.values()) == 40
    assert balance_of(account) == Decimal("0")
    assert LedgerEntry.objects.filter(account=account).count() == 25
    assert IssuanceLine.objects.filter(status=LineStatus.ISSUED).count() == 25
    assert_ledger_consistent(account)


# ---------------------------------------------------------------- connected orgs: several orgs' rows in one call

ISSUE_CONNECTED = "/api_gateway/rewards/core/v1.1/user/rewards/issue/?username=till1&skip_validation=true"


def test_connected_calls_naming_orgs_in_opposite_orders_do_not_deadlock(org, api_user, run_concurrently):
    """Two customers, each known in child orgs A and B; each call issues a reward-limited
    reward in both orgs, half of them listing A first, half B first. The calls share no
    account, so none of them has a reason to wait for long, let alone fail."""
    children = [f.OrganisationFactory(name=f"Child {n}", parent=org, allow_skip_validation=True) for n in "AB"]
    rewards = []
    for child in children:
        reward = points_reward(f.BrandFactory(org=child, name="BUKL"), "10")
        cm.RewardConstraint.objects.create(
            org=child, reward=reward, level=ConstraintLevel.REWARD, frequency=Frequency.DAYS,
            kpi=ConstraintKpi.QUANTITY, limit_value=1000,
        )
        rewards.append(reward)
    mobiles = [f"9555000000{i}" for i in range(4)]
    for child in children:
        for mobile in mobiles:
            f.PointsAccountFactory(customer=f.CustomerFactory(org=child, mobile=mobile), opening_balance=Decimal("1000"))
    scope = {"HTTP_DATA_SCOPE": "OTHER", "HTTP_DATA_SCOPE_ORG": ",".join(str(c.pk) for c in children)}

    def call(i):
        items = [{"rewardId": r.pk, "quantity": 1, "orgId": r.org_id} for r in rewards]
        if i % 2:
            items.reverse()
        client = client_for(api_user)
        answers = []
        for _ in range(5):
            body = {"mobile": mobiles[i], "brand": "BUKL", "rewards": items}
            answers.append(client.post(ISSUE_CONNECTED, body, format="json", **scope))
        return answers

    outcomes = run_concurrently(call, threads=4)

    responses = responses_of(flattened(outcomes))
    assert status_counts(responses) == {(200, 200): 20}
    assert IssuanceLine.objects.filter(status=LineStatus.ISSUED).count() == 40
    assert_ledger_consistent(*PointsAccount.objects.all())
