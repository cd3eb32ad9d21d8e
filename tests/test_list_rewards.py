"""The list API (R11): GET …/v1/user/reward/brand/{brandName}?userId=…

Every filter alone and combined, sorting, paging edges, eligibility (the bulk page's
segment table, cards, labels, tiers), every error, the exact shape of a reward object,
the consumption shown next to the limits, and a query count that does not grow with the
page or with what each reward links to."""

import datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from catalogue import models as cm
from catalogue.choices import (
    CardStatus,
    ConstraintKpi,
    ConstraintLevel,
    Frequency,
    MediaKind,
    MembershipStatus,
    PaymentMode,
    RedemptionType,
    WindowType,
)
from catalogue.selectors import constraint_consumption
from catalogue.services import reward_listing_refresh
from issuance import limits
from tests import factories as f
from tests.conftest import ISSUE_BULK, ISSUE_SINGLE, api_user_for, basic_auth

pytestmark = pytest.mark.django_db

URL = "/api_gateway/rewards/core/v1/user/reward/brand/{}"
DAY = datetime.timedelta(days=1)


def get(api, customer, brand="BUKL", **params):
    query = {"userId": customer.pk if customer is not None else None, **params}
    return api.get(URL.format(brand), {k: v for k, v in query.items() if v is not None})


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [r["id"] for r in response.json()["rewardList"]]


def status_of(response) -> dict:
    return response.json()["status"]


def bad(response) -> str:
    assert response.status_code == 400, response.content
    body = status_of(response)
    assert body["success"] is False and body["code"] == 400
    return body["message"]


def reward(brand, **kwargs):
    return f.RewardFactory(brand=brand, **kwargs)


def points_reward(brand, points, **kwargs):
    r = reward(brand, **kwargs)
    f.PaymentConfigFactory(reward=r, mode=PaymentMode.POINTS, points=Decimal(points))
    return r


# ---------------------------------------------------------------- what is listed


def test_lists_the_brands_rewards_newest_first(api, customer, brand):
    rewards = [reward(brand) for _ in range(3)]
    response = get(api, customer)
    assert ids(response) == [r.pk for r in reversed(rewards)]
    assert status_of(response) == {"success": True, "code": 200, "message": "Rewards fetched successfully"}


def test_other_brands_and_other_orgs_rewards_are_not_listed(api, org, customer, brand):
    mine = reward(brand)
    reward(f.BrandFactory(org=org, name="OTHER"))
    reward(f.BrandFactory(name="BUKL"))  # same name, another org
    assert ids(get(api, customer)) == [mine.pk]


def test_trailing_slash_and_head_are_accepted(api, customer, brand):
    r = reward(brand)
    assert ids(api.get(URL.format("BUKL") + "/", {"userId": customer.pk})) == [r.pk]
    assert api.head(URL.format("BUKL"), {"userId": customer.pk}).status_code == 200


# ---------------------------------------------------------------- each filter alone


@pytest.fixture
def timeline(brand):
    now = timezone.now()
    return {
        "live": reward(brand, name="live", start_time=now - 5 * DAY, end_time=now + 5 * DAY),
        "upcoming": reward(brand, name="upcoming", start_time=now + 2 * DAY, end_time=now + 9 * DAY),
        "ended": reward(brand, name="ended", start_time=now - 9 * DAY, end_time=now - 2 * DAY),
    }


def test_ended_rewards_are_hidden_unless_include_expired(api, customer, timeline):
    assert set(ids(get(api, customer))) == {timeline["live"].pk, timeline["upcoming"].pk}
    assert set(ids(get(api, customer, includeExpired="true"))) == {r.pk for r in timeline.values()}
    assert set(ids(get(api, customer, includeExpired="false"))) == {timeline["live"].pk, timeline["upcoming"].pk}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("LIVE", {"live"}),
        ("UPCOMING", {"upcoming"}),
        ("ENDED", {"ended"}),  # an explicit ENDED needs no includeExpired=true
        ("LIVE,ENDED", {"live", "ended"}),
        ("UPCOMING, LIVE", {"upcoming", "live"}),
    ],
)
def test_status_filter(api, customer, timeline, status, expected):
    assert set(ids(get(api, customer, status=status))) == {timeline[n].pk for n in expected}


def test_status_given_as_repeated_parameters(api, customer, timeline):
    response = api.get(URL.format("BUKL") + f"?userId={customer.pk}&status=LIVE&status=UPCOMING")
    assert set(ids(response)) == {timeline["live"].pk, timeline["upcoming"].pk}


def test_activation_status_filter(api, customer, brand):
    on = reward(brand, enabled=True)
    off = reward(brand, enabled=False)
    assert ids(get(api, customer)) == [on.pk]
    assert ids(get(api, customer, activationStatus="ENABLED")) == [on.pk]
    assert ids(get(api, customer, activationStatus="DISABLED")) == [off.pk]
    assert ids(get(api, customer, activationStatus="ALL")) == [off.pk, on.pk]


def test_group_name_filter(api, org, customer, brand):
    fuel = cm.RewardGroup.objects.create(org=org, name="fuel", rank=1)
    food = cm.RewardGroup.objects.create(org=org, name="food", rank=2)
    a, b, c = reward(brand), reward(brand), reward(brand)
    a.groups.add(fuel)
    b.groups.add(food, fuel)  # in both: listed once
    assert ids(get(api, customer, groupName="fuel")) == [b.pk, a.pk]
    assert ids(get(api, customer, groupName="food")) == [b.pk]
    assert ids(get(api, customer, groupName="food,fuel")) == [b.pk, a.pk]
    assert ids(get(api, customer, groupName="nothing")) == []
    assert c.pk in ids(get(api, customer))


def test_label_filter_takes_label_ids(api, org, customer, brand):
    gold, silver = f.LabelFactory(org=org), f.LabelFactory(org=org)
    for label in (gold, silver):
        cm.CustomerLabel.objects.create(customer=customer, label=label, status=MembershipStatus.ACTIVE)
    a, b = reward(brand), reward(brand)
    reward(brand)
    a.labels.add(gold)
    b.labels.add(silver)
    assert ids(get(api, customer, label=gold.pk)) == [a.pk]
    assert ids(get(api, customer, label=f"{gold.pk},{silver.pk}")) == [b.pk, a.pk]


def test_category_filter_takes_names(api, org, customer, brand):
    fuel = f.CategoryFactory(org=org, name="fuel")
    food = f.CategoryFactory(org=org, name="food")
    a, b = reward(brand), reward(brand)
    reward(brand)
    a.categories.add(fuel)
    b.categories.add(food)
    assert ids(get(api, customer, category="fuel")) == [a.pk]
    assert ids(get(api, customer, category="fuel,food")) == [b.pk, a.pk]


def test_redemption_type_filter(api, customer, brand):
    miles = reward(brand, redemption_type=RedemptionType.MILES)
    vendor = reward(brand, redemption_type=RedemptionType.VENDOR_ONLY_REWARD)
    reward(brand, redemption_type=RedemptionType.VOUCHER)
    assert ids(get(api, customer, redemptionType="MILES")) == [miles.pk]
    assert ids(get(api, customer, redemptionType="VENDOR_ONLY_REWARD,MILES")) == [vendor.pk, miles.pk]


def test_vendor_id_filter(api, org, customer, brand):
    v1, v2 = f.VendorFactory(org=org), f.VendorFactory(org=org)
    a, b = reward(brand, vendor=v1), reward(brand, vendor=v2)
    reward(brand)
    assert ids(get(api, customer, vendorId=v1.pk)) == [a.pk]
    assert ids(get(api, customer, vendorId=f"{v1.pk},{v2.pk}")) == [b.pk, a.pk]


def test_created_on_days_ago_filter(api, customer, brand):
    now = timezone.now()
    rewards = {}
    for days in (0, 3, 4, 5, 10):
        r = reward(brand)
        cm.Reward.objects.filter(pk=r.pk).update(created_at=now - days * DAY)
        rewards[days] = r.pk
    # On or before the day 4 days ago (UTC: the org's time zone), whatever the hour.
    assert ids(get(api, customer, createdOnDaysAgo=4)) == [rewards[4], rewards[5], rewards[10]]
    assert ids(get(api, customer, createdOnDaysAgo=0)) == [rewards[d] for d in (0, 3, 4, 5, 10)]
    assert ids(get(api, customer, createdOnDaysAgo=11)) == []


def test_created_on_days_ago_counts_days_in_the_orgs_time_zone(api, org, customer, brand):
    ist = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
    org.time_zone = "Asia/Kolkata"
    org.save()
    r = reward(brand)
    local_today = timezone.now().astimezone(ist).date()
    # 00:10 today in Kolkata is still yesterday in UTC: by the org's calendar it was created today.
    cm.Reward.objects.filter(pk=r.pk).update(created_at=datetime.datetime.combine(local_today, datetime.time(0, 10), ist))
    assert ids(get(api, customer, createdOnDaysAgo=1)) == []
    assert ids(get(api, customer, createdOnDaysAgo=0)) == [r.pk]


@pytest.fixture
def priced(brand):
    """Rewards priced every way a reward can be (R5)."""
    rewards = {
        "points_100": points_reward(brand, "100"),
        "points_cash_300": reward(brand),
        "two_configs": reward(brand),
        "no_config_750": reward(brand, intouch_points=Decimal("750")),
        "free": reward(brand, intouch_points=0),
        "cash_only": reward(brand),
        "conv_ratio": reward(brand, redemption_type=RedemptionType.MILES),
    }
    f.PaymentConfigFactory(reward=rewards["points_cash_300"], mode=PaymentMode.POINTS_CASH, points=Decimal("300"),
                           cash_amount=Decimal("20.50"))
    # Points = the lowest of the POINTS / POINTS_CASH configs (500), cash = the lowest cash (40).
    f.PaymentConfigFactory(reward=rewards["two_configs"], mode=PaymentMode.POINTS, points=Decimal("900"))
    f.PaymentConfigFactory(reward=rewards["two_configs"], mode=PaymentMode.POINTS_CASH, points=Decimal("500"),
                           cash_amount=Decimal("40"))
    f.PaymentConfigFactory(reward=rewards["free"], mode=PaymentMode.FREE, points=None)
    f.PaymentConfigFactory(reward=rewards["cash_only"], mode=PaymentMode.CASH, points=None, cash_amount=Decimal("5"))
    f.PaymentConfigFactory(reward=rewards["conv_ratio"], mode=PaymentMode.CONV_RATIO, points=None,
                           conversion_ratio=Decimal("0.35"))
    return rewards


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"minPoints": "300"}, {"points_cash_300", "two_configs", "no_config_750"}),
        ({"maxPoints": "300"}, {"points_100", "points_cash_300", "free"}),
        ({"minPoints": "100", "maxPoints": "500"}, {"points_100", "points_cash_300", "two_configs"}),
        ({"minPoints": "750", "maxPoints": "1000"}, {"no_config_750"}),
        ({"minPoints": "0", "maxPoints": "0"}, {"free"}),
        ({"maxPoints": "99.5"}, {"free"}),
        ({"minCash": "10"}, {"points_cash_300", "two_configs"}),
        ({"maxCash": "20.50"}, {"points_cash_300", "cash_only"}),
        ({"minCash": "5", "maxCash": "5"}, {"cash_only"}),
    ],
)
def test_points_and_cash_filters(api, customer, priced, params, expected):
    assert set(ids(get(api, customer, **params))) == {priced[n].pk for n in expected}


# ---------------------------------------------------------------- filters combined


def test_filters_combine_with_and(api, org, customer, brand):
    now = timezone.now()
    fuel = f.CategoryFactory(org=org, name="fuel")
    vendor = f.VendorFactory(org=org)
    wanted = points_reward(brand, 800, redemption_type=RedemptionType.VENDOR_ONLY_REWARD, vendor=vendor,
                           start_time=now + DAY, end_time=now + 9 * DAY)
    wanted.categories.add(fuel)
    near_misses = [
        points_reward(brand, 1200, redemption_type=RedemptionType.VENDOR_ONLY_REWARD, vendor=vendor,
                      start_time=now + DAY, end_time=now + 9 * DAY),  # too many points
        points_reward(brand, 800, redemption_type=RedemptionType.VOUCHER, vendor=vendor,
                      start_time=now + DAY, end_time=now + 9 * DAY),  # other type
        points_reward(brand, 800, redemption_type=RedemptionType.VENDOR_ONLY_REWARD, vendor=vendor),  # live
        points_reward(brand, 800, redemption_type=RedemptionType.VENDOR_ONLY_REWARD, vendor=vendor,
                      start_time=now + DAY, end_time=now + 9 * DAY, enabled=False),  # disabled
        points_reward(brand, 800, redemption_type=RedemptionType.VENDOR_ONLY_REWARD,
                      start_time=now + DAY, end_time=now + 9 * DAY),  # no vendor
    ]
    for r in near_misses:
        r.categories.add(fuel)
    params = {
        "redemptionType": "VENDOR_ONLY_REWARD,MILES", "activationStatus": "ENABLED", "minPoints": "750",
        "maxPoints": "1000", "status": "UPCOMING", "sortBy": "endDate", "vendorId": vendor.pk, "category": "fuel",
        "createdOnDaysAgo": "0",
    }
    assert ids(get(api, customer, **params)) == [wanted.pk]


# ---------------------------------------------------------------- sorting


def test_sort_by_points_and_cash_both_ways_unpriced_last(api, customer, priced):
    p = {name: r.pk for name, r in priced.items()}
    by_points = [p["free"], p["points_100"], p["points_cash_300"], p["two_configs"], p["no_config_750"]]
    # cash_only and conv_ratio have no points price: last in both directions (ids in the sort's direction).
    unpriced = [p["cash_only"], p["conv_ratio"]]
    assert ids(get(api, customer, sortBy="points")) == by_points + unpriced
    assert ids(get(api, customer, sortBy="points", orderBy="ASC")) == by_points + unpriced
    assert ids(get(api, customer, sortBy="points", orderBy="DESC")) == by_points[::-1] + unpriced[::-1]
    by_cash = [p["cash_only"], p["points_cash_300"], p["two_configs"]]
    rest_asc = sorted(set(p.values()) - set(by_cash))
    assert ids(get(api, customer, sortBy="cash")) == by_cash + rest_asc
    assert ids(get(api, customer, sortBy="cash", orderBy="DESC")) == by_cash[::-1] + rest_asc[::-1]


def test_sort_by_start_and_end_date(api, customer, brand):
    now = timezone.now()
    a = reward(brand, start_time=now - 3 * DAY, end_time=now + 2 * DAY)
    b = reward(brand, start_time=now - 1 * DAY, end_time=now + 9 * DAY)
    c = reward(brand, start_time=now - 2 * DAY, end_time=now + 5 * DAY)
    assert ids(get(api, customer, sortBy="startDate")) == [a.pk, c.pk, b.pk]
    assert ids(get(api, customer, sortBy="startDate", orderBy="DESC")) == [b.pk, c.pk, a.pk]
    assert ids(get(api, customer, sortBy="endDate", orderBy="ASC")) == [a.pk, c.pk, b.pk]
    assert ids(get(api, customer, sortBy="endDate", orderBy="DESC")) == [b.pk, c.pk, a.pk]


def test_default_sort_is_creation_date_and_order_by_alone_flips_it(api, customer, brand):
    now = timezone.now()
    rewards = [reward(brand) for _ in range(3)]
    for age, r in zip((5, 1, 3), rewards, strict=True):
        cm.Reward.objects.filter(pk=r.pk).update(created_at=now - age * DAY)
    newest_first = [rewards[1].pk, rewards[2].pk, rewards[0].pk]
    assert ids(get(api, customer)) == newest_first
    assert ids(get(api, customer, orderBy="DESC")) == newest_first
    assert ids(get(api, customer, orderBy="ASC")) == newest_first[::-1]


def test_ties_are_broken_by_id_so_pages_never_overlap(api, customer, brand):
    rewards = [points_reward(brand, 10) for _ in range(7)]
    seen = []
    for page in (1, 2, 3):
        seen += ids(get(api, customer, sortBy="points", page=page, size=3))
    assert seen == sorted(r.pk for r in rewards)


# ---------------------------------------------------------------- paging


@pytest.fixture
def seven(brand):
    return [r.pk for r in reversed([reward(brand) for _ in range(7)])]  # newest first


def paging(response) -> dict:
    assert response.status_code == 200, response.content
    return response.json()["pagingDto"]


def test_no_page_parameter_is_the_first_page_of_20(api, customer, brand):
    all_ids = [r.pk for r in reversed([reward(brand) for _ in range(23)])]
    response = get(api, customer)
    assert ids(response) == all_ids[:20]
    assert paging(response) == {"last": False, "totalElements": 23, "totalPages": 2, "numberOfElements": 20,
                                "first": True, "size": 20, "number": 0}
    assert get(api, customer, page=1).json() == response.json()


def test_page_n_is_the_nth_page_and_number_is_zero_based(api, customer, seven):
    response = get(api, customer, page=2, size=3)
    assert ids(response) == seven[3:6]
    assert paging(response) == {"last": False, "totalElements": 7, "totalPages": 3, "numberOfElements": 3,
                                "first": False, "size": 3, "number": 1}


def test_last_page_is_partial_and_says_so(api, customer, seven):
    response = get(api, customer, page=3, size=3)
    assert ids(response) == seven[6:]
    assert paging(response) == {"last": True, "totalElements": 7, "totalPages": 3, "numberOfElements": 1,
                                "first": False, "size": 3, "number": 2}


def test_page_past_the_end_is_empty_with_a_truthful_paging(api, customer, seven):
    response = get(api, customer, page=9, size=3)
    assert ids(response) == []
    assert paging(response) == {"last": True, "totalElements": 7, "totalPages": 3, "numberOfElements": 0,
                                "first": False, "size": 3, "number": 8}


def test_nothing_to_list(api, customer, brand):
    response = get(api, customer)
    assert ids(response) == []
    assert paging(response) == {"last": True, "totalElements": 0, "totalPages": 0, "numberOfElements": 0,
                                "first": True, "size": 20, "number": 0}
    unpaged = get(api, customer, page=0)
    assert paging(unpaged) == {"last": True, "totalElements": 0, "totalPages": 0, "numberOfElements": 0,
                               "first": True, "size": 0, "number": 0}


def test_size_above_the_cap_is_clamped(api, customer, seven, settings):
    settings.LIST_MAX_PAGE_SIZE = 5
    response = get(api, customer, size=50)
    assert ids(response) == seven[:5]
    assert paging(response)["size"] == 5 and paging(response)["totalPages"] == 2


def test_page_zero_returns_everything_unpaged(api, customer, seven):
    response = get(api, customer, page=0, size=2)  # size is ignored without pagination
    assert ids(response) == seven
    assert paging(response) == {"last": True, "totalElements": 7, "totalPages": 1, "numberOfElements": 7,
                                "first": True, "size": 7, "number": 0}


def test_page_zero_cut_by_the_ceiling_tells_the_truth(api, customer, seven, settings):
    settings.LIST_UNPAGED_CEILING = 5
    response = get(api, customer, page=0)
    assert ids(response) == seven[:5]
    assert paging(response) == {"last": False, "totalElements": 7, "totalPages": 2, "numberOfElements": 5,
                                "first": True, "size": 5, "number": 0}


# ---------------------------------------------------------------- eligibility (R6)


@pytest.fixture
def segment_world(org, brand):
    """The bulk page's tables, verbatim: r1–r4 targets and user1–user3 memberships."""
    return f.segment_tables(org, make_reward=lambda index, name: reward(brand, name=name),
                            make_customer=lambda index: f.CustomerFactory(org=org))


@pytest.mark.parametrize(
    ("user", "sees"),
    [("user1", {"r2", "r4"}), ("user2", {"r1", "r3", "r4"}), ("user3", {"r4"})],
)
def test_segment_table_of_the_bulk_page(api, segment_world, user, sees):
    rewards, users = segment_world
    response = get(api, users[user])
    assert {r["name"] for r in response.json()["rewardList"]} == sees
    assert paging(response)["totalElements"] == len(sees)


def test_card_series_reward_needs_an_active_card(api, org, customer, brand):
    series = f.CardSeriesFactory(org=org)
    open_to_all = reward(brand)
    carded = reward(brand)
    carded.card_series.add(series)
    assert ids(get(api, customer)) == [open_to_all.pk]
    card = cm.Card.objects.create(series=series, customer=customer, number="4111111111111111",
                                  status=CardStatus.SUSPENDED)
    assert ids(get(api, customer)) == [open_to_all.pk]
    card.status = CardStatus.ACTIVE
    card.save()
    assert ids(get(api, customer)) == [carded.pk, open_to_all.pk]


def test_label_targeted_reward_needs_an_active_label(api, org, customer, brand):
    label = f.LabelFactory(org=org)
    open_to_all = reward(brand)
    labelled = reward(brand)
    labelled.labels.add(label)
    assert ids(get(api, customer)) == [open_to_all.pk]
    held = cm.CustomerLabel.objects.create(customer=customer, label=label, status=MembershipStatus.INACTIVE)
    assert ids(get(api, customer)) == [open_to_all.pk]
    held.status = MembershipStatus.ACTIVE
    held.save()
    assert ids(get(api, customer)) == [labelled.pk, open_to_all.pk]


def test_tier_targeted_reward_needs_the_tier(api, org, customer, brand):
    program = cm.Program.objects.create(org=org, name="Loyalty")
    gold = cm.Tier.objects.create(program=program, name="Gold", serial=2)
    silver = cm.Tier.objects.create(program=program, name="Silver", serial=1)
    open_to_all = reward(brand)
    gold_only = reward(brand)
    gold_only.target_tiers.add(gold)
    membership = cm.ProgramMembership.objects.create(customer=customer, program=program, tier=silver)
    assert ids(get(api, customer)) == [open_to_all.pk]
    membership.tier = gold
    membership.save()
    assert ids(get(api, customer)) == [gold_only.pk, open_to_all.pk]


# ---------------------------------------------------------------- errors


def test_missing_user_id_is_15006(api, brand):
    for response in (api.get(URL.format("BUKL")), api.get(URL.format("BUKL"), {"userId": ""})):
        assert response.status_code == 400
        assert response.json() == {"status": {"success": False, "code": 15006,
                                              "message": "The request is missing the primary identifier."}}


def test_unknown_customer_is_1014(api, brand):
    not_found = {"status": {"success": False, "code": 1014,
                            "message": "The provided identifier does not match any existing customer."}}
    for user_id in ("987654321", "0", "99999999999999999999999"):
        response = api.get(URL.format("BUKL"), {"userId": user_id})
        assert response.status_code == 404
        assert response.json() == not_found


def test_another_orgs_customer_answers_exactly_like_an_unknown_one(api, brand):
    stranger = f.CustomerFactory(org=f.OrganisationFactory())
    foreign = get(api, stranger)
    unknown = api.get(URL.format("BUKL"), {"userId": stranger.pk + 1000})
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json() == unknown.json()
    assert foreign.json()["status"]["code"] == 1014


def test_unknown_brand_is_3004(api, customer, brand):
    other_orgs_brand = f.BrandFactory(name="ELSEWHERE")
    for name in ("NOPE", other_orgs_brand.name, "bukl"):  # names are case-sensitive
        response = get(api, customer, brand=name)
        assert response.status_code == 404
        assert response.json() == {"status": {"success": False, "code": 3004, "message": "Brand not found"}}


def test_non_numeric_user_id_is_400(api, customer, brand):
    assert bad(get(api, None, userId="abc")) == "userId: must be a customer id (an integer), not 'abc'"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"redemptionType": "FOO"}, "redemptionType: unknown value 'FOO'"),
        ({"redemptionType": "MILES,miles"}, "redemptionType: unknown value 'miles'"),
        ({"status": "live"}, "status: unknown value 'live'"),
        ({"status": "LIVE,EXPIRED"}, "status: unknown value 'EXPIRED'"),
        ({"activationStatus": "enabled"}, "activationStatus: unknown value 'enabled'"),
        ({"sortBy": "name"}, "sortBy: unknown value 'name'"),
        ({"orderBy": "asc"}, "orderBy: unknown value 'asc'"),
        ({"includeExpired": "maybe"}, "includeExpired: must be true or false, not 'maybe'"),
        ({"minPoints": "abc"}, "minPoints: must be a number, not 'abc'"),
        ({"maxPoints": "NaN"}, "maxPoints: must be a number, not 'NaN'"),
        ({"minCash": "-1"}, "minCash: must be between 0 and 100000000000000"),
        ({"maxCash": "1e999"}, "maxCash: must be between 0 and 100000000000000"),
        ({"minPoints": "500", "maxPoints": "100"}, "minPoints: must not be greater than maxPoints"),
        ({"minCash": "10.5", "maxCash": "10"}, "minCash: must not be greater than maxCash"),
        ({"label": "gold"}, "label: not an id: 'gold'"),
        ({"vendorId": "3,x"}, "vendorId: not an id: 'x'"),
        ({"createdOnDaysAgo": "-1"}, "createdOnDaysAgo: must be an integer between 0 and 36500, not '-1'"),
        ({"createdOnDaysAgo": "2.5"}, "createdOnDaysAgo: must be an integer between 0 and 36500, not '2.5'"),
        ({"page": "-1"}, "page: must be an integer between 0 and 2147483647, not '-1'"),
        ({"page": "first"}, "page: must be an integer between 0 and 2147483647, not 'first'"),
        ({"size": "0"}, "size: must be an integer between 1 and 2147483647, not '0'"),
        ({"size": "ten"}, "size: must be an integer between 1 and 2147483647, not 'ten'"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(api, customer, brand, params, message):
    assert bad(get(api, customer, **params)) == message


def test_several_bad_parameters_are_all_named(api, customer, brand):
    message = bad(get(api, customer, size="x", status="NOW", minPoints="z"))
    assert message == ("size: must be an integer between 1 and 2147483647, not 'x'; "
                       "minPoints: must be a number, not 'z'; status: unknown value 'NOW'")


def test_bad_parameters_are_400_before_the_brand_or_customer_is_looked_up(api, brand):
    assert bad(api.get(URL.format("NOPE"), {"userId": 424242, "status": "x"})) == "status: unknown value 'x'"


def test_no_credentials_is_401_and_no_api_permission_is_403(client, org, customer, brand):
    response = client.get(URL.format("BUKL"), {"userId": customer.pk})
    assert response.status_code == 401
    assert response.json()["status"]["code"] == 401
    user = f.UserFactory(username="staffer")
    f.UserProfileFactory(user=user, org=org)
    response = client.get(URL.format("BUKL"), {"userId": customer.pk}, HTTP_AUTHORIZATION=basic_auth("staffer", "pass"))
    assert response.status_code == 403
    assert response.json() == {"status": {"success": False, "code": 403,
                                          "message": "This user may not use the rewards API"}}


def test_post_is_405(api, customer, brand):
    response = api.post(URL.format("BUKL") + f"?userId={customer.pk}", {}, format="json")
    assert response.status_code == 405
    assert response.json()["status"]["code"] == 405


# ---------------------------------------------------------------- the reward object


def test_expired_and_started_are_computed_now(api, customer, timeline):
    body = {r["name"]: r for r in get(api, customer, includeExpired="true").json()["rewardList"]}
    assert (body["live"]["started"], body["live"]["expired"]) == (True, False)
    assert (body["upcoming"]["started"], body["upcoming"]["expired"]) == (False, False)
    assert (body["ended"]["started"], body["ended"]["expired"]) == (True, True)


def test_full_reward_object(api, org, customer, brand):
    start = datetime.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.UTC)
    end = datetime.datetime(2099, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)
    program = cm.Program.objects.create(org=org, name="Loyalty")
    gold = cm.Tier.objects.create(program=program, name="Gold", serial=2)
    cm.ProgramMembership.objects.create(customer=customer, program=program, tier=gold)
    vendor = f.VendorFactory(org=org)
    r = reward(
        brand, pk=311509, name="Coffee", description="A cup", redemption_type=RedemptionType.PHYSICAL_REWARD,
        start_time=start, end_time=end, priority=3, rank=7, intouch_points=Decimal("150.5000"), program=program,
        image_id=11, image_url="https://img.example.com/c.png", thumbnail_id=12,
        thumbnail_url="https://img.example.com/t.png", terms_id=13, terms_url="https://example.com/tc",
        vendor=vendor, custom_fields={"colour": "red", "fragile": True, "weight": 3},
    )
    fuel = f.CategoryFactory(org=org, name="fuel", enabled=True)
    old = f.CategoryFactory(org=org, name="old", enabled=False)
    r.categories.add(fuel, old)
    group = cm.RewardGroup.objects.create(org=org, name="drinks", rank=4)
    r.groups.add(group)
    r.target_tiers.add(gold)
    cm.RewardMedia.objects.create(reward=r, kind=MediaKind.IMAGE, name="front", alt_text="the cup",
                                  url="https://img.example.com/front.png", is_external=True, position=1)
    cm.RewardMedia.objects.create(reward=r, kind=MediaKind.IMAGE, name="side", alt_text="", file_id=77,
                                  url="https://files.example.com/77", is_external=False, position=0)
    cm.RewardMedia.objects.create(reward=r, kind=MediaKind.VIDEO, name="clip", alt_text="pouring",
                                  url="https://video.example.com/v.mp4", is_external=True)
    c1 = f.PaymentConfigFactory(reward=r, mode=PaymentMode.POINTS, points=Decimal("150"))
    c2 = f.PaymentConfigFactory(reward=r, mode=PaymentMode.POINTS_CASH, points=Decimal("100.2500"),
                                cash_amount=Decimal("12.50"))
    cm.RewardLanguageContent.objects.create(reward=r, language="en", content="<b>Hot</b>", is_enabled=True,
                                            default_value="Hot")
    cm.RewardLanguageContent.objects.create(reward=r, language="fr", content="", is_enabled=False)
    limit = cm.RewardConstraint.objects.create(org=org, reward=r, level=ConstraintLevel.CUSTOMER,
                                               frequency=Frequency.MONTHS, limit_value=Decimal("2"))

    response = get(api, customer)
    assert response.status_code == 200
    assert response.json()["rewardList"] == [{
        "id": 311509,
        "name": "Coffee",
        "description": "A cup",
        "imageId": 11,
        "imageUrl": "https://img.example.com/c.png",
        "thumbnailId": 12,
        "thumbnailUrl": "https://img.example.com/t.png",
        "termAndConditionsId": 13,
        "termAndConditionsUrl": "https://example.com/tc",
        "tier": "Gold",
        "label": None,
        "priority": 3,
        "intouchPoints": 150.5,
        "group": "drinks",
        "startTime": "2024-01-02T03:04:05.678Z",
        "endTime": "2099-12-31T23:59:59.000Z",
        "expired": False,
        "started": True,
        "programId": program.pk,
        "categoryList": [{"id": fuel.pk, "name": "fuel", "enabled": True},
                         {"id": old.pk, "name": "old", "enabled": False}],
        "customFields": {"colour": "red", "fragile": "true", "weight": "3"},
        "loyaltyProgramCriteria": [{"programId": program.pk, "tierId": gold.pk, "tierName": "Gold"}],
        "groups": [{"id": group.pk, "name": "drinks", "rank": 4}],
        "rewardRestrictions": {
            "isValid": True,
            "rewardLevel": [],
            "customerLevel": [{
                "rewardConstraintId": limit.pk, "orgId": org.pk, "kpi": "QUANTITY", "constraintLevel": "CUSTOMER",
                "frequencyType": "MONTHS", "constraintLimitValue": 2, "consumed": 0, "isActive": True,
                "isValid": True, "rewardId": 311509,
            }],
        },
        "rewardRank": 7,
        "images": [
            {"name": "side", "altText": "", "id": 77, "url": "https://files.example.com/77", "isExternal": False},
            {"name": "front", "altText": "the cup", "id": None, "url": "https://img.example.com/front.png",
             "isExternal": True},
        ],
        "videos": [{"name": "clip", "altText": "pouring", "id": None, "url": "https://video.example.com/v.mp4",
                    "isExternal": True}],
        "paymentConfigs": [
            {"paymentMode": "POINTS", "id": c1.pk, "points": 150, "cashAmount": None, "conversionRatio": None},
            {"paymentMode": "POINTS_CASH", "id": c2.pk, "points": 100.25, "cashAmount": 12.5,
             "conversionRatio": None},
        ],
        "cardSeries": [],
        "labels": [],
        "startDateTime": "2024-01-02T03:04:05Z",
        "endDateTime": "2099-12-31T23:59:59Z",
        "languageSpecificInfo": [
            {"language": "en", "richContentRO": {"content": "<b>Hot</b>", "isEnabled": True}, "defaultValue": "Hot"},
            {"language": "fr", "richContentRO": {"content": "", "isEnabled": False}, "defaultValue": ""},
        ],
        "vendorId": str(vendor.pk),
        "redemptionType": "PHYSICAL_REWARD",
    }]
    assert list(response.json()) == ["status", "rewardList", "pagingDto", "orgLevelRestrictions"]
    assert response.json()["orgLevelRestrictions"] == {"isValid": True, "customerRedemptionTypeLevel": []}


def test_numbers_are_exact_decimals_in_the_json_text(api, customer, brand):
    r = reward(brand, redemption_type=RedemptionType.MILES, intouch_points=Decimal("0.1000"))
    f.PaymentConfigFactory(reward=r, mode=PaymentMode.CONV_RATIO, points=None, conversion_ratio=Decimal("0.123457"))
    text = get(api, customer).content.decode()
    assert '"intouchPoints":0.1,' in text
    assert '"conversionRatio":0.123457}' in text


def test_card_series_labels_and_blank_urls(api, org, customer, brand):
    series = f.CardSeriesFactory(org=org, code="GOLDCARD")
    label = f.LabelFactory(org=org, name="vip")
    cm.Card.objects.create(series=series, customer=customer, number="1234", status=CardStatus.ACTIVE)
    cm.CustomerLabel.objects.create(customer=customer, label=label)
    r = reward(brand)
    r.card_series.add(series)
    r.labels.add(label)
    (body,) = get(api, customer).json()["rewardList"]
    assert body["cardSeries"] == [{"id": series.pk, "code": "GOLDCARD"}]
    assert body["labels"] == [label.pk] and body["label"] == "vip"
    assert body["imageUrl"] is None and body["thumbnailUrl"] is None and body["termAndConditionsUrl"] is None
    assert body["vendorId"] is None and body["tier"] is None and body["group"] is None


# ---------------------------------------------------------------- limits and what the customer consumed


def test_org_level_restrictions_show_what_an_issue_consumed(api, org, customer, account, brand):
    gift = points_reward(brand, 10, redemption_type=RedemptionType.GIFT_CARD)
    gift_limit = cm.RewardConstraint.objects.create(
        org=org, redemption_type=RedemptionType.GIFT_CARD, level=ConstraintLevel.CUSTOMER_REDEMPTION_TYPE,
        frequency=Frequency.MONTHS, limit_value=Decimal("2"),
    )
    miles_limit = cm.RewardConstraint.objects.create(
        org=org, redemption_type=RedemptionType.MILES, level=ConstraintLevel.CUSTOMER_REDEMPTION_TYPE,
        kpi=ConstraintKpi.REDEMPTION_VALUE, frequency=Frequency.WEEKS, limit_value=Decimal("1000.5"), is_active=False,
    )
    per_customer = cm.RewardConstraint.objects.create(
        org=org, reward=gift, level=ConstraintLevel.CUSTOMER, frequency=Frequency.DAYS, limit_value=Decimal("5"),
    )
    overall = cm.RewardConstraint.objects.create(
        org=org, reward=gift, level=ConstraintLevel.REWARD, frequency=Frequency.NO_LIMIT, limit_value=Decimal("2"),
    )

    def entry(c, consumed, valid, **extra):
        return {"rewardConstraintId": c.pk, "orgId": org.pk, "kpi": c.kpi, "constraintLevel": c.level,
                "frequencyType": c.frequency, "constraintLimitValue": c.limit_value, "consumed": consumed,
                "isActive": c.is_active, "isValid": valid, **extra}

    before = get(api, customer).json()
    assert before["orgLevelRestrictions"] == {
        "isValid": True,
        "customerRedemptionTypeLevel": [
            entry(gift_limit, 0, True, redemptionType="GIFT_CARD"),
            entry(miles_limit, 0, True, redemptionType="MILES"),
        ],
    }

    issued = api.post(ISSUE_SINGLE.format(gift.pk), {"mobile": customer.mobile}, format="json")
    assert issued.status_code == 200, issued.content
    # Another customer takes one too: the reward-level limit counts everybody, the others only this customer.
    other = f.CustomerFactory(org=org)
    f.PointsAccountFactory(customer=other, opening_balance=Decimal("100"))
    assert api.post(ISSUE_BULK, {"mobile": other.mobile, "rewards": [{"rewardId": gift.pk}]},
                    format="json").status_code == 200

    after = get(api, customer).json()
    assert after["orgLevelRestrictions"]["customerRedemptionTypeLevel"][0] == entry(
        gift_limit, 1, True, redemptionType="GIFT_CARD")
    (body,) = after["rewardList"]
    assert body["rewardRestrictions"] == {
        "isValid": False,  # the reward-level limit of 2 is used up (by both customers)
        "rewardLevel": [entry(overall, 2, False, rewardId=gift.pk)],
        "customerLevel": [entry(per_customer, 1, True, rewardId=gift.pk)],
    }
    another_gift = points_reward(brand, 10, redemption_type=RedemptionType.GIFT_CARD)
    assert api.post(ISSUE_SINGLE.format(another_gift.pk), {"mobile": customer.mobile},
                    format="json").status_code == 200
    again = get(api, customer).json()["orgLevelRestrictions"]
    assert again == {
        "isValid": False,
        "customerRedemptionTypeLevel": [entry(gift_limit, 2, False, redemptionType="GIFT_CARD"),
                                        entry(miles_limit, 0, True, redemptionType="MILES")],
    }


def test_batched_consumption_agrees_with_the_engines_limits(org, customer, brand):
    """constraint_consumption (one query) must equal issuance.limits.consumed (one query
    per constraint) for every level, KPI, window and line status."""
    now = timezone.now()
    a = reward(brand, redemption_type=RedemptionType.MILES)
    b = reward(brand, redemption_type=RedemptionType.GIFT_CARD)
    other = f.CustomerFactory(org=org)
    lines = [  # who, reward, status, quantity, requested, points, value per unit, days ago, held units/points
        (customer, a, "ISSUED", 2, 2, Decimal("40"), None, 0, {}),
        (customer, a, "PENDING", 0, 3, Decimal("0"), None, 0, {"pending_units": 3, "held_points": Decimal("60")}),
        (customer, b, "PENDING", 0, 2, Decimal("0"), Decimal("2.5"), 1, {"pending_units": 2,
                                                                        "held_points": Decimal("9")}),
        (customer, a, "FAILED", 0, 1, Decimal("0"), None, 0, {}),
        (customer, a, "PARTIAL", 1, 2, Decimal("10"), Decimal("7.5"), 2, {}),
        (customer, b, "ISSUED", 1, 1, Decimal("25"), None, 40, {}),
        (other, a, "ISSUED", 4, 4, Decimal("80"), None, 0, {}),
    ]
    accounts = {who.pk: f.PointsAccountFactory(customer=who) for who in (customer, other)}
    for who, r, status, quantity, requested, points, value, days_ago, held in lines:
        line = f.IssuanceLineFactory(
            issuance__account=accounts[who.pk], reward=r, redemption_type=r.redemption_type, status=status,
            quantity=quantity, requested_quantity=requested, total_points=points, redemption_value=value, **held,
        )
        type(line).objects.filter(pk=line.pk).update(created_at=now - days_ago * DAY)
    constraints = []
    for kpi in ConstraintKpi.values:
        for frequency, window_type in ((Frequency.DAYS, WindowType.FIXED), (Frequency.DAYS, WindowType.ROLLING),
                                       (Frequency.MONTHS, WindowType.FIXED), (Frequency.NO_LIMIT, WindowType.FIXED)):
            for level, target in ((ConstraintLevel.REWARD, {"reward": a}), (ConstraintLevel.CUSTOMER, {"reward": a}),
                                  (ConstraintLevel.CUSTOMER_REDEMPTION_TYPE, {"redemption_type": "MILES"}),
                                  (ConstraintLevel.CUSTOMER_REDEMPTION_TYPE, {"redemption_type": "GIFT_CARD"})):
                constraints.append(cm.RewardConstraint.objects.create(
                    org=org, level=level, kpi=kpi, frequency=frequency, window_type=window_type, interval=3,
                    limit_value=100, **target))
    batched = constraint_consumption(constraints, customer_id=customer.pk, org=org, now=now)
    for c in constraints:
        window = limits.window_for(c, now=now, tz_name=org.time_zone)
        assert batched[c.pk].consumed == limits.consumed(c, customer_id=customer.pk, window=window), c
    assert len({batched[c.pk].consumed for c in constraints}) > 5  # the cases really differ


# ---------------------------------------------------------------- query count


def rich_world(org, brand, customer, count: int):
    """``count`` rewards each linked to several of everything the reward object shows,
    and targeted so that the customer may take them."""
    program = cm.Program.objects.create(org=org, name="P")
    tiers = [cm.Tier.objects.create(program=program, name=f"T{i}", serial=i) for i in range(3)]
    cm.ProgramMembership.objects.create(customer=customer, program=program, tier=tiers[0])
    labels = [f.LabelFactory(org=org) for _ in range(3)]
    cm.CustomerLabel.objects.create(customer=customer, label=labels[0])
    series = [f.CardSeriesFactory(org=org) for _ in range(2)]
    cm.Card.objects.create(series=series[0], customer=customer, number="99887766")
    categories = [f.CategoryFactory(org=org) for _ in range(4)]
    groups = [cm.RewardGroup.objects.create(org=org, name=f"g{i}") for i in range(3)]
    for redemption_type in (RedemptionType.PHYSICAL_REWARD, RedemptionType.MILES):
        cm.RewardConstraint.objects.create(org=org, redemption_type=redemption_type, frequency=Frequency.DAYS,
                                           level=ConstraintLevel.CUSTOMER_REDEMPTION_TYPE, limit_value=10)
    for _ in range(count):
        r = reward(brand)
        r.target_tiers.add(*tiers)
        r.labels.add(*labels)
        r.card_series.add(*series)
        r.categories.add(*categories)
        r.groups.add(*groups)
        cm.RewardMedia.objects.bulk_create(
            [cm.RewardMedia(reward=r, kind=MediaKind.IMAGE, url=f"https://i.example.com/{i}", position=i)
             for i in range(4)]
            + [cm.RewardMedia(reward=r, kind=MediaKind.VIDEO, url=f"https://v.example.com/{i}") for i in range(2)]
        )
        cm.PaymentConfig.objects.bulk_create(
            [cm.PaymentConfig(reward=r, mode=PaymentMode.POINTS, points=10 + i) for i in range(3)]
            + [cm.PaymentConfig(reward=r, mode=PaymentMode.POINTS_CASH, points=5, cash_amount=2)]
        )
        reward_listing_refresh(reward_ids=[r.pk])  # bulk_create bypasses save()
        cm.RewardLanguageContent.objects.bulk_create(
            [cm.RewardLanguageContent(reward=r, language=lang, content="x") for lang in ("en", "fr")]
        )
        for level, frequency in ((ConstraintLevel.CUSTOMER, Frequency.DAYS), (ConstraintLevel.REWARD, Frequency.WEEKS),
                                 (ConstraintLevel.CUSTOMER, Frequency.NO_LIMIT)):
            cm.RewardConstraint.objects.create(org=org, reward=r, level=level, frequency=frequency, limit_value=5)


# The list's own queries, whatever the page size and the number of linked rows (on top of
# authentication and the permission check, which belong to the API layer and are counted
# by a call refused right after them). Read from the database (LIST_INDEX off, SQLite):
#   brand (1); customer (1); customer facts (1: issuance.eligibility's UNION ALL);
#   count (1); page (1); prefetches: categories, groups, labels, card series, tiers,
#   media, language content, payment configs, constraints (9);
#   org-level constraints (1); consumption of every limit shown (1).
LIST_OWN_QUERIES = 16
# From the in-memory index (catalogue/list_index.py), once it holds the brand and the page:
#   the catalogue version, the customer, its facts and the limits it expects (1 statement); the
#   consumption of the others (1: rich_world's rewards, all targeted, have 3 limits each, more
#   than list_index.EXPECTED_REWARD_LIMITS; tests/test_list_index.py has the calls of 1 statement).
INDEXED_OWN_QUERIES = 2
# Building the index for a brand and filters: its rewards (1), their targets (1), their limits (1);
# rendering the page's rewards not rendered yet: the rewards (1) and the 9 prefetches. (The brand
# and the org-level constraints are kept per catalogue version too: read by a test's first call.)
INDEX_BUILD_QUERIES = 3 + 10


def list_queries(api, own: int = LIST_OWN_QUERIES) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert api.get(URL.format("BUKL")).status_code == 400  # 15006: after auth and permission
    return len(ctx.captured_queries) + own


def test_query_count_is_constant_in_page_size_and_links(api, org, brand, customer, django_assert_num_queries,
                                                        list_index_off):
    rich_world(org, brand, customer, 50)
    params = {"sortBy": "points", "minPoints": "1", "category": cm.Category.objects.first().name}
    assert get(api, customer, size=5).status_code == 200  # the worker has verified the password once
    counts = {}
    for size in (5, 50):
        with CaptureQueriesContext(connection) as ctx:
            response = get(api, customer, size=size, **params)
        assert len(response.json()["rewardList"]) == size
        counts[size] = len(ctx.captured_queries)
    assert counts[5] == counts[50]
    with django_assert_num_queries(list_queries(api)):
        response = get(api, customer, size=50)
    assert response.json()["pagingDto"]["numberOfElements"] == 50
    assert all(len(r["images"]) == 4 and len(r["paymentConfigs"]) == 4 for r in response.json()["rewardList"])


def test_indexed_query_count_is_constant_in_page_size_and_links(api, org, brand, customer,
                                                                django_assert_num_queries):
    rich_world(org, brand, customer, 50)
    params = {"sortBy": "points", "minPoints": "1", "category": cm.Category.objects.first().name}
    assert get(api, customer, size=5).status_code == 200  # the worker has verified the password once
    # The principal is kept since: its authentication is re-checked in the call's first statement
    # (issuance.api.kept_principals), so these are all the call's statements.
    with django_assert_num_queries(INDEXED_OWN_QUERIES + INDEX_BUILD_QUERIES):
        response = get(api, customer, size=50, **params)  # a new set of filters: built
    assert response.json()["pagingDto"]["numberOfElements"] == 50
    for size in (5, 50):  # then read from memory, whatever the page size
        with django_assert_num_queries(INDEXED_OWN_QUERIES):
            response = get(api, customer, size=size, **params)
        assert len(response.json()["rewardList"]) == size
    assert all(len(r["images"]) == 4 and len(r["paymentConfigs"]) == 4 for r in response.json()["rewardList"])


def test_query_count_of_an_empty_page_is_smaller(api, org, brand, customer, django_assert_max_num_queries):
    rich_world(org, brand, customer, 3)
    get(api, customer)
    with django_assert_max_num_queries(list_queries(api) - 10):  # no page query, no prefetches
        assert get(api, customer, page=5).json()["rewardList"] == []


def test_a_user_without_a_till_may_list(client, org, customer, brand):
    """Listing books nothing, so it needs no till (unlike the issue APIs)."""
    user = api_user_for(org, username="lister", till_code="t-lister")
    cm.Till.objects.filter(code="t-lister").delete()
    r = reward(brand)
    response = client.get(URL.format("BUKL"), {"userId": customer.pk}, HTTP_AUTHORIZATION=basic_auth(user.username,
                                                                                                       "pass"))
    assert ids(response) == [r.pk]


def test_the_filterset_serves_a_staff_page_too(org, brand, rf):
    """A server-rendered page binds the same FilterSet to request.GET over its own queryset."""
    from catalogue.filters import RewardFilterSet

    now = timezone.now()
    live = points_reward(brand, 100, redemption_type=RedemptionType.MILES)
    points_reward(brand, 100, redemption_type=RedemptionType.MILES, start_time=now - 9 * DAY, end_time=now - DAY)
    points_reward(brand, 100, redemption_type=RedemptionType.VOUCHER)
    request = rf.get("/staff/rewards/", {"redemptionType": "MILES", "maxPoints": "100"})
    filterset = RewardFilterSet(request.GET, queryset=cm.Reward.objects.filter(org=org), time_zone=org.time_zone)
    assert filterset.is_valid()
    assert [r.pk for r in filterset.qs] == [live.pk]
    assert 'name="redemptionType"' in str(filterset.form)
    invalid = RewardFilterSet(rf.get("/", {"status": "NOW"}).GET, queryset=cm.Reward.objects.all())
    assert not invalid.is_valid() and invalid.errors == {"status": ["unknown value 'NOW'"]}


def test_jit_is_off_for_the_apps_connections(api, customer, brand):
    """PostgreSQL: the settings start every session with jit = off (the planner's estimate
    for the eligibility filter used to trigger ~450 ms of JIT compilation per list call), so
    the list needs no statement or transaction of its own for it."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    r = reward(brand)
    with CaptureQueriesContext(connection) as ctx:
        assert ids(get(api, customer)) == [r.pk]
    assert not [q["sql"] for q in ctx.captured_queries if "jit" in q["sql"].lower()]
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "off"


# ---------------------------------------------------------------- R12 data scope on GET


@pytest.fixture
def connected_list(org, api):
    child = f.OrganisationFactory(name="Child list", parent=org)
    brand = f.BrandFactory(org=child, name="KIDS")
    reward = f.RewardFactory(brand=brand, name="child reward")
    f.PaymentConfigFactory(reward=reward, mode="POINTS", points=Decimal("5"))
    customer = f.CustomerFactory(org=child)
    return child, reward, customer


@pytest.mark.parametrize("scope", ["OTHER", "ALL"])
def test_list_in_a_child_org_with_data_scope(api, connected_list, scope):
    child, reward, customer = connected_list
    headers = {"HTTP_DATA_SCOPE": scope}
    if scope == "OTHER":
        headers["HTTP_DATA_SCOPE_ORG"] = str(child.pk)
    response = api.get(f"/api_gateway/rewards/core/v1/user/reward/brand/KIDS?userId={customer.pk}", **headers)
    assert response.status_code == 200, response.content
    assert [r["id"] for r in response.json()["rewardList"]] == [reward.pk]


def test_list_of_a_child_org_without_scope_is_like_unknown(api, connected_list):
    _child, _reward, customer = connected_list
    response = api.get(f"/api_gateway/rewards/core/v1/user/reward/brand/KIDS?userId={customer.pk}")
    assert response.status_code == 404


def test_list_data_scope_of_an_unconnected_org_is_403(api, connected_list):
    stranger = f.OrganisationFactory(name="Stranger")
    response = api.get("/api_gateway/rewards/core/v1/user/reward/brand/KIDS?userId=1",
                       HTTP_DATA_SCOPE="OTHER", HTTP_DATA_SCOPE_ORG=str(stranger.pk))
    assert response.status_code == 403
    assert response.json() == {"status": {"success": False, "code": 403,
                                          "message": "DATA-SCOPE-ORG may only name child orgs connected to the caller's org"}}
