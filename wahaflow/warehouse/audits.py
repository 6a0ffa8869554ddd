"""The import's invariants (design.md §5 rules 5 and 6), measured in SQL inside Postgres.

Each audit returns an `AuditResult`: `violations` is 0 when the rule holds, `figures` are the
numbers a data engineer wants beside the verdict, and `sample` lists a few offending keys. Audits can
be scoped to some chunks (the partitions of a run) or run over the whole schema.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

SAMPLE_SIZE = 5


@dataclass(frozen=True)
class AuditResult:
    """Outcome of one audit."""

    name: str
    violations: int
    figures: dict[str, int] = field(default_factory=dict)
    sample: list[tuple] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.violations == 0


def _scope(alias: str, chunk_keys: Sequence[str] | None) -> sql.Composable:
    if chunk_keys is None:
        return sql.SQL("TRUE")
    return sql.SQL("{}.chunk_key = ANY(%(chunk_keys)s)").format(sql.Identifier(alias))


def _run(
    conn: psycopg.Connection,
    schema: str,
    chunk_keys: Sequence[str] | None,
    name: str,
    count_query: str,
    sample_query: str,
    figure_names: Sequence[str],
) -> AuditResult:
    """`count_query` returns one row, (violations, *figures named `figure_names`), in one pass over
    the rows; `sample_query` (run only when something is wrong) lists offending keys."""
    params = {"chunk_keys": list(chunk_keys) if chunk_keys is not None else None}
    fmt: dict[str, sql.Composable] = {
        "messages": sql.Identifier(schema, "messages"),
        "sessions": sql.Identifier(schema, "sessions"),
        "m_scope": _scope("m", chunk_keys),
        "s_scope": _scope("s", chunk_keys),
    }
    row = conn.execute(sql.SQL(count_query).format(**fmt), params).fetchone()
    violations, *values = (int(v or 0) for v in row) if row else (0, *(0 for _ in figure_names))
    sample = conn.execute(sql.SQL(sample_query).format(**fmt), params).fetchall() if violations else []
    return AuditResult(
        name=name,
        violations=violations,
        figures=dict(zip(figure_names, values, strict=True)),
        sample=[tuple(r) for r in sample],
    )


def duplicate_messages(conn: psycopg.Connection, schema: str, chunk_keys: Sequence[str] | None = None):
    """Rows sharing (waha_session, message_id): must be none (the primary key also forbids it)."""
    return _run(
        conn,
        schema,
        chunk_keys,
        "duplicate_messages",
        # a hash aggregate on the key columns (count(DISTINCT (a, b)) sorts row values: 4x slower)
        "SELECT sum(n - 1) FILTER (WHERE n > 1), sum(n) FROM (SELECT count(*) AS n FROM {messages} m "
        "WHERE {m_scope} GROUP BY m.waha_session, m.message_id) d",
        "SELECT m.waha_session, m.message_id, count(*) FROM {messages} m WHERE {m_scope} "
        f"GROUP BY 1, 2 HAVING count(*) > 1 ORDER BY 3 DESC LIMIT {SAMPLE_SIZE}",
        ["messages"],
    )


def messages_without_session(conn: psycopg.Connection, schema: str, chunk_keys: Sequence[str] | None = None):
    """Messages whose session_id is missing or names no session of the message's own chat."""
    joined = (
        "FROM {messages} m LEFT JOIN {sessions} s ON s.waha_session = m.waha_session "
        "AND s.session_id = m.session_id AND s.chat_id = m.chat_id WHERE {m_scope}"
    )
    return _run(
        conn,
        schema,
        chunk_keys,
        "messages_without_session",
        # a message joins at most one session (their key): count(*) counts the messages
        "SELECT count(*) FILTER (WHERE s.session_id IS NULL), count(*), "
        f"(SELECT count(*) FROM {{sessions}} s WHERE {{s_scope}}) {joined}",
        f"SELECT m.waha_session, m.chat_id, m.message_id, m.session_id {joined} AND s.session_id IS NULL "
        f"LIMIT {SAMPLE_SIZE}",
        ["messages", "sessions"],
    )


_COUNT_MISMATCH = (
    "FROM (SELECT m.waha_session, m.chat_id, count(*) AS n FROM {messages} m WHERE {m_scope} "
    "GROUP BY 1, 2) mc "
    "FULL JOIN (SELECT s.waha_session, s.chat_id, sum(s.message_count) AS n, "
    "count(*) FILTER (WHERE s.message_count <> s.inbound_count + s.outbound_count) AS inconsistent "
    "FROM {sessions} s WHERE {s_scope} GROUP BY 1, 2) sc USING (waha_session, chat_id)"
)


def session_counts_mismatch(conn: psycopg.Connection, schema: str, chunk_keys: Sequence[str] | None = None):
    """Chats whose sessions' message_count does not add up to the chat's stored messages."""
    return _run(
        conn,
        schema,
        chunk_keys,
        "session_counts_mismatch",
        "SELECT count(*) FILTER (WHERE mc.n IS DISTINCT FROM sc.n), count(mc.n), sum(sc.inconsistent) "
        + _COUNT_MISMATCH,
        f"SELECT waha_session, chat_id, mc.n, sc.n {_COUNT_MISMATCH} WHERE mc.n IS DISTINCT FROM sc.n "
        f"LIMIT {SAMPLE_SIZE}",
        ["chats", "inconsistent_totals"],
    )


_OVERLAPS = (
    "FROM (SELECT s.waha_session, s.chat_id, s.session_id, s.started_at, "
    "lag(s.ended_at) OVER (PARTITION BY s.waha_session, s.chat_id ORDER BY s.started_at, s.session_id) "
    "AS previous_end FROM {sessions} s WHERE {s_scope}) x"
)


def overlapping_sessions(conn: psycopg.Connection, schema: str, chunk_keys: Sequence[str] | None = None):
    """Sessions that start before the previous session of the same chat has ended."""
    return _run(
        conn,
        schema,
        chunk_keys,
        "overlapping_sessions",
        f"SELECT count(*) FILTER (WHERE x.started_at <= x.previous_end), count(*) {_OVERLAPS}",
        f"SELECT waha_session, chat_id, session_id, started_at {_OVERLAPS} "
        f"WHERE x.started_at <= x.previous_end LIMIT {SAMPLE_SIZE}",
        ["sessions"],
    )


AUDITS: dict[str, Callable[..., AuditResult]] = {
    "duplicate_messages": duplicate_messages,
    "messages_without_session": messages_without_session,
    "session_counts_mismatch": session_counts_mismatch,
    "overlapping_sessions": overlapping_sessions,
}
