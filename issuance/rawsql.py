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
"""

import functools
from collections.abc import Callable

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections
from django.db.models import Model, QuerySet
from django.db.models.query import get_related_populators


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


def fetch(sql: str, params, using: str = DEFAULT_DB_ALIAS) -> list[tuple]:
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


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
        their ids) and set their primary keys, as ``save(force_insert=True)`` does."""
        if not objs:
            return
        db = connections[DEFAULT_DB_ALIAS]  # the proxy ``connection`` costs a lookup per attribute
        batches = [objs] if db.features.can_return_rows_from_bulk_insert else [[o] for o in objs]
        with db.cursor() as cursor:
            for batch in batches:
                params = [value for obj in batch for value in self._params(obj, db)]
                cursor.execute(self._sql(len(batch)), params)
                if db.features.can_return_columns_from_insert:
                    ids = [row[0] for row in cursor.fetchall()]
                else:
                    ids = [db.ops.last_insert_id(cursor, self.model._meta.db_table, self.model._meta.pk.column)]
                for obj, pk in zip(batch, ids, strict=True):
                    obj.pk = pk
                    obj._state.adding = False
                    obj._state.db = db.alias


def update(obj: Model, *names: str) -> None:
    """``UPDATE`` of the named fields of a saved instance (``auto_now`` ones refreshed), as
    ``save(update_fields=names)`` does, and the same error when no row matched."""
    meta = obj._meta
    db = connections[DEFAULT_DB_ALIAS]
    fields = [meta.get_field(name) for name in names]
    sets = ", ".join(f"{quoted(f.column)} = %s" for f in fields)
    params = [f.get_db_prep_save(f.pre_save(obj, False), db) for f in fields]
    with db.cursor() as cursor:
        cursor.execute(f"UPDATE {quoted(meta.db_table)} SET {sets} WHERE {quoted(meta.pk.column)} = %s",
                       [*params, obj.pk])
        if cursor.rowcount == 0:
            raise DatabaseError("Save with update_fields did not affect any rows.")


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
        with db.cursor() as cursor:
            cursor.execute(c["sql"], params)
            rows = cursor.fetchall()
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
