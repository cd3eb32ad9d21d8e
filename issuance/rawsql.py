"""Hand-written SQL for the issue call's hot path, with the ORM's own values.

Why: a single issue ran ~15 statements, and building and compiling their SQL through the ORM
(``Query``, ``add_q``, ``as_sql``) was ~45 % of the call's CPU while executing them was ~8 %
(docs/performance.md, "Queries per issue call"). Here a model's select list and INSERT text are
computed once per process from ``_meta`` (table and column names), then run with fresh params
on ``django.db.connection`` (same connection, same transaction as the ORM).

Values are the ORM's: a row is passed through the converters the ORM applies to the same
columns (the backend's and the field's: JSON text, SQLite's decimals and datetimes) and becomes
an instance through ``Model.from_db``; an INSERT sends what ``save()`` sends (``pre_save``:
``auto_now``; ``get_db_prep_save``: JSON, decimals, aware datetimes). No signal is sent, as with
``bulk_create``: none is connected to the models written here (issuance/caches.py listens only
to catalogue metadata). Plain SQL that runs on PostgreSQL and SQLite: IN lists are expanded
(``placeholders``), never ``= ANY(%s)``.

On PostgreSQL these statements also run as **prepared statements** (``cursor`` below): each
statement text is parsed and planned once per database connection, then only executed — the
8-part targets UNION, the reward look-up with its joins and the inserts were planned afresh on
every call before (docs/performance.md, "Prepared statements"). ``DATABASE_PREPARED_STATEMENTS
=false`` turns this off (PgBouncer in transaction pooling mode before 1.21 cannot keep them).

On PostgreSQL the writes of an issue call also go to the database as **one statement**
(``batched`` below): the new rows' ids are taken from their sequences up front, so every INSERT
and UPDATE can be queued as it is made and all of them sent as data-modifying CTEs of one
statement — the six write statements of a single issue were six round trips and six executor
runs (docs/performance.md, "The writes as one statement"). ``ISSUE_WRITE_BATCH=false`` turns
this off.
"""

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections
from django.db.backends.utils import CursorWrapper
from django.db.models import Model, QuerySet
from django.db.models.query import get_related_populators

logger = logging.getLogger(__name__)


def placeholders(count: int) -> str:
    """``%s, %s, …`` for an IN list of ``count`` values (at least one)."""
    if count < 1:
        raise ValueError("an IN list needs at least one value")
    return ", ".join(["%s"] * count)


def quoted(name: str) -> str:
    return connection.ops.quote_name(name)


class Columns:
    """The columns of ``model`` in a SELECT (all its concrete fields, or the named ones, in
    ``_meta`` order) under the table alias ``alias`` (the table's name by default), and the
    instance a row's slice of them gives."""

    def __init__(self, model: type[Model], *names: str, alias: str | None = None):
        fields = model._meta.concrete_fields
        if names:
            fields = [f for f in fields if f.name in names or f.attname in names]
        self.model = model
        self.fields = tuple(fields)
        self.alias = alias or model._meta.db_table
        self.attnames = [f.attname for f in self.fields]
        self.width = len(self.fields)
        self._pk_index = next(i for i, f in enumerate(self.fields) if f.primary_key)

    @functools.cached_property
    def sql(self) -> str:
        alias = quoted(self.alias)
        return ", ".join(f"{alias}.{quoted(f.column)}" for f in self.fields)

    @functools.cached_property
    def _converters(self) -> list[tuple[int, list, object]]:
        """(index, converters, column) as ``SQLCompiler.get_converters`` gives them."""
        out = []
        for index, field in enumerate(self.fields):
            col = field.get_col(self.alias)
            converters = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
            if converters:
                out.append((index, converters, col))
        return out

    def instance(self, row, start: int = 0) -> Model | None:
        """The instance of ``row[start:start + width]``; None when its primary key is NULL
        (the missing side of a LEFT JOIN, as ``select_related`` gives it)."""
        values = list(row[start:start + self.width])
        if values[self._pk_index] is None:
            return None
        if self._converters:
            db = connections[DEFAULT_DB_ALIAS]
            for index, converters, col in self._converters:
                value = values[index]
                for converter in converters:
                    value = converter(value, col, db)
                values[index] = value
        return self.model.from_db(DEFAULT_DB_ALIAS, self.attnames, values)


def prepares(db) -> bool:
    """Whether the hot path's statements are prepared on ``db``: PostgreSQL, with a
    ``prepare_threshold`` in its OPTIONS (settings: ``DATABASE_PREPARED_STATEMENTS``)."""
    return db.vendor == "postgresql" and db.settings_dict["OPTIONS"].get("prepare_threshold") is not None


def _converted_once_query():
    """psycopg's query class, but each statement text's ``%s`` turned into ``$1``… once per
    process; None (psycopg's own class is used: slower, never wrong) if the psycopg internals
    it needs have moved — ``tests/test_write_batch.py`` then fails, the app does not.

    psycopg makes that conversion by a regular-expression split of the text on every execute,
    and caches it only for texts under 4,096 bytes with at most 50 parameters (against ORMs'
    ever-different multi-row INSERTs). The batch of an issue call's writes is over both (~100
    parameters), so psycopg split it anew each time: ~1 ms of the call's CPU. The hot path's
    texts are few (one per statement shape, bounded by the ``lru_cache``s that build them)."""
    try:
        from psycopg import _queries
        from psycopg.adapt import Transformer

        @functools.lru_cache(maxsize=256)
        def converted(query: str, encoding: str) -> tuple:
            return _queries._query2pg_nocache(query.encode(encoding), encoding)

        class ConvertedOnceQuery(_queries.PostgresQuery):
            __slots__ = ()

            def convert(self, query, vars):
                if vars is None or not isinstance(query, str):
                    return super().convert(query, vars)
                self.query, self._want_formats, self._order, self._parts = converted(query, self._tx.encoding)
                self.dump(vars)
                return None

        # The same as psycopg's own conversion, or not used.
        ours, theirs = ConvertedOnceQuery(Transformer()), _queries.PostgresQuery(Transformer())
        for query in (ours, theirs):
            query.convert("SELECT %s, %s, '%%'", [7, "a"])
        if (ours.query, ours.params, ours.types) != (theirs.query, theirs.params, theirs.types):
            raise ValueError(f"{ours.query!r} != {theirs.query!r}")
    except Exception:  # noqa: BLE001 - any change inside psycopg: fall back to its own class
        logger.warning("psycopg's query conversion is not cached (psycopg internals moved)", exc_info=True)
        return None
    return ConvertedOnceQuery


@functools.cache
def _postgresql():
    """Django's psycopg 3 names and the cursor classes below (imported on PostgreSQL only)."""
    from django.db.backends.postgresql import base
    from psycopg.types.numeric import Int8BinaryDumper, Int8Dumper

    converted_once_query = _converted_once_query()

    class PreparingCursor(base.ServerBindingCursor):
        """Parameters bound on the server (``$1``…) and every statement prepared on first use
        (psycopg keeps a connection's prepared statements by text and parameter types, up to
        its ``prepared_max``; Django's own cursors bind on the client and never prepare)."""

        if converted_once_query is not None:
            _query_cls = converted_once_query

        def __init__(self, db):
            super().__init__(db.connection)
            # Every Python int as a bigint: psycopg otherwise picks smallint, integer or bigint
            # by each value, and a statement prepared for (int2, int4) is another than for
            # (int4, int4) — customer 40,000 and customer 4 would each get their own.
            self.adapters.register_dumper(int, Int8Dumper)
            self.adapters.register_dumper(int, Int8BinaryDumper)
            # The connection's time zone, as DatabaseWrapper.create_cursor sets it.
            loader = db.connection.adapters.get_loader(base.TIMESTAMPTZ_OID, base.Format.TEXT)
            if db.timezone != loader.timezone:
                base.register_tzloader(db.timezone, self)

        def execute(self, query, params=None, *, prepare=True, binary=None):
            return super().execute(query, params, prepare=prepare, binary=binary)

        def _send_query_prepared(self, name, pgq, *, binary=None):
            # psycopg keeps the query it ran (what Django logs: DEBUG, CaptureQueriesContext)
            # on the unprepared path only; keep it on this one too.
            self._query = pgq
            return super()._send_query_prepared(name, pgq, binary=binary)

    class KeptCursor(CursorWrapper):
        """The connection's one preparing cursor, kept open from statement to statement:
        leaving a ``with`` block does not close it (making a cursor and its wrapper per
        statement cost ~0.15 ms, about as much as executing it)."""

        def __exit__(self, type, value, traceback):
            pass

    return PreparingCursor, KeptCursor


def cursor(db=None):
    """A cursor for the hot path's statements on ``db`` (the default connection), wrapped as
    ``db.cursor()`` wraps Django's own (errors, query logging); on PostgreSQL with prepared
    statements on, one that binds on the server and prepares (``DatabaseWrapper._cursor`` and
    ``create_cursor`` with another cursor class), kept for the connection's life unless
    queries are being logged (DEBUG, ``CaptureQueriesContext``: a fresh logging one)."""
    db = db or connections[DEFAULT_DB_ALIAS]
    if not prepares(db):
        return db.cursor()
    preparing_cursor, kept_cursor = _postgresql()
    db.close_if_health_check_failed()
    db.ensure_connection()
    if db.queries_logged:
        with db.wrap_database_errors:
            return db._prepare_cursor(preparing_cursor(db))
    kept = db.__dict__.get("_rawsql_cursor")
    if kept is None or kept.cursor.closed or kept.cursor.connection is not db.connection:
        db.validate_thread_sharing()
        with db.wrap_database_errors:
            kept = db.__dict__["_rawsql_cursor"] = kept_cursor(preparing_cursor(db), db)
    return kept


def fetch(sql: str, params, using: str = DEFAULT_DB_ALIAS) -> list[tuple]:
    with cursor(connections[using]) as c:
        c.execute(sql, params)
        return c.fetchall()


class Insert:
    """``INSERT`` of new instances of a model with every concrete field but the auto primary
    key, their ids read back (RETURNING where the database can, else one row at a time)."""

    def __init__(self, model: type[Model]):
        self.model = model
        self.fields = [f for f in model._meta.concrete_fields if not f.primary_key]

    @functools.cache
    def _sql(self, rows: int) -> str:
        meta = self.model._meta
        row = f"({placeholders(len(self.fields))})"
        sql = (f"INSERT INTO {quoted(meta.db_table)} ({', '.join(quoted(f.column) for f in self.fields)}) "
               f"VALUES {', '.join([row] * rows)}")
        if connection.features.can_return_columns_from_insert:
            sql += f" RETURNING {quoted(meta.pk.column)}"
        return sql

    def _params(self, obj: Model, db) -> list:
        obj._prepare_related_fields_for_save(operation_name="save")
        return [f.get_db_prep_save(f.pre_save(obj, True), db) for f in self.fields]

    def run(self, objs: list[Model]) -> None:
        """Insert ``objs`` (one statement when there are several and the database returns
        their ids) and set their primary keys, as ``save(force_insert=True)`` does. Inside
        ``batched``, queued with ids taken beforehand instead (sent with the batch)."""
        if not objs:
            return
        db = connections[DEFAULT_DB_ALIAS]  # the proxy ``connection`` costs a lookup per attribute
        batch = db.__dict__.get(_BATCH)
        if batch is not None and batch.insert(self, objs):
            return
        batches = [objs] if db.features.can_return_rows_from_bulk_insert else [[o] for o in objs]
        with cursor(db) as c:
            for batch in batches:
                params = [value for obj in batch for value in self._params(obj, db)]
                c.execute(self._sql(len(batch)), params)
                if db.features.can_return_columns_from_insert:
                    ids = [row[0] for row in c.fetchall()]
                else:
                    ids = [db.ops.last_insert_id(c, self.model._meta.db_table, self.model._meta.pk.column)]
                for obj, pk in zip(batch, ids, strict=True):
                    obj.pk = pk
                    obj._state.adding = False
                    obj._state.db = db.alias


def update(obj: Model, *names: str) -> None:
    """``UPDATE`` of the named fields of a saved instance (``auto_now`` ones refreshed), as
    ``save(update_fields=names)`` does, and the same error when no row matched (inside
    ``batched``: queued, the error raised when the batch is sent)."""
    db = connections[DEFAULT_DB_ALIAS]
    params = [f.get_db_prep_save(f.pre_save(obj, False), db) for f in _update_fields(type(obj), names)]
    batch = db.__dict__.get(_BATCH)
    if batch is not None:
        batch.update(obj, names, params)
        return
    with cursor(db) as c:
        c.execute(_update_sql(type(obj), names), [*params, obj.pk])
        if c.rowcount == 0:
            raise DatabaseError(_NO_ROWS)


_NO_ROWS = "Save with update_fields did not affect any rows."


@functools.cache
def _update_fields(model: type[Model], names: tuple[str, ...]) -> list:
    return [model._meta.get_field(name) for name in names]


@functools.cache
def _update_sql(model: type[Model], names: tuple[str, ...]) -> str:
    meta = model._meta
    sets = ", ".join(f"{quoted(f.column)} = %s" for f in _update_fields(model, names))
    return f"UPDATE {quoted(meta.db_table)} SET {sets} WHERE {quoted(meta.pk.column)} = %s"


# ---------------------------------------------------------------- one statement for a call's writes

_BATCH = "_rawsql_batch"  # the connection's open batch, in its __dict__ (as the kept cursor)
_MAX_PARAMS = 20_000  # PostgreSQL takes at most 65,535 parameters in one statement


def batches(db) -> bool:
    """Whether ``batched`` queues writes on ``db``: PostgreSQL (data-modifying CTEs, sequences)
    unless settings.ISSUE_WRITE_BATCH is off."""
    return db.vendor == "postgresql" and getattr(settings, "ISSUE_WRITE_BATCH", True)


@functools.cache
def _sequence(alias: str, table: str, column: str) -> str:
    """The sequence that numbers ``table.column`` (an identity or serial column)."""
    with connections[alias].cursor() as c:
        c.execute("SELECT pg_get_serial_sequence(%s, %s)", [quoted(table), column])
        (name,) = c.fetchone()
    if name is None:
        raise LookupError(f"{table}.{column} has no sequence")
    return name


@functools.lru_cache(maxsize=16)
def _reserve_sql(alias: str, models: tuple[type[Model], ...]) -> str:
    arrays = []
    for model in models:
        sequence = _sequence(alias, model._meta.db_table, model._meta.pk.column).replace("'", "''")
        arrays.append(f"ARRAY(SELECT nextval('{sequence}') FROM generate_series(1, %s))")
    return "SELECT " + ", ".join(arrays)


class _Batch:
    """The writes queued on one connection inside ``batched``: each INSERT with the ids taken
    for it, each UPDATE with its values, in the order they were made; ``flush`` sends them as
    one statement. Before any other statement runs on the connection (a read, a savepoint, an
    ORM save) the queue is flushed first (an execute wrapper), so every statement sees the
    writes made before it, as when each write ran at once."""

    def __init__(self, db, ids: dict[type[Model], list[int]]):
        self.db = db
        self.ids = ids
        self.parts: list[tuple] = []  # ("insert", model, rows) / ("update", model, names)
        self.params: list = []
        self.inserted: set[tuple[type[Model], object]] = set()
        self.updated: set[tuple[type[Model], object]] = set()
        self.flushing = False

    def insert(self, insert: "Insert", objs: list[Model]) -> bool:
        """Queue the INSERT of ``objs`` with ids taken beforehand; False (nothing queued, the
        queue flushed) when too few ids were taken: the caller then inserts at once."""
        model = insert.model
        ids = self.ids.get(model)
        if ids is None or len(ids) < len(objs):
            self.flush()
            return False
        width = len(insert.fields) + 1
        if len(self.params) + width * len(objs) > _MAX_PARAMS:
            self.flush()
        alias = self.db.alias
        for obj in objs:
            obj.pk = ids.pop()
            self.params.append(obj.pk)
            self.params.extend(insert._params(obj, self.db))
            obj._state.adding = False
            obj._state.db = alias
            self.inserted.add((model, obj.pk))
        self.parts.append(("insert", model, len(objs)))
        return True

    def update(self, obj: Model, names: tuple[str, ...], params: list) -> None:
        key = (type(obj), obj.pk)
        if key in self.inserted or key in self.updated or len(self.params) + len(params) + 1 > _MAX_PARAMS:
            # A sibling CTE does not see the rows another one writes: send those first.
            self.flush()
        self.parts.append(("update", type(obj), names))
        self.params.extend(params)
        self.params.append(obj.pk)
        self.updated.add(key)

    def before_statement(self, execute, sql, params, many, context):
        if self.parts and not self.flushing:
            self.flush()
        return execute(sql, params, many, context)

    def flush(self) -> None:
        if not self.parts:
            return
        parts, params = tuple(self.parts), self.params
        self.parts, self.params = [], []
        self.inserted.clear()
        self.updated.clear()
        self.flushing = True
        try:
            with cursor(self.db) as c:
                c.execute(_batch_sql(parts), params)
                counts = c.fetchone()
        finally:
            self.flushing = False
        if counts is not None and 0 in counts:
            raise DatabaseError(_NO_ROWS)

    def discard(self) -> None:
        self.parts, self.params = [], []


@functools.lru_cache(maxsize=256)
def _batch_sql(parts: tuple) -> str:
    """``WITH w0 AS (INSERT …), w1 AS (UPDATE … RETURNING 1), … SELECT <rows updated by
    each UPDATE>``: PostgreSQL runs every data-modifying CTE once, to completion, whether or
    not the main query reads it; the counts stand for ``rowcount`` (a row that is gone)."""
    ctes, counts = [], []
    for n, (kind, model, arg) in enumerate(parts):
        meta = model._meta
        if kind == "insert":
            fields = [meta.pk, *Insert(model).fields]
            row = f"({placeholders(len(fields))})"
            ctes.append(f"w{n} AS (INSERT INTO {quoted(meta.db_table)} "
                        f"({', '.join(quoted(f.column) for f in fields)}) VALUES {', '.join([row] * arg)})")
        else:
            ctes.append(f"w{n} AS ({_update_sql(model, arg)} RETURNING 1)")
            counts.append(f"(SELECT count(*) FROM w{n})")
    return f"WITH {', '.join(ctes)} SELECT {', '.join(counts) or '1'}"


@contextlib.contextmanager
def batched(reserve: dict[type[Model], int], using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Inside: ``Insert.run`` and ``update`` on ``using`` are queued and sent as ONE statement
    at the end of the block (or before any other statement on the connection); ids for up to
    ``reserve[model]`` new rows of each model are taken from their sequences by one statement
    first (unused ones are left as gaps, as a rolled-back insert leaves them). Needs the
    caller's transaction; an exception discards the queue (the transaction rolls back).
    Elsewhere than PostgreSQL, or nested, the writes run at once as outside."""
    db = connections[using]
    if not batches(db) or db.__dict__.get(_BATCH) is not None:
        yield
        return
    models = tuple(m for m, count in reserve.items() if count > 0)
    arrays = ()
    if models:  # nothing to insert (an idempotent replay): no statement
        with cursor(db) as c:
            c.execute(_reserve_sql(db.alias, models), [reserve[m] for m in models])
            arrays = c.fetchone()
    # Popped from the end: reversed so the rows get their ids in the order they are made.
    batch = _Batch(db, {m: list(reversed(ids)) for m, ids in zip(models, arrays, strict=True)})
    db.__dict__[_BATCH] = batch
    try:
        with db.execute_wrapper(batch.before_statement):
            yield
            batch.flush()
    except BaseException:
        batch.discard()
        raise
    finally:
        db.__dict__.pop(_BATCH, None)


class CompiledQuery:
    """A queryset compiled once per process and run with fresh values for its parameters,
    giving the instances the queryset gives: the ORM's own SQL, converters, ``select_related``
    populators and annotations, without building and compiling the query on every call.

    ``build(**values)`` returns the queryset; it is called once, with a unique placeholder
    string for each named value, each of which must come out as exactly one SQL parameter."""

    def __init__(self, build: Callable[..., QuerySet], *names: str):
        self._build, self._names = build, names

    @functools.cached_property
    def _compiled(self) -> dict:
        marks = {name: f"rawsql-placeholder-{name}-{id(self)}" for name in self._names}
        compiler = self._build(**marks).query.get_compiler(DEFAULT_DB_ALIAS)
        sql, params = compiler.as_sql()
        params = list(params)
        slots = {}
        for name, mark in marks.items():
            found = [i for i, p in enumerate(params) if p == mark]
            if len(found) != 1:
                raise ValueError(f"{name} must be exactly one parameter of the query, not {len(found)}")
            slots[name] = found[0]
        select, klass_info = compiler.select, compiler.klass_info
        fields = klass_info["select_fields"]
        start, end = fields[0], fields[-1] + 1
        return {
            "sql": sql,
            "params": params,
            "slots": slots,
            "model": klass_info["model"],
            "model_slice": slice(start, end),
            "init_list": [s[0].target.attname for s in select[start:end]],
            "populators": get_related_populators(klass_info, select, DEFAULT_DB_ALIAS),
            "annotations": dict(compiler.annotation_col_map),
            "converters": list(compiler.get_converters([s[0] for s in select[0:compiler.col_count]]).items()),
        }

    def all(self, **values) -> list[Model]:
        c = self._compiled
        params = list(c["params"])
        for name, value in values.items():
            params[c["slots"][name]] = value
        db = connections[DEFAULT_DB_ALIAS]
        with cursor(db) as cur:
            cur.execute(c["sql"], params)
            rows = cur.fetchall()
        objs = []
        for row in rows:
            if c["converters"]:
                row = list(row)
                for index, (converters, expression) in c["converters"]:
                    value = row[index]
                    for converter in converters:
                        value = converter(value, expression, db)
                    row[index] = value
            obj = c["model"].from_db(DEFAULT_DB_ALIAS, c["init_list"], row[c["model_slice"]])
            for populator in c["populators"]:
                populator.populate(row, obj)
            for attr, position in c["annotations"].items():
                setattr(obj, attr, row[position])
            objs.append(obj)
        return objs
