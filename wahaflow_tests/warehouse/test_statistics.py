"""Planner statistics: a load that grew a table is analyzed after its commit, and readers can wait."""

from __future__ import annotations

import psycopg
from psycopg import sql

from wahaflow.warehouse.loader import load_frame
from wahaflow.warehouse.statistics import (
    ANALYZE_MIN_ROWS,
    analyze_grown_tables,
    grown_enough,
    wait_for_statistics,
)
from wahaflow_tests.warehouse.conftest import messages


def _estimate(url: str, schema: str, table: str) -> float:
    with psycopg.connect(url) as conn:
        ident = sql.Identifier(schema, table).as_string(conn)
        row = conn.execute("SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)", [ident]).fetchone()
        assert row is not None
        return float(row[0])


def test_a_load_that_grew_a_table_is_analyzed_after_its_commit(pg_url: str, wh_schema: str) -> None:
    chats = [f"{i}@c.us" for i in range(ANALYZE_MIN_ROWS // 4 + 1)]
    frame = messages({"c1": chats}, per_chat=4)
    with psycopg.connect(pg_url) as conn:
        result = load_frame(conn, wh_schema, "messages", frame, mode="merge")
    assert _estimate(pg_url, wh_schema, "messages") < 0  # never analyzed
    assert analyze_grown_tables(pg_url, wh_schema, {"messages": result}) is not None
    wait_for_statistics(pg_url, wh_schema)
    assert _estimate(pg_url, wh_schema, "messages") == frame.height


def test_a_small_load_is_left_to_autovacuum(pg_url: str, wh_schema: str) -> None:
    with psycopg.connect(pg_url) as conn:
        result = load_frame(conn, wh_schema, "messages", messages({"c1": ["1@c.us"]}), mode="merge")
    assert analyze_grown_tables(pg_url, wh_schema, {"messages": result}) is None
    wait_for_statistics(pg_url, wh_schema)
    assert _estimate(pg_url, wh_schema, "messages") < 0


def test_a_table_is_analyzed_when_a_load_grew_it_by_a_fifth() -> None:
    assert grown_enough(ANALYZE_MIN_ROWS, -1.0)  # never analyzed
    assert grown_enough(20_000, 100_000.0) and not grown_enough(19_999, 100_000.0)
    assert not grown_enough(ANALYZE_MIN_ROWS - 1, -1.0)
