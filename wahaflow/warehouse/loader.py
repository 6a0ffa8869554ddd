r"""Bulk loader: a Polars frame into a warehouse table, COPY into TEMP staging, then one set-based write.

`load_frame` runs in `conn.transaction()`: inside a transaction the caller already has open that is
a savepoint, so a chunk run that loads several tables commits all or nothing and the loader never
commits on its own. (On an idle connection the block is the whole transaction and commits at its end;
wrap several calls in `with conn.transaction():` to group them.)

Modes:
- `replace`: delete the target rows of the scope (the partitions in `partition_keys`, or the
  `replace_scope` key tuples present in the frame, or the whole table), then insert the frame.
- `merge`: `INSERT ... ON CONFLICT (pk) DO UPDATE ... WHERE (old) IS DISTINCT FROM (new)`, so rows
  that did not change are not touched (no new row version, no WAL, no index churn).

Before loading, duplicate keys inside the frame are collapsed (the last occurrence wins), NUL
characters are removed from every text column (design.md rule 8), and rows are sorted by primary
key. Identifiers are always quoted with `psycopg.sql`; data only travels through COPY or bound
parameters.

How the rows travel, and why. Measured on this 2-core box (PG 16 on the same machine, other
sessions' benchmarks running, load 2-5, so wall times are noisy; the CPU seconds of the client
process and of the server backend are the stable figure, and on 2 shared cores their sum is what
limits throughput). 1,000,000 realistic MESSAGES rows (benchmarks/loader.py):

  COPY into the TEMP staging table                client CPU   server CPU   wall
  psycopg binary COPY, write_row + set_types      3.3-3.7 s    1.2 s        4.3-6.3 s
  CSV bytes from Polars' Rust writer (kept)       0.8-1.1 s    2.1-2.9 s    3.1-5.8 s
  ADBC adbc_ingest(temporary=True) (rejected)     1.2-1.6 s    1.4 s        2.8-3.1 s

  CSV wins over binary write_row: building rows in Python costs ~3x the CPU Polars needs to encode
  CSV, and Polars' writer gets NULL (unquoted empty) vs "" (quoted), quotes, newlines and `\.`
  right. ADBC is a little cheaper but was rejected: it opens its own libpq session, so its TEMP
  table and transaction cannot be the caller's, which breaks "one chunk run = one transaction".
  Block size is within noise (one block vs 20k- or 100k-row slices); 100k-row slices bound memory.

  Writing staging into the indexed `messages` table (server CPU; empty table unless noted):
  plain INSERT ... SELECT (no conflict handling)          5.6-7.6 s
  INSERT ... ON CONFLICT DO UPDATE ... IS DISTINCT (kept)  8.2-10.8 s; 4.3-5.4 s for a re-load
    same, staging in shuffled order instead of key order   22.0 s (wall 33 s): sorting pays
    same, counting inserted/updated in a CTE                within noise of the above (kept)
  UPDATE ... FROM + INSERT ... WHERE NOT EXISTS; MERGE      6.5 s each into an empty table, but the
    former took 26.7 s for 1M new rows into a table of 2M (hash anti-join over the whole target;
    upsert: 11.3 s), and both fail on a concurrent writer of the same key: rejected.
  psql \copy straight into the table (the floor)           7.7-9.2 s

  Sorting by primary key in Polars (~0.3 s wall) makes index inserts sequential when the frame
  arrives shuffled (e.g. after a join or group_by); WAHA ids start with the chat id, so key order
  also keeps the (waha_session, chat_id, sent_at) index local.

  End to end (`python -m benchmarks.loader`, load average ~2.7): merge into the empty indexed table
  16.2 s (62k rows/s; CPU client 2.3 s, server 13.0 s), re-load of the same rows 10.1 s (99k rows/s),
  replace 23.0 s; `psql \copy` of the same CSV into the same fresh table 12.75 s (78k rows/s).
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import polars as pl
import psycopg
from psycopg import sql

WriteMode = Literal["replace", "merge"]

COPY_SLICE_ROWS = 25_000
"""Rows per CSV block handed to COPY (bounds the extra memory to one encoded slice)."""


@dataclass(frozen=True)
class LoadResult:
    """What one `load_frame` call did."""

    table: str
    mode: WriteMode
    rows_in_frame: int
    """Rows of the frame as given."""
    rows_written: int
    """Rows copied to staging after collapsing duplicate keys."""
    duplicates_collapsed: int
    inserted: int
    """Rows that did not exist before (merge) or all rows inserted (replace)."""
    updated: int
    """Existing rows whose values changed (merge only)."""
    deleted: int
    """Rows deleted from the replace scope (replace only)."""
    seconds: float
    copy_seconds: float
    """Time spent encoding and copying into staging (included in `seconds`)."""

    @property
    def unchanged(self) -> int:
        """Rows whose key existed with identical values (merge only): not touched."""
        return self.rows_written - self.inserted - self.updated if self.mode == "merge" else 0


@dataclass(frozen=True)
class TargetTable:
    """What the catalog says about a table: its columns (in order), their types, its primary key."""

    schema: str
    name: str
    columns: tuple[str, ...]
    types: dict[str, str]
    primary_key: tuple[str, ...]

    @property
    def ident(self) -> sql.Identifier:
        """The quoted `schema.table` identifier."""
        return sql.Identifier(self.schema, self.name)


_DESCRIBE = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod),
       coalesce(array_position(i.indkey::int2[], a.attnum) - array_lower(i.indkey::int2[], 1) + 1, 0)
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_index i ON i.indrelid = c.oid AND i.indisprimary
WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


def describe_table(conn: psycopg.Connection, schema: str, table: str) -> TargetTable:
    """Read `schema.table`'s columns and primary key from the catalog (`LookupError` if absent)."""
    rows = conn.execute(_DESCRIBE, [schema, table]).fetchall()
    if not rows:
        raise LookupError(f"table {schema}.{table} does not exist (did the migrations run?)")
    return TargetTable(
        schema=schema,
        name=table,
        columns=tuple(name for name, _, _ in rows),
        types={name: pg_type for name, pg_type, _ in rows},
        primary_key=tuple(name for _, name in sorted((pos, name) for name, _, pos in rows if pos)),
    )


_LOADABLE = (pl.String, pl.Boolean, pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.Float32, pl.Float64, pl.Date)


def _check_dtypes(frame: pl.DataFrame) -> None:
    for name, dtype in frame.schema.items():
        if isinstance(dtype, pl.Datetime):
            if dtype.time_zone is None:
                raise TypeError(f"column {name!r}: a naive Datetime is ambiguous; give it a time zone (UTC)")
        elif dtype != pl.Null and not any(dtype == t for t in _LOADABLE):
            raise TypeError(f"column {name!r}: dtype {dtype} cannot be loaded")


def strip_nul(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with every NUL character removed from its text columns (design.md rule 8)."""
    text = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    if not text or not frame.height:
        return frame
    has_nul = frame.select(pl.col(text).str.contains("\x00", literal=True).any()).row(0)
    dirty = [name for name, flag in zip(text, has_nul, strict=True) if flag]
    if not dirty:
        return frame
    return frame.with_columns(pl.col(dirty).str.replace_all("\x00", "", literal=True))


def prepare_frame(frame: pl.DataFrame, key: Sequence[str]) -> pl.DataFrame:
    """`frame` ready to load: NUL removed, one row per `key` (its last occurrence), sorted by `key`."""
    _check_dtypes(frame)
    frame = strip_nul(frame)
    if not key or not frame.height:
        return frame
    keys = list(key)
    if frame.select(pl.struct(keys).is_duplicated().any()).item():
        frame = frame.unique(subset=keys, keep="last", maintain_order=True)
    return frame.sort(keys)


def _csv_ready(frame: pl.DataFrame) -> pl.DataFrame:
    """Datetimes as UTC wall time, so one `datetime_format` with a `+00` suffix is exact for all."""
    stamps = [name for name, dtype in frame.schema.items() if isinstance(dtype, pl.Datetime)]
    if not stamps:
        return frame
    return frame.with_columns(
        pl.col(stamps).dt.convert_time_zone("UTC").dt.replace_time_zone(None).dt.cast_time_unit("us")
    )


def copy_frame(conn: psycopg.Connection, table: sql.Composable, frame: pl.DataFrame) -> None:
    """COPY `frame` into `table` (its columns by name) as CSV encoded by Polars.

    NULL is an unquoted empty field and every text value is quoted (`quote_style="non_numeric"`),
    so an empty string stays an empty string and no line can start with the `\\.` end marker.
    """
    if not frame.height:
        return
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT CSV)").format(
        table, sql.SQL(", ").join(map(sql.Identifier, frame.columns))
    )
    ready = _csv_ready(frame)
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for offset in range(0, ready.height, COPY_SLICE_ROWS):
            block = io.BytesIO()
            ready.slice(offset, COPY_SLICE_ROWS).write_csv(
                block,
                include_header=False,
                quote_style="non_numeric",
                datetime_format="%Y-%m-%d %H:%M:%S%.6f+00",
                date_format="%Y-%m-%d",
            )
            copy.write(block.getbuffer())


def _check_partitions(
    frame: pl.DataFrame, target: TargetTable, mode: WriteMode, keys: Sequence[str], column: str
) -> None:
    if column not in frame.columns:
        if mode == "replace" and column in target.types:
            raise ValueError(f"frame for {target.name} lacks the partition column {column!r}")
        return
    outside = frame.filter(pl.col(column).is_null() | ~pl.col(column).is_in(list(keys)))
    if outside.height:
        sample = outside.get_column(column).unique().head(5).to_list()
        raise ValueError(
            f"{outside.height} rows for {target.name} have a {column} outside the "
            f"{len(keys)} partitions being written, e.g. {sample}"
        )


def _check_request(
    frame: pl.DataFrame,
    target: TargetTable,
    mode: WriteMode,
    scope: Sequence[str],
    keep_existing_on_null: bool,
) -> None:
    if mode not in ("replace", "merge"):
        raise ValueError(f"unknown write mode {mode!r}")
    unknown = [c for c in frame.columns if c not in target.types]
    if unknown:
        raise ValueError(f"frame columns {unknown} are not columns of {target.schema}.{target.name}")
    if mode == "merge" and not target.primary_key:
        raise ValueError(f"merge needs a primary key and {target.schema}.{target.name} has none")
    missing_key = [c for c in target.primary_key if c not in frame.columns]
    if missing_key and frame.width:
        raise ValueError(f"frame for {target.name} lacks primary-key columns {missing_key}")
    if any(c not in frame.columns for c in scope):
        raise ValueError(f"replace_scope {list(scope)} must be columns of the frame for {target.name}")
    if scope and mode != "replace":
        raise ValueError("replace_scope only applies to mode='replace'")
    if keep_existing_on_null and mode != "merge":
        raise ValueError("keep_existing_on_null only applies to mode='merge'")


def load_frame(
    conn: psycopg.Connection,
    schema: str,
    table: str,
    frame: pl.DataFrame,
    *,
    mode: WriteMode,
    partition_keys: Sequence[str] | None = None,
    partition_column: str = "chunk_key",
    replace_scope: Sequence[str] | None = None,
    keep_existing_on_null: bool = False,
    assume_new: bool = False,
) -> LoadResult:
    """Write `frame` into `schema.table` atomically (a savepoint inside the caller's transaction).

    A load into an empty table, or a merge whose rows are all new (`assume_new`), is tried first as
    one COPY straight into the table, at the speed of a plain `\\copy`; if any key exists after all
    (a unique violation), that attempt is rolled back to its savepoint and the rows are merged as
    usual.

    `mode="replace"` deletes the scope first: with `replace_scope`, the target rows whose
    `replace_scope` columns match a tuple present in the frame; else with `partition_keys`, the rows
    whose `partition_column` is one of them (an empty frame empties those partitions); else the
    whole table. `mode="merge"` upserts by primary key and leaves unchanged rows untouched; with
    `keep_existing_on_null`, a null in the frame keeps the stored value. With `partition_keys`,
    every frame row must belong to one of them (`ValueError` otherwise), so a run never writes
    outside its partitions. The frame's columns must be columns of the table; the table's other
    columns get their defaults on insert and keep their values on update.
    """
    started = time.perf_counter()
    target = describe_table(conn, schema, table)
    scope = tuple(replace_scope or ())
    _check_request(frame, target, mode, scope, keep_existing_on_null)
    if partition_keys is not None:
        _check_partitions(frame, target, mode, partition_keys, partition_column)

    rows_in = frame.height
    frame = prepare_frame(frame, target.primary_key if frame.width else ())
    stage = sql.Identifier(f"stage_{uuid.uuid4().hex[:16]}")
    copy_seconds = 0.0
    inserted = updated = deleted = 0
    if frame.height and ((mode == "merge" and assume_new) or _is_empty(conn, target)):
        try:
            with conn.transaction():
                copy_frame(conn, target.ident, frame)
            seconds = time.perf_counter() - started
            return LoadResult(
                table=table,
                mode=mode,
                rows_in_frame=rows_in,
                rows_written=frame.height,
                duplicates_collapsed=rows_in - frame.height,
                inserted=frame.height,
                updated=0,
                deleted=0,
                seconds=seconds,
                copy_seconds=seconds,
            )
        except psycopg.errors.UniqueViolation:
            pass  # some keys are stored already: merge through the staging table below
    with conn.transaction():
        if frame.height:
            conn.execute(
                sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
                    stage, target.ident
                )
            )
            copy_started = time.perf_counter()
            copy_frame(conn, stage, frame)
            copy_seconds = time.perf_counter() - copy_started
        if mode == "replace":
            deleted = _delete_scope(
                conn, target, stage if frame.height else None, scope, partition_keys, partition_column
            )
            if frame.height:
                inserted = _insert(conn, target, stage, frame.columns)
        elif frame.height:
            inserted, updated = _merge(conn, target, stage, frame.columns, keep_existing_on_null)
        if frame.height:
            conn.execute(sql.SQL("DROP TABLE {}").format(stage))
    return LoadResult(
        table=table,
        mode=mode,
        rows_in_frame=rows_in,
        rows_written=frame.height,
        duplicates_collapsed=rows_in - frame.height,
        inserted=inserted,
        updated=updated,
        deleted=deleted,
        seconds=time.perf_counter() - started,
        copy_seconds=copy_seconds,
    )


def _is_empty(conn: psycopg.Connection, target: TargetTable) -> bool:
    """Whether the table has no row at all (a first load)."""
    row = conn.execute(sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {})").format(target.ident)).fetchone()
    return bool(row and row[0])


def _columns(names: Sequence[str], prefix: str | None = None) -> sql.Composable:
    if prefix is None:
        return sql.SQL(", ").join(map(sql.Identifier, names))
    return sql.SQL(", ").join(sql.Identifier(prefix, name) for name in names)


def _delete_scope(
    conn: psycopg.Connection,
    target: TargetTable,
    stage: sql.Identifier | None,
    scope: Sequence[str],
    partition_keys: Sequence[str] | None,
    partition_column: str,
) -> int:
    if scope:
        if stage is None:
            return 0
        match = sql.SQL(" AND ").join(
            sql.SQL("{} = {}").format(sql.Identifier("t", c), sql.Identifier("s", c)) for c in scope
        )
        statement = sql.SQL("DELETE FROM {} AS t USING (SELECT DISTINCT {} FROM {}) AS s WHERE {}").format(
            target.ident, _columns(scope), stage, match
        )
        return conn.execute(statement).rowcount
    if partition_keys is not None:
        if partition_column not in target.types:
            raise ValueError(f"{target.name} has no partition column {partition_column!r}")
        statement = sql.SQL("DELETE FROM {} WHERE {} = ANY(%s)").format(
            target.ident, sql.Identifier(partition_column)
        )
        return conn.execute(statement, [list(partition_keys)]).rowcount
    return conn.execute(sql.SQL("DELETE FROM {}").format(target.ident)).rowcount


def _insert(
    conn: psycopg.Connection, target: TargetTable, stage: sql.Identifier, columns: Sequence[str]
) -> int:
    statement = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
        target.ident, _columns(columns), _columns(columns), stage
    )
    return conn.execute(statement).rowcount


def _merge(
    conn: psycopg.Connection,
    target: TargetTable,
    stage: sql.Identifier,
    columns: Sequence[str],
    keep_existing_on_null: bool,
) -> tuple[int, int]:
    """Upsert staging into target; return (inserted, updated). Unchanged rows are not touched."""
    values = [c for c in columns if c not in target.primary_key]
    if values:
        new = [
            sql.SQL("coalesce(excluded.{}, t.{})").format(sql.Identifier(c), sql.Identifier(c))
            if keep_existing_on_null
            else sql.Identifier("excluded", c)
            for c in values
        ]
        action = sql.SQL("DO UPDATE SET ({}) = ROW({}) WHERE ({}) IS DISTINCT FROM ({})").format(
            _columns(values),
            sql.SQL(", ").join(new),
            _columns(values, "t"),
            sql.SQL(", ").join(new),
        )
    else:
        action = sql.SQL("DO NOTHING")
    # A RETURNING row with `xmax = 0` was inserted, otherwise updated (the well-known idiom);
    # counting inside a CTE keeps the rows on the server.
    statement = sql.SQL(
        "WITH written AS (INSERT INTO {} AS t ({}) SELECT {} FROM {} ON CONFLICT ({}) {}"
        " RETURNING (t.xmax = 0) AS inserted)"
        " SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM written"
    ).format(target.ident, _columns(columns), _columns(columns), stage, _columns(target.primary_key), action)
    row = conn.execute(statement).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)
