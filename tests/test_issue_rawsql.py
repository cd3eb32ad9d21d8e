"""The engine's hand-written SQL (issuance.rawsql) gives exactly what the ORM gives: the same
rows, the same values of the same types (Decimals, aware datetimes, decoded JSON, decrypted
vendor headers), and writes rows the ORM reads back unchanged."""

import datetime
from decimal import Decimal

import pytest
from django.utils import timezone

from catalogue import models as cm
from catalogue.choices import (
    CardStatus,
    ConstraintKpi,
    ConstraintLevel,
    Frequency,
    MembershipStatus,
    PaymentMode,
    RedemptionType,
)
from issuance import eligibility, resolution, services
from tests import factories as f

pytestmark = pytest.mark.django_db


def values(obj) -> dict:
    """Every loaded concrete field's value with its type (deferred fields left out)."""
    deferred = obj.get_deferred_fields()
    return {
        field.attname: (getattr(obj, field.attname), type(getattr(obj, field.attname)))
        for field in obj._meta.concrete_fields if field.attname not in deferred
    }


def assert_same(raw, orm) -> None:
    assert type(raw) is type(orm)
    assert values(raw) == values(orm)
    assert raw._state.db == orm._state.db and raw._state.adding is orm._state.adding is False


@pytest.fixture
def rich_reward(org, brand):
    """A coupon reward with a vendor config (encrypted headers, JSON), a cart promotion,
    custom fields and two payment configs; and a plain reward of the brand."""
    vendor = f.VendorFactory(org=org)
    config = cm.VendorRedemptionConfig.objects.create(
        vendor=vendor, name="v", url="https://vendor.example/redeem", headers={"X-Key": "secret"},
        context_map={"a": [1, 2]}, timeout_seconds=Decimal("2.50"),
    )
    promotion = cm.CartPromotion.objects.create(org=org, name="p", promotion_code="P1",
                                                valid_till=timezone.now() + datetime.timedelta(days=3))
    series = f.CouponSeriesFactory(org=org)
    reward = f.RewardFactory(
        brand=brand, redemption_type=RedemptionType.INTOUCH_REWARD, coupon_series=series, cart_promotion=promotion,
        vendor_redemption=config, vendor=vendor, custom_fields={"colour": "red", "n": 1.5},
        intouch_points=Decimal("12.3400"),
    )
    f.PaymentConfigFactory(reward=reward, mode=PaymentMode.POINTS, points=Decimal("7.2500"))
    f.PaymentConfigFactory(reward=reward, mode=PaymentMode.CONV_RATIO, points=None,
                           conversion_ratio=Decimal("0.125000"))
    plain = f.RewardFactory(brand=brand)
    return reward, plain


def test_rewards_read_as_the_orm_reads_them(org, brand, rich_reward):
    reward, plain = rich_reward
    other_brand = f.BrandFactory(org=org, name="other")
    f.RewardFactory(brand=other_brand)
    ids = sorted([reward.pk, plain.pk])

    rewards, configs = services._rewards_for(org, ids, brand)

    orm = {r.pk: r for r in cm.Reward.objects.filter(org=org, pk__in=ids, brand=brand).select_related(
        "coupon_series", "cart_promotion", "vendor_redemption").prefetch_related("payment_configs")}
    assert rewards.keys() == orm.keys()
    for pk, raw in rewards.items():
        assert_same(raw, orm[pk])
        for name in ("coupon_series", "cart_promotion", "vendor_redemption"):
            related, expected = getattr(raw, name), getattr(orm[pk], name)
            assert (related is None) == (expected is None)
            if expected is not None:
                assert_same(related, expected)
        expected_configs = list(orm[pk].payment_configs.all())
        assert len(configs[pk]) == len(expected_configs)
        for config, expected in zip(configs[pk], expected_configs, strict=True):
            assert_same(config, expected)
            assert config.reward is raw
    assert rewards[reward.pk].vendor_redemption.headers == {"X-Key": "secret"}


def test_rewards_of_another_brand_or_org_are_not_read(org, brand, rich_reward):
    reward, plain = rich_reward
    assert services._rewards_for(org, [reward.pk], f.BrandFactory(org=org, name="x"))[0] == {}
    assert services._rewards_for(f.OrganisationFactory(), [reward.pk, plain.pk], None)[0] == {}
    assert set(services._rewards_for(org, [reward.pk, plain.pk], None)[0]) == {reward.pk, plain.pk}


def test_constraints_read_as_the_orm_reads_them(org, brand, rich_reward):
    reward, plain = rich_reward
    make = cm.RewardConstraint.objects.create
    mine = make(org=org, reward=reward, level=ConstraintLevel.CUSTOMER, frequency=Frequency.DAYS,
                kpi=ConstraintKpi.REDEMPTION_VALUE, limit_value=Decimal("12.5000"),
                cycle_start=datetime.date(2024, 2, 29))
    by_type = make(org=org, redemption_type=RedemptionType.INTOUCH_REWARD,
                   level=ConstraintLevel.CUSTOMER_REDEMPTION_TYPE, frequency=Frequency.DAYS, limit_value=3)
    make(org=org, reward=reward, level=ConstraintLevel.REWARD, frequency=Frequency.DAYS, limit_value=1,
         is_active=False)
    make(org=org, redemption_type=RedemptionType.CART_PROMOTION, level=ConstraintLevel.CUSTOMER_REDEMPTION_TYPE,
         frequency=Frequency.DAYS, limit_value=3)

    raw = services._constraints_for(org, [reward])

    assert [c.pk for c in raw] == [mine.pk, by_type.pk]
    for got, expected in zip(raw, cm.RewardConstraint.objects.filter(pk__in=[mine.pk, by_type.pk]).order_by("pk"),
                             strict=True):
        assert_same(got, expected)


def test_customer_read_as_the_orm_reads_it(org, customer):
    f.CustomerFactory(org=f.OrganisationFactory(), mobile=customer.mobile)  # another org's
    found = resolution.customer_for(org=org, identifiers=resolution.Identifiers(mobile=customer.mobile,
                                                                                email=customer.email))
    expected = cm.Customer.objects.only(
        "id", "org", "mobile", "email", "external_id", "points_redeemable", "primary_value", "first_name",
        "last_name").get(pk=customer.pk)
    assert values(found) == values(expected)
    assert found.get_deferred_fields() == expected.get_deferred_fields()
    assert found.org == org


def test_targets_and_facts_are_what_the_orm_union_gives(org, brand, customer):
    segment = f.SegmentFactory(org=org)
    partitions = [f.PartitionFactory(segment=segment) for _ in range(3)]
    cm.SegmentMembership.objects.create(customer=customer, partition=partitions[0])
    series = [f.CardSeriesFactory(org=org) for _ in range(2)]
    cm.Card.objects.create(series=series[0], customer=customer, number="1")
    inactive_card = next(s for s in CardStatus if s != CardStatus.ACTIVE)
    cm.Card.objects.create(series=series[1], customer=customer, number="2", status=inactive_card)
    labels = [f.LabelFactory(org=org) for _ in range(2)]
    cm.CustomerLabel.objects.create(customer=customer, label=labels[0])
    cm.CustomerLabel.objects.create(customer=customer, label=labels[1],
                                    status=next(s for s in MembershipStatus if s != MembershipStatus.ACTIVE))
    rewards = [f.RewardFactory(brand=brand) for _ in range(3)]
    for p in partitions[:2]:
        cm.RewardSegmentTarget.objects.create(reward=rewards[0], partition=p)
    rewards[1].card_series.add(series[1])
    rewards[2].labels.add(*labels)
    ids = [r.pk for r in rewards]

    raw = eligibility.targets_and_facts(ids, customer)

    assert raw == (eligibility.reward_targets(ids), eligibility.customer_facts(customer))
    assert raw == eligibility._read(eligibility._links(ids) + eligibility._held(customer))
    assert eligibility.customer_facts(customer) == eligibility._read(eligibility._held(customer))[1]  # the list's
    assert raw[1].partitions == {partitions[0].pk} and raw[1].card_series == {series[0].pk}


def _line(org, customer, reward, **extra):
    from issuance.models import IssuanceLine, LineStatus

    return IssuanceLine(
        issuance=f.IssuanceFactory(org=org, customer=customer), org=org, customer=customer, reward=reward,
        redemption_type=reward.redemption_type, request_id=None, requested_quantity=2, planned_units=2,
        status=LineStatus.ISSUED, points_per_unit=Decimal("7.2500"), redemption_value=None,
        conversion_ratio=Decimal("0.125000"), tender={"amount": Decimal("1.10"), "when": "x"}, custom_fields=None,
        params=[1, "a", {"b": None}], **extra,
    )


def test_an_insert_writes_what_save_writes(org, brand, customer, rich_reward):
    """Two lines built alike, one saved by the ORM, one by rawsql.Insert: read back, the same."""
    from issuance.models import IssuanceLine
    from issuance.rawsql import Insert

    reward, _plain = rich_reward
    by_orm, by_sql, more = (_line(org, customer, reward) for _ in range(3))
    by_orm.save(force_insert=True)
    Insert(IssuanceLine).run([by_sql, more])

    assert by_sql.pk and more.pk and by_sql._state.adding is False and by_sql._state.db == "default"
    stored = {line.pk: line for line in IssuanceLine.objects.filter(pk__in=[by_orm.pk, by_sql.pk, more.pk])}
    expected = values(stored[by_orm.pk])
    for pk in (by_sql.pk, more.pk):
        got = values(stored[pk])
        for name in ("id", "issuance_id", "created_at", "updated_at"):
            got.pop(name), expected.pop(name, None)
        assert got == expected
    assert stored[by_sql.pk].created_at.tzinfo is not None
    assert stored[by_sql.pk].custom_fields is None and stored[by_sql.pk].params == [1, "a", {"b": None}]


def test_a_ledger_entry_and_balance_are_written_exactly(customer, account):
    from issuance import ledger
    from issuance.models import LedgerEntry, PointsAccount

    entry = ledger.points_debit(account_id=account.pk, amount=Decimal("0.0001"), reason="r")

    stored = LedgerEntry.objects.get(pk=entry.pk)
    assert stored.amount == Decimal("-0.0001") and stored.balance_after == Decimal("99999.9999")
    assert values(stored)["amount"] == values(entry)["amount"]
    assert PointsAccount.objects.get(pk=account.pk).balance == Decimal("99999.9999")
    assert ledger.account_check(account.pk).ok


def test_an_update_of_a_vanished_row_fails_like_save(customer, account):
    from django.db import DatabaseError

    from issuance.models import PointsAccount
    from issuance.rawsql import update

    ghost = PointsAccount.objects.get(pk=account.pk)
    ghost.pk = 10**9
    with pytest.raises(DatabaseError, match="did not affect any rows"):
        update(ghost, "balance", "updated_at")


def test_several_redemptions_are_written_as_one_by_one(customer, account):
    """points_redeem_many_locked: the entries and balance points_redeem_locked gives line by
    line, in two statements."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from issuance import ledger
    from issuance.models import LedgerEntry, PointsAccount

    with transaction.atomic():
        locked = ledger.account_lock(account.pk)
        with CaptureQueriesContext(connection) as ctx:
            entries = ledger.points_redeem_many_locked(
                locked, [(Decimal("10.5"), "a", None), (Decimal("0.0001"), "b", None)])
    assert len(ctx.captured_queries) == 2
    stored = list(LedgerEntry.objects.filter(account=account).order_by("id"))
    assert [(e.pk, e.amount, e.balance_after, e.reason) for e in stored] == [
        (entries[0].pk, Decimal("-10.5"), Decimal("99989.5"), "a"),
        (entries[1].pk, Decimal("-0.0001"), Decimal("99989.4999"), "b"),
    ]
    assert PointsAccount.objects.get(pk=account.pk).balance == Decimal("99989.4999")
    assert ledger.account_check(account.pk).ok

    with transaction.atomic():
        locked = ledger.account_lock(account.pk)
        with pytest.raises(ledger.LedgerError):
            ledger.points_redeem_many_locked(locked, [(Decimal("1"), "c", None), (Decimal("1000000"), "d", None)])
    assert LedgerEntry.objects.filter(account=account).count() == 2


def test_a_compiled_query_gives_what_its_queryset_gives(api_user, org, django_assert_num_queries):
    """The Basic-auth user query, compiled once: the same user, profile, org and permission
    answer as its queryset, for any username, and nothing read later."""
    from django.core.exceptions import ObjectDoesNotExist

    from issuance.api import authentication as auth

    for user in (api_user, f.UserFactory()):  # with and without a profile
        (got,) = auth._USER_BY_NAME.all(username=user.username)
        (expected,) = auth._user_by_name(user.username)
        assert_same(got, expected)
        assert getattr(got, auth.API_ALLOWED) is getattr(expected, auth.API_ALLOWED)
        with django_assert_num_queries(0):
            if hasattr(expected, "profile"):
                assert_same(got.profile, expected.profile)
                assert_same(got.profile.org, expected.profile.org)
                assert got.profile.user is got
            else:
                with pytest.raises(ObjectDoesNotExist):
                    got.profile
    assert getattr(auth._USER_BY_NAME.all(username=api_user.username)[0], auth.API_ALLOWED) is True
    assert auth._USER_BY_NAME.all(username="nobody") == []


def test_a_compiled_query_needs_each_value_as_one_parameter():
    from django.contrib.auth.models import User

    from issuance.rawsql import CompiledQuery

    twice = CompiledQuery(lambda name: User.objects.filter(username=name, first_name=name), "name")
    with pytest.raises(ValueError, match="exactly one parameter"):
        twice.all(name="x")


def test_limit_consumption_is_what_the_orm_aggregate_gives_for_every_shape(org, brand, customer):
    """issuance.limits.limit_states (hand-written SQL per shape) against limit_states_orm: every
    level × measure × window, lines of every status, with and without a redemption value, held
    points, pending units, another customer's lines and lines older than the window."""
    from issuance import limits
    from issuance.models import IssuanceLine, LineStatus

    other = f.CustomerFactory(org=org, mobile="5550001")
    voucher = f.RewardFactory(brand=brand, redemption_type=RedemptionType.VOUCHER)
    miles = f.RewardFactory(brand=brand, redemption_type=RedemptionType.MILES)
    now = timezone.now()
    old = now - datetime.timedelta(days=20)
    for who in (customer, other):
        for reward in (voucher, miles):
            for status, value, when in [(LineStatus.ISSUED, None, now), (LineStatus.ISSUED, Decimal("2.5000"), old),
                                        (LineStatus.PARTIAL, Decimal("0.3333"), now), (LineStatus.FAILED, None, now),
                                        (LineStatus.PENDING, Decimal("1.1000"), now)]:
                pending = status == LineStatus.PENDING
                line = f.IssuanceLineFactory(
                    issuance__org=org, issuance__customer=who, customer=who, reward=reward, quantity=2, requested_quantity=3,
                    status=status, redemption_value=value, total_points=Decimal("7.1250"),
                    held_points=Decimal("3.0001") if pending else Decimal(0), pending_units=1 if pending else 0)
                IssuanceLine.objects.filter(pk=line.pk).update(created_at=when)
    constraints = []
    for kpi in ConstraintKpi:
        for frequency, window in [(Frequency.NO_LIMIT, "FIXED"), (Frequency.DAYS, "ROLLING"), (Frequency.MONTHS, "FIXED")]:
            common = {"org": org, "kpi": kpi, "frequency": frequency, "window_type": window, "interval": 7,
                      "limit_value": Decimal(100)}
            constraints += [
                cm.RewardConstraint.objects.create(reward=voucher, level=ConstraintLevel.REWARD, **common),
                cm.RewardConstraint.objects.create(reward=miles, level=ConstraintLevel.CUSTOMER, **common),
                cm.RewardConstraint.objects.create(level=ConstraintLevel.CUSTOMER_REDEMPTION_TYPE,
                                                   redemption_type=RedemptionType.MILES, **common),
            ]
    for chosen in (constraints, constraints[:1], constraints[4:9], constraints[::-1]):
        raw = limits.limit_states(chosen, customer_id=customer.pk, org=org, now=now)
        orm = limits.limit_states_orm(chosen, customer_id=customer.pk, org=org, now=now)
        assert [(s.constraint.pk, s.window, s.consumed, type(s.consumed)) for s in raw] == [
            (s.constraint.pk, s.window, s.consumed, type(s.consumed)) for s in orm]
    consumed = {s.constraint.pk: s.consumed for s in raw}
    assert len(set(consumed.values())) > 4  # the shapes count different lines
