"""Reads of stored state for the registry, chunk runs and sensors, in bulk (`reader.read_query`).

Used by the chat registry and by incremental chunk imports. Every query is parameterized or built
with `psycopg.sql`; nothing is formatted from data.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
import psycopg
from psycopg import sql

from wahaflow import schemas
from wahaflow.warehouse.audits import duplicate_messages
from wahaflow.warehouse.reader import read_query


def chats_in_chunks(conn: psycopg.Connection, db_schema: str, chunk_keys: Sequence[str]) -> pl.DataFrame:
    """The registered chats of `chunk_keys` (CHATS schema)."""
    query = sql.SQL("SELECT {cols} FROM {table} WHERE chunk_key = ANY(%(keys)s)").format(
        cols=sql.SQL(", ").join(map(sql.Identifier, schemas.CHATS)),
        table=sql.Identifier(db_schema, "chats"),
    )
    return read_query(conn, query, schemas.CHATS, {"keys": list(chunk_keys)}).sort("chunk_key", "chat_id")


def registered_chats(conn: psycopg.Connection, db_schema: str) -> pl.DataFrame:
    """Every registered chat's session, id and chunk."""
    query = sql.SQL("SELECT waha_session, chat_id, chunk_key FROM {table}").format(
        table=sql.Identifier(db_schema, "chats")
    )
    return read_query(
        conn, query, pl.Schema({"waha_session": pl.String, "chat_id": pl.String, "chunk_key": pl.String})
    )


CHAT_STATE = pl.Schema(
    {
        "waha_session": pl.String,
        "chat_id": pl.String,
        "stored_messages": pl.Int64,
        "last_sent_at": schemas.UTC_TIME,
        "last_session_started_at": schemas.UTC_TIME,
    }
)


def chat_state(conn: psycopg.Connection, db_schema: str, chunk_keys: Sequence[str]) -> pl.DataFrame:
    """Per stored chat of `chunk_keys`: message count, newest message, start of its last session."""
    query = sql.SQL(
        "SELECT m.waha_session, m.chat_id, m.n AS stored_messages, m.last_sent_at, "
        "s.last_started_at AS last_session_started_at FROM "
        "(SELECT waha_session, chat_id, count(*) AS n, max(sent_at) AS last_sent_at FROM {messages} "
        " WHERE chunk_key = ANY(%(keys)s) GROUP BY 1, 2) m "
        "LEFT JOIN (SELECT waha_session, chat_id, max(started_at) AS last_started_at FROM {sessions} "
        " WHERE chunk_key = ANY(%(keys)s) GROUP BY 1, 2) s USING (waha_session, chat_id)"
    ).format(messages=sql.Identifier(db_schema, "messages"), sessions=sql.Identifier(db_schema, "sessions"))
    return read_query(conn, query, CHAT_STATE, {"keys": list(chunk_keys)})


def messages_of_chats(conn: psycopg.Connection, db_schema: str, chats: pl.DataFrame) -> pl.DataFrame:
    """Every stored message (MESSAGES schema) of the (waha_session, chat_id) pairs in `chats`."""
    if chats.is_empty():
        return schemas.empty(schemas.MESSAGES)
    query = sql.SQL(
        "SELECT {cols} FROM {table} m JOIN unnest(%(sessions)s::text[], %(chats)s::text[]) "
        "AS k(waha_session, chat_id) USING (waha_session, chat_id)"
    ).format(
        cols=sql.SQL(", ").join(sql.Identifier("m", c) for c in schemas.MESSAGES),
        table=sql.Identifier(db_schema, "messages"),
    )
    params = {"sessions": chats["waha_session"].to_list(), "chats": chats["chat_id"].to_list()}
    return read_query(conn, query, schemas.MESSAGES, params)


def stale_chunks(conn: psycopg.Connection, db_schema: str) -> list[str]:
    """Chunks with a chat never synced, or with activity after what its last fetch covered."""
    query = sql.SQL(
        "SELECT DISTINCT chunk_key FROM {chats} WHERE chunk_key IS NOT NULL AND (synced_until IS NULL "
        "OR last_message_at IS NULL OR last_message_at > synced_until) ORDER BY chunk_key"
    ).format(chats=sql.Identifier(db_schema, "chats"))
    return [row[0] for row in conn.execute(query).fetchall()]


def chunks_needing_history(conn: psycopg.Connection, db_schema: str) -> set[str]:
    """Chunks with a chat never synced (its whole history is still to fetch)."""
    query = sql.SQL(
        "SELECT DISTINCT chunk_key FROM {chats} WHERE chunk_key IS NOT NULL AND synced_until IS NULL"
    ).format(chats=sql.Identifier(db_schema, "chats"))
    return {row[0] for row in conn.execute(query).fetchall()}


def table_counts(conn: psycopg.Connection, db_schema: str) -> dict[str, int]:
    """Row counts of the warehouse tables, plus duplicate messages (must be 0)."""
    counts: dict[str, int] = {}
    for table in ("chats", "contacts", "messages", "sessions", "rejects"):
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(db_schema, table))
        counts[table] = int(conn.execute(query).fetchone()[0])
    counts["duplicates"] = duplicate_messages(conn, db_schema).violations
    return counts


def chunks_with_pending_events(conn: psycopg.Connection, db_schema: str) -> list[str]:
    """Chunks of registered chats that have webhook events waiting in the inbox."""
    query = sql.SQL(
        "SELECT DISTINCT c.chunk_key FROM {inbox} i JOIN {chats} c USING (waha_session, chat_id) "
        "WHERE i.processed_at IS NULL AND c.chunk_key IS NOT NULL ORDER BY 1"
    ).format(inbox=sql.Identifier(db_schema, "inbox"), chats=sql.Identifier(db_schema, "chats"))
    return [row[0] for row in conn.execute(query).fetchall()]


def whole_history_needs(
    conn: psycopg.Connection, db_schema: str, *, full: bool
) -> dict[str, tuple[int, int]]:
    """Per WAHA session: (chats whose whole history is still to fetch, chats in the registry). The
    former are the never-synced chats, or every chat with `full`. Empty when the registry table does
    not exist yet (the warehouse migrations have not run)."""
    registry = conn.execute("SELECT to_regclass(%s)", [sql.Identifier(db_schema, "chats").as_string(conn)])
    if registry.fetchone() == (None,):
        return {}
    needed = sql.SQL("count(*)") if full else sql.SQL("count(*) FILTER (WHERE synced_until IS NULL)")
    query = sql.SQL("SELECT waha_session, {}, count(*) FROM {} GROUP BY 1").format(
        needed, sql.Identifier(db_schema, "chats")
    )
    return {row[0]: (int(row[1]), int(row[2])) for row in conn.execute(query).fetchall()}
