"""Points accounts in the admin: balances change only through the credit/debit form (an
action on selected accounts, or the account's own page), which calls the ledger service with
the staff member as actor and a mandatory reason."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.urls import reverse

from catalogue.choices import LedgerEntryKind
from issuance.ledger import account_check, points_credit
from issuance.models import LedgerEntry, PointsAccount
from tests import factories as f

CHANGELIST = reverse("admin:issuance_pointsaccount_changelist")


def _adjust_url(account):
    return reverse("admin:issuance_pointsaccount_adjust_points", args=[account.pk])


def _action(accounts, **form):
    return {"action": "adjust_points", "_selected_action": [a.pk for a in accounts], "apply": "1", **form}


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def funded():
    """An account with 100 points, 30 of them held by a pending issue."""
    account = f.PointsAccountFactory(opening_balance=Decimal("100"), held=Decimal("30"))
    return account


@pytest.mark.django_db
def test_credit_action_writes_an_entry_with_actor_and_reason_and_moves_the_balance(admin_client, admin_user, funded):
    response = admin_client.post(
        CHANGELIST, _action([funded], operation="credit", amount="25.5", reason="Goodwill: late delivery")
    )

    assert response.status_code == 302
    entry = LedgerEntry.objects.get(account=funded)
    assert (entry.kind, entry.amount, entry.actor, entry.reason) == (
        LedgerEntryKind.CREDIT,
        Decimal("25.5"),
        admin_user,
        "Goodwill: late delivery",
    )
    funded.refresh_from_db()
    assert funded.balance == entry.balance_after == Decimal("125.5")
    assert account_check(funded.pk).ok
    assert any("Credited 25.5 points on 1 account(s)" in m for m in _messages(response))


@pytest.mark.django_db
def test_action_first_shows_the_form_with_the_selected_accounts(admin_client, funded):
    response = admin_client.post(CHANGELIST, {"action": "adjust_points", "_selected_action": [funded.pk]})

    assert response.status_code == 200
    content = response.content.decode()
    assert 'name="reason"' in content and str(funded) in content
    assert not LedgerEntry.objects.exists()


@pytest.mark.django_db
def test_debit_beyond_the_available_points_is_refused_with_a_message_and_changes_nothing(admin_client, funded):
    # 100 balance - 30 held = 70 available.
    response = admin_client.post(CHANGELIST, _action([funded], operation="debit", amount="70.0001", reason="Fraud"))

    assert response.status_code == 200  # the form again
    assert any("Nothing was changed: insufficient points" in m for m in _messages(response))
    funded.refresh_from_db()
    assert (funded.balance, funded.held) == (Decimal("100"), Decimal("30"))
    assert not LedgerEntry.objects.exists()


@pytest.mark.django_db
def test_debit_within_the_available_points_is_written_as_a_negative_entry(admin_client, admin_user, funded):
    response = admin_client.post(_adjust_url(funded), {"operation": "debit", "amount": "70", "reason": "Fraud"})

    assert response.status_code == 302
    entry = LedgerEntry.objects.get(account=funded)
    assert (entry.kind, entry.amount, entry.actor) == (LedgerEntryKind.DEBIT, Decimal("-70"), admin_user)
    funded.refresh_from_db()
    assert funded.balance == Decimal("30")


@pytest.mark.django_db
def test_debit_over_several_accounts_is_all_or_nothing(admin_client):
    rich = f.PointsAccountFactory(opening_balance=Decimal("500"))
    poor = f.PointsAccountFactory(opening_balance=Decimal("5"))

    response = admin_client.post(CHANGELIST, _action([rich, poor], operation="debit", amount="10", reason="Expiry"))

    assert any("Nothing was changed" in m for m in _messages(response))
    assert not LedgerEntry.objects.exists()
    assert sorted(PointsAccount.objects.values_list("balance", flat=True)) == [Decimal("5"), Decimal("500")]


@pytest.mark.django_db
def test_credit_over_several_accounts_writes_one_entry_each(admin_client):
    accounts = [f.PointsAccountFactory() for _ in range(3)]

    admin_client.post(CHANGELIST, _action(accounts, operation="credit", amount="10", reason="Campaign"))

    assert LedgerEntry.objects.count() == 3
    assert set(PointsAccount.objects.values_list("balance", flat=True)) == {Decimal("10")}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "form, field",
    [
        ({"operation": "credit", "amount": "10", "reason": ""}, "reason"),
        ({"operation": "credit", "amount": "0", "reason": "x"}, "amount"),
        ({"operation": "credit", "amount": "-5", "reason": "x"}, "amount"),
        ({"operation": "credit", "amount": "1.00001", "reason": "x"}, "amount"),
        ({"operation": "credit", "amount": "abc", "reason": "x"}, "amount"),
        ({"operation": "steal", "amount": "1", "reason": "x"}, "operation"),
    ],
)
def test_reason_is_mandatory_and_the_amount_a_positive_decimal(admin_client, funded, form, field):
    response = admin_client.post(_adjust_url(funded), form)

    assert response.status_code == 200
    assert field in response.context["form"].errors
    assert not LedgerEntry.objects.exists()


@pytest.mark.django_db
def test_account_page_is_read_only_and_shows_recent_entries_and_a_link_to_all(admin_client, funded):
    points_credit(account_id=funded.pk, amount=Decimal("7"), reason="Birthday bonus")
    url = reverse("admin:issuance_pointsaccount_change", args=[funded.pk])

    content = admin_client.get(url).content.decode()

    assert "Birthday bonus" in content
    assert _adjust_url(funded) in content
    assert f"{reverse('admin:issuance_ledgerentry_changelist')}?account__id__exact={funded.pk}" in content
    assert 'name="balance"' not in content  # no input: the balance moves only through the ledger
    assert admin_client.post(url, {"balance": "999999"}).status_code == 403
    funded.refresh_from_db()
    assert funded.balance == Decimal("107")


@pytest.mark.django_db
def test_ledger_changelist_filtered_by_account_lists_its_entries(admin_client, funded):
    other = f.PointsAccountFactory()
    mine = points_credit(account_id=funded.pk, amount=Decimal("1"), reason="a")
    theirs = points_credit(account_id=other.pk, amount=Decimal("1"), reason="b")

    content = admin_client.get(
        reverse("admin:issuance_ledgerentry_changelist"), {"account__id__exact": funded.pk}
    ).content.decode()

    assert reverse("admin:issuance_ledgerentry_change", args=[mine.pk]) in content
    assert reverse("admin:issuance_ledgerentry_change", args=[theirs.pk]) not in content


@pytest.mark.django_db
def test_staff_who_may_only_view_accounts_cannot_credit(client, funded):
    viewer = f.UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_pointsaccount"))
    f.UserProfileFactory(user=viewer, org=funded.org)
    client.force_login(viewer)

    assert client.post(_adjust_url(funded), {"operation": "credit", "amount": "5", "reason": "x"}).status_code == 403
    response = client.post(CHANGELIST, _action([funded], operation="credit", amount="5", reason="x"))
    assert not LedgerEntry.objects.exists()
    assert response.status_code in (200, 302)


@pytest.mark.django_db
def test_add_account_needs_exactly_one_owner_and_takes_its_org(admin_client):
    customer = f.CustomerFactory()
    group = f.CustomerGroupFactory()
    url = reverse("admin:issuance_pointsaccount_add")

    assert "exactly one" in admin_client.post(url, {"customer": customer.pk, "group": group.pk}).content.decode()
    assert "exactly one" in admin_client.post(url, {}).content.decode()
    assert admin_client.post(url, {"customer": customer.pk}).status_code == 302
    account = PointsAccount.objects.get(customer=customer)
    assert (account.org_id, account.balance) == (customer.org_id, Decimal("0"))
