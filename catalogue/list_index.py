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
- The brand by name, the org-level limits, and the validated filter parameters by their text.

A warm call makes one statement: the catalogue version, the customer, its facts and its
consumption of the org-level limits (those kept for the version the previous call read: if the
version has moved, they are read again with the page's). A second one reads the consumption of
the page's own limits, when a reward of the page has any.

Both are keyed by ``CatalogueVersion.value``, which PostgreSQL triggers change with every
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

# The catalogue version the last call read, per database alias: the next call's first statement
# assumes it still holds, to fold in the consumption of the org-level limits kept for it.
_READ_VERSION: dict[str, int] = {}


class CallReads(NamedTuple):
    version: int | None  # None: no row (see ``catalogue_version``)
    found: bool  # the org has this customer
    facts: CustomerFacts
    # The org-level limits and what the customer consumed of them, when the first statement
    # could read it (the version it assumed held); None: to be read with the page's limits.
    org_limits: list[RewardConstraint] | None
    org_usages: dict[int, LimitState] | None


def version_customer_facts(org: Organisation, customer_id: int, now: datetime.datetime) -> CallReads:
    """A call's reads before the index, in one statement on the database the list reads (one
    snapshot): the catalogue version, whether the org has this customer, what the customer holds
    (``issuance.eligibility.customer_facts``) and, when the org-level limits of the version the
    previous call read are kept, the customer's consumption of them (``issuance.limits``'
    ``ConsumptionQuery``). If the version has moved since, that consumption is dropped (the
    limits may have changed) and read with the page's own limits."""
    if not 0 < customer_id <= MAX_CUSTOMER_ID:
        empty = CustomerFacts(frozenset(), frozenset(), frozenset(), frozenset())
        return CallReads(catalogue_version(), False, empty, None, None)
    alias = _alias()
    assumed = _READ_VERSION.get(alias)
    org_limits = None if assumed is None else ORG_LIMITS.get((assumed, org.pk))
    consumption = None
    sql, params = _call_sql(), [org.pk, customer_id, *facts_params(customer_id)]
    if org_limits:
        consumption = ConsumptionQuery.of(org_limits, customer_id=customer_id, org=org, now=now)
        sql, params = f"{sql} UNION ALL {consumption.rows_sql(_CONSUMED)}", [*params, *consumption.params]
    with rawsql.cursor(connections[alias]) as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    version = next((row[0] for row in rows if row[2] == _VERSION), None)
    found = any(row[2] == _CUSTOMER for row in rows)
    facts = facts_of([row for row in rows if row[2] >= 0])
    if version is None or version != assumed or org_limits is None:
        if version is not None:
            _READ_VERSION[alias] = version
        return CallReads(version, found, facts, None, None)
    usages = {} if consumption is None else {
        state.constraint.pk: state for state in consumption.states_of_rows(row for row in rows if row[2] == _CONSUMED)
    }
    return CallReads(version, found, facts, org_limits, usages)


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

    def __init__(self, rows: np.ndarray, groups: list[dict[str, frozenset[int]]], group_of: np.ndarray):
        """``rows``: (id, start, end, creation in epoch microseconds) per reward, in order."""
        rows = rows.reshape(-1, 4)
        self.ids = rows[:, 0].copy()
        self.columns = {column: rows[:, i].copy() for i, column in enumerate(TIME_COLUMNS, start=1)}
        self.groups = groups  # group 0: no targets
        self.group_of = np.asarray(group_of, dtype=np.int32)
        # The targeting rule over all groups at once: per kind, which groups target it and,
        # per target id, the groups that name it.
        self.targets_kind = {t.kind: np.array([t.kind in g for g in groups], dtype=bool) for t in TARGETINGS}
        naming: dict[str, dict[int, list[int]]] = {t.kind: {} for t in TARGETINGS}
        for number, group in enumerate(groups):
            for kind, targets in group.items():
                for target in targets:
                    naming[kind].setdefault(target, []).append(number)
        self.naming = {kind: {t: np.array(g, dtype=np.int32) for t, g in by_target.items()}
                       for kind, by_target in naming.items()}
        # Each time column's distinct instants, sorted: where a filter's instant falls among them
        # decides which rewards pass it (``_slice_key``).
        self.instants = {column: np.unique(values) for column, values in self.columns.items()}
        self._slices = LRU(SLICES_PER_INDEX)

    @classmethod
    def build(cls, brand: Brand, filterset: RewardFilterSet) -> "BrandIndex":
        """Two queries: the brand's rewards through the untimed filters and the sort, and the
        targets of all the brand's rewards (the link rows themselves, as the engine reads them)."""
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
        return cls(rows, groups, group_of)

    def eligible_groups(self, facts: CustomerFacts) -> np.ndarray:
        """``issuance.eligibility.targeting_refused(group, facts) is None`` for every group at
        once: for each kind a group targets, the customer holds one of its targets of that kind
        (tests/test_list_index.py checks the two agree)."""
        eligible = np.ones(len(self.groups), dtype=bool)
        for targeting in TARGETINGS:
            held = np.zeros(len(self.groups), dtype=bool)
            naming = self.naming[targeting.kind]
            for target in getattr(facts, targeting.facts_attr):
                groups = naming.get(target)
                if groups is not None:
                    held[groups] = True
            eligible &= ~self.targets_kind[targeting.kind] | held
        return eligible

    def matching(self, conditions: list[TimeCondition], facts: CustomerFacts) -> np.ndarray:
        """Positions (in the list's order) of the rewards that pass the time filters'
        ``conditions`` and that this customer may take by targeting."""
        mask = self.eligible_groups(facts)[self.group_of]
        for condition in conditions:
            mask &= condition.holds(self.columns, micros)
        return np.flatnonzero(mask)

    def page(self, conditions: list[TimeCondition], facts: CustomerFacts, offset: int, limit: int
             ) -> tuple[int, np.ndarray]:
        """``matching``'s count and its positions ``offset:offset + limit``, without a pass over
        the brand per call: the rewards passing the time filters are kept per ``_slice_key`` (a
        ``TimeSlice``: their positions, groups and count per group), so a call costs the
        targeting rule per group, a sum, and a scan of the slice's first rewards until the page
        is full."""
        kept = self._slices.get_or_set(self._slice_key(conditions), lambda: self._slice(conditions))
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

    def _slice(self, conditions: list[TimeCondition]) -> "TimeSlice":
        mask = np.ones(len(self.ids), dtype=bool)
        for condition in conditions:
            mask &= condition.holds(self.columns, micros)
        positions = np.flatnonzero(mask).astype(np.int32)
        groups = self.group_of[positions]
        return TimeSlice(positions, groups, np.bincount(groups, minlength=len(self.groups)))

    @property
    def nbytes(self) -> int:
        """The arrays' bytes, the kept TimeSlices' included."""
        arrays = [self.ids, self.group_of, *self.columns.values(), *self.instants.values()]
        arrays += [a for kept in self._slices.values() for a in kept]
        return sum(a.nbytes for a in arrays)


class TimeSlice(NamedTuple):
    """The rewards of a BrandIndex that pass a call's time filters: their positions (in the
    list's order), their targeting groups, and how many there are per group."""

    positions: np.ndarray
    groups: np.ndarray
    counts: np.ndarray


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


def reward_list_indexed(
    *, org: Organisation, brand: Brand, customer_id: int, reads: CallReads, params, filters: dict,
    page: PageRequest, now: datetime.datetime,
) -> RewardList:
    """``catalogue.selectors.reward_list_for_customer`` from the index, for the validated
    filters ``filters`` (``validated_filters``) of the query ``params``, after the call's first
    statement (``version_customer_facts``: ``reads``)."""
    version = reads.version

    def build() -> BrandIndex:
        filterset = RewardFilterSet(params, now=now, time_zone=org.time_zone, defer_time=True)
        assert filterset.is_valid(), filterset.errors  # as validated_filters found them
        return BrandIndex.build(brand, filterset)

    index = INDEXES.get_or_set((version, brand.pk, untimed_key(filters)), build)
    if page.unpaged:
        offset, limit = 0, page.unpaged_ceiling
    else:
        offset, limit = (page.page - 1) * page.size, page.size
    conditions = time_conditions(filters, now=now, time_zone=org.time_zone)
    total, positions = index.page(conditions, reads.facts, offset, limit)
    ids = index.ids[positions].tolist()
    rewards = listed_rewards(version, ids)
    reward_level = [c for reward in rewards for c in reward.constraints]
    if reads.org_usages is None:
        org_level = ORG_LIMITS.get_or_set((version, org.pk), lambda: org_constraints(org))
        usages = constraint_consumption(reward_level + org_level, customer_id=customer_id, org=org, now=now)
    else:  # the first statement read them: a second one only for a page with limited rewards
        org_level, usages = reads.org_limits, reads.org_usages
        if reward_level:
            usages = {**usages, **constraint_consumption(reward_level, customer_id=customer_id, org=org, now=now)}
    return RewardList(page=RewardPage(rewards=rewards, total=total, request=page), usages=usages,
                      org_constraints=org_level, now=now)
