"""Dagster instance storage in the warehouse's Postgres, wherever that is.

`dagster.yaml` can only name a Postgres URL literally or through an environment variable. This
storage class resolves it like every `wahaflow` command does: `WAHAFLOW_DATABASE_URL` when set, else
the embedded server under `WAHAFLOW_HOME` (started if needed). So `dagster dev` from the repository
root, `wahaflow sync` and `wahaflow demo` all see the same runs without any extra setting:

    storage:
      custom:
        module: wahaflow.orchestrate.storage
        class: WahaflowPostgresStorage

Its event log is dagster-postgres' own, with two costs of a run of many partitions removed (each
was about a third of the Dagster time of a 100-chunk sync):

- a pooled engine holds two connections, not one: storing an asset event opens a second connection
  while the first is in use, and a pool of one closed and re-opened that second connection for
  every event;
- whether a table exists is asked once per table, not once per stored event;
- a run's planned materializations are stored in one insert, not one insert per partition (and
  Dagster's own batching of a step's materializations is turned on).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from dagster import DagsterEventType, DagsterInstance
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log import SqlEventLogStorageTable
from dagster._serdes import ConfigurableClassData
from dagster_postgres import (
    DagsterPostgresStorage,
    PostgresEventLogStorage,
    PostgresRunStorage,
    PostgresScheduleStorage,
)
from dagster_postgres.utils import create_pg_engine, set_pg_statement_timeout
from sqlalchemy import event

from wahaflow.settings import get_settings
from wahaflow.warehouse.embedded import database_url

# Connections an event-log write can hold at once: the event insert, and the asset index transaction.
EVENT_LOG_POOL_SIZE = 2
# Events per batch write (a run of 25 chunks plans 100 materializations).
EVENT_BATCH_SIZE = "1000"
PLANNED = DagsterEventType.ASSET_MATERIALIZATION_PLANNED


class PooledEventLogStorage(PostgresEventLogStorage):
    """dagster-postgres' event log, with a pool that fits its nested connections and a table cache."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._existing_tables: set[str] = set()
        self._partitions_snapshot = threading.local()
        super().__init__(*args, **kwargs)

    @contextlib.contextmanager
    def partitions_read_once(self) -> Iterator[None]:
        """Within the block (in this thread), each dynamic partitions definition's keys are read
        once: for loops that check partition keys one at a time, such as Dagster's validation of
        per-partition metadata (three queries per call)."""
        self._partitions_snapshot.keys = {}
        try:
            yield
        finally:
            self._partitions_snapshot.keys = None

    def get_dynamic_partitions(self, partitions_def_name: str) -> Sequence[str]:
        snapshot: dict[str, list[str]] | None = getattr(self._partitions_snapshot, "keys", None)
        if snapshot is None:
            return super().get_dynamic_partitions(partitions_def_name)
        if partitions_def_name not in snapshot:
            snapshot[partitions_def_name] = list(super().get_dynamic_partitions(partitions_def_name))
        return snapshot[partitions_def_name]

    def has_dynamic_partition(self, partitions_def_name: str, partition_key: str) -> bool:
        if getattr(self._partitions_snapshot, "keys", None) is None:
            return super().has_dynamic_partition(partitions_def_name, partition_key)
        return partition_key in self.get_dynamic_partitions(partitions_def_name)

    def optimize_for_webserver(self, statement_timeout: int, pool_recycle: int, max_overflow: int) -> None:
        """As dagster-postgres does (held connections, a statement timeout), with a pool of two."""
        kwargs: dict[str, Any] = {
            "isolation_level": "AUTOCOMMIT",
            "pool_size": EVENT_LOG_POOL_SIZE,
            "pool_recycle": pool_recycle,
            "max_overflow": max_overflow,
        }
        options = self._engine.url.query.get("options")
        if options:
            kwargs["connect_args"] = {"options": options}
        self._engine = create_pg_engine(self.postgres_url, self._token_provider, **kwargs)
        event.listen(
            self._engine,
            "connect",
            lambda connection, _: set_pg_statement_timeout(connection, statement_timeout),
        )

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """A run's planned materializations (one per asset and partition) in one insert, with the
        asset index updated once per asset, as dagster-postgres does for a batch of materializations;
        other events as dagster-postgres stores them."""
        planned = [e for e in events if e.dagster_event_type == PLANNED]
        if len(planned) < 2:
            super().store_event_batch(events)
            return
        with self._connect() as conn:
            insert = self.prepare_insert_event_batch(planned).returning(SqlEventLogStorageTable.c.id)
            event_ids = [int(row[0]) for row in conn.execute(insert)]
        latest = {e.get_dagster_event().asset_key: (e, i) for e, i in zip(planned, event_ids, strict=True)}
        with self.index_transaction() as conn:
            self._store_asset_event_tags(conn, planned, event_ids)
            for event, event_id in latest.values():
                self._store_asset_event(conn, event, event_id)
        others = [e for e in events if e.dagster_event_type != PLANNED]
        if others:
            super().store_event_batch(others)

    def has_table(self, table_name: str) -> bool:
        """Whether a table exists; a table once seen is not asked about again (none is dropped)."""
        if table_name not in self._existing_tables and super().has_table(table_name):
            self._existing_tables.add(table_name)
        return table_name in self._existing_tables


@contextlib.contextmanager
def dynamic_partitions_read_once(instance: DagsterInstance) -> Iterator[None]:
    """`PooledEventLogStorage.partitions_read_once` for `instance` (other storages: no change)."""
    storage = instance.event_log_storage
    if not isinstance(storage, PooledEventLogStorage):
        yield
        return
    with storage.partitions_read_once():
        yield


class WahaflowPostgresStorage(DagsterPostgresStorage):
    """dagster-postgres storage whose URL comes from wahaflow's settings (no secret in any file)."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
    ) -> None:
        # Dagster stores a step's materializations (one per partition) and a run's planned events
        # as batches when this is set; read when events are stored, so any process with this
        # storage (command, run worker, daemon) gets it. An explicit setting wins.
        os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE)
        # DagsterPostgresStorage.__init__, with the pooled event log in place of its own
        self.postgres_url = postgres_url
        self.should_autocreate_tables = should_autocreate_tables
        self._inst_data = inst_data
        self._run_storage = PostgresRunStorage(postgres_url, should_autocreate_tables)
        self._event_log_storage = PooledEventLogStorage(postgres_url, should_autocreate_tables)
        self._schedule_storage = PostgresScheduleStorage(postgres_url, should_autocreate_tables)
        super(DagsterPostgresStorage, self).__init__()

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> WahaflowPostgresStorage:
        return cls(postgres_url=database_url(get_settings()), inst_data=inst_data)
