"""Reads of the list API from a streaming replica (docs/scaling.md).

Configured by the environment: ``DATABASE_REPLICA_URL`` adds the ``replica`` database and
installs ``ReplicaRouter``; without it nothing here is active and everything uses ``default``.

What may go to the replica is opt-in and narrow, because a replica lags the primary:
- only during a view named in ``REPLICA_READ_URL_NAMES`` (default: the list API), on GET/HEAD
  (``rewards_site.middleware.ReplicaReadsMiddleware`` opens the window);
- only tables of ``REPLICA_READ_APPS`` (catalogue, issuance): users, groups, sessions and OAuth2
  tokens are always read on the primary, so a password change or a token issued a millisecond
  ago is never judged on stale rows;
- never inside a transaction (a transaction reads its own writes) and never a write: issuing,
  the ledger and every lock stay on the primary.
A list answer may therefore be as old as the replica's replay lag (milliseconds on a healthy
LAN); a limit's ``consumed`` shown by the list is advisory, the issue call decides on the primary.
"""

import contextvars
from contextlib import contextmanager

import environ
from django.conf import settings
from django.db import connections

REPLICA = "replica"

_replica_reads = contextvars.ContextVar("replica_reads", default=False)


def replica_database(url: str, default: dict) -> dict:
    """The ``replica`` entry of DATABASES: the URL's connection, the primary's pooling knobs,
    and, under tests, a mirror of ``default`` (no separate test database is created for it)."""
    db = environ.Env.db_url_config(url)
    if db["ENGINE"] != default["ENGINE"]:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("DATABASE_REPLICA_URL must use the same database engine as DATABASE_URL")
    for knob in ("CONN_MAX_AGE", "CONN_HEALTH_CHECKS", "DISABLE_SERVER_SIDE_CURSORS"):
        if knob in default:
            db[knob] = default[knob]
    db["TEST"] = {"MIRROR": "default"}
    return db


@contextmanager
def replica_reads():
    """Within this block, reads the router allows go to the replica (when one is configured)."""
    token = _replica_reads.set(True)
    try:
        yield
    finally:
        _replica_reads.reset(token)


def replica_reads_enter() -> contextvars.Token:
    """Open the window for the rest of this request (``replica_reads_exit`` closes it)."""
    return _replica_reads.set(True)


def replica_reads_exit(token: contextvars.Token) -> None:
    _replica_reads.reset(token)


class ReplicaRouter:
    def db_for_read(self, model, **hints):
        if not _replica_reads.get() or REPLICA not in settings.DATABASES:
            return None
        if model._meta.app_label not in settings.REPLICA_READ_APPS:
            return None
        if connections["default"].in_atomic_block:
            return None
        return REPLICA

    def db_for_write(self, model, **hints):
        return "default"

    def allow_relation(self, obj1, obj2, **hints):
        return True  # the same data on both: a replica is a copy of the primary

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db != REPLICA
