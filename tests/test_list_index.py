"""The list API's in-memory index (catalogue/list_index.py) and the catalogue version it is
kept by (catalogue.models.CatalogueVersion, the triggers of migration 0005).

- The version: a trigger on exactly the tables the list shows; every statement on them changes
  it, whatever wrote it (ORM, raw SQL); an issue call and the customer's own rows do not; a
  rolled-back number is never seen again.
- The answers: on random catalogues, customers, filters and instants (boundaries included) the
  indexed answer is the database answer, body for body (LIST_INDEX on against off).
- Freshness: a change committed by another connection, even by raw SQL, shows on the next call;
  an uncommitted one does not; time passing with no change to the catalogue does.
"""

import datetime
import itertools
import random
import threading
from decimal import Decimal
from unittest import mock

import numpy as np
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from catalogue import list_index
from catalogue import models as cm
from catalogue.choices import (
    CardStatus,
    ConstraintLevel,
    Frequency,
    MediaKind,
    MembershipStatus,
    PaymentMode,
    RedemptionType,
)
from issuance.eligibility import TARGETINGS, CustomerFacts, targeting_refused
from tests import factories as f
from tests.conftest import ISSUE_SINGLE

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the catalogue version is kept by PostgreSQL triggers"),
]

URL = "/api_gateway/rewards/core/v1/user/reward/brand/{}"
DAY = datetime.timedelta(days=1)


@pytest.fixture(autouse=True)
def version_row(db):
    """The migration's version row, put back if a transactional test of another module ran
    first and flushed the tables (as under pytest-xdist): any statement on a list table
    upserts it."""
    with connection.cursor() as cursor:
        cursor.execute('UPDATE "catalogue_reward" SET id = id WHERE id < 0')


def version() -> int:
    value = list_index.catalogue_version()
    assert value is not None
    return value


def listed(api, customer, **params):
    response = api.get(URL.format("BUKL"), {"userId": customer.pk, **params})
    assert response.status_code == 200, response.content
    return response.json()


# ---------------------------------------------------------------- the version


def test_the_version_trigger_is_on_exactly_the_list_tables():
    with connection.cursor() as cursor:
        cursor.execute("SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                       "WHERE t.tgname = 'catalogue_version_bump'")
        tables = {row[0] for row in cursor.fetchall()}
    assert tables == {model._meta.db_table for model in cm.LIST_TABLES}


@pytest.mark.parametrize("model", cm.LIST_TABLES, ids=lambda m: m._meta.db_table)
def test_any_statement_on_a_list_table_changes_the_version(model):
    seen = {version()}
    table = connection.ops.quote_name(model._meta.db_table)
    for statement in (f"UPDATE {table} SET id = id WHERE id < 0", f"DELETE FROM {table} WHERE id < 0"):
        with connection.cursor() as cursor:
            cursor.execute(statement)  # no row at all: a statement trigger still runs
        assert version() not in seen
        seen.add(version())


def test_orm_writes_change_the_version(org, brand):
    before = version()
    reward = f.RewardFactory(brand=brand)
    after_create = version()
    f.PaymentConfigFactory(reward=reward)
    after_config = version()
    reward.labels.add(f.LabelFactory(org=org))
    after_link = version()
    assert len({before, after_create, after_config, after_link}) == 4


def test_issuing_and_the_customers_own_rows_leave_the_version(api, org, brand, customer, account):
    reward = f.RewardFactory(brand=brand)
    f.PaymentConfigFactory(reward=reward, mode=PaymentMode.POINTS, points=Decimal(5))
    series = f.CardSeriesFactory(org=org)
    partition = f.PartitionFactory(segment=f.SegmentFactory(org=org))
    label = f.LabelFactory(org=org)
    before = version()
    response = api.post(ISSUE_SINGLE.format(reward.pk), {"mobile": customer.mobile}, format="json")
    assert response.status_code == 200, response.content
    cm.Card.objects.create(series=series, customer=customer, number="42", status=CardStatus.ACTIVE)
    cm.SegmentMembership.objects.create(customer=customer, partition=partition)
    cm.CustomerLabel.objects.create(customer=customer, label=label, status=MembershipStatus.ACTIVE)
    f.CustomerFactory(org=org)
    assert version() == before


def test_a_rolled_back_number_is_never_seen_again(org, brand):
    before = version()
    with pytest.raises(RuntimeError), transaction.atomic():
        f.RewardFactory(brand=brand)
        inside = version()
        assert inside != before
        raise RuntimeError("roll back")
    assert version() == before
    f.RewardFactory(brand=brand)
    assert version() not in (before, inside)


# ---------------------------------------------------------------- the rule over groups


def test_eligible_groups_are_the_targeting_rule_group_by_group():
    rng = random.Random(7)
    kinds = [t.kind for t in TARGETINGS]
    groups = [{}]
    for _ in range(300):  # one kind (R6) or several (MIXED), 1-3 targets each, ids 1-6
        chosen = rng.sample(kinds, rng.choice([1, 1, 1, 2, 3]))
        groups.append({kind: frozenset(rng.sample(range(1, 7), rng.randint(1, 3))) for kind in chosen})
    index = list_index.BrandIndex(np.zeros((0, 4), dtype=np.int64), groups, np.zeros(0, dtype=np.int32))
    for _ in range(200):
        # ids 7 and 8: held, named by no group
        facts = CustomerFacts(*(frozenset(rng.sample(range(1, 9), rng.randint(0, 3))) for _ in TARGETINGS))
        expected = [targeting_refused(group, facts) is None for group in groups]
        assert index.eligible_groups(facts).tolist() == expected



def test_a_page_from_kept_time_slices_is_the_page_of_a_full_pass():
    """``BrandIndex.page`` (time filters applied once per key and kept; a short scan per call)
    against ``matching`` (every filter over the whole brand) on random rewards, instants on,
    next to and between the rewards' own, several filters, targeting and pages."""
    from catalogue.filters import time_conditions

    rng = random.Random(11)
    nrng = np.random.default_rng(11)
    now = timezone.now()
    base = list_index.micros(now)
    n = 3000
    day = 86_400_000_000
    start = base + nrng.integers(-30, 30, n) * day // 4  # many rewards share an instant
    end = start + nrng.integers(1, 60, n) * day // 4
    created = start - nrng.integers(0, 10, n) * day
    rows = np.stack([np.arange(1, n + 1), start, end, created], axis=1).astype(np.int64)
    kinds = [t.kind for t in TARGETINGS]
    groups = [{}] + [{rng.choice(kinds): frozenset(rng.sample(range(1, 6), 2))} for _ in range(40)]
    group_of = np.where(nrng.random(n) < 0.5, nrng.integers(1, len(groups), n), 0).astype(np.int32)
    index = list_index.BrandIndex(rows, groups, group_of)
    instants = [int(v) + delta for v in rng.sample(sorted(set(start.tolist()) | set(end.tolist())), 30)
                for delta in (-1, 0, 1)]
    instants += [base + rng.randint(-8 * day, 8 * day) for _ in range(30)]
    filters_choices = [{}, {"status": ["LIVE"]}, {"status": ["UPCOMING", "ENDED"]}, {"includeExpired": False},
                       {"status": ["LIVE"], "createdOnDaysAgo": 3}, {"createdOnDaysAgo": 0}]
    checked = 0
    for filters, instant in itertools.product(filters_choices, sorted(instants)):
        # Time moving forward, as it does: slices kept (an instant a microsecond from the last
        # one's is the sharpest test of the key) and replaced.
        when = list_index.EPOCH + datetime.timedelta(microseconds=instant)
        conditions = time_conditions(filters, now=when, time_zone="Asia/Kolkata")
        for _ in range(3):
            facts = CustomerFacts(*(frozenset(rng.sample(range(1, 6), rng.randint(0, 3))) for _ in TARGETINGS))
            expected = index.matching(conditions, facts)
            offset, limit = rng.choice([(0, 20), (0, 3), (20, 20), (rng.randint(0, n), 7), (0, n + 5)])
            total, positions = index.page(conditions, facts, offset, limit)
            assert total == len(expected)
            assert positions.tolist() == expected[offset:offset + limit].tolist(), (when, filters, offset)
            # Whoever the customer, the page lies in the window (whose limits a call reads first).
            assert set(positions.tolist()) <= set(index.window(conditions, offset, limit).tolist())
            checked += 1
    assert checked > 1000
    assert len(index._slices.values()) == list_index.SLICES_PER_INDEX  # only the latest kept
    assert index.nbytes > rows.nbytes


# ---------------------------------------------------------------- the answers


def random_world(org, brand, rng: random.Random, now: datetime.datetime) -> dict:
    """~150 rewards of every shape the list shows or filters on, and customers holding a
    random share of what the rewards target."""
    categories = [f.CategoryFactory(org=org, name=f"cat{i}") for i in range(3)]
    groups = [cm.RewardGroup.objects.create(org=org, name=f"group{i}", rank=i) for i in range(3)]
    labels = [f.LabelFactory(org=org, name=f"label{i}") for i in range(3)]
    series = [f.CardSeriesFactory(org=org, code=f"S{i}") for i in range(3)]
    segment = f.SegmentFactory(org=org)
    partitions = [f.PartitionFactory(segment=segment, name=f"p{i}") for i in range(4)]
    program = cm.Program.objects.create(org=org, name="Loyalty")
    tiers = [cm.Tier.objects.create(program=program, name=n, serial=i) for i, n in enumerate(["Blue", "Silver", "Gold"])]
    vendors = [f.VendorFactory(org=org) for _ in range(2)]
    cm.RewardConstraint.objects.create(org=org, redemption_type=RedemptionType.VOUCHER, frequency=Frequency.MONTHS,
                                       level=ConstraintLevel.CUSTOMER_REDEMPTION_TYPE, limit_value=3)
    boundaries = []
    types = [RedemptionType.VOUCHER, RedemptionType.MILES, RedemptionType.PHYSICAL_REWARD]
    for i in range(150):
        start = now + rng.choice([-40, -3, -1, 0, 1, 5]) * DAY + datetime.timedelta(microseconds=rng.randint(0, 10**6))
        end = start + rng.choice([1, 2, 30, 400]) * DAY
        boundaries += [start, end]
        reward = f.RewardFactory(
            brand=brand, name=f"r{i}", redemption_type=rng.choice(types), enabled=rng.random() < 0.85,
            start_time=start, end_time=end, priority=rng.randint(0, 3), rank=rng.randint(0, 3),
            intouch_points=Decimal(rng.choice([0, 10, 250])), vendor=rng.choice([None, *vendors]),
            custom_fields=rng.choice([{}, {"colour": "red", "n": 3}]),
            created_at=now - datetime.timedelta(hours=rng.randint(0, 24 * 40)),
        )
        for _ in range(rng.randint(0, 2)):
            mode = rng.choice([PaymentMode.POINTS, PaymentMode.POINTS_CASH, PaymentMode.CASH, PaymentMode.FREE])
            f.PaymentConfigFactory(
                reward=reward, mode=mode,
                points=Decimal(rng.choice([100, 500, 900])) if mode in (PaymentMode.POINTS, PaymentMode.POINTS_CASH) else None,
                cash_amount=Decimal(rng.choice([50, 300])) if mode in (PaymentMode.CASH, PaymentMode.POINTS_CASH) else None,
            )
        reward.categories.set(rng.sample(categories, rng.randint(0, 2)))
        reward.groups.set(rng.sample(groups, rng.randint(0, 1)))
        kind = rng.random()
        if kind < 0.15:
            for partition in rng.sample(partitions, rng.randint(1, 2)):
                cm.RewardSegmentTarget.objects.create(reward=reward, partition=partition)
        elif kind < 0.25:
            reward.card_series.set(rng.sample(series, rng.randint(1, 2)))
        elif kind < 0.35:
            reward.labels.set(rng.sample(labels, 1))
        elif kind < 0.45:
            reward.target_tiers.set(rng.sample(tiers[1:], 1))
        elif kind < 0.5:  # MIXED (R6 forbids it; the list still answers as the engine would)
            reward.labels.set(rng.sample(labels, 1))
            reward.target_tiers.set(rng.sample(tiers, 1))
        if rng.random() < 0.1:
            cm.RewardConstraint.objects.create(org=org, reward=reward, level=rng.choice(["CUSTOMER", "REWARD"]),
                                               frequency=Frequency.DAYS, limit_value=5)
        if rng.random() < 0.5:
            cm.RewardMedia.objects.create(reward=reward, kind=rng.choice([MediaKind.IMAGE, MediaKind.VIDEO]),
                                          name="m", url=f"https://m.example.com/{i}", position=0)
    customers = []
    for i in range(6):
        customer = f.CustomerFactory(org=org, mobile=f"90000000{i:02d}")
        for partition in rng.sample(partitions, rng.randint(0, 2)):
            cm.SegmentMembership.objects.create(customer=customer, partition=partition)
        for s in rng.sample(series, rng.randint(0, 1)):
            cm.Card.objects.create(series=s, customer=customer, number=f"{i}{s.pk}", status=CardStatus.ACTIVE)
        for label in rng.sample(labels, rng.randint(0, 1)):
            cm.CustomerLabel.objects.create(customer=customer, label=label, status=MembershipStatus.ACTIVE)
        if rng.random() < 0.6:
            cm.ProgramMembership.objects.create(customer=customer, program=program, tier=rng.choice(tiers))
        customers.append(customer)
    return {"customers": customers, "boundaries": boundaries, "labels": labels, "vendors": vendors}


FILTER_CHOICES = {
    "status": ["LIVE", "UPCOMING", "ENDED", "LIVE,ENDED", "UPCOMING,LIVE"],
    "includeExpired": ["true", "false"],
    "activationStatus": ["ENABLED", "DISABLED", "ALL"],
    "redemptionType": ["VOUCHER", "VOUCHER,MILES"],
    "minPoints": ["100", "400"],
    "maxPoints": ["600", "1000"],
    "minCash": ["100"],
    "category": ["cat0", "cat1,cat2"],
    "groupName": ["group1"],
    "createdOnDaysAgo": ["0", "1", "3", "20"],
    "sortBy": ["points", "cash", "startDate", "endDate"],
    "orderBy": ["ASC", "DESC"],
    "page": ["0", "1", "2", "5"],
    "size": ["3", "7", "20"],
}


def test_indexed_answers_are_the_database_answers(api, org, brand, settings):
    rng = random.Random(20261122)
    org.time_zone = "America/Los_Angeles"  # createdOnDaysAgo counts the org's days
    org.save()
    now = timezone.now().replace(microsecond=500_000)
    world = random_world(org, brand, rng, now)
    near = datetime.timedelta(microseconds=1)
    edges = rng.sample(world["boundaries"], 4)  # on a start or an end, and a microsecond either side
    instants = [now, now + DAY / 3, now - 2 * DAY, *edges, *(e - near for e in edges[:2]), *(e + near for e in edges[2:])]
    extra = {"label": [str(world["labels"][0].pk)], "vendorId": [f"{world['vendors'][0].pk},{world['vendors'][1].pk}"]}
    choices = {**FILTER_CHOICES, **extra}
    compared = 0
    for instant, customer in itertools.product(instants, world["customers"]):
        for _ in range(6):
            params = {name: rng.choice(values) for name, values in choices.items() if rng.random() < 0.3}
            if "minPoints" in params and "maxPoints" in params and int(params["minPoints"]) > int(params["maxPoints"]):
                del params["maxPoints"]
            with mock.patch("catalogue.api.views.timezone.now", return_value=instant):
                settings.LIST_INDEX = False
                expected = listed(api, customer, **params)
                settings.LIST_INDEX = True
                got = listed(api, customer, **params)
            assert got == expected, (instant, customer.pk, params)
            compared += 1
    assert compared == len(instants) * len(world["customers"]) * 6


# ---------------------------------------------------------------- freshness


def test_time_passing_is_seen_with_an_unchanged_catalogue(api, brand, customer):
    now = timezone.now()
    ending = f.RewardFactory(brand=brand, start_time=now - DAY, end_time=now + datetime.timedelta(seconds=10))
    starting = f.RewardFactory(brand=brand, start_time=now + datetime.timedelta(seconds=5), end_time=now + DAY)
    before = version()
    with mock.patch("catalogue.api.views.timezone.now", return_value=now):
        body = listed(api, customer, includeExpired="true")
        assert {r["id"]: (r["started"], r["expired"]) for r in body["rewardList"]} == {
            ending.pk: (True, False), starting.pk: (False, False)}
        assert [r["id"] for r in listed(api, customer, status="LIVE")["rewardList"]] == [ending.pk]
    with mock.patch("catalogue.api.views.timezone.now", return_value=now + datetime.timedelta(seconds=10)):
        body = listed(api, customer, includeExpired="true")
        assert {r["id"]: (r["started"], r["expired"]) for r in body["rewardList"]} == {
            ending.pk: (True, True), starting.pk: (True, False)}
        assert [r["id"] for r in listed(api, customer, status="LIVE")["rewardList"]] == [starting.pk]
        assert [r["id"] for r in listed(api, customer)["rewardList"]] == [starting.pk]
    assert version() == before


@pytest.mark.django_db(transaction=True)
def test_changes_committed_elsewhere_show_on_the_next_call_and_uncommitted_ones_never(api, brand, customer):
    reward = f.RewardFactory(brand=brand, name="before")
    assert [r["name"] for r in listed(api, customer)["rewardList"]] == ["before"]
    assert [r["name"] for r in listed(api, customer)["rewardList"]] == ["before"]  # from the index

    def in_another_connection(fn):
        errors = []

        def run():
            try:
                fn()
            except BaseException as error:  # noqa: BLE001  (re-raised below)
                errors.append(error)
            finally:
                connection.close()

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(30)
        assert not errors, errors

    # Raw SQL, committed: no ORM signal, the trigger alone tells.
    in_another_connection(lambda: connection.cursor().execute(
        "UPDATE catalogue_reward SET name = 'raw' WHERE id = %s", [reward.pk]))
    assert [r["name"] for r in listed(api, customer)["rewardList"]] == ["raw"]

    # Held open in another transaction: not seen; seen once committed.
    written, release = threading.Event(), threading.Event()

    def held():
        with transaction.atomic():
            cm.Reward.objects.filter(pk=reward.pk).update(name="held")
            f.PaymentConfigFactory(reward=reward, mode=PaymentMode.POINTS, points=Decimal(70))
            written.set()
            assert release.wait(30)

    thread = threading.Thread(target=lambda: (held(), connection.close()))
    thread.start()
    assert written.wait(30)
    body = listed(api, customer)
    assert [(r["name"], r["paymentConfigs"]) for r in body["rewardList"]] == [("raw", [])]
    release.set()
    thread.join(30)
    body = listed(api, customer)
    assert [r["name"] for r in body["rewardList"]] == ["held"]
    assert [c["points"] for c in body["rewardList"][0]["paymentConfigs"]] == [70]


@pytest.mark.django_db(transaction=True)
def test_a_listing_refresh_and_a_catalogue_writer_queue_on_the_version_instead_of_deadlocking(brand, run_concurrently):
    """A refresh locks rewards before it writes them; a config write takes the version first and
    then refreshes the same rewards. The refresh takes the version before its row locks, so the
    two wait for each other in one order only (without it: "deadlock detected" after 1 s)."""
    rewards = [f.RewardFactory(brand=brand) for _ in range(3)]
    from catalogue.services import reward_listing_refresh

    def work(i: int):
        for _ in range(15):
            with transaction.atomic():
                if i == 0:
                    reward_listing_refresh(reward_ids=[r.pk for r in rewards])
                else:
                    f.PaymentConfigFactory(reward=rewards[1], mode=PaymentMode.POINTS, points=Decimal(10))
        return "ok"

    assert run_concurrently(work, threads=2) == ["ok", "ok"]


def test_threads_of_a_process_build_a_missing_entry_once():
    cache, made, started = list_index.LRU(4), [], threading.Event()

    def make():
        made.append(1)
        started.wait(1)
        return "index"

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get_or_set("k", make))) for _ in range(4)]
    for thread in threads:
        thread.start()
    started.set()
    for thread in threads:
        thread.join(10)
    assert results == ["index"] * 4 and made == [1]


def test_a_reward_object_is_the_text_its_body_encodes_to(api, org, brand, customer):
    """The list writes each reward object from JSON text kept around its per-call fields: the
    text is exactly what encoding the whole object gives, field order included."""
    from catalogue.api import serializers
    from catalogue.selectors import with_list_details
    from issuance import jsonio
    from issuance.limits import LimitState, Window

    reward = f.RewardFactory(brand=brand, name='quote " and ü', custom_fields={"k": "v"})
    f.PaymentConfigFactory(reward=reward, mode=PaymentMode.POINTS, points=Decimal("12.5000"))
    limit = cm.RewardConstraint.objects.create(org=org, reward=reward, level="CUSTOMER", frequency=Frequency.DAYS,
                                               limit_value=5)
    loaded = with_list_details(cm.Reward.objects.filter(pk=reward.pk)).get()
    usages = {limit.pk: LimitState(limit, Window(None, None), Decimal(2))}
    now = timezone.now()
    whole = serializers._static_body(loaded)
    whole.update(expired=reward.end_time <= now, started=reward.start_time <= now,
                 rewardRestrictions=serializers.restrictions_body([limit], usages))
    listed = serializers.ListedReward.of(loaded)
    text = serializers.reward_text(listed, now=now, usages=usages)
    assert text == jsonio.dumps(whole)
    assert list(jsonio.loads(text)) == list(whole)  # the order of the fields
    # The limit's text is kept on its object per (consumed, isValid): another customer's
    # consumption gets its own text, and the first one's is still its own.
    for consumed in (Decimal(5), Decimal("2.0"), Decimal(0), Decimal(5)):
        other = {limit.pk: LimitState(listed.constraints[0], Window(None, None), consumed)}
        whole.update(rewardRestrictions=serializers.restrictions_body(listed.constraints, other))
        assert serializers.reward_text(listed, now=now, usages=other) == jsonio.dumps(whole)
    assert jsonio.loads(serializers.reward_text(listed, now=now, usages=other))["rewardRestrictions"]["isValid"] is False


# ---------------------------------------------------------------- the statements of a call


def own_statements(api, customer, **params) -> tuple[int, dict]:
    """The statements a list call makes in all, and its body. Every caller has made a list
    call before with the same credentials: the principal is kept (issuance.api.kept_principals),
    its authentication re-checked inside the call's first statement."""
    with CaptureQueriesContext(connection) as ctx:
        body = listed(api, customer, **params)
    return len(ctx.captured_queries), body


def test_a_warm_call_reads_the_limits_in_its_first_statement(api, org, brand, customer, account, settings):
    """A warm call reads the catalogue version, the customer, its facts and its consumption of
    the org-level limits and of its page's own limits in ONE statement. The figures are the
    database path's, before and after the org-level limit changes (the version moves: the
    statement assumed the old one, so the consumption is read again with the new limit)."""
    gift = f.RewardFactory(brand=brand, redemption_type=RedemptionType.GIFT_CARD)
    f.PaymentConfigFactory(reward=gift, mode=PaymentMode.POINTS, points=Decimal(5))
    limited = f.RewardFactory(brand=brand, redemption_type=RedemptionType.MILES)
    own_limit = cm.RewardConstraint.objects.create(org=org, reward=limited, level=ConstraintLevel.CUSTOMER,
                                                   frequency=Frequency.DAYS, limit_value=5)
    org_limit = cm.RewardConstraint.objects.create(org=org, redemption_type=RedemptionType.GIFT_CARD,
                                                   level=ConstraintLevel.CUSTOMER_REDEMPTION_TYPE,
                                                   frequency=Frequency.MONTHS, limit_value=3)
    for issued in (gift, gift, limited):
        response = api.post(ISSUE_SINGLE.format(issued.pk), {"mobile": customer.mobile}, format="json")
        assert response.status_code == 200, response.content

    def database_body(**params):
        settings.LIST_INDEX = False
        try:
            return listed(api, customer, **params)
        finally:
            settings.LIST_INDEX = True

    def org_level(body):
        return [(e["rewardConstraintId"], e["constraintLimitValue"], e["consumed"], e["isValid"])
                for e in body["orgLevelRestrictions"]["customerRedemptionTypeLevel"]]

    listed(api, customer, redemptionType="GIFT_CARD")  # builds the index, keeps the org-level limits
    count, body = own_statements(api, customer, redemptionType="GIFT_CARD")
    assert count == 1
    assert [r["id"] for r in body["rewardList"]] == [gift.pk]
    assert org_level(body) == [(org_limit.pk, 3, 2, True)]
    assert body == database_body(redemptionType="GIFT_CARD")

    assert listed(api, customer) == database_body()  # the other filters' index, `limited` rendered
    count, body = own_statements(api, customer)
    assert count == 1  # the page shows `limited`: its own limit was expected too
    assert {r["id"]: [(e["rewardConstraintId"], e["consumed"]) for e in r["rewardRestrictions"]["customerLevel"]]
            for r in body["rewardList"] if r["rewardRestrictions"]["customerLevel"]} == {limited.pk: [(own_limit.pk, 1)]}
    assert org_level(body) == [(org_limit.pk, 3, 2, True)]
    assert body == database_body()

    cm.RewardConstraint.objects.filter(pk=org_limit.pk).update(limit_value=2)  # the version moves
    count, body = own_statements(api, customer, redemptionType="GIFT_CARD")
    assert org_level(body) == [(org_limit.pk, 2, 2, False)]
    assert body == database_body(redemptionType="GIFT_CARD")
    count, body = own_statements(api, customer, redemptionType="GIFT_CARD")
    assert count == 1 and org_level(body) == [(org_limit.pk, 2, 2, False)]



def test_limits_of_rewards_the_customer_cannot_see_are_read_but_not_shown(api, org, brand, customer, settings):
    """The first statement reads the limits of every reward that could be on the page for some
    customer (targeted rewards among the first untargeted ones); what the page shows is this
    customer's. More limits than ``EXPECTED_REWARD_LIMITS`` in that window: read after the page."""
    segment = f.SegmentFactory(org=org)
    theirs = f.PartitionFactory(segment=segment)
    now = timezone.now()
    rewards = []
    for i in range(6):  # newest first: targeted (at a partition the customer is not in) and not, alternately
        reward = f.RewardFactory(brand=brand, name=f"r{i}", created_at=now - i * datetime.timedelta(hours=1))
        if i % 2 == 0:
            cm.RewardSegmentTarget.objects.create(reward=reward, partition=theirs)
        cm.RewardConstraint.objects.create(org=org, reward=reward, level=ConstraintLevel.REWARD,
                                           frequency=Frequency.DAYS, limit_value=5)
        rewards.append(reward)
    other = f.CustomerFactory(org=org, mobile="9111111111")
    cm.SegmentMembership.objects.create(customer=other, partition=theirs)

    def database_body(who, **params):
        settings.LIST_INDEX = False
        try:
            return listed(api, who, **params)
        finally:
            settings.LIST_INDEX = True

    assert listed(api, other, size=2) == database_body(other, size=2)  # builds the index, renders r0, r1
    count, body = own_statements(api, customer, size=2)
    assert count == 1 + 10  # r3 rendered now (the reward and 9 kinds of rows); every limit expected
    assert [r["name"] for r in body["rewardList"]] == ["r1", "r3"]
    count, body = own_statements(api, customer, size=2)
    assert count == 1 and body == database_body(customer, size=2)  # r0's and r2's limits read, not shown
    assert [r["name"] for r in body["rewardList"]] == ["r1", "r3"]
    count, body = own_statements(api, other, size=2)
    assert count == 1 and body == database_body(other, size=2)
    assert [r["name"] for r in body["rewardList"]] == ["r0", "r1"]

    with mock.patch.object(list_index, "EXPECTED_REWARD_LIMITS", 1):
        count, body = own_statements(api, customer, size=2)
    assert count == 2 and body == database_body(customer, size=2)
