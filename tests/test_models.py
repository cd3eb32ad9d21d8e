"""The database keeps data valid on its own: every constraint refuses a bad row, whatever
code path (service, admin, importer, raw queryset) writes it; plus the small model helpers."""

import contextlib
import datetime
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from catalogue import choices
from catalogue import models as cm
from issuance import models as im
from tests.factories import (
    BrandFactory,
    CouponSeriesFactory,
    CustomerFactory,
    CustomerGroupFactory,
    IssuanceFactory,
    IssuanceLineFactory,
    OrganisationFactory,
    PaymentConfigFactory,
    PointsAccountFactory,
    RewardFactory,
)

pytestmark = pytest.mark.django_db


@contextlib.contextmanager
def violates(constraint: str):
    """Expect an IntegrityError from ``constraint``, inside a savepoint so the test goes on.

    PostgreSQL names every violated constraint; SQLite names CHECK constraints but reports
    UNIQUE ones by column, so the name is asserted where the database gives it."""
    with pytest.raises(IntegrityError) as excinfo, transaction.atomic():
        yield
    message = str(excinfo.value)
    if connection.vendor == "postgresql" or "CHECK constraint failed" in message:
        assert constraint in message


# --- customers --------------------------------------------------------------------------


def test_customer_without_any_identifier_is_refused():
    org = OrganisationFactory()
    with violates("customer_has_an_identifier"):
        CustomerFactory(org=org, mobile=None, email=None, external_id=None)


def test_two_customers_with_same_primary_identifier_in_one_org_are_refused():
    org = OrganisationFactory()
    CustomerFactory(org=org, mobile="919000000001")
    with violates("customer_unique_primary_per_org"):
        CustomerFactory(org=org, mobile="919000000001")


def test_same_primary_identifier_is_allowed_in_different_orgs():
    first = CustomerFactory(org=OrganisationFactory(), mobile="919000000001")
    second = CustomerFactory(org=OrganisationFactory(), mobile="919000000001")
    assert first.primary_value == second.primary_value == "919000000001"


def test_primary_value_is_the_mobile_by_default():
    org = OrganisationFactory()
    assert org.primary_identifier == choices.PrimaryIdentifier.MOBILE
    customer = CustomerFactory(org=org, mobile="919000000042", email="a@example.com")
    customer.refresh_from_db()
    assert customer.primary_value == "919000000042"


def test_primary_value_is_the_email_in_an_email_org_and_follows_changes():
    org = OrganisationFactory(primary_identifier=choices.PrimaryIdentifier.EMAIL)
    customer = CustomerFactory(org=org, mobile="919000000042", email="a@example.com")
    assert customer.primary_value == "a@example.com"

    customer.email = "b@example.com"
    customer.save()
    customer.refresh_from_db()
    assert customer.primary_value == "b@example.com"


def test_same_mobile_twice_is_allowed_in_an_email_org():
    org = OrganisationFactory(primary_identifier=choices.PrimaryIdentifier.EMAIL)
    CustomerFactory(org=org, mobile="919000000001", email="a@example.com")
    CustomerFactory(org=org, mobile="919000000001", email="b@example.com")
    assert cm.Customer.objects.filter(org=org, mobile="919000000001").count() == 2


# --- organisations and brands -----------------------------------------------------------


def test_org_cannot_be_its_own_parent():
    org = OrganisationFactory()
    org.parent = org
    with violates("org_not_own_parent"):
        org.save()


def test_brand_name_is_unique_per_org():
    org = OrganisationFactory()
    BrandFactory(org=org, name="ACME")
    with violates("brand_unique_name_per_org"):
        BrandFactory(org=org, name="ACME")


def test_same_brand_name_is_allowed_in_different_orgs():
    BrandFactory(org=OrganisationFactory(), name="ACME")
    BrandFactory(org=OrganisationFactory(), name="ACME")
    assert cm.Brand.objects.filter(name="ACME").count() == 2


# --- rewards and payment configs -------------------------------------------------------


@pytest.mark.parametrize("end_offset", [datetime.timedelta(days=-1), datetime.timedelta(0)])
def test_reward_must_end_after_it_starts(end_offset):
    start = timezone.now()
    with violates("reward_ends_after_start"):
        RewardFactory(start_time=start, end_time=start + end_offset)


def test_reward_intouch_points_cannot_be_negative():
    with violates("reward_points_not_negative"):
        RewardFactory(intouch_points=Decimal("-1"))


@pytest.mark.parametrize(
    "ratio",
    [
        Decimal("0"),
        Decimal("-0.5"),
        None,
    ],
)
def test_conv_ratio_config_needs_a_positive_ratio(ratio):
    reward = RewardFactory(redemption_type=choices.RedemptionType.MILES)
    with violates("conv_ratio_positive"):
        PaymentConfigFactory(
            reward=reward, mode=choices.PaymentMode.CONV_RATIO, points=None, conversion_ratio=ratio
        )


def test_conv_ratio_config_with_a_positive_ratio_is_accepted():
    config = PaymentConfigFactory(mode=choices.PaymentMode.CONV_RATIO, points=None, conversion_ratio=Decimal("0.25"))
    assert config.pk


@pytest.mark.parametrize(
    "points",
    [
        Decimal("-1"),
        None,
    ],
)
def test_points_config_needs_points(points):
    with violates("points_config_has_points"):
        PaymentConfigFactory(mode=choices.PaymentMode.POINTS, points=points)


# --- reward constraints (limits) -------------------------------------------------------


def _reward_constraint(**overrides) -> cm.RewardConstraint:
    fields = {
        "kpi": choices.ConstraintKpi.QUANTITY,
        "frequency": choices.Frequency.DAYS,
        "limit_value": Decimal("5"),
        **overrides,
    }
    return cm.RewardConstraint.objects.create(**fields)


@pytest.mark.parametrize("level", [choices.ConstraintLevel.REWARD, choices.ConstraintLevel.CUSTOMER])
def test_reward_level_constraint_without_a_reward_is_refused(level):
    org = OrganisationFactory()
    with violates("constraint_level_matches_target"):
        _reward_constraint(org=org, level=level, reward=None)


def test_reward_level_constraint_naming_a_redemption_type_is_refused():
    reward = RewardFactory()
    with violates("constraint_level_matches_target"):
        _reward_constraint(
            org=reward.org,
            level=choices.ConstraintLevel.REWARD,
            reward=reward,
            redemption_type=choices.RedemptionType.VOUCHER,
        )


def test_customer_redemption_type_constraint_with_a_reward_is_refused():
    reward = RewardFactory()
    with violates("constraint_level_matches_target"):
        _reward_constraint(
            org=reward.org,
            level=choices.ConstraintLevel.CUSTOMER_REDEMPTION_TYPE,
            reward=reward,
            redemption_type=choices.RedemptionType.VOUCHER,
        )


def test_customer_redemption_type_constraint_without_a_type_is_refused():
    with violates("constraint_level_matches_target"):
        _reward_constraint(
            org=OrganisationFactory(), level=choices.ConstraintLevel.CUSTOMER_REDEMPTION_TYPE, redemption_type=""
        )


def test_well_formed_constraints_of_each_level_are_accepted():
    reward = RewardFactory()
    _reward_constraint(org=reward.org, level=choices.ConstraintLevel.REWARD, reward=reward)
    _reward_constraint(org=reward.org, level=choices.ConstraintLevel.CUSTOMER, reward=reward)
    _reward_constraint(
        org=reward.org,
        level=choices.ConstraintLevel.CUSTOMER_REDEMPTION_TYPE,
        redemption_type=choices.RedemptionType.VOUCHER,
    )
    assert cm.RewardConstraint.objects.filter(org=reward.org).count() == 3


# --- points accounts and ledger entries ------------------------------------------------


def test_points_account_with_both_a_customer_and_a_group_is_refused():
    group = CustomerGroupFactory()
    with violates("account_has_one_owner"):
        im.PointsAccount.objects.create(org=group.org, customer=group.primary_member, group=group)


def test_points_account_with_no_owner_is_refused():
    with violates("account_has_one_owner"):
        im.PointsAccount.objects.create(org=OrganisationFactory())


def test_group_points_account_is_accepted():
    group = CustomerGroupFactory()
    account = im.PointsAccount.objects.create(org=group.org, group=group)
    assert account.customer_id is None


def test_points_account_balance_cannot_be_negative():
    with violates("account_balance_not_negative"):
        PointsAccountFactory(opening_balance=Decimal("0"), balance=Decimal("-0.0001"))


def test_points_account_cannot_hold_more_than_its_balance():
    with violates("account_held_within_balance"):
        PointsAccountFactory(balance=Decimal("10"), held=Decimal("10.0001"))


def test_points_account_held_cannot_be_negative():
    with violates("account_held_not_negative"):
        PointsAccountFactory(balance=Decimal("10"), held=Decimal("-1"))


def _entry(account, **overrides) -> im.LedgerEntry:
    fields = {
        "kind": choices.LedgerEntryKind.CREDIT,
        "amount": Decimal("1"),
        "balance_after": Decimal("1"),
        "reference_id": "REF0000001",
        "reason": "test",
        **overrides,
    }
    return im.LedgerEntry.objects.create(account=account, **fields)


@pytest.mark.parametrize("kind", list(choices.LedgerEntryKind))
def test_ledger_entry_of_zero_is_refused(kind):
    account = PointsAccountFactory()
    with violates("ledger_amount_not_zero"):
        _entry(account, kind=kind, amount=Decimal("0"))


def test_credit_entry_with_negative_amount_is_refused():
    account = PointsAccountFactory(balance=Decimal("10"))
    with violates("ledger_credit_positive"):
        _entry(account, kind=choices.LedgerEntryKind.CREDIT, amount=Decimal("-1"))


@pytest.mark.parametrize("kind", [choices.LedgerEntryKind.DEBIT, choices.LedgerEntryKind.REDEMPTION])
def test_debit_and_redemption_entries_with_positive_amount_are_refused(kind):
    account = PointsAccountFactory(balance=Decimal("10"))
    with violates("ledger_debit_negative"):
        _entry(account, kind=kind, amount=Decimal("1"))


def test_ledger_entry_balance_after_cannot_be_negative():
    account = PointsAccountFactory()
    with violates("ledger_balance_after_not_negative"):
        _entry(account, kind=choices.LedgerEntryKind.DEBIT, amount=Decimal("-1"), balance_after=Decimal("-1"))


def test_ledger_reference_id_is_unique():
    account = PointsAccountFactory()
    _entry(account, reference_id="SAMEREF001")
    with violates("reference_id"):
        _entry(account, reference_id="SAMEREF001")


# --- issued units, idempotency, lines --------------------------------------------------


def _unit(line, series, code) -> im.IssuedUnit:
    return im.IssuedUnit.objects.create(line=line, coupon_series=series, coupon_code=code)


def test_same_coupon_code_issued_twice_from_one_series_is_refused():
    line = IssuanceLineFactory(requested_quantity=2, quantity=2)
    series = CouponSeriesFactory(org=line.org)
    _unit(line, series, "SAVE10-XYZ")
    with violates("issued_code_once_per_series"):
        _unit(IssuanceLineFactory(issuance=line.issuance), series, "SAVE10-XYZ")


def test_same_coupon_code_in_two_series_is_fine():
    line = IssuanceLineFactory(requested_quantity=2, quantity=2)
    _unit(line, CouponSeriesFactory(org=line.org), "SAVE10-XYZ")
    _unit(line, CouponSeriesFactory(org=line.org), "SAVE10-XYZ")
    assert im.IssuedUnit.objects.filter(coupon_code="SAVE10-XYZ").count() == 2


def test_units_without_a_code_do_not_collide():
    line = IssuanceLineFactory(requested_quantity=2, quantity=2)
    series = CouponSeriesFactory(org=line.org)
    _unit(line, series, None)
    _unit(line, series, None)
    assert line.units.count() == 2


def test_coupon_code_without_a_series_is_refused():
    line = IssuanceLineFactory()
    with violates("issued_code_has_series"):
        _unit(line, None, "ORPHAN")


def test_idempotency_record_is_unique_per_org_and_request_id():
    org = OrganisationFactory()
    im.IdempotencyRecord.objects.create(org=org, request_id="req-1", fingerprint="a" * 64)
    with violates("idempotency_unique_per_org"):
        im.IdempotencyRecord.objects.create(org=org, request_id="req-1", fingerprint="b" * 64)


def test_same_request_id_is_allowed_in_different_orgs():
    for org in (OrganisationFactory(), OrganisationFactory()):
        im.IdempotencyRecord.objects.create(org=org, request_id="req-1", fingerprint="a" * 64)
    assert im.IdempotencyRecord.objects.filter(request_id="req-1").count() == 2


@pytest.mark.parametrize("status", [s for s in im.LineStatus if s != im.LineStatus.PENDING])
def test_line_cannot_hold_points_unless_pending(status):
    issuance = IssuanceFactory()
    with violates("line_holds_only_while_pending"):
        IssuanceLineFactory(issuance=issuance, status=status, held_points=Decimal("5"))


def test_pending_line_may_hold_points():
    line = IssuanceLineFactory(status=im.LineStatus.PENDING, quantity=0, held_points=Decimal("5"))
    assert line.held_points == Decimal("5")


# --- model helpers ---------------------------------------------------------------------


@pytest.mark.parametrize("number", ["4111111111111111", "12345", "1234", "1", ""])
def test_card_masked_number_never_shows_the_full_number(number):
    card = cm.Card(number=number)
    masked = card.masked_number
    assert masked.startswith("****")
    if number:
        assert number not in masked
    assert str(card) == masked


def test_card_masked_number_shows_the_last_four_digits_of_a_long_number():
    assert cm.Card(number="4111111111119876").masked_number == "****9876"


def _enum_definition(values, default) -> cm.CustomFieldDefinition:
    return cm.CustomFieldDefinition(
        name="size",
        scope=choices.CustomFieldScope.ISSUE_REWARD,
        field_type=choices.CustomFieldType.ENUM,
        enum_values=values,
        default_value=default,
    )


def test_enum_definition_with_30_values_of_80_chars_and_a_default_is_valid():
    values = [f"{i:02d}".ljust(80, "x") for i in range(30)]
    _enum_definition(values, values[0]).clean()


def test_enum_definition_with_31_values_is_rejected():
    values = [f"v{i}" for i in range(31)]
    with pytest.raises(ValidationError) as excinfo:
        _enum_definition(values, "v0").clean()
    assert "enum_values" in excinfo.value.message_dict


def test_enum_definition_with_an_81_char_value_is_rejected():
    values = ["small", "x" * 81]
    with pytest.raises(ValidationError) as excinfo:
        _enum_definition(values, "small").clean()
    assert "enum_values" in excinfo.value.message_dict


def test_enum_definition_without_a_default_is_rejected():
    with pytest.raises(ValidationError) as excinfo:
        _enum_definition(["S", "M", "L"], "").clean()
    assert "default_value" in excinfo.value.message_dict


def test_customer_without_the_orgs_primary_identifier_is_refused():
    org = OrganisationFactory()  # primary identifier MOBILE
    with violates("customer_has_primary_identifier"):
        CustomerFactory(org=org, mobile=None, email="only-email@example.com")
