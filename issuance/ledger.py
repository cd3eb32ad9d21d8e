"""The points ledger: the only code that changes a balance (R9).

Every function that changes an account takes the account's row lock
(``SELECT ... FOR UPDATE``) inside the caller's or its own ``transaction.atomic()``,
writes one append-only ``LedgerEntry`` per change and updates ``balance`` in the same transaction,
so ``balance == opening_balance + sum(entries)`` holds after any interleaving or crash.
Several accounts are always locked in primary-key order (``accounts_lock``).
"""

import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import DecimalField, OuterRef, QuerySet, Subquery, Sum

from catalogue.choices import LedgerEntryKind
from catalogue.models import POINTS, Customer, CustomerGroup

from . import rawsql
from .models import LedgerEntry, PointsAccount

_REFERENCE_ALPHABET = string.ascii_letters + string.digits
# What the points columns hold exactly: 4 decimal places, 14 integer digits.
_POINTS_QUANTUM = Decimal(1).scaleb(-POINTS["decimal_places"])
_POINTS_LIMIT = Decimal(10) ** (POINTS["max_digits"] - POINTS["decimal_places"])


class LedgerError(Exception):
    """A change the ledger refuses (it would overdraw, or is not a valid amount)."""


def reference_id_new() -> str:
    """A short, unguessable pointsReferenceId (like the pages' ``eiEWkQ``), 10 chars of base62."""
    return "".join(secrets.choice(_REFERENCE_ALPHABET) for _ in range(10))


def account_for_customer(customer: Customer) -> PointsAccount:
    """The customer's account, created empty on first use."""
    account, _ = PointsAccount.objects.get_or_create(customer=customer, defaults={"org_id": customer.org_id})
    return account


def account_for_group(group: CustomerGroup) -> PointsAccount:
    account, _ = PointsAccount.objects.get_or_create(group=group, defaults={"org_id": group.org_id})
    return account


def accounts_lock(account_ids: Iterable[int]) -> dict[int, PointsAccount]:
    """Lock accounts in primary-key order (so two callers never deadlock) and return them.
    Must run inside ``transaction.atomic()``."""
    ids = sorted(set(account_ids))
    locked = PointsAccount.objects.select_for_update(of=("self",)).filter(pk__in=ids).order_by("pk")
    return {account.pk: account for account in locked}


def account_lock(account_id: int, *, nowait: bool = False) -> PointsAccount:
    return PointsAccount.objects.select_for_update(nowait=nowait, of=("self",)).get(pk=account_id)


def _amount_checked(amount: Decimal, what: str) -> Decimal:
    """Refuse anything but a positive Decimal the points columns store exactly.

    A finer amount (``1.00005``) would be rounded by the database separately in the entry and
    in the balance, and the two would drift apart (or the entry would round to 0)."""
    if not isinstance(amount, Decimal):
        raise TypeError(f"points are Decimal, never {type(amount).__name__}")
    if not amount.is_finite():
        raise LedgerError(f"{what} must be a finite number, not {amount}")
    if amount <= 0:
        raise LedgerError(f"{what} must be positive")
    if amount >= _POINTS_LIMIT:
        raise LedgerError(f"{what} must be below {_POINTS_LIMIT}")
    if amount != amount.quantize(_POINTS_QUANTUM):
        raise LedgerError(f"{what} has more than {POINTS['decimal_places']} decimal places: {amount}")
    return amount


# The account UPDATE and the entry INSERT as SQL built once (issuance.rawsql): through the ORM
# they cost ~1 ms of CPU per issued line in compilation alone (docs/performance.md).
_ENTRY_INSERT = rawsql.Insert(LedgerEntry)


def _entry(
    account: PointsAccount, *, kind: str, amount: Decimal, reason: str, actor=None, line=None, reverses=None
) -> LedgerEntry:
    """The next entry of an account already locked by the caller, checked against its balance
    and held points; ``account.balance`` moves to its ``balance_after``. Nothing written yet."""
    if not isinstance(amount, Decimal):
        raise TypeError("points are Decimal, never float")
    if amount == 0:
        raise LedgerError("a ledger entry must change the balance")
    new_balance = account.balance + amount
    if new_balance < account.held:
        raise LedgerError(
            f"insufficient points: available {account.balance - account.held}, change {amount}"
        )
    account.balance = new_balance
    return LedgerEntry(
        account=account,
        kind=kind,
        amount=amount,
        balance_after=new_balance,
        reference_id=reference_id_new(),
        reason=reason[:500],
        actor=actor,
        line=line,
        reverses=reverses,
    )


def _write(account: PointsAccount, entries: list[LedgerEntry]) -> None:
    """The account's new balance and its entries, in one UPDATE and one INSERT."""
    rawsql.update(account, "balance", "updated_at")
    _ENTRY_INSERT.run(entries)


def _append(account: PointsAccount, **entry) -> LedgerEntry:
    """Write one entry on an account already locked by the caller."""
    new = _entry(account, **entry)
    _write(account, [new])
    return new


def points_credit(*, account_id: int, amount: Decimal, reason: str, actor=None) -> LedgerEntry:
    """Add points. Locks the account; atomic."""
    _amount_checked(amount, "a credit")
    with transaction.atomic():
        account = account_lock(account_id)
        return _append(account, kind=LedgerEntryKind.CREDIT, amount=amount, reason=reason, actor=actor)


def points_debit(*, account_id: int, amount: Decimal, reason: str, actor=None) -> LedgerEntry:
    """Take points away by hand (not a redemption). Refused if it would overdraw the
    available balance. Locks the account; atomic."""
    _amount_checked(amount, "a debit amount")
    with transaction.atomic():
        account = account_lock(account_id)
        return _append(account, kind=LedgerEntryKind.DEBIT, amount=-amount, reason=reason, actor=actor)


def points_redeem_locked(
    account: PointsAccount, *, amount: Decimal, reason: str, actor=None, line=None
) -> LedgerEntry:
    """Deduct points for an issued reward. The caller holds the account's lock and the
    transaction; the engine uses this so the deduction and the issued units commit together."""
    _amount_checked(amount, "a redemption")
    return _append(account, kind=LedgerEntryKind.REDEMPTION, amount=-amount, reason=reason, actor=actor, line=line)


def points_redeem_many_locked(
    account: PointsAccount, redemptions: list[tuple[Decimal, str, Any]], *, actor=None
) -> list[LedgerEntry]:
    """``points_redeem_locked`` for each (amount, reason, line) in turn, written together: one
    balance UPDATE and one INSERT of the entries (each with its own ``balance_after``) instead
    of two statements per line (a bulk call's lines). The caller holds the lock and the
    transaction; a refused redemption raises before anything is written."""
    entries = []
    for amount, reason, line in redemptions:
        _amount_checked(amount, "a redemption")
        entries.append(_entry(account, kind=LedgerEntryKind.REDEMPTION, amount=-amount, reason=reason, actor=actor,
                              line=line))
    if entries:
        _write(account, entries)
    return entries


def points_hold_locked(account: PointsAccount, *, amount: Decimal) -> None:
    """Reserve points for a PENDING (vendor) issuance: they stay in the balance but are no
    longer available, so concurrent calls cannot spend them. No ledger entry: the balance
    does not change. The caller holds the account's lock and the transaction."""
    _amount_checked(amount, "a hold")
    if account.balance - account.held < amount:
        raise LedgerError(f"insufficient points to hold {amount}")
    account.held += amount
    account.save(update_fields=["held", "updated_at"])


def points_release_locked(account: PointsAccount, *, amount: Decimal) -> None:
    """Give back a hold (before deducting what was really issued). Caller holds the lock."""
    if amount <= 0:
        return
    if amount > account.held:
        raise LedgerError(f"cannot release {amount}: only {account.held} held")
    account.held -= amount
    account.save(update_fields=["held", "updated_at"])


def entry_reverse(*, entry_id: int, reason: str, actor=None) -> LedgerEntry:
    """Undo an entry with a new opposite entry. Locks the account; atomic."""
    with transaction.atomic():
        original = LedgerEntry.objects.select_for_update(of=("self",)).get(pk=entry_id)
        if hasattr(original, "reversed_by"):
            raise LedgerError(f"entry {original.reference_id} is already reversed")
        account = account_lock(original.account_id)
        return _append(
            account,
            kind=LedgerEntryKind.REVERSAL,
            amount=-original.amount,
            reason=reason,
            actor=actor,
            reverses=original,
        )


@dataclass(frozen=True)
class AccountCheck:
    account_id: int
    balance: Decimal
    opening_balance: Decimal
    entries_sum: Decimal

    @property
    def ok(self) -> bool:
        return self.balance == self.opening_balance + self.entries_sum


def _check_rows(accounts: QuerySet[PointsAccount]) -> QuerySet:
    """(id, balance, opening, entries sum) per account, read by ONE statement so balance and
    sum come from the same snapshot: a writer committing between two separate reads would
    otherwise show up as a false disagreement while the system is live."""
    entries_sum = (
        LedgerEntry.objects.filter(account=OuterRef("pk"))
        .order_by()
        .values("account")
        .annotate(s=Sum("amount"))
        .values("s")
    )
    return (
        accounts.order_by("pk")
        .annotate(entries_sum=Subquery(entries_sum, output_field=DecimalField(**POINTS)))
        .values_list("id", "balance", "opening_balance", "entries_sum")
    )


def _as_check(row) -> AccountCheck:
    account_id, balance, opening, total = row
    # SQLite sums the column as floats; the true sum has the column's 4 decimal places.
    total = Decimal(0) if total is None else Decimal(total).quantize(_POINTS_QUANTUM)
    return AccountCheck(account_id, balance, opening, total)


def account_check(account_id: int) -> AccountCheck:
    """Compare the stored balance with opening balance + the sum of its entries."""
    row = _check_rows(PointsAccount.objects.filter(pk=account_id)).first()
    if row is None:
        raise PointsAccount.DoesNotExist(f"no points account {account_id}")
    return _as_check(row)


def accounts_check_all() -> list[AccountCheck]:
    """Every account whose balance disagrees with its ledger (empty when all is well)."""
    checks = map(_as_check, _check_rows(PointsAccount.objects.all()).iterator(chunk_size=2000))
    return [check for check in checks if not check.ok]
