"""Per-process caches of rarely-changing per-org catalogue metadata read by every issue call
(docs/issuance.md, "What the engine caches"; docs/performance.md, "Queries per issue call").

What is cached, for at most ``TTL_SECONDS`` (30 s), per worker process:

- ``TILLS``: a till found usable by a user (the ``username`` look-up with its membership test);
- ``BRANDS``: a brand by name;
- ``CUSTOM_FIELDS``: the org's ISSUE_REWARD custom field definitions.

Never cached: the caller's user and permission, the customer and whatever the customer holds
(segments, cards, labels, tiers), the rewards themselves (enabled, dates, owner), their
targets and payment configs (prices), the limits (definitions and consumption), coupon stock,
balances, holds, idempotency records: everything that decides who may take what and what it
costs is read afresh on every call. A till or brand that is not found is not cached either (a new one works at once).

Staleness: a change saved through the ORM (admin, staff pages, services calling ``save()`` or
``delete()``, m2m ``add``/``remove``/``set``) clears the cache of its kind at once in the process
that made it; other processes see it within ``TTL_SECONDS``. Bulk writes that send no signals
(``QuerySet.update``, ``bulk_create``, raw SQL: the catalogue importer) show within
``TTL_SECONDS`` everywhere. So for up to 30 s after such a change a call may still: book on a
till just deactivated or taken from the user, find a brand just renamed, accept or refuse
custom fields by their former definitions.

Keys carry the org's id and creation time, so a key can never meet another org's rows even
where a database reuses ids (SQLite after a rollback).

Cached values are model instances shared by the requests of a process: read them, never
modify them.
"""

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from django.db.models.signals import m2m_changed, post_delete, post_save

from catalogue.models import (
    Brand,
    CustomFieldDefinition,
    Organisation,
    Till,
)

TTL_SECONDS = 30.0
MAX_ENTRIES = 4096
_MISSING = object()
_clock = time.monotonic  # tests move it forward


class TTLCache:
    """A dict whose entries expire ``ttl`` seconds after they were stored; at most
    ``max_entries`` (the oldest stored go first). Safe for the threads of one process."""

    def __init__(self, name: str, *, ttl: float = TTL_SECONDS, max_entries: int = MAX_ENTRIES):
        self.name, self.ttl, self.max_entries = name, ttl, max_entries
        self._data: dict[Hashable, tuple[Any, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, default=None):
        entry = self._data.get(key)
        if entry is None:
            return default
        value, expires = entry
        if _clock() >= expires:
            with self._lock:
                if self._data.get(key) is entry:
                    del self._data[key]
            return default
        return value

    def set(self, key: Hashable, value) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            self._data.pop(key, None)
            while len(self._data) >= self.max_entries:
                del self._data[next(iter(self._data))]
            self._data[key] = (value, _clock() + self.ttl)

    def get_or_set(self, key: Hashable, compute: Callable[[], Any]):
        value = self.get(key, _MISSING)
        if value is _MISSING:
            value = compute()
            self.set(key, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


TILLS = TTLCache("tills")
BRANDS = TTLCache("brands")
CUSTOM_FIELDS = TTLCache("custom fields")
ALL = (TILLS, BRANDS, CUSTOM_FIELDS)


def org_key(org: Organisation) -> tuple:
    return (org.pk, org.created_at)


def clear_all() -> None:
    for cache in ALL:
        cache.clear()


# ---------------------------------------------------------------- invalidation in this process


def _clearer(*caches: TTLCache):
    def receiver(sender, **kwargs):
        for cache in caches:
            cache.clear()

    return receiver


_RECEIVERS = [
    (Till, _clearer(TILLS)),
    (Till.users.through, _clearer(TILLS)),
    (Brand, _clearer(BRANDS)),
    (CustomFieldDefinition, _clearer(CUSTOM_FIELDS)),
    (Organisation, _clearer(*ALL)),
]
for _model, _receiver in _RECEIVERS:
    post_save.connect(_receiver, sender=_model, weak=False, dispatch_uid=f"issuance.caches.save.{_model._meta.label}")
    post_delete.connect(_receiver, sender=_model, weak=False,
                        dispatch_uid=f"issuance.caches.delete.{_model._meta.label}")
    # m2m add / remove / clear / set send m2m_changed with the link table as sender.
    m2m_changed.connect(_receiver, sender=_model, weak=False, dispatch_uid=f"issuance.caches.m2m.{_model._meta.label}")
