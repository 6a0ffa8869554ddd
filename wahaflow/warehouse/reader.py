"""Bulk read-back: a table's rows (optionally some partitions) as a Polars frame, via COPY TO STDOUT.

One `COPY (SELECT ...) TO STDOUT (FORMAT CSV)` streams the rows; Polars' CSV reader parses them.
Timestamps travel as integer microseconds since the epoch and booleans as 0/1, so nothing depends
on the session's TimeZone or DateStyle. In Postgres CSV output NULL is an unquoted empty field and
an empty string is `""`, which Polars reads back as null and "" respectively.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import polars as pl
import psycopg
from psycopg import sql

from wahaflow.schemas import conform
from wahaflow.warehouse.loader import TargetTable, describe_table

_PG_TO_POLARS: dict[str, pl.DataType] = {
    "text": pl.String(),
    "boolean": pl.Boolean(),
    "smallint": pl.Int16(),
    "integer": pl.Int32(),
    "bigint": pl.Int64(),
    "double precision": pl.Float64(),
    "date": pl.Date(),
    "timestamp with time zone": pl.Datetime("us", "UTC"),
}


def catalog_schema(target: TargetTable) -> pl.Schema:
    """The Polars schema matching a table's column types (raises `TypeError` for other types)."""
    out: dict[str, pl.DataType] = {}
    for name in target.columns:
        pg_type = target.types[name]
        if pg_type not in _PG_TO_POLARS:
            raise TypeError(f"{target.name}.{name}: no Polars dtype for Postgres type {pg_type}")
        out[name] = _PG_TO_POLARS[pg_type]
    return pl.Schema(out)


def _select_item(name: str, dtype: pl.DataType) -> tuple[sql.Composable, pl.DataType]:
    """The SELECT expression for one column and the dtype Polars parses it as."""
    col = sql.Identifier(name)
    if isinstance(dtype, pl.Datetime):
        expr = sql.SQL("(extract(epoch FROM {}) * 1000000)::int8 AS {}").format(col, col)
        return expr, pl.Int64()
    if dtype == pl.Date:
        return sql.SQL("({} - date '1970-01-01') AS {}").format(col, col), pl.Int32()
    if dtype == pl.Boolean:
        return sql.SQL("{}::int AS {}").format(col, col), pl.Int32()
    if dtype.is_integer():
        return col, pl.Int64()
    return col, dtype


def _decode(raw: pl.Series, dtype: pl.DataType) -> pl.Series:
    if isinstance(dtype, pl.Datetime):
        return (
            raw.cast(pl.Datetime("us"))
            .dt.replace_time_zone("UTC")
            .dt.convert_time_zone(dtype.time_zone or "UTC")
        )
    if dtype == pl.Date:
        return raw.cast(pl.Date)
    if dtype == pl.Boolean:
        return raw.cast(pl.Boolean)
    return raw.cast(dtype)


def read_frame(
    conn: psycopg.Connection,
    schema: str,
    table: str,
    frame_schema: pl.Schema | None = None,
    *,
    partition_keys: Sequence[str] | None = None,
    partition_column: str = "chunk_key",
) -> pl.DataFrame:
    """Rows of `schema.table` (only those whose `partition_column` is in `partition_keys`, if given).

    The result has exactly `frame_schema` (default: from the table's column types); columns the
    table lacks come back as nulls.
    """
    target = describe_table(conn, schema, table)
    wanted = frame_schema if frame_schema is not None else catalog_schema(target)
    present = [(name, dtype) for name, dtype in wanted.items() if name in target.types]
    if not present:
        return conform(pl.DataFrame(), wanted)
    query: sql.Composable = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(map(sql.Identifier, (name for name, _ in present))), sql.Identifier(schema, table)
    )
    params: dict[str, object] = {}
    if partition_keys is not None:
        if partition_column not in target.types:
            raise ValueError(f"{schema}.{table} has no partition column {partition_column!r}")
        query = sql.SQL("{} WHERE {} = ANY(%(keys)s)").format(query, sql.Identifier(partition_column))
        params["keys"] = list(partition_keys)
    return conform(read_query(conn, query, pl.Schema(present), params), wanted)


def read_query(
    conn: psycopg.Connection,
    query: sql.Composable,
    frame_schema: pl.Schema,
    params: Mapping[str, object] | None = None,
) -> pl.DataFrame:
    """The rows of any `query` whose output columns are named as in `frame_schema`, as a frame with
    exactly that schema, streamed by one COPY (parameters are bound client-side by psycopg)."""
    items = [_select_item(name, dtype) for name, dtype in frame_schema.items()]
    wrapped = sql.SQL("COPY (SELECT {} FROM ({}) AS q) TO STDOUT (FORMAT CSV)").format(
        sql.SQL(", ").join(expr for expr, _ in items), query
    )
    buffer = io.BytesIO()
    with conn.cursor() as cur, cur.copy(wrapped, params) as copy:
        for block in copy:
            buffer.write(block)
    read_schema = pl.Schema({name: parse for name, (_, parse) in zip(frame_schema, items, strict=True)})
    if not buffer.tell():
        return conform(pl.DataFrame(schema=read_schema), frame_schema)
    raw = pl.read_csv(buffer.getvalue(), has_header=False, schema=read_schema, quote_char='"')
    decoded = raw.with_columns(_decode(raw.get_column(name), dtype) for name, dtype in frame_schema.items())
    return conform(decoded, frame_schema)
