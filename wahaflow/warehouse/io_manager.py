"""`PostgresPolarsIOManager`: Polars frames in and out of warehouse tables, one transaction per output.

Asset (output) metadata drives it:
- `"table"`: the target table (default: the last component of the asset key);
- `"write_mode"`: `"replace"` (default) or `"merge"` (see `loader.load_frame`);
- `"partition_expr"`: the column holding the partition key (default `chunk_key`);
- `"replace_scope"`: optional list of columns; with `replace`, delete the rows matching the key
  tuples present in the frame instead of whole partitions.

What an output may be:
- a `pl.DataFrame`: written to the table; for a partitioned output, scoped to
  `context.asset_partition_keys` (all partitions of a ranged run, in one transaction);
- a `writes.TableWrites`: several tables, each with its own mode/scope, in one transaction
  (partition keys are not applied: each write carries its own scope);
- a mapping `{table: frame}`: like a frame per table, with the asset's mode and partitions;
- `None`: nothing is written.

(No `from __future__ import annotations` here: Dagster resolves the `ResourceDependency` annotation
at runtime.)
"""

from collections.abc import Mapping
from typing import Any, cast

import dagster as dg
import polars as pl

from wahaflow.warehouse.loader import LoadResult, WriteMode
from wahaflow.warehouse.reader import read_frame
from wahaflow.warehouse.resource import PostgresResource
from wahaflow.warehouse.statistics import analyze_grown_tables
from wahaflow.warehouse.tables import PARTITION_COLUMN, TABLE_SPECS
from wahaflow.warehouse.writes import TableWrite, TableWrites, write_all


def _partition_keys(context: dg.OutputContext | dg.InputContext) -> list[str] | None:
    # Never `asset_partition_key`: it raises for ranged runs. The key order is not fixed: sort.
    return sorted(context.asset_partition_keys) if context.has_asset_partitions else None


def _planned_writes(context: dg.OutputContext, obj: Any) -> list[TableWrite]:
    if isinstance(obj, TableWrites):
        return list(obj.writes)
    meta = context.definition_metadata
    mode = cast(WriteMode, meta.get("write_mode", "replace"))
    scope = meta.get("replace_scope")
    if isinstance(obj, pl.DataFrame):
        frames = {str(meta.get("table") or context.asset_key.path[-1]): obj}
    elif isinstance(obj, Mapping) and all(isinstance(v, pl.DataFrame) for v in obj.values()):
        frames = {str(k): v for k, v in obj.items()}
    else:
        raise TypeError(
            f"{context.asset_key.to_user_string()}: PostgresPolarsIOManager stores a polars DataFrame,"
            f" a TableWrites or a mapping of table name to DataFrame, not {type(obj).__name__}"
        )
    return [TableWrite(t, f, mode, replace_scope=tuple(scope) if scope else None) for t, f in frames.items()]


class PostgresPolarsIOManager(dg.ConfigurableIOManager):
    """Stores Polars frames in the warehouse with the bulk loader and reads them back in bulk."""

    postgres: dg.ResourceDependency[PostgresResource]

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        """Write `obj` in one transaction and report what was written as output metadata."""
        if obj is None:
            return
        writes = _planned_writes(context, obj)
        keys = None if isinstance(obj, TableWrites) else _partition_keys(context)
        partition_column = str(context.definition_metadata.get("partition_expr") or PARTITION_COLUMN)
        schema = self.postgres.db_schema
        with self.postgres.connect() as conn:
            then = obj.then if isinstance(obj, TableWrites) else ()
            results = write_all(
                conn, schema, writes, partition_keys=keys, partition_column=partition_column, then=then
            )
        # committed: the tables it grew are analyzed while Dagster records the output
        analyze_grown_tables(self.postgres.url(), schema, results)
        context.add_output_metadata(_metadata(schema, writes, results, keys))

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        """The upstream asset's rows for this input's partitions (all rows if unpartitioned)."""
        upstream = context.upstream_output
        meta = upstream.definition_metadata if upstream is not None else {}
        table = str(meta.get("table") or context.asset_key.path[-1])
        partition_column = str(meta.get("partition_expr") or PARTITION_COLUMN)
        spec = TABLE_SPECS.get(table)
        with self.postgres.connect() as conn:
            return read_frame(
                conn,
                self.postgres.db_schema,
                table,
                spec.frame_schema if spec is not None else None,
                partition_keys=_partition_keys(context),
                partition_column=partition_column,
            )


def _metadata(
    schema: str, writes: list[TableWrite], results: Mapping[str, LoadResult], keys: list[str] | None
) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    single = len(results) == 1
    for table, r in results.items():
        prefix = "" if single else f"{table}/"
        meta[f"{prefix}rows_written"] = r.rows_written
        meta[f"{prefix}rows_inserted"] = r.inserted
        meta[f"{prefix}rows_updated"] = r.updated
        meta[f"{prefix}rows_deleted"] = r.deleted
        if r.duplicates_collapsed:
            meta[f"{prefix}duplicates_collapsed"] = r.duplicates_collapsed
        meta[f"{prefix}load_seconds"] = dg.MetadataValue.float(round(r.seconds, 3))
    if single:
        (table, only), write = next(iter(results.items())), writes[0]
        meta["dagster/table_name"] = f"{schema}.{table}"
        meta["dagster/column_schema"] = dg.TableSchema(
            columns=[dg.TableColumn(name, str(dtype)) for name, dtype in write.frame.schema.items()]
        )
        meta["write_mode"] = only.mode
        if only.mode == "replace" and keys is None and not write.replace_scope:
            meta["dagster/row_count"] = only.rows_written  # the whole table was replaced: known for free
    else:
        meta["tables"] = ", ".join(f"{schema}.{t}" for t in results)
    if keys is not None:
        meta["partitions_written"] = len(keys)
    return meta
