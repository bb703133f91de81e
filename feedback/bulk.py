"""Writing many rows at once on PostgreSQL with COPY, and updating them with
one array per column.

`bulk_create` spends most of its time building one huge INSERT (a placeholder and
an adapted value per cell); COPY streams the same values through the same
constraints and triggers. COPY returns no ids, so callers that need them reserve
them from the table's sequence first.

`bulk_update` builds a `CASE WHEN id = ... THEN ...` expression per field and
row, and resolving those expressions costs more than the statement itself:
`instances_update` sends each column as one array and joins them with `unnest`.
"""

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from django.db import connection
from django.db.models import Field, Model


def ids_reserve(model: type[Model], count: int) -> list[int]:
    """`count` new primary keys from the sequence of `model`'s table."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) "
            "FROM generate_series(1, %s)",
            [model._meta.db_table, count],
        )
        return [pk for (pk,) in cursor.fetchall()]


def rows_copy(
    model: type[Model], rows: Sequence[list[Any]], *, with_pk: bool = True
) -> None:
    """COPY rows (values in the order of the model's concrete fields, without
    the primary key unless `with_pk`) into the model's table."""
    meta = model._meta
    fields = [f for f in meta.concrete_fields if with_pk or not f.primary_key]
    table = connection.ops.quote_name(meta.db_table)
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in fields)
    json_positions = [
        i for i, f in enumerate(fields) if f.get_internal_type() == "JSONField"
    ]
    # The wrapper turns psycopg's errors into Django's (IntegrityError...), as
    # for any query: the raw cursor's COPY would bypass it.
    with (
        connection.wrap_database_errors,
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy,
    ):
        for row in rows:
            for i in json_positions:
                row[i] = json.dumps(row[i])
            copy.write_row(row)


def objects_copy(model: type[Model], objects: Sequence[Any]) -> None:
    """Insert `objects` (model instances, or anything with the model's field
    attnames) as rows of `model` with COPY, setting each one's `id` from the
    sequence first: callers need the ids, and COPY returns none."""
    for obj, pk in zip(objects, ids_reserve(model, len(objects)), strict=True):
        obj.id = pk
    attnames = [f.attname for f in model._meta.concrete_fields]
    rows_copy(model, [[getattr(obj, name) for name in attnames] for obj in objects])


def instances_copy(instances: Sequence[Model]) -> None:
    """Insert unsaved instances of one model with COPY, setting their ids, as
    `bulk_create` would (no signals, no `save()`)."""
    if not instances:
        return
    objects_copy(type(instances[0]), instances)
    for instance in instances:
        instance._state.adding = False
        instance._state.db = connection.alias


def instances_insert(instances: Sequence[Model]) -> None:
    """Insert unsaved instances of one model whose ids nobody needs: with COPY
    on PostgreSQL (the instances keep no id), elsewhere with `bulk_create`."""
    if not instances:
        return
    model = type(instances[0])
    if connection.vendor != "postgresql":
        model._default_manager.bulk_create(instances)
        return
    attnames = [f.attname for f in model._meta.concrete_fields if not f.primary_key]
    rows_copy(
        model,
        [[getattr(instance, name) for name in attnames] for instance in instances],
        with_pk=False,
    )


def instances_update(instances: Sequence[Model], fields: Sequence[str]) -> None:
    """Save `fields` of saved instances of one model in one UPDATE, as
    `bulk_update` would (no signals, no `save()`, no `auto_now`): on PostgreSQL
    with one array parameter per column, elsewhere through `bulk_update`."""
    if not instances:
        return
    model = type(instances[0])
    if connection.vendor != "postgresql":
        model._default_manager.bulk_update(instances, fields)
        return
    meta = model._meta
    columns: list[Field[Any, Any]] = [meta.pk]  # type: ignore[list-item]
    for name in fields:
        field = meta.get_field(name)
        if not isinstance(field, Field):  # a reverse relation has no column
            raise TypeError(f"{model.__name__}.{name} is not a column")
        columns.append(field)
    quote = connection.ops.quote_name
    names = [quote(str(f.column)) for f in columns]
    arrays = ", ".join(f"%s::{f.db_type(connection)}[]" for f in columns)
    sets = ", ".join(f"{name} = v.{name}" for name in names[1:])
    sql = (
        f"UPDATE {quote(meta.db_table)} t SET {sets} "  # noqa: S608 - names from _meta
        f"FROM unnest({arrays}) AS v({', '.join(names)}) "
        f"WHERE t.{names[0]} = v.{names[0]}"
    )
    params = [
        [
            field.get_db_prep_save(getattr(instance, field.attname), connection)
            for instance in instances
        ]
        for field in columns
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


T = TypeVar("T")


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """`items` in lists of `size` (the last may be shorter), read as they come."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
