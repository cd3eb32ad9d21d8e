"""factory_boy factories for the catalogue and issuance models."""

import datetime
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from catalogue import choices
from catalogue import models as cm
from issuance import models as im


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pass")


class OrganisationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = cm.Organisation

    name = factory.Sequence(lambda n: f"Org {n}")
    allow_skip_validation = True


class UserProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = cm.UserProfile

    user = factory.SubFactory(UserFactory)
    org = factory.SubFactory(OrganisationFactory)


class BrandFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = cm.Brand

    org = factory.SubFactory(OrganisationFactory)
    name = factory.Sequence(lambda n: f"BRAND{n}")


class TillFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = cm.Till

    org = factory.SubFactory(OrganisationFactory)
    code = factory.Sequence(lambda n: f"till{n}")


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = cm.Customer

    org = factory.SubFactory(OrganisationFactory)
    mobile = factory.Sequence(lambda n: f"91{9000000000 + n}")
    email = factory.Sequence(lambda n: f"customer{n}@example.com")
    external_id = factory.Sequence(lambda n: f"ext{n}")
    first_name = "Test"
    last_name = factory.Sequence(lambda n: f"Customer{n}")


class PointsAccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = im.PointsAccount

    customer = factory.SubFactory(CustomerFactory)
    org = factory.SelfAttribute("customer.org")
    opening_balance = Decimal("0")
    balance = factory.SelfAttribute("opening_balance")


class CategoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = cm.Category

    org = factory.SubFactory(OrganisationFactory)
    name = factory.Sequence(lambda n: f"category{n}")


class RewardFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = cm.Reward

    brand = factory.SubFactory(BrandFactory)
    org = factory.SelfAttribute("brand.org")
    name = factory.Sequence(lambda n: f"Reward {n}")
    redemption_type = choices.RedemptionType.PHYSICAL_REWARD
    start_time = factory.LazyFunction(lambda: timezone.now() - datetime.timedelta(days=30))
    end_time = factory.LazyFunction(lambda: timezone.now() + datetime.timedelta(days=365))
    intouch_points = Decimal("10")


class PaymentConfigFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = cm.PaymentConfig

    reward = factory.SubFactory(RewardFactory)
    mode = choices.PaymentMode.POINTS
    points = Decimal("50")


class CouponSeriesFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = cm.CouponSeries

    org = factory.SubFactory(OrganisationFactory)
    name = factory.Sequence(lambda n: f"Series {n}")
    valid_till = factory.LazyFunction(lambda: timezone.now() + datetime.timedelta(days=90))


class SegmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = cm.Segment

    org = factory.SubFactory(OrganisationFactory)
    name = factory.Sequence(lambda n: f"segment{n}")


class PartitionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = cm.Partition

    segment = factory.SubFactory(SegmentFactory)
    name = factory.Sequence(lambda n: f"partition{n}")


class CardSeriesFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = cm.CardSeries

    org = factory.SubFactory(OrganisationFactory)
    code = factory.Sequence(lambda n: f"CS{n}")


class LabelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = cm.Label

    org = factory.SubFactory(OrganisationFactory)
    name = factory.Sequence(lambda n: f"label{n}")


class VendorFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = cm.Vendor

    org = factory.SubFactory(OrganisationFactory)
    name = factory.Sequence(lambda n: f"vendor{n}")


class FulfillmentStatusFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = cm.FulfillmentStatus

    org = factory.SubFactory(OrganisationFactory)
    name = factory.Sequence(lambda n: f"STATUS{n}")


class CustomerGroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = cm.CustomerGroup

    primary_member = factory.SubFactory(CustomerFactory)
    org = factory.SelfAttribute("primary_member.org")
    name = factory.Sequence(lambda n: f"group{n}")


class IssuanceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = im.Issuance

    account = factory.SubFactory(PointsAccountFactory)
    customer = factory.SelfAttribute("account.customer")
    org = factory.SelfAttribute("account.org")
    till = factory.SubFactory(TillFactory, org=factory.SelfAttribute("..org"))
    actor = factory.SubFactory(UserFactory)
    status = im.IssuanceStatus.SUCCESS
    response_code = 200


class IssuanceLineFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = im.IssuanceLine

    issuance = factory.SubFactory(IssuanceFactory)
    org = factory.SelfAttribute("issuance.org")
    customer = factory.SelfAttribute("issuance.customer")
    reward = factory.SubFactory(RewardFactory, brand__org=factory.SelfAttribute("...org"))
    redemption_type = factory.SelfAttribute("reward.redemption_type")
    requested_quantity = 1
    quantity = 1
    status = im.LineStatus.ISSUED


# The bulk page's segment tables (R6), verbatim: which partitions each reward targets and
# each user belongs to. Served to the engine's tests and the list's by ``segment_tables``.
PAGE_SEGMENT_TARGETS = {
    "r1": [("s1", "p1"), ("s2", "p2")],
    "r2": [("s1", "p2"), ("s2", "p1")],
    "r3": [("s1", "p1"), ("s3", "p1")],
    "r4": [],
}
PAGE_SEGMENT_MEMBERS = {"user1": [("s2", "p1"), ("s3", "p2")], "user2": [("s1", "p1")], "user3": []}


def segment_tables(org, *, make_reward, make_customer):
    """The page's segments s1–s3 (partitions p1, p2), rewards r1–r4 targeting them and
    customers user1–user3 in them. ``make_reward(index, name)`` and ``make_customer(index)``
    build the rows the caller needs. Returns ({reward name: reward}, {user name: customer})."""
    parts = {}
    for s in ("s1", "s2", "s3"):
        segment = SegmentFactory(org=org, name=s)
        for p in ("p1", "p2"):
            parts[(s, p)] = PartitionFactory(segment=segment, name=p)
    rewards, users = {}, {}
    for index, (name, pairs) in enumerate(PAGE_SEGMENT_TARGETS.items()):
        rewards[name] = make_reward(index, name)
        for pair in pairs:
            cm.RewardSegmentTarget.objects.create(reward=rewards[name], partition=parts[pair])
    for index, (name, pairs) in enumerate(PAGE_SEGMENT_MEMBERS.items()):
        users[name] = make_customer(index)
        for pair in pairs:
            cm.SegmentMembership.objects.create(customer=users[name], partition=parts[pair])
    return rewards, users
