"""The list API's read from memory: a per-process index of a brand's rewards, kept for as long as
the catalogue does not change (docs/list-api.md, "The list index"; docs/performance.md).

A list call counts a brand's listable rewards and renders a page of them. Read from the
database each time, that is ~36 ms of CPU per call on a 60,000-reward brand, a count over the
brand and ten queries for a page. Yet the catalogue changes rarely, and what varies from call
to call is only the time and the customer. So, per worker process:

- ``BrandIndex``: for one brand and one set of the filters that do not depend on the time
  (redemption type, labels, prices, sort, …), the matching rewards in their sorted order, as
  numpy arrays: id, start, end and creation instants, and a targeting group (which targets of
  which kinds the reward has, read from the link rows). A call applies the time filters
  (``catalogue.filters.time_condition``, the FilterSet's own conditions), the targeting rule
  for its customer's facts (``issuance.eligibility.targeting_refused``, evaluated for every
  group at once) and pages: a few vector operations over the brand instead of a count in SQL.
- ``ListedReward``: a reward rendered, as JSON text, but for the per-call fields (expired,
  started, the limits with the customer's consumption, which are read afresh each call).
- ``TimeSlice``: per index, the rewards that pass the time filters at the instants that let the
  same rewards through: a call sums counts per targeting group and scans to fill its page.
- The brand by name, the org-level limits, and the validated filter parameters by their text.

A warm call makes one statement: the catalogue version, the customer, its facts and its
consumption of the limits the call expects to show (``expected_limits``: the org-level ones and
those of the rewards that can be on the page for any customer, as kept for the version the
previous call read). A second statement reads the consumption of limits it did not expect (the
version moved, or too many limits in the window).

What is kept is keyed by ``CatalogueVersion.value``, which PostgreSQL triggers change with every
statement that writes a table the list shows (``catalogue.models.LIST_TABLES``), read once per
call from the database the list reads. So a change is seen by the very next call in every
process, whatever wrote it (admin, importer, raw SQL), and a rolled-back change never. A
transaction that wrote the catalogue reads its own, not yet committed, version: what it
builds under that number is what it sees, and nobody else ever reads that number unless it
commits. Not used on SQLite (no triggers) or with ``LIST_INDEX=false``: then every call is
``catalogue.selectors.reward_list_for_customer``, the same read in SQL.

What is never cached here: the customer and their facts, limits' consumption, the time.
"""

import datetime
import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import NamedTuple

import numpy as np
from django.conf import settings
from django.db import connection, connections, router
from django.db.models.expressions import RawSQL

from catalogue.api.serializers import ListedReward
from catalogue.filters import TIME_COLUMNS, TIME_FILTERS, RewardFilterSet, TimeCondition, time_conditions
from catalogue.models import Brand, CatalogueVersion, Customer, Organisation, Reward, RewardConstraint
from catalogue.selectors import (
    MAX_CUSTOMER_ID,
    PageRequest,
    RewardList,
    RewardPage,
    constraint_consumption,
    org_constraints,
    with_list_details,
)
from issuance import rawsql
from issuance.eligibility import TARGETINGS, CustomerFacts, brand_reward_targets, facts_of, facts_params, facts_query
from issuance.errors import ErrorCode, IssuanceError
from issuance.limits import ConsumptionQuery, LimitState
from issuance.resolution import brand_for

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MICROSECOND = datetime.timedelta(microseconds=1)


def micros(instant: datetime.datetime) -> int:
    """An instant as integer microseconds since the epoch (exact: no float)."""
    return (instant - EPOCH) // _MICROSECOND


class LRU:
    """A bounded dict, least recently used out first; safe for the threads of one process.
    Values are shared by the requests of a process: read them, never modify them."""

    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self._data: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._making: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable):
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def get_many(self, keys: list) -> list:
        """``get`` of each key (None where missing), under one acquisition of the lock."""
        with self._lock:
            data = self._data
            values = [data.get(key) for key in keys]
            for key, value in zip(keys, values, strict=True):
                if value is not None:
                    data.move_to_end(key)
            return values

    def set(self, key: Hashable, value) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def get_or_set(self, key: Hashable, make: Callable):
        """The value of ``key``, made by ``make()`` if missing: by one thread at a time per key
        (the others wait for it rather than build the same index again)."""
        value = self.get(key)
        if value is not None:
            return value
        with self._lock:
            making = self._making.setdefault(key, threading.Lock())
        with making:
            value = self.get(key)
            if value is None:
                try:
                    value = make()
                    self.set(key, value)
                finally:
                    with self._lock:
                        self._making.pop(key, None)
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def values(self) -> list:
        with self._lock:
            return list(self._data.values())


INDEXES = LRU(32)  # (version, brand id, untimed filters) → BrandIndex; up to ~2 MB each at 60k rewards
REWARDS = LRU(20_000)  # (version, reward id) → ListedReward
ORG_LIMITS = LRU(1024)  # (version, org id) → the org-level limits
BRANDS = LRU(1024)  # (version, org id, name) → a brand found
# Per BrandIndex, the TimeSlices of its latest time keys (the current instant's, and a neighbour's
# while calls straddle a boundary): up to ~0.5 MB each at 60k rewards.
SLICES_PER_INDEX = 3


def clear() -> None:
    for cache in (INDEXES, REWARDS, ORG_LIMITS, BRANDS, VALIDATED):
        cache.clear()
    _READ_VERSION.clear()


# ---------------------------------------------------------------- the version


def _alias() -> str:
    return router.db_for_read(CatalogueVersion) or "default"


def enabled() -> bool:
    """The index is on and the database the list reads is PostgreSQL (whose triggers keep the
    catalogue version)."""
    return settings.LIST_INDEX and connections[_alias()].vendor == "postgresql"


def catalogue_version() -> int | None:
    """The catalogue's version on the database the list reads, or None where the index is not
    to be used (turned off, not PostgreSQL, or the row is missing: a flushed test database
    before its first catalogue write)."""
    if not enabled():
        return None
    with rawsql.cursor(connections[_alias()]) as cursor:
        cursor.execute(f'SELECT value FROM "{CatalogueVersion._meta.db_table}" WHERE id = 1')
        row = cursor.fetchone()
    return row[0] if row else None


@functools.cache
def _call_sql() -> str:
    version, customer = (connection.ops.quote_name(m._meta.db_table) for m in (CatalogueVersion, Customer))
    return (f'SELECT "value", 0, {_VERSION} FROM {version} WHERE "id" = 1 '
            f'UNION ALL SELECT "id", 0, {_CUSTOMER} FROM {customer} WHERE "org_id" = %s AND "id" = %s '
            f"UNION ALL {facts_query()}")


_VERSION, _CUSTOMER, _CONSUMED = -2, -1, -3  # the row kinds of a call's first statement besides the facts' (0-3)
PRINCIPAL_ROW = -4  # the kind of issuance.api.kept_principals' check row

# The catalogue version the last call read, per database alias: the next call's first statement
# assumes it still holds, to fold in the consumption of the limits that call will likely show.
_READ_VERSION: dict[str, int] = {}


class CallReads(NamedTuple):
    version: int | None  # None: no row (see ``catalogue_version``)
    found: bool  # the org has this customer
    facts: CustomerFacts
    # What the customer consumed of the limits the call expected to show, by constraint id, when
    # the version the first statement assumed held; None: nothing read (all read after the page).
    usages: dict[int, LimitState] | None
    # The answer to the ``principal_check`` the statement carried (None: it carried none).
    principal: bool | None = None


def version_customer_facts(org: Organisation, customer_id: int, now: datetime.datetime,
                           assumed: int | None = None, expected: list[RewardConstraint] | None = None,
                           principal_check: tuple[str, list] | None = None) -> CallReads:
    """A call's reads before the index, in one statement on the database the list reads (one
    snapshot): the catalogue version, whether the org has this customer, what the customer holds
    (``issuance.eligibility.customer_facts``) and the customer's consumption of the ``expected``
    limits of catalogue version ``assumed`` (``issuance.limits``' ``ConsumptionQuery``; see
    ``expected_limits``). If the version is not ``assumed`` any more, that consumption is dropped
    (the limits may have changed) and read after the page. ``principal_check``: SQL (and its
    parameters) of one more row of kind ``PRINCIPAL_ROW``, whose presence the result tells
    (issuance.api.kept_principals); no statement runs for an id no customer can have."""
    if not 0 < customer_id <= MAX_CUSTOMER_ID:
        empty = CustomerFacts(frozenset(), frozenset(), frozenset(), frozenset())
        return CallReads(catalogue_version(), False, empty, None)
    alias = _alias()
    consumption = None
    sql, params = _call_sql(), [org.pk, customer_id, *facts_params(customer_id)]
    if expected:
        consumption = ConsumptionQuery.of(expected, customer_id=customer_id, org=org, now=now, by_shape=True)
        sql, params = f"{sql} UNION ALL {consumption.rows_sql(_CONSUMED)}", [*params, *consumption.params]
    if principal_check is not None:
        sql, params = f"{sql} UNION ALL {principal_check[0]}", [*params, *principal_check[1]]
    with rawsql.cursor(connections[alias]) as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    version = next((row[0] for row in rows if row[2] == _VERSION), None)
    found = any(row[2] == _CUSTOMER for row in rows)
    facts = facts_of([row for row in rows if row[2] >= 0])
    principal = None if principal_check is None else any(row[2] == PRINCIPAL_ROW for row in rows)
    if version is not None:
        _READ_VERSION[alias] = version
    if version is None or version != assumed or expected is None:
        return CallReads(version, found, facts, None, principal)
    usages = {} if consumption is None else {
        state.constraint.pk: state for state in consumption.states_of_rows(row for row in rows if row[2] == _CONSUMED)
    }
    return CallReads(version, found, facts, usages, principal)


# The most rewards and reward-level limits ``expected_limits`` folds into a call's first statement
# (a deep page, or a brand whose first rewards are nearly all targeted, reads them afterwards).
EXPECTED_WINDOW = 200
EXPECTED_REWARD_LIMITS = 16


def expected_limits(version: int | None, org: Organisation, brand_name: str, key: tuple,
                    conditions: list[TimeCondition], offset: int, limit: int) -> list[RewardConstraint] | None:
    """The limits a call will show if the catalogue is still at ``version`` (the one the last
    call read), from what this process keeps for it, or None (nothing kept for the org). The
    org-level limits; and, when the brand's index for these filters is kept, the limits of the
    rewards in the page's ``BrandIndex.window``: a superset of the page's, whoever the customer
    is."""
    if version is None:
        return None
    org_level = ORG_LIMITS.get((version, org.pk))
    if org_level is None:
        return None
    expected = list(org_level)
    brand = BRANDS.get((version, org.pk, brand_name))
    index = None if brand is None else INDEXES.get((version, brand.pk, key))
    if index is not None:
        window = index.window(conditions, offset, limit)
        if len(window) <= EXPECTED_WINDOW:
            reward_level = [c for pk in index.ids[window].tolist() for c in index.limits.get(pk, ())]
            if len(reward_level) <= EXPECTED_REWARD_LIMITS:
                expected += reward_level
    return expected


# ---------------------------------------------------------------- validated parameters


VALIDATED = LRU(1024)  # the query's parameters but userId → (error messages, validated values)


def validated_filters(params) -> tuple[list[str], dict]:
    """``RewardFilterSet``'s validation of these parameters: its error messages ("name:
    message") and its values. Kept per process by the parameters' text (validation reads
    neither the database nor the time): django-filter builds a FilterSet, a form class and a
    form per call, ~0.7 ms of CPU, for what is mostly the same few queries. Shared values: read
    them, never modify them."""
    key = tuple(sorted((name, tuple(values)) for name, values in params.lists() if name != "userId"))

    def validate():
        filterset = RewardFilterSet(params)
        if filterset.is_valid():
            return [], filterset.form.cleaned_data
        return [f"{name}: {message}" for name, messages in filterset.errors.items() for message in messages], {}

    return VALIDATED.get_or_set(key, validate)


# ---------------------------------------------------------------- a brand's index


class BrandIndex:
    """One brand's rewards matching one set of untimed filters, in the list's order."""

    def __init__(self, rows: np.ndarray, groups: list[dict[str, frozenset[int]]], group_of: np.ndarray,
                 limits: dict[int, tuple[RewardConstraint, ...]] | None = None):
        """``rows``: (id, start, end, creation in epoch microseconds) per reward, in order;
        ``limits``: the limits of the rewards that have any, by reward id."""
        self.limits = limits or {}
        rows = rows.reshape(-1, 4)
        self.ids = rows[:, 0].copy()
        self.columns = {column: rows[:, i].copy() for i, column in enumerate(TIME_COLUMNS, start=1)}
        self.groups = groups  # group 0: no targets
        self.group_of = np.asarray(group_of, dtype=np.int32)
        # The targeting rule over all groups at once, as bit sets over the groups (Python ints,
        # bit n = group n) that ``eligible_groups`` combines in a few integer operations: per
        # kind, the groups that target it and, per target id, the groups that name it.
        count = len(groups)
        naming: dict[str, dict[int, list[int]]] = {t.kind: {} for t in TARGETINGS}
        for number, group in enumerate(groups):
            for kind, targets in group.items():
                for target in targets:
                    naming[kind].setdefault(target, []).append(number)
        self._kind_bits = {t.kind: _bits([n for n, g in enumerate(groups) if t.kind in g], count) for t in TARGETINGS}
        self._naming_bits = {kind: {t: _bits(g, count) for t, g in by_target.items()}
                             for kind, by_target in naming.items()}
        # Each time column's distinct instants, sorted: where a filter's instant falls among them
        # decides which rewards pass it (``_slice_key``).
        self.instants = {column: np.unique(values) for column, values in self.columns.items()}
        self._slices = LRU(SLICES_PER_INDEX)
        # The conditions of the last time key computed, and that key: a call asks for it twice
        # (``window``, then ``page``) with the same conditions.
        self._last_key: tuple[list, tuple] | None = None

    @classmethod
    def build(cls, brand: Brand, filterset: RewardFilterSet) -> "BrandIndex":
        """Three queries: the brand's rewards through the untimed filters and the sort, the
        targets of all the brand's rewards (the link rows themselves, as the engine reads them),
        and the brand's reward-level limits."""
        queryset = filterset.filter_queryset(Reward.objects.filter(org_id=brand.org_id, brand=brand))
        filterset.time_conditions.clear()  # collected again by each call
        # The instants as integer microseconds computed by PostgreSQL (EXTRACT returns an exact
        # numeric): ~10× cheaper than making 3 datetimes per row in Python and converting them.
        table = connection.ops.quote_name(Reward._meta.db_table)
        epoch = {f"_{c}": RawSQL(f"(EXTRACT(EPOCH FROM {table}.{connection.ops.quote_name(c)}) * 1000000)::bigint", ())
                 for c in TIME_COLUMNS}
        rows = np.array(list(queryset.annotate(**epoch).values_list("pk", *epoch)), dtype=np.int64)
        ids = rows.reshape(-1, 4)[:, 0]
        targets = brand_reward_targets(brand.pk)
        targeted = set().union(*(targets[t.kind] for t in TARGETINGS))
        groups: list[dict[str, frozenset[int]]] = [{}]
        numbers: dict[tuple, int] = {(): 0}
        group_of = np.zeros(len(ids), dtype=np.int32)  # untargeted: group 0
        for position in np.flatnonzero(np.isin(ids, np.fromiter(targeted, dtype=np.int64, count=len(targeted)))):
            pk = int(ids[position])
            wanted = tuple((t.kind, frozenset(targets[t.kind][pk])) for t in TARGETINGS if pk in targets[t.kind])
            number = numbers.get(wanted)
            if number is None:
                number = numbers[wanted] = len(groups)
                groups.append(dict(wanted))
            group_of[position] = number
        limits: dict[int, list[RewardConstraint]] = {}
        for constraint in RewardConstraint.objects.filter(reward__brand_id=brand.pk).order_by("id"):
            limits.setdefault(constraint.reward_id, []).append(constraint)
        return cls(rows, groups, group_of, {pk: tuple(found) for pk, found in limits.items()})

    def eligible_groups(self, facts: CustomerFacts) -> np.ndarray:
        """``issuance.eligibility.targeting_refused(group, facts) is None`` for every group at
        once: for each kind a group targets, the customer holds one of its targets of that kind
        (tests/test_list_index.py checks the two agree). Worked out on bit sets, then unpacked
        to one bool per group."""
        eligible = (1 << len(self.groups)) - 1
        for targeting in TARGETINGS:
            kind_bits = self._kind_bits[targeting.kind]
            if kind_bits:
                naming, held = self._naming_bits[targeting.kind], 0
                for target in getattr(facts, targeting.facts_attr):
                    held |= naming.get(target, 0)
                eligible &= ~kind_bits | held
        return _unpack(eligible, len(self.groups))

    def matching(self, conditions: list[TimeCondition], facts: CustomerFacts) -> np.ndarray:
        """Positions (in the list's order) of the rewards that pass the time filters'
        ``conditions`` and that this customer may take by targeting, by a pass over the whole
        brand: the reference ``page`` is tested against (tests/test_list_index.py)."""
        return np.flatnonzero(self.eligible_groups(facts)[self.group_of] & self._time_mask(conditions))

    def page(self, conditions: list[TimeCondition], facts: CustomerFacts, offset: int, limit: int
             ) -> tuple[int, np.ndarray]:
        """``matching``'s count and its positions ``offset:offset + limit``, without a pass over
        the brand per call: the rewards passing the time filters are kept per ``_slice_key`` (a
        ``TimeSlice``: their positions, groups and count per group), so a call costs the
        targeting rule per group, a sum, and a scan of the slice's first rewards until the page
        is full."""
        kept = self.time_slice(conditions)
        eligible = self.eligible_groups(facts)
        total = int(kept.counts[eligible].sum())
        end = min(offset + limit, total)
        if offset >= end:
            return total, kept.positions[:0]
        if total == len(kept.positions):  # every reward of the slice is eligible
            return total, kept.positions[offset:end]
        found, count, start, chunk = [], 0, 0, max(256, 2 * end)
        while count < end:
            hits = np.flatnonzero(eligible[kept.groups[start:start + chunk]]) + start
            found.append(hits)
            count += len(hits)
            start += chunk
            chunk *= 2
        return total, kept.positions[np.concatenate(found)[offset:end]]

    def window(self, conditions: list[TimeCondition], offset: int, limit: int) -> np.ndarray:
        """Positions that hold the page ``offset:offset + limit`` of ANY customer: a reward
        targeted at no one is everyone's, so a customer's page starts at or after the slice's
        ``offset``-th reward and ends at or before its ``offset + limit``-th untargeted one."""
        kept = self.time_slice(conditions)
        end = offset + limit
        stop = int(kept.untargeted[end - 1]) + 1 if len(kept.untargeted) >= end else len(kept.positions)
        return kept.positions[offset:stop]

    def time_slice(self, conditions: list[TimeCondition]) -> "TimeSlice":
        """The rewards passing ``conditions``: kept per ``_slice_key``, made on first use."""
        return self._slices.get_or_set(self.time_key(conditions), lambda: self._slice(conditions))

    def time_key(self, conditions: list[TimeCondition]) -> tuple:
        """``_slice_key``, computed once for the same list of conditions asked twice in a row
        (a call's ``window`` and ``page``; each call makes its own list)."""
        last = self._last_key  # one read: another thread may replace it meanwhile
        if last is not None and last[0] is conditions:
            return last[1]
        key = self._slice_key(conditions)
        self._last_key = (conditions, key)
        return key

    def _slice_key(self, conditions: list[TimeCondition]) -> tuple:
        """Where each term's instant falls among its column's distinct instants: how many are
        below it (``lt``, ``gte``: a value passes by being < it, or fails by it) or at most it
        (``lte``, ``gt``). Two instants with the same key let exactly the same rewards through."""
        return tuple(
            tuple(
                tuple((column, comparison, int(np.searchsorted(
                    self.instants[column], micros(instant), side="right" if comparison in ("lte", "gt") else "left")))
                      for column, comparison, instant in terms)
                for terms in condition.alternatives)
            for condition in conditions)

    def _time_mask(self, conditions: list[TimeCondition]) -> np.ndarray:
        mask = np.ones(len(self.ids), dtype=bool)
        for condition in conditions:
            mask &= condition.holds(self.columns, micros)
        return mask

    def _slice(self, conditions: list[TimeCondition]) -> "TimeSlice":
        positions = np.flatnonzero(self._time_mask(conditions)).astype(np.int32)
        groups = self.group_of[positions]
        return TimeSlice(positions, groups, np.bincount(groups, minlength=len(self.groups)),
                         np.flatnonzero(groups == 0).astype(np.int32))

    @property
    def nbytes(self) -> int:
        """The arrays' bytes, the kept TimeSlices' included."""
        arrays = [self.ids, self.group_of, *self.columns.values(), *self.instants.values()]
        arrays += [a for kept in self._slices.values() for a in kept]
        return sum(a.nbytes for a in arrays)


def _bits(numbers, count: int) -> int:
    """The set of ``numbers`` (each in 0 .. count - 1) as an int: bit n set for n."""
    members = np.zeros(count, dtype=bool)
    members[np.asarray(numbers, dtype=np.int64)] = True
    return int.from_bytes(np.packbits(members, bitorder="little").tobytes(), "little")


def _unpack(bits: int, count: int) -> np.ndarray:
    """Bits 0 .. count - 1 of ``bits`` (non-negative) as a bool array."""
    packed = np.frombuffer(bits.to_bytes((count + 7) // 8, "little"), dtype=np.uint8)
    return np.unpackbits(packed, count=count, bitorder="little").view(bool)


class TimeSlice(NamedTuple):
    """The rewards of a BrandIndex that pass a call's time filters: their positions (in the
    list's order), their targeting groups, how many there are per group, and which of them are
    targeted at no one."""

    positions: np.ndarray
    groups: np.ndarray
    counts: np.ndarray
    untargeted: np.ndarray  # the slice's ordinals of the rewards targeted at no one (group 0)


def untimed_key(data: dict) -> tuple:
    """The filters that decide a BrandIndex (every validated value but the time filters')."""
    return tuple(
        (name, tuple(value) if isinstance(value, list) else value)
        for name, value in sorted(data.items())
        if name not in TIME_FILTERS
    )


# ---------------------------------------------------------------- one call


def brand_named(version: int, org: Organisation, name: str) -> Brand:
    """``issuance.resolution.brand_for``, kept per version (a brand not found is not kept)."""
    return BRANDS.get_or_set((version, org.pk, name), lambda: brand_for(org=org, name=name))


def listed_rewards(version: int, ids: list[int]) -> list[ListedReward]:
    """The rendered rewards of a page, in the order of ``ids``: those not kept yet in one load
    (``with_list_details``: a query per kind of linked row)."""
    found = dict(zip(ids, REWARDS.get_many([(version, pk) for pk in ids]), strict=True))
    missing = [pk for pk, listed in found.items() if listed is None]
    if missing:
        for reward in with_list_details(Reward.objects.filter(pk__in=missing).order_by()):
            found[reward.pk] = listed = ListedReward.of(reward)
            REWARDS.set((version, reward.pk), listed)
    return [found[pk] for pk in ids]


def page_bounds(page: PageRequest) -> tuple[int, int]:
    """(offset, limit) of a page request."""
    if page.unpaged:
        return 0, page.unpaged_ceiling
    return (page.page - 1) * page.size, page.size


def indexed_list(*, org: Organisation, brand_name: str, customer_id: int, params, filters: dict,
                 page: PageRequest, now: datetime.datetime, principal_check: tuple[str, list] | None = None,
                 principal_checked: Callable[[bool], None] | None = None) -> RewardList | None:
    """The list API's read from the index (``catalogue.selectors.reward_list_for_customer``'s
    answer) for the validated ``filters`` (``validated_filters``) of the query ``params``, or None
    where the index cannot be used (no catalogue version: the database read answers). Raises what
    that read raises: the brand not found (3004) before the customer (1014).

    A warm call makes one statement (``version_customer_facts``), a second one only for the
    limits it did not expect (``expected_limits``: the catalogue moved since the last call, or the
    page's window held too many rewards or limits). ``principal_check``: carried by that
    statement, its answer given to ``principal_checked`` right after it (which may raise)."""
    key = untimed_key(filters)
    conditions = time_conditions(filters, now=now, time_zone=org.time_zone)
    offset, limit = page_bounds(page)
    assumed = _READ_VERSION.get(_alias())
    expected = expected_limits(assumed, org, brand_name, key, conditions, offset, limit)
    reads = version_customer_facts(org, customer_id, now, assumed, expected, principal_check)
    if principal_checked is not None and reads.principal is not None:
        principal_checked(reads.principal)
    if reads.version is None:
        return None
    version = reads.version
    brand = brand_named(version, org, brand_name)
    if not reads.found:
        raise IssuanceError(ErrorCode.CUSTOMER_NOT_FOUND)

    def build() -> BrandIndex:
        filterset = RewardFilterSet(params, now=now, time_zone=org.time_zone, defer_time=True)
        assert filterset.is_valid(), filterset.errors  # as validated_filters found them
        return BrandIndex.build(brand, filterset)

    index = INDEXES.get_or_set((version, brand.pk, key), build)
    total, positions = index.page(conditions, reads.facts, offset, limit)
    rewards = listed_rewards(version, index.ids[positions].tolist())
    org_level = ORG_LIMITS.get_or_set((version, org.pk), lambda: org_constraints(org))
    shown = [c for reward in rewards for c in reward.constraints] + org_level
    usages = reads.usages
    if usages is None:
        usages = constraint_consumption(shown, customer_id=customer_id, org=org, now=now)
    else:
        unexpected = [c for c in shown if c.pk not in usages]
        if unexpected:
            usages = {**usages, **constraint_consumption(unexpected, customer_id=customer_id, org=org, now=now)}
    return RewardList(page=RewardPage(rewards=rewards, total=total, request=page), usages=usages,
                      org_constraints=org_level, now=now)
