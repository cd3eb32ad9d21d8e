"""Writes to the catalogue.

The rewards' listing cache
--------------------------
``reward_listing_refresh`` is the one writer of ``Reward.list_points``, ``list_cash`` and
``targeting``: one UPDATE computing them from the rules in ``catalogue.selectors``
(``LISTING_CACHE``). Every write that changes what they derive from calls it, in the
write's transaction: Reward and PaymentConfig / RewardSegmentTarget ``save()``/``delete()``,
the M2M receivers of ``catalogue.signals`` (card series, labels, tiers, segment targets,
and deleted targets), the importer (once, for every reward of the file) and the bench
loaders after COPY. docs/list-api.md, "Prices and targeting".

Coupon pool upload
------------------
``coupon_codes_upload`` is the one way codes enter an uploaded pool (the admin's CSV page
calls it; an importer or API may call it too). It is all-or-nothing: every row is checked
first, and one bad row means nothing is inserted.
"""

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import NamedTuple

from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, connections, router, transaction
from django.db.models import QuerySet

from issuance.models import IssuedUnit

from .models import CouponCode, CouponSeries, Reward
from .selectors import LISTING_CACHE

COUPON_CODE_MAX_LENGTH = CouponCode._meta.get_field("code").max_length
# Rows per INSERT and per "already present?" look-up. PostgreSQL takes 5,000 parameters
# in one statement without trouble; SQLite caps the parameters of a statement (999 on
# old builds), hence the min() in _lookup_batch().
COUPON_UPLOAD_BATCH = 5000
# Rewards per UPDATE of reward_listing_refresh.
LISTING_REFRESH_BATCH = 5000


class CouponRow(NamedTuple):
    line: int
    code: str


@dataclass(frozen=True)
class RowError:
    line: int | None  # None: the upload as a whole
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line is not None else self.message


class CouponUploadError(Exception):
    """The upload was refused; nothing was inserted. ``errors`` is sorted by line."""

    def __init__(self, errors: Sequence[RowError]):
        self.errors = sorted(errors, key=lambda e: (e.line is not None, e.line or 0))
        super().__init__(f"{len(self.errors)} problem(s); no code was uploaded")


@dataclass(frozen=True)
class CouponUploadResult:
    inserted: int
    pool_size: int


def _lookup_batch() -> int:
    limit = connection.features.max_query_params
    return min(COUPON_UPLOAD_BATCH, limit - 10) if limit else COUPON_UPLOAD_BATCH


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def reward_listing_refresh(
    *, reward_ids: Iterable[int] | None = None, rewards: QuerySet[Reward] | None = None, using: str | None = None
) -> int:
    """Recompute the listing cache of the rewards ``reward_ids`` (or of the queryset
    ``rewards``, e.g. ``Reward.objects.all()`` after a bulk load) from their payment configs,
    ``intouch_points`` and targeting link rows: one UPDATE (per batch of ids), whatever the
    number of rewards, in the caller's transaction (or its own). Returns the number of
    rewards updated (unknown ids are skipped).

    The rows are locked first (``FOR NO KEY UPDATE``, in id order; inserting a config or a
    link only takes a key-share lock, so writers are not held up): under READ COMMITTED the
    UPDATE then reads the configs and links of every concurrent writer of these rewards that
    committed before it, so two writers cannot leave the cache with the older of their two
    views.

    The catalogue version (catalogue.models.CatalogueVersion) is taken first, by an UPDATE of
    no row (its statement trigger runs all the same), as every other catalogue write takes it
    before its row locks: a refresh that locked rewards first could otherwise wait for the
    version held by a writer waiting for those rewards."""
    if (reward_ids is None) == (rewards is None):
        raise TypeError("give either reward_ids or rewards")
    values = {column: rule() for column, rule in LISTING_CACHE.items()}
    if rewards is not None:
        alias, batches = rewards._db or router.db_for_write(Reward), [rewards.order_by()]
    else:
        alias = using or DEFAULT_DB_ALIAS
        ids = sorted({pk for pk in reward_ids if pk is not None})
        limit = connections[alias].features.max_query_params  # SQLite caps the parameters
        size = min(LISTING_REFRESH_BATCH, limit - 10) if limit else LISTING_REFRESH_BATCH
        batches = [Reward.objects.using(alias).filter(pk__in=chunk) for chunk in _chunks(ids, size)]
    updated = 0
    with transaction.atomic(using=alias, savepoint=False):
        with connections[alias].cursor() as cursor:
            cursor.execute(f'UPDATE "{Reward._meta.db_table}" SET id = id WHERE id < 0')
        for batch in batches:
            if connections[alias].features.has_select_for_update:  # not SQLite (one writer at a time)
                list(batch.select_for_update(no_key=True).order_by("pk").values_list("pk", flat=True))
            updated += batch.update(**values)
    return updated


def _short(code: str) -> str:
    return code if len(code) <= 40 else f"{code[:37]}..."


def coupon_codes_upload(*, series: CouponSeries, rows: Iterable[tuple[int, str]]) -> CouponUploadResult:
    """Add codes to the uploaded pool of ``series``.

    ``rows`` are ``(line, code)`` pairs; ``line`` is what error messages name (the CSV line).
    Codes are stripped of surrounding white space. Refused, naming each offending line, when a
    code is empty, longer than 64 characters, repeated in the upload, already in the pool, or
    already issued from this series.

    Atomic: either every code is inserted or none is. The series row is locked
    (``FOR NO KEY UPDATE``: concurrent uploads to the same series queue up, issuing from it
    does not) while the pool and the issued codes are checked and the rows are inserted in
    batches, so two uploads cannot both add one code; the pool's unique constraint is the
    backstop. Duplicate checks are set-based (one query per batch of codes), never per row.
    """
    if series.generate_codes:
        raise CouponUploadError([RowError(None, "this series generates its codes on issue; it has no pool")])

    first_line: dict[str, int] = {}
    errors: list[RowError] = []
    for line, raw in rows:
        code = (raw or "").strip()
        if not code:
            errors.append(RowError(line, "empty code"))
        elif len(code) > COUPON_CODE_MAX_LENGTH:
            errors.append(RowError(line, f"code longer than {COUPON_CODE_MAX_LENGTH} characters"))
        elif code in first_line:
            errors.append(RowError(line, f"{_short(code)!r} repeats line {first_line[code]}"))
        else:
            first_line[code] = line
    if not first_line:
        raise CouponUploadError(errors or [RowError(None, "the upload holds no code")])

    # The pool and issued checks run even when some rows are already refused, so that one
    # round trip reports every problem of the file.
    try:
        with transaction.atomic():
            # get() evaluates the query, so the lock is held before anything is read.
            CouponSeries.objects.select_for_update(no_key=True).get(pk=series.pk)
            batch = _lookup_batch()
            for chunk in _chunks(first_line, batch):
                in_pool = CouponCode.objects.filter(series_id=series.pk, code__in=chunk).values_list("code", flat=True)
                errors.extend(RowError(first_line[c], f"{_short(c)!r} is already in the pool") for c in in_pool)
                issued = IssuedUnit.objects.filter(coupon_series_id=series.pk, coupon_code__in=chunk).values_list(
                    "coupon_code", flat=True
                )
                errors.extend(RowError(first_line[c], f"{_short(c)!r} was already issued") for c in issued)
            if errors:
                raise CouponUploadError(errors)
            for chunk in _chunks(first_line, batch):
                CouponCode.objects.bulk_create([CouponCode(series_id=series.pk, code=c) for c in chunk])
            pool_size = CouponCode.objects.filter(series_id=series.pk).count()
    except IntegrityError as exc:
        # Only reachable if a code got into the pool past the lock (e.g. a writer that does
        # not lock the series); the transaction is rolled back, so nothing was inserted.
        raise CouponUploadError([RowError(None, f"a code was added to the pool concurrently: {exc}")]) from exc
    return CouponUploadResult(inserted=len(first_line), pool_size=pool_size)
