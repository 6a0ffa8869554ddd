"""Versioned schema migrations: numbered steps, applied once each, recorded in `schema_migrations`.

`migrate(conn, schema)` is safe on every start and when several processes start at once: it runs in
one transaction that first takes a transaction-level advisory lock keyed on the schema name, so
concurrent callers queue up and each sees the versions the previous one recorded.

Adding a migration (e.g. columns for message edits/revokes): add the column to `wahaflow/schemas.py`
(the lead owns it), then append `Migration(2, "...", add_missing_columns("messages"))` (or any
function `(conn, schema) -> None`) to `MIGRATIONS`. Step 1 creates the tables from the *current*
metadata, so on a fresh database later columns already exist when step 2 runs: every step must be
idempotent (`IF NOT EXISTS`), which `add_missing_columns` is. After the steps, `migrate` checks that
every column of the metadata exists and names the missing ones if a step was forgotten.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import psycopg
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex, CreateTable

from wahaflow.warehouse.tables import TABLE_SPECS, TableSpec, build_metadata

log = logging.getLogger(__name__)

_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]

Step = Callable[[psycopg.Connection, str], None]


@dataclass(frozen=True)
class Migration:
    """One numbered schema change: `apply(conn, schema)` runs inside the migration transaction."""

    version: int
    description: str
    apply: Step


def _ddl(element: sa.schema.ExecutableDDLElement) -> sql.SQL:
    # SQLAlchemy quotes every identifier that needs it; the text holds no data and no parameters.
    return sql.SQL(str(element.compile(dialect=_DIALECT)))  # type: ignore[arg-type]


def create_tables(
    conn: psycopg.Connection, schema: str, specs: Mapping[str, TableSpec] | None = None
) -> None:
    """Create the tables of `specs` (default: every warehouse table) and their indexes, if missing."""
    for table in build_metadata(schema, specs).sorted_tables:
        conn.execute(_ddl(CreateTable(table, if_not_exists=True)))
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            conn.execute(_ddl(CreateIndex(index, if_not_exists=True)))


def add_missing_columns(table: str) -> Step:
    """A step that adds the columns of `table`'s metadata that the database lacks (nullable, idempotent)."""

    def step(conn: psycopg.Connection, schema: str) -> None:
        target = build_metadata(schema).tables[f"{schema}.{table}"]
        for column in target.columns:
            conn.execute(
                sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                    sql.Identifier(schema, table),
                    sql.Identifier(column.name),
                    sql.SQL(column.type.compile(dialect=_DIALECT)),
                )
            )

    return step


def create_inbox(conn: psycopg.Connection, schema: str) -> None:
    """The webhook inbox (wahaflow/webhook/inbox.py) with its dedup and pending indexes.

    - `inbox_message_event_key`: at most one row per (waha_session, event, message_id) for events
      that carry a message (a redelivery with a new envelope id is stored once). Acks are excluded:
      one message is acked several times (SERVER, DEVICE, READ) under the same message id.
    - `inbox_pending_idx`: the pending (unapplied) events per chat, for the inbox sensor and the chunk
      runs; partial, so it stays as small as the backlog.
    """
    create_tables(conn, schema, {"inbox": TABLE_SPECS["inbox"]})
    inbox = sql.Identifier(schema, "inbox")
    conn.execute(
        sql.SQL(
            "CREATE UNIQUE INDEX IF NOT EXISTS inbox_message_event_key"
            " ON {} (waha_session, event, message_id)"
            " WHERE message_id IS NOT NULL AND event NOT IN ('message.ack', 'message.ack.group')"
        ).format(inbox)
    )
    conn.execute(
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS inbox_pending_idx ON {} (waha_session, chat_id)"
            " WHERE processed_at IS NULL"
        ).format(inbox)
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "tables of design.md §4 with keys and indexes", create_tables),
    Migration(2, "webhook inbox with dedup and pending indexes", create_inbox),
    Migration(
        3, "messages: edited_at and revoked_at (webhook edits and revokes)", add_missing_columns("messages")
    ),
)
"""Every migration, in version order. Append new steps; never edit or renumber applied ones."""

_LOCK_NAMESPACE = "wahaflow.migrate:"


def missing_columns(conn: psycopg.Connection, schema: str) -> list[str]:
    """`table.column` names that the metadata defines but the database lacks."""
    rows = conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = %s",
        [schema],
    ).fetchall()
    present = {(t, c) for t, c in rows}
    return [
        f"{name}.{column}"
        for name, spec in TABLE_SPECS.items()
        for column in spec.frame_schema
        if (name, column) not in present
    ]


def migrate(conn: psycopg.Connection, schema: str, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Create `schema` and apply the missing `migrations`; return the versions applied now.

    Runs in `conn.transaction()` (a savepoint if the caller already has a transaction open) and
    holds `pg_advisory_xact_lock` on the schema name until that transaction ends.
    """
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)):
        raise ValueError(f"migration versions must be unique and increasing: {versions}")
    applied_now: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [_LOCK_NAMESPACE + schema])
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        registry = sql.Identifier(schema, "schema_migrations")
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (version integer PRIMARY KEY, description text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            ).format(registry)
        )
        done = {v for (v,) in conn.execute(sql.SQL("SELECT version FROM {}").format(registry))}
        for migration in migrations:
            if migration.version in done:
                continue
            migration.apply(conn, schema)
            conn.execute(
                sql.SQL("INSERT INTO {} (version, description) VALUES (%s, %s)").format(registry),
                [migration.version, migration.description],
            )
            applied_now.append(migration.version)
            log.info("schema %s: applied migration %d (%s)", schema, migration.version, migration.description)
        missing = missing_columns(conn, schema)
        if missing:
            raise RuntimeError(
                f"schema {schema!r} lacks columns {missing}: add a migration step to "
                "wahaflow/warehouse/migrations.py (see add_missing_columns)"
            )
    return applied_now


_migrated: set[tuple[str, str]] = set()
_migrate_lock = threading.Lock()


def ensure_migrated(url: str, schema: str) -> None:
    """Run `migrate` on `url`/`schema` the first time this process asks for it (thread-safe)."""
    key = (url, schema)
    if key in _migrated:
        return
    with _migrate_lock:
        if key in _migrated:
            return
        with psycopg.connect(url, autocommit=True) as conn:
            applied = migrate(conn, schema)
        if applied:
            log.info("warehouse schema %s: applied migrations %s", schema, applied)
        _migrated.add(key)
