"""Model instances from hand-written SQL, for the few reads on the intake's hot path.

Django compiles a queryset into SQL each time it runs it. For the intake's small
reads (the API key, the delivery with what judging it needs) that compiling cost
more than PostgreSQL took to run them (docs/performance.md). These statements are
written once, their column lists come from the models, and their rows become model
instances through the fields' own converters, as the ORM would build them.
"""

from collections.abc import Sequence
from functools import cached_property
from typing import Any, Generic, TypeVar, cast

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model

M = TypeVar("M", bound=Model)
Converter = Any


class Columns(Generic[M]):
    """Every concrete column of `model` under a table alias, in field order."""

    def __init__(self, model: type[M], alias: str) -> None:
        self.model = model
        self.alias = alias
        self.fields: Sequence[Field[Any, Any]] = model._meta.concrete_fields
        self._pk_index = list(self.fields).index(model._meta.pk)
        self._names = [f.attname for f in self.fields]
        self._converters: dict[str, list[tuple[int, Any, list[Converter]]]] = {}

    def __len__(self) -> int:
        return len(self.fields)

    @cached_property
    def table(self) -> str:
        """`"table" alias`, for FROM and JOIN."""
        return f"{connection.ops.quote_name(self.model._meta.db_table)} {self.alias}"

    @cached_property
    def sql(self) -> str:
        """The select list: `alias."column", ...`."""
        quote = connection.ops.quote_name
        columns = (cast(str, f.column) for f in self.fields)  # concrete: never None
        return ", ".join(f"{self.alias}.{quote(column)}" for column in columns)

    def load(
        self,
        row: Sequence[Any],
        start: int = 0,
        db: BaseDatabaseWrapper | None = None,
    ) -> M | None:
        """The instance in `row[start:start + len(self)]`; None for a row a LEFT
        JOIN did not match (its primary key is NULL). `db` is the connection the
        row was read on (the default one when not given)."""
        values = list(row[start : start + len(self.fields)])
        if values[self._pk_index] is None:
            return None
        if db is None:
            db = default_connection()
        for index, expression, converters in self._converters_for(db):
            value = values[index]
            for converter in converters:
                value = converter(value, expression, db)
            values[index] = value
        return self.model.from_db(db.alias, self._names, values)

    def _converters_for(
        self, db: BaseDatabaseWrapper
    ) -> list[tuple[int, Any, list[Converter]]]:
        # The same converters the ORM's compiler applies to these columns.
        found = self._converters.get(db.vendor)
        if found is None:
            found = []
            for index, field in enumerate(self.fields):
                column = field.get_col(self.alias)
                converters = db.ops.get_db_converters(
                    column
                ) + column.get_db_converters(db)
                if converters:
                    found.append((index, column, converters))
            self._converters[db.vendor] = found
        return found


class Insert(Generic[M]):
    """`instance.save(force_insert=True)` for a model whose primary key the
    database assigns, with the INSERT written once instead of compiled per row.
    Values go through each field's `pre_save` and `get_db_prep_save`, as the
    ORM's; no signals are sent (the app connects none to these models)."""

    def __init__(self, model: type[M]) -> None:
        self.model = model
        self.fields = [f for f in model._meta.concrete_fields if not f.primary_key]

    @cached_property
    def sql(self) -> str:
        quote = connection.ops.quote_name
        columns = ", ".join(quote(cast(str, f.column)) for f in self.fields)
        placeholders = ", ".join(["%s"] * len(self.fields))
        pk = quote(cast(str, self.model._meta.pk.column))
        table = quote(self.model._meta.db_table)
        return (
            f"INSERT INTO {table} ({columns}) "  # noqa: S608 - names from _meta
            f"VALUES ({placeholders}) RETURNING {pk}"
        )

    def __call__(self, instance: M) -> None:
        db = default_connection()
        values = [
            field.get_db_prep_save(field.pre_save(instance, True), db)
            for field in self.fields
        ]
        with db.cursor() as cursor:
            cursor.execute(self.sql, values)
            (instance.pk,) = cursor.fetchone()
        instance._state.adding = False
        instance._state.db = db.alias


def default_connection() -> BaseDatabaseWrapper:
    """The default connection itself, for code that reads it many times.

    Every attribute read through the `connection` proxy looks the connection up
    again, a dozen times per row, and each lookup goes through asgiref's Local,
    which costs about as much as converting a row's values: callers look it up
    once here and keep it for the call. Not kept any longer than that:
    `transaction.atomic()` looks the connection up on every use, and a write
    through a connection kept from earlier can miss the transaction atomic()
    opened (the browser tests, whose live server shares the test's in-memory
    SQLite database, hit it as "database table is locked").
    """
    return connections[DEFAULT_DB_ALIAS]
