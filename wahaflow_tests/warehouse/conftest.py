"""Fixtures and helpers of the warehouse tests: a migrated schema per test, frames, table contents."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import polars as pl
import psycopg
import pytest
from psycopg import sql

from wahaflow import schemas
from wahaflow.warehouse.migrations import migrate

UTC = dt.UTC


@pytest.fixture
def wh_schema(pg_url: str, pg_schema: str) -> str:
    """`pg_schema`, migrated: every warehouse table exists and is empty."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        migrate(conn, pg_schema)
    return pg_schema


@pytest.fixture
def conn(pg_url: str) -> Iterator[psycopg.Connection]:
    """A non-autocommit connection (closed afterwards; an open transaction is rolled back)."""
    with psycopg.connect(pg_url) as connection:
        yield connection
        connection.rollback()


def contents(conn: psycopg.Connection, schema: str, table: str, order_by: str = "1, 2") -> list[tuple]:
    """Every row of `schema.table` as `conn` sees it, in a stable order."""
    query = sql.SQL("SELECT * FROM {} ORDER BY " + order_by).format(sql.Identifier(schema, table))
    return conn.execute(query).fetchall()


def committed(pg_url: str, schema: str, table: str, order_by: str = "1, 2") -> list[tuple]:
    """Every committed row of `schema.table`, read on a fresh connection, in a stable order."""
    with psycopg.connect(pg_url, autocommit=True) as c:
        query = sql.SQL("SELECT * FROM {} ORDER BY " + order_by).format(sql.Identifier(schema, table))
        return c.execute(query).fetchall()


def messages(chunk_chats: dict[str, list[str]], per_chat: int = 3, *, body: str = "hi") -> pl.DataFrame:
    """A MESSAGES frame: `per_chat` messages for each chat of each chunk (`{chunk: [chat, ...]}`)."""
    rows = []
    base = dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    for chunk, chats in chunk_chats.items():
        for chat in chats:
            for i in range(per_chat):
                rows.append(
                    {
                        "waha_session": "default",
                        "message_id": f"false_{chat}_{i:04d}",
                        "chat_id": chat,
                        "sent_at": base + dt.timedelta(minutes=i),
                        "from_me": i % 2 == 0,
                        "sender_id": None if i % 2 == 0 else chat,
                        "body": f"{body} {i}",
                        "has_media": False,
                        "ack": i % 4,
                        "session_id": f"{chat}:s0",
                        "chunk_key": chunk,
                    }
                )
    return pl.DataFrame(rows, schema=schemas.MESSAGES)
