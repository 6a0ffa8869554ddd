"""The warehouse tables (design.md §4), defined once: SQLAlchemy Core metadata built from the frame schemas.

`wahaflow/schemas.py` is the data contract. Every table here is generated from its Polars schema:
column types are mapped from the Polars dtypes, the primary key comes from `PRIMARY_KEYS`, key columns
are NOT NULL, and every table with a partition column (`chunk_key`) gets an index on it. Extra
indexes are declared in `TableSpec.indexes`. Text columns that are keyed or indexed use
`COLLATE "C"` (see `_column_type`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import polars as pl
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeEngine

from wahaflow import schemas

PARTITION_COLUMN = "chunk_key"
"""The column that holds the Dagster partition key (the chunk) in partitioned tables."""


@dataclass(frozen=True)
class TableSpec:
    """One warehouse table: its frame schema, primary key and secondary indexes."""

    name: str
    frame_schema: pl.Schema
    primary_key: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...] = ()
    partition_column: str | None = field(default=None)

    def __post_init__(self) -> None:
        missing = [c for c in (*self.primary_key, *sum(self.indexes, ())) if c not in self.frame_schema]
        if missing:
            raise ValueError(f"table {self.name!r}: key/index columns not in its schema: {missing}")
        if self.partition_column is None and PARTITION_COLUMN in self.frame_schema:
            object.__setattr__(self, "partition_column", PARTITION_COLUMN)


def _spec(name: str, indexes: Sequence[tuple[str, ...]] = ()) -> TableSpec:
    return TableSpec(
        name=name,
        frame_schema=schemas.FRAME_SCHEMAS[name],
        primary_key=schemas.PRIMARY_KEYS[name],
        indexes=tuple(indexes),
    )


TABLE_SPECS: dict[str, TableSpec] = {
    "chats": _spec("chats"),
    "contacts": _spec("contacts"),
    "messages": _spec("messages", indexes=[("waha_session", "chat_id", "sent_at")]),
    "sessions": _spec("sessions", indexes=[("waha_session", "chat_id", "started_at")]),
    "rejects": _spec("rejects"),
    # the webhook inbox; its dedup and pending indexes (unique/partial) are created by migration 2
    "inbox": _spec("inbox"),
}
"""Every table of design.md §4, by name."""


def sql_type(dtype: pl.DataType) -> TypeEngine[object]:
    """The Postgres column type for a Polars dtype (raises `TypeError` for a dtype with no mapping)."""
    if dtype == pl.String:
        return sa.Text()
    if dtype == pl.Boolean:
        return sa.Boolean()
    if dtype == pl.Int16:
        return sa.SmallInteger()
    if dtype == pl.Int32:
        return sa.Integer()
    if dtype == pl.Int64:
        return sa.BigInteger()
    if dtype == pl.Float64:
        return postgresql.DOUBLE_PRECISION()
    if dtype == pl.Date:
        return sa.Date()
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            raise TypeError("naive Datetime columns are not allowed: use pl.Datetime('us', 'UTC')")
        if dtype.time_unit == "ns":
            raise TypeError("Postgres timestamps have microsecond precision: use time_unit 'us'")
        return sa.DateTime(timezone=True)
    raise TypeError(f"no Postgres type for Polars dtype {dtype}")


def _column_type(name: str, dtype: pl.DataType, keyed: set[str]) -> TypeEngine[object]:
    # Identifier columns that are keyed or indexed compare bytewise (COLLATE "C"): ids have no
    # linguistic order, memcmp is much cheaper than strcoll in index inserts and lookups, and such
    # indexes cannot be corrupted by an OS collation (glibc) upgrade.
    if dtype == pl.String and name in keyed:
        return sa.Text(collation="C")
    return sql_type(dtype)


def define_table(metadata: sa.MetaData, spec: TableSpec) -> sa.Table:
    """Add `spec`'s table to `metadata` (whose `schema` is the Postgres schema) and return it."""
    key = set(spec.primary_key)
    keyed = key | set(sum(spec.indexes, ())) | ({spec.partition_column} - {None})
    columns = [
        sa.Column(name, _column_type(name, dtype, keyed), primary_key=name in key, nullable=name not in key)
        for name, dtype in spec.frame_schema.items()
    ]
    table = sa.Table(spec.name, metadata, *columns)
    for cols in spec.indexes:
        sa.Index(f"{spec.name}_{'_'.join(cols)}_idx", *(table.c[c] for c in cols))
    if spec.partition_column is not None:
        sa.Index(f"{spec.name}_{spec.partition_column}_idx", table.c[spec.partition_column])
    return table


def build_metadata(schema: str, specs: Mapping[str, TableSpec] | None = None) -> sa.MetaData:
    """SQLAlchemy metadata of `specs` (default: every warehouse table) in Postgres schema `schema`."""
    metadata = sa.MetaData(schema=schema)
    for spec in (TABLE_SPECS if specs is None else specs).values():
        define_table(metadata, spec)
    return metadata


def frame_schema(table: str) -> pl.Schema:
    """The Polars schema of a warehouse table's frames (raises `KeyError` for an unknown table)."""
    return TABLE_SPECS[table].frame_schema
