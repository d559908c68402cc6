"""Moving an installation from one database to another (SQLite to PostgreSQL, typically): every row
of every model, read from the source database and written into the configured one, which must be
migrated and empty. Rows keep their ids, so every link between them holds; the content types and
permissions `migrate` made in the target are kept, and what points at the source's is pointed at
them; other rows `migrate` wrote in the target (the seeded model prices, beat's schedules) give way
to the source's. Sequences are reset afterwards, so new rows get fresh ids.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import environ
from django.apps import apps
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.core.management.color import no_style
from django.db import connections, models, transaction
from django.db.migrations.executor import MigrationExecutor

from operations.backups import MIGRATE_FILLS

SOURCE = "copy_source"
CHUNK = 2000
Progress = Callable[[int], None]  # how many more rows were copied


class CopyError(Exception):
    pass


def open_source(url: str) -> str:
    """Make the database at `url` (DATABASE_URL's form) the source; its alias."""
    config = environ.Env.db_url_config(url)
    configured = connections.configure_settings({"default": connections.databases["default"], SOURCE: config})
    connections.databases[SOURCE] = configured[SOURCE]
    return SOURCE


def in_order() -> list[type[models.Model]]:
    """Every model with a table, each after the models its foreign keys point at."""
    todo = [model for model in apps.get_models(include_auto_created=True) if model._meta.managed and not model._meta.proxy]
    done: list[type[models.Model]] = []
    while todo:
        ready = [
            model for model in todo if all(field.related_model in done or field.related_model is model for field in _links(model))
        ]
        if not ready:
            raise CopyError(f"foreign keys in a cycle between {', '.join(m._meta.label for m in todo)}")
        done += ready
        todo = [model for model in todo if model not in ready]
    return done


def _links(model: type[models.Model]) -> list[models.ForeignKey]:
    return [field for field in model._meta.concrete_fields if isinstance(field, models.ForeignKey)]


def check_migrated(alias: str) -> None:
    """The source must be at this code's migrations: its tables are read with today's models."""
    executor = MigrationExecutor(connections[alias])
    if executor.migration_plan(executor.loader.graph.leaf_nodes()):
        raise CopyError("the source database is not migrated to this version: run `manage.py migrate` against it first")


def count_rows(alias: str) -> dict[str, int]:
    """Rows of each model in the database `alias`, by model label."""
    return {model._meta.label: model._default_manager.using(alias).count() for model in in_order()}


def copy_everything(source: str, progress: Progress | None = None) -> dict[str, int]:
    """Copy every row from `source` into the default database, in one transaction; how many of
    each model."""
    same = {ContentType: _content_type_ids(source)}
    same[Permission] = _permission_ids(source, same[ContentType])
    copied = {}
    with transaction.atomic():
        for model in in_order():
            if model in same:  # made by `migrate` in the target too: matched, not copied
                continue
            if model._meta.db_table.startswith(MIGRATE_FILLS):
                model._default_manager.all().delete()
            copied[model._meta.label] = _copy(model, source, same, progress)
        _reset_sequences()
    return copied


def _copy(model: type[models.Model], source: str, same: dict, progress: Progress | None) -> int:
    """The rows as they are, ids and times included (Django's bulk_create would set auto_now
    fields to now)."""
    connection = connections["default"]
    fields = model._meta.concrete_fields
    quote = connection.ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    insert = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})"  # noqa: S608
    # A link to a content type or a permission is pointed at the target's one of the same name.
    mapped = {index: same[field.related_model] for index, field in enumerate(fields) if field.related_model in same}
    total = 0
    rows = model._default_manager.using(source).order_by("pk").values_list(*(field.attname for field in fields))
    for chunk in _chunks(rows):
        params = []
        for values in chunk:
            values = list(values)
            for index, ids in mapped.items():
                if values[index] is not None:
                    values[index] = ids[values[index]]
            params.append([field.get_db_prep_save(value, connection) for field, value in zip(fields, values, strict=True)])
        with connection.cursor() as cursor:
            cursor.executemany(insert, params)
        total += len(params)
        if progress:
            progress(len(params))
    return total


def _chunks(queryset) -> Iterator[list[tuple]]:
    chunk = []
    for values in queryset.iterator(chunk_size=CHUNK):
        chunk.append(values)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _content_type_ids(source: str) -> dict[int, int]:
    """The source's content type ids, as the target's ids of the same app and model (created there
    if `migrate` did not, as for a model the source knew and the code no longer has)."""
    ids = {}
    for pk, app_label, model in ContentType.objects.using(source).values_list("pk", "app_label", "model"):
        ids[pk] = ContentType.objects.get_or_create(app_label=app_label, model=model)[0].pk
    return ids


def _permission_ids(source: str, content_types: dict[int, int]) -> dict[int, int]:
    ids = {}
    for pk, content_type, codename, name in Permission.objects.using(source).values_list(
        "pk", "content_type_id", "codename", "name"
    ):
        target = Permission.objects.get_or_create(
            content_type_id=content_types[content_type], codename=codename, defaults={"name": name}
        )[0]
        ids[pk] = target.pk
    return ids


def _reset_sequences() -> None:
    connection = connections["default"]
    statements = connection.ops.sequence_reset_sql(no_style(), in_order())
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
