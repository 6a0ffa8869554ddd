"""The persistent Dagster instance of the `wahaflow` commands (`WahaflowPostgresStorage`): runs of many
partitions are recorded completely although their events are stored in batches."""

from __future__ import annotations

import dagster as dg
from dagster import DagsterEventType

from wahaflow.orchestrate.instance import open_instance
from wahaflow.orchestrate.storage import dynamic_partitions_read_once
from wahaflow.orchestrate.sync import run_sync
from wahaflow.settings import Settings

ASSETS = ("messages", "sessions", "contacts", "rejects")


def _partitions(instance: dg.DagsterInstance, event_type: DagsterEventType, asset: str) -> list[str]:
    """The partition of every stored event of this type and asset, over all runs."""
    return [
        entry.get_dagster_event().partition
        for run in instance.get_runs()
        for entry in instance.all_logs(run.run_id, of_type=event_type)
        if entry.get_dagster_event().asset_key == dg.AssetKey(asset)
    ]


def test_every_partition_is_planned_and_materialized_once_per_run(
    sync_env_factory, pg_url, pg_schema, pg_conn, monkeypatch
):
    env = sync_env_factory(chats=60, messages=300, chunk_size=10)
    # Dagster's own tables in this test's schema, so that nothing else's runs are counted.
    separator = "&" if "?" in pg_url else "?"
    monkeypatch.setenv("WAHAFLOW_DATABASE_URL", f"{pg_url}{separator}options=-csearch_path%3D{pg_schema}")
    monkeypatch.setenv("DAGSTER_HOME", "")  # the commands' own home under WAHAFLOW_HOME
    settings = Settings(_env_file=None)
    instance = open_instance(settings)
    try:
        first = run_sync(settings, instance, defs=env.defs)
        again = run_sync(settings, instance, full=True, defs=env.defs)
        assert first.ok and again.ok
        chunks = set(instance.get_dynamic_partitions("chat_chunks"))
        assert len(chunks) == 6 and set(first.chunks_run) == chunks
        for asset in ASSETS:
            for event_type in (
                DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
                DagsterEventType.ASSET_MATERIALIZATION,
            ):  # each chunk once per sync
                assert sorted(_partitions(instance, event_type, asset)) == sorted(list(chunks) * 2), asset
            assert instance.get_materialized_partitions(dg.AssetKey(asset)) == chunks
            # the asset index points at the latest run
            (record,) = instance.get_asset_records([dg.AssetKey(asset)])
            assert record.asset_entry.last_run_id == instance.get_runs(limit=1)[0].run_id
        # per-partition row counts, on every partition's materialization
        latest = instance.get_latest_materialization_events(
            [dg.AssetKey("messages")]
        )  # unpartitioned lookup: the newest of any partition
        assert "dagster/partition_row_count" in latest[dg.AssetKey("messages")].asset_materialization.metadata
        tables = pg_conn.execute(
            "SELECT count(*) FROM information_schema.tables"
            " WHERE table_schema = %s AND table_name = 'event_logs'",
            (pg_schema,),
        ).fetchone()
        assert tables == (1,)
    finally:
        instance.dispose()


def test_partitions_are_read_once_within_the_block_and_live_outside(pg_url, pg_schema, tmp_path, monkeypatch):
    separator = "&" if "?" in pg_url else "?"
    monkeypatch.setenv("WAHAFLOW_DATABASE_URL", f"{pg_url}{separator}options=-csearch_path%3D{pg_schema}")
    monkeypatch.setenv("WAHAFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", "")
    instance, other = (open_instance(Settings(_env_file=None)) for _ in range(2))
    try:
        instance.add_dynamic_partitions("chunks", ["a", "b"])
        with dynamic_partitions_read_once(instance):
            assert instance.get_dynamic_partitions("chunks") == ["a", "b"]
            other.add_dynamic_partitions("chunks", ["c"])  # another process, say
            assert instance.get_dynamic_partitions("chunks") == ["a", "b"]
            assert instance.has_dynamic_partition("chunks", "b")
            assert not instance.has_dynamic_partition("chunks", "c")
        assert instance.get_dynamic_partitions("chunks") == ["a", "b", "c"]
        assert instance.has_dynamic_partition("chunks", "c")
    finally:
        instance.dispose()
        other.dispose()
