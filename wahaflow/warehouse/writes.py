"""Several table writes committed as one transaction: how a chunk run stores all its frames at once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import polars as pl
import psycopg

from wahaflow.warehouse.loader import LoadResult, WriteMode, load_frame


@dataclass(frozen=True)
class TableWrite:
    """One frame to write into one table.

    `replace_scope` (replace mode) names the columns whose value tuples, as present in the frame,
    select the stored rows to replace, e.g. `("waha_session", "chat_id")` re-writes whole chats.
    `keep_existing_on_null` (merge mode) keeps a stored value where the incoming one is null.
    """

    table: str
    frame: pl.DataFrame
    mode: WriteMode
    replace_scope: Sequence[str] | None = None
    keep_existing_on_null: bool = False
    assume_new: bool = False  # merge: the rows are expected to be new (try a direct COPY first)


@dataclass(frozen=True)
class TableWrites:
    """An ordered set of writes that succeed or fail together.

    `then` runs after the writes, inside the same transaction (e.g. marking inbox events processed).
    """

    writes: tuple[TableWrite, ...]
    then: tuple[Callable[[psycopg.Connection, str], object], ...] = ()


def write_all(
    conn: psycopg.Connection,
    schema: str,
    writes: Sequence[TableWrite],
    *,
    partition_keys: Sequence[str] | None = None,
    partition_column: str = "chunk_key",
    then: Sequence[Callable[[psycopg.Connection, str], object]] = (),
) -> dict[str, LoadResult]:
    """Apply `writes` in order inside one transaction; any failure rolls back every one of them.

    `partition_keys`/`partition_column` are passed to every `load_frame` (see there); `then` runs
    after the writes, in the same transaction.
    """
    results: dict[str, LoadResult] = {}
    with conn.transaction():
        for write in writes:
            results[write.table] = load_frame(
                conn,
                schema,
                write.table,
                write.frame,
                mode=write.mode,
                partition_keys=partition_keys,
                partition_column=partition_column,
                replace_scope=write.replace_scope,
                keep_existing_on_null=write.keep_existing_on_null,
                assume_new=write.assume_new,
            )
        for step in then:
            step(conn, schema)
    return results
