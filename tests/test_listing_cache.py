"""The rewards' listing cache (Reward.list_points, list_cash, targeting; docs/list-api.md,
"Prices and targeting"): every write path keeps it equal to the rules
(catalogue.selectors.LISTING_CACHE), and the list's eligibility filter, which reads the
cached targeting kind, agrees with the engine's reward_refusal, which reads the link rows."""

import copy
import itertools
import threading
import time
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.utils import timezone

from catalogue import models as cm
from catalogue.catalogue_io.importer import catalogue_import
from catalogue.choices import CardStatus, MembershipStatus, PaymentMode, RedemptionType, TargetingKind
from catalogue.selectors import reward_listing_drift, rewards_available_to
from catalogue.services import reward_listing_refresh
from issuance.eligibility import customer_facts, reward_refusal, reward_targets
from tests import factories as f
from tests.test_admin import _url, add_inline_row, page_data, reward_add_data
from tests.test_import_export import good_doc

pytestmark = pytest.mark.django_db


def cache(reward) -> tuple:
    """(list_points, list_cash, targeting) as stored, after checking the whole table agrees
    with the rules."""
    assert reward_listing_drift() == []
    return tuple(cm.Reward.objects.filter(pk=reward.pk).values_list("list_points", "list_cash", "targeting").get())


NONE, SEGMENTS, CARD_SERIES, LABELS, TIERS, MIXED = (
    TargetingKind.NONE, TargetingKind.SEGMENTS, TargetingKind.CARD_SERIES, TargetingKind.LABELS, TargetingKind.TIERS,
    TargetingKind.MIXED,
)


# ---------------------------------------------------------------- the list agrees with the engine


@pytest.fixture
def targeting_world(org, brand):
    """Rewards of every targeting kind (and a MIXED one, which R6 forbids but the schema
    allows), and customers holding every combination of the facts they look at."""
    segment = f.SegmentFactory(org=org)
    p1, p2, p3 = (f.PartitionFactory(segment=segment) for _ in range(3))
    s1, s2 = (f.CardSeriesFactory(org=org) for _ in range(2))
    l1, l2 = (f.LabelFactory(org=org) for _ in range(2))
    program = cm.Program.objects.create(org=org, name="Loyalty")
    silver, gold = (cm.Tier.objects.create(program=program, name=n, serial=i) for i, n in enumerate(("S", "G"), 1))

    rewards = {name: f.RewardFactory(brand=brand, name=name) for name in (
        "open", "seg_p1_p2", "seg_p3", "card_s1", "label_l1_l2", "tier_gold", "mixed_label_tier", "mixed_all")}
    for partition in (p1, p2):
        cm.RewardSegmentTarget.objects.create(reward=rewards["seg_p1_p2"], partition=partition)
    rewards["seg_p3"].target_partitions.add(p3)
    rewards["card_s1"].card_series.add(s1)
    rewards["label_l1_l2"].labels.add(l1, l2)
    rewards["tier_gold"].target_tiers.add(gold)
    rewards["mixed_label_tier"].labels.add(l2)
    rewards["mixed_label_tier"].target_tiers.add(gold)
    rewards["tier_silver"] = f.RewardFactory(brand=brand, name="tier_silver")
    rewards["tier_silver"].target_tiers.add(silver)
    cm.RewardSegmentTarget.objects.create(reward=rewards["mixed_all"], partition=p1)
    rewards["mixed_all"].card_series.add(s2)
    rewards["mixed_all"].labels.add(l1)
    rewards["mixed_all"].target_tiers.add(gold)

    facts = {  # every subset of these, one customer each
        "in p1": lambda c: cm.SegmentMembership.objects.create(customer=c, partition=p1),
        "in p3": lambda c: cm.SegmentMembership.objects.create(customer=c, partition=p3),
        "card s1": lambda c: cm.Card.objects.create(series=s1, customer=c, number=f"1{c.pk:09d}"),
        "suspended card s2": lambda c: cm.Card.objects.create(series=s2, customer=c, number=f"2{c.pk:09d}",
                                                              status=CardStatus.SUSPENDED),
        "label l2": lambda c: cm.CustomerLabel.objects.create(customer=c, label=l2),
        "inactive label l1": lambda c: cm.CustomerLabel.objects.create(customer=c, label=l1,
                                                                       status=MembershipStatus.INACTIVE),
        "gold": lambda c: cm.ProgramMembership.objects.create(customer=c, program=program, tier=gold),
    }
    customers = []
    for size in range(len(facts) + 1):
        for held in itertools.combinations(facts, size):
            customer = f.CustomerFactory(org=org)
            for name in held:
                facts[name](customer)
            customers.append(customer)
    return rewards, customers


def test_the_lists_eligible_set_is_the_engines_for_every_kind_and_customer(brand, targeting_world):
    rewards, customers = targeting_world
    assert {name: cache(r)[2] for name, r in rewards.items()} == {
        "open": NONE, "seg_p1_p2": SEGMENTS, "seg_p3": SEGMENTS, "card_s1": CARD_SERIES, "label_l1_l2": LABELS,
        "tier_gold": TIERS, "mixed_label_tier": MIXED, "mixed_all": MIXED, "tier_silver": TIERS,
    }
    now = timezone.now()
    loaded = list(cm.Reward.objects.filter(brand=brand))
    targets = reward_targets(r.pk for r in loaded)
    seen = set()
    for customer in customers:
        facts = customer_facts(customer)
        engine = {r.pk for r in loaded if reward_refusal(r, facts=facts, targets=targets, now=now) is None}
        listed = set(rewards_available_to(customer=customer, brand=brand).values_list("pk", flat=True))
        assert listed == engine, customer
        seen.add(frozenset(listed))
    assert len(seen) > 10  # the facts really change what is eligible
    assert all(rewards["open"].pk in s for s in seen)


# ---------------------------------------------------------------- every write path keeps the cache


def test_factory_config_save_delete_and_intouch_points_edit(brand):
    reward = f.RewardFactory(brand=brand, intouch_points=Decimal("10"))
    assert cache(reward) == (Decimal("10"), None, NONE)  # no config: intouch_points
    points = f.PaymentConfigFactory(reward=reward, mode=PaymentMode.POINTS, points=Decimal("70"))
    assert cache(reward) == (Decimal("70"), None, NONE)
    mixed = f.PaymentConfigFactory(reward=reward, mode=PaymentMode.POINTS_CASH, points=Decimal("40"),
                                   cash_amount=Decimal("3.50"))
    assert cache(reward) == (Decimal("40"), Decimal("3.50"), NONE)
    mixed.points = Decimal("90")
    mixed.save()
    assert cache(reward) == (Decimal("70"), Decimal("3.50"), NONE)
    points.delete()
    mixed.delete()
    assert cache(reward) == (Decimal("10"), None, NONE)
    reward.intouch_points = Decimal("25")
    reward.save()
    assert cache(reward) == (Decimal("25"), None, NONE)
    cm.Reward.objects.get(pk=reward.pk).save(update_fields=["intouch_points"])
    assert cache(reward) == (Decimal("25"), None, NONE)


def test_free_cash_and_conversion_ratio_prices(brand):
    free = f.PaymentConfigFactory(reward__brand=brand, mode=PaymentMode.FREE, points=None).reward
    cash = f.PaymentConfigFactory(reward__brand=brand, mode=PaymentMode.CASH, points=None,
                                  cash_amount=Decimal("5")).reward
    ratio = f.PaymentConfigFactory(reward__brand=brand, reward__redemption_type=RedemptionType.MILES,
                                   mode=PaymentMode.CONV_RATIO, points=None, conversion_ratio=Decimal("0.5")).reward
    assert cache(free)[:2] == (Decimal("0"), None)
    assert cache(cash)[:2] == (None, Decimal("5"))
    assert cache(ratio)[:2] == (None, None)


def test_m2m_add_remove_clear_from_both_sides(org, brand):
    reward = f.RewardFactory(brand=brand)
    label, series = f.LabelFactory(org=org), f.CardSeriesFactory(org=org)
    program = cm.Program.objects.create(org=org, name="P")
    tier = cm.Tier.objects.create(program=program, name="Gold")
    partition = f.PartitionFactory(segment__org=org)

    reward.labels.add(label)
    assert cache(reward)[2] == LABELS
    label.rewards.remove(reward)
    assert cache(reward)[2] == NONE
    series.rewards.add(reward)
    assert cache(reward)[2] == CARD_SERIES
    reward.card_series.clear()
    assert cache(reward)[2] == NONE
    tier.targeted_rewards.add(reward)
    assert cache(reward)[2] == TIERS
    reward.labels.set([label])
    assert cache(reward)[2] == MIXED
    tier.targeted_rewards.clear()
    assert cache(reward)[2] == LABELS
    reward.labels.remove(label)
    reward.target_partitions.add(partition)  # the manager of the RewardSegmentTarget table
    assert cache(reward)[2] == SEGMENTS
    partition.targeted_rewards.clear()
    assert cache(reward)[2] == NONE
    target = cm.RewardSegmentTarget.objects.create(reward=reward, partition=partition)
    assert cache(reward)[2] == SEGMENTS
    target.delete()
    assert cache(reward)[2] == NONE


def test_deleting_a_target_refreshes_the_rewards_it_targeted(org, brand):
    label = f.LabelFactory(org=org)
    labelled = f.RewardFactory(brand=brand)
    labelled.labels.add(label)
    segment = f.SegmentFactory(org=org)
    segmented = f.RewardFactory(brand=brand)
    cm.RewardSegmentTarget.objects.create(reward=segmented, partition=f.PartitionFactory(segment=segment))
    program = cm.Program.objects.create(org=org, name="P")
    tiered = f.RewardFactory(brand=brand)
    tiered.target_tiers.add(cm.Tier.objects.create(program=program, name="Gold"))
    series = f.CardSeriesFactory(org=org)
    carded = f.RewardFactory(brand=brand)
    carded.card_series.add(series)
    assert [cache(r)[2] for r in (labelled, segmented, tiered, carded)] == [LABELS, SEGMENTS, TIERS, CARD_SERIES]

    label.delete()
    segment.delete()  # its partitions, and their reward targets, go with it
    program.delete()  # its tiers too
    series.delete()
    assert [cache(r)[2] for r in (labelled, segmented, tiered, carded)] == [NONE, NONE, NONE, NONE]


def test_admin_add_and_change_with_inlines(admin_client):
    shop = f.BrandFactory(name="SHOP")
    data = reward_add_data(admin_client, shop, intouch_points="5")
    add_inline_row(data, "payment_configs", {"mode": "POINTS", "points": "100"})
    add_inline_row(data, "payment_configs", {"mode": "POINTS_CASH", "points": "50", "cash_amount": "2.50"})
    response = admin_client.post(_url(cm.Reward, "add"), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    reward = cm.Reward.objects.get()
    assert cache(reward) == (Decimal("50"), Decimal("2.50"), NONE)

    # Change page: drop the POINTS_CASH config, raise the other, target a partition.
    partition = f.PartitionFactory(segment__org=shop.org)
    data = page_data(admin_client.get(_url(cm.Reward, "change", reward.pk)))
    configs = {data[f"payment_configs-{i}-mode"]: i for i in range(2)}
    data[f"payment_configs-{configs['POINTS_CASH']}-DELETE"] = "on"
    data[f"payment_configs-{configs['POINTS']}-points"] = "120"
    add_inline_row(data, "segment_targets", {"partition": str(partition.pk)})
    response = admin_client.post(_url(cm.Reward, "change", reward.pk), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert cache(reward) == (Decimal("120"), None, SEGMENTS)

    # Then: no config left (priced by intouch_points), the segment target replaced by a label.
    label = f.LabelFactory(org=shop.org)
    data = page_data(admin_client.get(_url(cm.Reward, "change", reward.pk)))
    data["payment_configs-0-DELETE"] = "on"
    data["segment_targets-0-DELETE"] = "on"
    data["intouch_points"] = "8"
    data["labels"] = [str(label.pk)]
    response = admin_client.post(_url(cm.Reward, "change", reward.pk), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert cache(reward) == (Decimal("8"), None, LABELS)


def test_importer_refreshes_every_reward_of_the_file(db):
    catalogue_import(document=good_doc())
    stored = {pk: (p, c, t) for pk, p, c, t in cm.Reward.objects.values_list("pk", "list_points", "list_cash",
                                                                              "targeting")}
    assert reward_listing_drift() == []
    assert stored[311509] == (None, None, SEGMENTS)  # CONV_RATIO only: no points price
    assert stored[125099] == (Decimal("10"), None, LABELS)  # no config: intouchPoints
    assert stored[500201] == (Decimal("500"), None, CARD_SERIES)
    assert stored[500103] == (Decimal("60"), Decimal("20.50"), TIERS)
    assert stored[225087] == (Decimal("0"), None, NONE)  # FREE

    doc = copy.deepcopy(good_doc())
    rewards = {r["id"]: r for r in doc["rewards"]}
    rewards[125099]["labelIds"] = []
    rewards[125099]["intouchPoints"] = 15
    rewards[500103]["paymentConfigs"] = [{"id": 456, "paymentMode": "POINTS", "points": 100}]
    rewards[500201]["paymentConfigs"][0]["points"] = 450
    catalogue_import(document=doc)
    stored = {pk: (p, c, t) for pk, p, c, t in cm.Reward.objects.values_list("pk", "list_points", "list_cash",
                                                                              "targeting")}
    assert reward_listing_drift() == []
    assert stored[125099] == (Decimal("15"), None, NONE)
    assert stored[500103] == (Decimal("100"), None, TIERS)
    assert stored[500201] == (Decimal("450"), None, CARD_SERIES)


def test_check_catalogue_reports_and_fixes_drift(brand, capsys):
    reward = f.PaymentConfigFactory(reward__brand=brand, points=Decimal("30")).reward
    call_command("check_catalogue")
    assert "listing cache ok" in capsys.readouterr().out
    # Writes that bypass the write paths: the cache drifts, and the check says so.
    cm.PaymentConfig.objects.filter(reward=reward).update(points=Decimal("20"))
    cm.Reward.objects.filter(pk=reward.pk).update(targeting=TargetingKind.LABELS)
    with pytest.raises(CommandError) as info:
        call_command("check_catalogue")
    assert info.value.returncode == 1
    err = capsys.readouterr().err
    assert f"reward {reward.pk}: list_points is 30" in err and "the rule says 20" in err
    assert f"reward {reward.pk}: targeting is LABELS, the rule says NONE" in err
    with pytest.raises(CommandError):
        call_command("check_catalogue", "--fix")
    call_command("check_catalogue")
    assert cache(reward) == (Decimal("20"), None, NONE)


def test_refresh_takes_ids_or_a_queryset(brand):
    rewards = [f.RewardFactory(brand=brand) for _ in range(3)]
    cm.Reward.objects.update(list_points=None, targeting=TargetingKind.MIXED)
    assert len(reward_listing_drift()) == 6
    assert reward_listing_refresh(reward_ids=[rewards[0].pk, rewards[0].pk, 10**12]) == 1
    assert len(reward_listing_drift()) == 4
    assert reward_listing_refresh(rewards=cm.Reward.objects.filter(brand=brand)) == 3
    assert reward_listing_drift() == []
    with pytest.raises(TypeError):
        reward_listing_refresh()


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_of_one_reward_leave_the_newest_view(brand):
    """The refresh locks the reward before its UPDATE, so the UPDATE of the second writer
    reads what the first committed meanwhile (READ COMMITTED). Without the lock it computed
    from a snapshot taken before the first commit and left 30 instead of 20."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only (SQLite has one writer at a time)")
    reward = f.RewardFactory(brand=brand, intouch_points=Decimal("10"))
    first_holds_the_lock, release = threading.Event(), threading.Event()
    errors = []

    def run(work):
        try:
            work()
        except Exception as exc:  # noqa: BLE001  (reported by the assertion below)
            errors.append(exc)
        finally:
            connection.close()

    def first():
        with transaction.atomic():
            f.PaymentConfigFactory(reward=reward, points=Decimal("20"))
            first_holds_the_lock.set()
            assert release.wait(10)

    def second():
        assert first_holds_the_lock.wait(10)
        f.PaymentConfigFactory(reward=reward, points=Decimal("30"))  # waits for the first to commit

    threads = [threading.Thread(target=run, args=(work,)) for work in (first, second)]
    for thread in threads:
        thread.start()
    assert first_holds_the_lock.wait(10)
    time.sleep(0.5)  # the second writer is now waiting on the reward's row lock
    release.set()
    for thread in threads:
        thread.join(20)
    assert not errors
    assert cache(reward) == (Decimal("20"), None, NONE)
