"""RewardUsage: PostgreSQL's hourly sums of the counted lines of each reward with a REWARD-level
limit, and the limits that read them (issuance.limits, migration issuance 0007).

The sums must always be what the lines add up to, whatever wrote the lines (the engine's one
statement, the ORM, a queryset update, raw SQL, a delete), and a limit read through them must
give exactly what the lines give (``limit_states_orm``, the reference), including the lines of
a window's partial first hour."""

import datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from catalogue import models as cm
from catalogue.choices import ConstraintKpi, ConstraintLevel, Frequency
from issuance import limits
from issuance.models import IssuanceLine, LineStatus, RewardUsage
from tests import factories as f
from tests.conftest import ISSUE_BULK, basic_auth

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL keeps RewardUsage")

def sums_of_lines() -> dict:
    return limits.usage_of_lines()


def sums_kept() -> dict:
    return {(u.reward_id, u.hour): (u.units, u.value) for u in RewardUsage.objects.all()
            if u.units or u.value}


def line(reward, customer, *, when=None, **kwargs) -> IssuanceLine:
    made = f.IssuanceLineFactory(issuance__org=reward.org, issuance__customer=customer, customer=customer,
                                 reward=reward, **{"requested_quantity": 5, **kwargs})
    if when is not None:
        IssuanceLine.objects.filter(pk=made.pk).update(created_at=when)
    return made


def _limit(reward, **kwargs) -> cm.RewardConstraint:
    return cm.RewardConstraint.objects.create(org=reward.org, reward=reward, level=ConstraintLevel.REWARD,
                                              **{"limit_value": Decimal(1000), **kwargs})


@pytest.mark.django_db
def test_the_sums_follow_every_kind_of_write_to_the_lines(org, brand, customer):
    one, two, free = (f.RewardFactory(brand=brand) for _ in range(3))
    for reward in (one, two):
        _limit(reward, frequency=Frequency.MONTHS)
    cm.RewardConstraint.objects.create(org=org, reward=free, level=ConstraintLevel.CUSTOMER, limit_value=1,
                                       frequency=Frequency.DAYS)
    now = timezone.now()
    earlier = now - datetime.timedelta(hours=5, minutes=7)
    a = line(one, customer, quantity=2, total_points=Decimal("20.5000"))
    b = line(one, customer, when=earlier, quantity=1, redemption_value=Decimal("2.2500"))
    c = line(two, customer, status=LineStatus.PENDING, quantity=0, pending_units=3, held_points=Decimal("9.0001"))
    d = line(two, customer, status=LineStatus.FAILED, quantity=0)
    e = line(free, customer, quantity=3)  # no REWARD-level limit: no sums
    assert sums_kept() == sums_of_lines()
    assert {reward for reward, _hour in sums_kept()} == {one.pk, two.pk}
    assert sums_kept()[(one.pk, earlier.replace(minute=0, second=0, microsecond=0))] == (1, Decimal("2.2500"))

    steps = [
        # a vendor answers: PENDING → ISSUED (2 of 3), the hold released
        lambda: IssuanceLine.objects.filter(pk=c.pk).update(status=LineStatus.PARTIAL, quantity=2, pending_units=0,
                                                            held_points=0, total_points=Decimal("6.0000")),
        lambda: IssuanceLine.objects.filter(pk=d.pk).update(status=LineStatus.ISSUED, quantity=1),  # counted now
        lambda: IssuanceLine.objects.filter(pk=a.pk).update(status=LineStatus.FAILED),  # no longer counted
        lambda: IssuanceLine.objects.filter(pk=b.pk).update(created_at=now),  # another hour
        lambda: IssuanceLine.objects.filter(pk=b.pk).update(reward=two),  # another reward
        lambda: IssuanceLine.objects.filter(pk=d.pk).update(needs_attention=True),  # nothing counted changes
        lambda: IssuanceLine.objects.filter(reward=two).update(redemption_value=Decimal("0.5000")),  # several rows
        lambda: connection.cursor().execute("UPDATE issuance_issuanceline SET quantity = quantity + 1 "
                                            "WHERE status <> 'FAILED'"),
        lambda: line(one, customer, quantity=4, when=earlier - datetime.timedelta(days=40)),
        lambda: IssuanceLine.objects.filter(pk=d.pk).delete(),
        lambda: IssuanceLine.objects.filter(pk=e.pk).update(reward=one),  # into a limited reward
        lambda: IssuanceLine.objects.filter(pk=a.pk).update(reward=free, status=LineStatus.ISSUED),  # out of one
    ]
    for number, step in enumerate(steps):
        step()
        assert sums_kept() == sums_of_lines(), f"after step {number}"
    assert limits.usage_disagreements() == []
    assert not RewardUsage.objects.filter(reward=free).exists()
    IssuanceLine.objects.all().delete()
    assert sums_kept() == {}
    RewardUsage.objects.filter(reward=two).update(units=7)  # what check_ledger reports
    assert {(reward, kept[0], lines) for reward, _hour, kept, lines in limits.usage_disagreements()} == {
        (two.pk, 7, None)}


@pytest.mark.django_db
@pytest.mark.parametrize("time_zone", ["UTC", "Asia/Kolkata", "Asia/Kathmandu"])
def test_a_reward_limit_read_through_the_sums_counts_what_its_lines_count(org, brand, customer, time_zone):
    """Windows that start on the hour (FIXED in UTC) and between hours (ROLLING; FIXED at a
    +05:30 or +05:45 midnight): lines just before, at and just after the start, in the partial
    first hour and in whole hours, of every status; by units and by value."""
    org.time_zone = time_zone
    org.save()
    reward = f.RewardFactory(brand=brand)
    now = timezone.now()
    constraints = [_limit(reward, kpi=kpi, frequency=frequency, window_type=window, interval=interval)
                   for kpi in ConstraintKpi
                   for frequency, window, interval in [(Frequency.DAYS, "ROLLING", 2), (Frequency.DAYS, "FIXED", 1),
                                                       (Frequency.MONTHS, "FIXED", 1), (Frequency.NO_LIMIT, "FIXED", 1)]]
    starts = {limits.window_for(c, now=now, tz_name=time_zone).start for c in constraints} - {None}
    assert any(s.minute or s.second or s.microsecond for s in starts)  # a partial first hour is read
    quantity = 1
    for start in sorted(starts):
        for offset in (-1, 0, 1, 60 * 29, 3600 + 1):
            for status in LineStatus:
                quantity += 1
                pending = status == LineStatus.PENDING
                line(reward, customer, when=start + datetime.timedelta(seconds=offset), status=status,
                     quantity=0 if pending else quantity % 4, pending_units=quantity % 3 if pending else 0,
                     held_points=Decimal("1.2500") if pending else Decimal(0), total_points=Decimal(quantity),
                     redemption_value=Decimal("0.7500") if quantity % 2 else None)

    reference = limits.limit_states_orm(constraints, customer_id=customer.pk, org=org, now=now)
    summed = limits.limit_states(constraints, customer_id=customer.pk, org=org, now=now)
    with override_settings(LIMIT_REWARD_USAGE=False):
        of_lines = limits.limit_states(constraints, customer_id=customer.pk, org=org, now=now)
    expected = [(s.constraint.pk, s.consumed) for s in reference]
    assert [(s.constraint.pk, s.consumed) for s in summed] == expected
    assert [(s.constraint.pk, s.consumed) for s in of_lines] == expected
    assert len({s.consumed for s in reference}) >= 6


@pytest.mark.django_db
def test_a_reward_gets_its_sums_from_its_history_when_it_gets_a_reward_level_limit(org, brand, customer):
    """Created, or changed to REWARD level: the sums are computed from the lines already there.
    A reward whose last REWARD-level limit goes (deleted, changed to another level or reward)
    loses its sums, and keeps none until it gets one again."""
    reward = f.RewardFactory(brand=brand)
    now = timezone.now()
    for hours in (0, 3, 30):
        line(reward, customer, quantity=2, when=now - datetime.timedelta(hours=hours))
    assert sums_kept() == {}
    limit = _limit(reward, frequency=Frequency.NO_LIMIT)
    assert sums_kept() == sums_of_lines() != {}
    assert sum(units for units, _value in sums_kept().values()) == 6

    limit.delete()  # its sums go with it: nothing left to go stale
    assert not RewardUsage.objects.filter(reward=reward).exists()
    line(reward, customer, quantity=1)  # not summed: no REWARD-level limit
    per_customer = cm.RewardConstraint.objects.create(org=org, reward=reward, level=ConstraintLevel.CUSTOMER,
                                                      limit_value=10, frequency=Frequency.NO_LIMIT)
    assert not RewardUsage.objects.filter(reward=reward).exists()
    cm.RewardConstraint.objects.filter(pk=per_customer.pk).update(level=ConstraintLevel.REWARD)
    assert sums_kept() == sums_of_lines()
    assert sum(units for units, _value in sums_kept().values()) == 7
    assert [s.consumed for s in limits.limit_states([per_customer], customer_id=customer.pk, org=org, now=now)] == [7]
    twin = _limit(reward, frequency=Frequency.DAYS)  # a second one: the sums stay while one is left
    cm.RewardConstraint.objects.filter(pk=per_customer.pk).update(level=ConstraintLevel.CUSTOMER)
    assert sum(units for units, _value in sums_kept().values()) == 7
    cm.RewardConstraint.objects.filter(pk=twin.pk).update(reward=f.RewardFactory(brand=brand))
    assert not RewardUsage.objects.filter(reward=reward).exists()
    assert limits.usage_disagreements() == []


@pytest.mark.django_db
def test_a_reward_limit_reads_the_sums_not_the_lines(org, brand, customer):
    """With the sums gone (as if they disagreed), the limit reads them, not its lines: the
    lines of a window's whole hours cost the list and the issue nothing."""
    reward = f.RewardFactory(brand=brand)
    limit = _limit(reward, kpi=ConstraintKpi.QUANTITY, frequency=Frequency.MONTHS, window_type="FIXED")
    other = cm.RewardConstraint.objects.create(org=org, reward=reward, level=ConstraintLevel.CUSTOMER,
                                               limit_value=10, frequency=Frequency.MONTHS)
    line(reward, customer, quantity=3)
    now = timezone.now()
    states = limits.limit_states([limit, other], customer_id=customer.pk, org=org, now=now)
    assert [s.consumed for s in states] == [3, 3]
    RewardUsage.objects.all().delete()
    states = limits.limit_states([limit, other], customer_id=customer.pk, org=org, now=now)
    assert [s.consumed for s in states] == [0, 3]  # the customer-level one still reads lines
    with override_settings(LIMIT_REWARD_USAGE=False):
        states = limits.limit_states([limit, other], customer_id=customer.pk, org=org, now=now)
    assert [s.consumed for s in states] == [3, 3]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_bulk_calls_naming_the_same_rewards_in_opposite_orders_keep_the_sums(org, brand, api_user, run_concurrently):
    """Each call locks the sums of its rewards in one order (the trigger writes them sorted):
    no deadlock, every call issues, and the sums are the lines'."""
    from rest_framework.test import APIClient

    rewards = []
    for _ in range(4):
        reward = f.RewardFactory(brand=brand, intouch_points=Decimal(1))
        f.PaymentConfigFactory(reward=reward, mode="POINTS", points=Decimal(1))
        _limit(reward, frequency=Frequency.DAYS)
        rewards.append(reward)
    customers = [f.CustomerFactory(org=org) for _ in range(12)]
    for customer in customers:
        f.PointsAccountFactory(customer=customer, opening_balance=Decimal(1000))

    def call(i: int):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=basic_auth(api_user.username, "pass"))
        order = rewards if i % 2 else rewards[::-1]
        answers = []
        for n in range(5):
            items = [{"rewardId": r.pk, "quantity": 1, "requestId": f"c{i}-{n}-{r.pk}"} for r in order]
            answers.append(client.post(ISSUE_BULK, {"mobile": customers[i].mobile, "brand": "BUKL", "rewards": items},
                                       format="json").status_code)
        return answers

    outcomes = run_concurrently(call, threads=12)
    assert outcomes == [[200] * 5] * 12
    assert sums_kept() == sums_of_lines()
    assert sum(units for units, _value in sums_kept().values()) == 12 * 5 * 4


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_reward_level_limit_added_while_the_reward_is_issued_sums_every_line(org, brand, api_user, run_concurrently):
    """The limit's trigger waits for the transactions that wrote lines without sums (SHARE lock
    on the lines) and recomputes after them; later ones see the limit: no line is missed or
    counted twice, whenever the limit lands."""
    from rest_framework.test import APIClient

    from tests.conftest import ISSUE_SINGLE

    reward = f.RewardFactory(brand=brand, intouch_points=Decimal(1))
    f.PaymentConfigFactory(reward=reward, mode="POINTS", points=Decimal(1))
    customers = [f.CustomerFactory(org=org) for _ in range(8)]
    for customer in customers:
        f.PointsAccountFactory(customer=customer, opening_balance=Decimal(1000))

    def call(i: int):
        if i == 8:  # the admin, in the middle of the issues
            import time

            time.sleep(0.3)
            _limit(reward, frequency=Frequency.MONTHS, limit_value=Decimal(10**6))
            return []
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=basic_auth(api_user.username, "pass"))
        return [client.post(ISSUE_SINGLE.format(reward.pk), {"mobile": customers[i].mobile, "brand": "BUKL"},
                            format="json").status_code for _ in range(15)]

    outcomes = run_concurrently(call, threads=9)
    assert outcomes == [[200] * 15] * 8 + [[]]
    assert limits.usage_disagreements() == []
    assert sum(units for units, _value in sums_kept().values()) == 8 * 15
