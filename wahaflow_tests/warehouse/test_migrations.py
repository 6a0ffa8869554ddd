"""Schema and migrations: the tables of design.md §4, idempotent and concurrency-safe migrations."""

from __future__ import annotations

import threading

import polars as pl
import psycopg
import pytest
import sqlalchemy as sa
from psycopg import sql

from wahaflow import schemas
from wahaflow.warehouse import migrations
from wahaflow.warehouse.migrations import MIGRATIONS, Migration, add_missing_columns, migrate
from wahaflow.warehouse.tables import TABLE_SPECS, TableSpec, build_metadata, sql_type

ALL_VERSIONS = [m.version for m in MIGRATIONS]


def _columns(conn: psycopg.Connection, schema: str, table: str) -> dict[str, tuple[str, str]]:
    rows = conn.execute(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = %s",
        [schema, table],
    ).fetchall()
    return {name: (dtype, nullable) for name, dtype, nullable in rows}


def _indexes(conn: psycopg.Connection, schema: str, table: str) -> list[str]:
    rows = conn.execute(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = %s", [schema, table]
    ).fetchall()
    return [r[0] for r in rows]


def test_metadata_is_generated_from_the_frame_schemas() -> None:
    metadata = build_metadata("s")
    for name, frame_schema in schemas.FRAME_SCHEMAS.items():
        table = metadata.tables[f"s.{name}"]
        assert list(table.columns.keys()) == list(frame_schema.names())
        assert tuple(c.name for c in table.primary_key.columns) == schemas.PRIMARY_KEYS[name]
        assert all(not c.nullable for c in table.primary_key.columns)
    assert isinstance(sql_type(pl.Int64()), sa.BigInteger)
    with pytest.raises(TypeError):
        sql_type(pl.Datetime("us"))  # naive: ambiguous


def test_migrate_creates_the_tables_with_keys_and_indexes(pg_url: str, pg_schema: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert migrate(conn, pg_schema) == ALL_VERSIONS
        messages = _columns(conn, pg_schema, "messages")
        assert messages["sent_at"] == ("timestamp with time zone", "YES")
        assert messages["ack"] == ("smallint", "YES")
        assert messages["from_me"] == ("boolean", "YES")
        assert messages["message_id"] == ("text", "NO")
        assert _columns(conn, pg_schema, "sessions")["message_count"][0] == "integer"
        indexes = " | ".join(_indexes(conn, pg_schema, "messages"))
        assert "(waha_session, chat_id, sent_at)" in indexes
        assert "(chunk_key)" in indexes
        assert "UNIQUE INDEX messages_pkey" in indexes
        for table in ("chats", "sessions", "rejects"):
            assert any("(chunk_key)" in i for i in _indexes(conn, pg_schema, table))


def test_migrate_is_idempotent(pg_url: str, pg_schema: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert migrate(conn, pg_schema) == ALL_VERSIONS
        before = {t: _columns(conn, pg_schema, t) for t in TABLE_SPECS}
        assert migrate(conn, pg_schema) == []
        assert migrate(conn, pg_schema) == []
        assert {t: _columns(conn, pg_schema, t) for t in TABLE_SPECS} == before
        versions = conn.execute(
            sql.SQL("SELECT version FROM {}").format(sql.Identifier(pg_schema, "schema_migrations"))
        ).fetchall()
        assert versions == [(v,) for v in ALL_VERSIONS]


def test_concurrent_migrations_both_succeed(pg_url: str) -> None:
    schema = "t_concurrent_migrate"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    barrier = threading.Barrier(4)
    applied: list[list[int]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with psycopg.connect(pg_url, autocommit=True) as conn:
                barrier.wait()
                applied.append(migrate(conn, schema))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors
        assert sorted(applied) == [[], [], [], ALL_VERSIONS]
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def test_a_new_step_adds_columns_and_a_forgotten_step_is_named(
    pg_url: str, pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        migrate(conn, pg_schema)
        # A later version of the contract adds a column to `messages`...
        extended = pl.Schema({**schemas.MESSAGES, "starred_at": schemas.UTC_TIME})
        specs = dict(TABLE_SPECS)
        specs["messages"] = TableSpec("messages", extended, schemas.PRIMARY_KEYS["messages"])
        monkeypatch.setattr(migrations, "TABLE_SPECS", specs)
        monkeypatch.setattr("wahaflow.warehouse.tables.TABLE_SPECS", specs)
        # ...without a migration step: migrate refuses and names the column.
        with pytest.raises(RuntimeError, match=r"messages\.starred_at"):
            migrate(conn, pg_schema)
        # ...with one: applied once, the column exists, and a rerun is a no-op.
        new = ALL_VERSIONS[-1] + 1
        steps = (*MIGRATIONS, Migration(new, "messages.starred_at", add_missing_columns("messages")))
        assert migrate(conn, pg_schema, steps) == [new]
        assert _columns(conn, pg_schema, "messages")["starred_at"][0] == "timestamp with time zone"
        assert migrate(conn, pg_schema, steps) == []


def test_migrations_must_be_numbered_in_order(pg_url: str, pg_schema: str) -> None:
    steps = (Migration(2, "b", lambda c, s: None), Migration(1, "a", lambda c, s: None))
    with psycopg.connect(pg_url, autocommit=True) as conn, pytest.raises(ValueError, match="increasing"):
        migrate(conn, pg_schema, steps)
