"""wahaflow's Dagster definitions: what `dagster dev` (workspace.yaml) and `wahaflow sync` load."""

from __future__ import annotations

import dagster as dg

from wahaflow.defs.assets import build_chats, build_chunk_import
from wahaflow.defs.checks import CHECKS
from wahaflow.defs.resources import WahaResource
from wahaflow.defs.sensors import build_activity_sensor, build_inbox_sensor, chat_discovery_sensor
from wahaflow.runtime import limit_heap_fragmentation
from wahaflow.settings import Settings, get_settings
from wahaflow.warehouse.io_manager import PostgresPolarsIOManager
from wahaflow.warehouse.resource import PostgresResource

limit_heap_fragmentation()  # a Dagster run worker or code server loads this module first


def build_defs(settings: Settings) -> dg.Definitions:
    """The definitions for `settings` (schema, retries and batch size are read here, at load time)."""
    chats = build_chats(step_retries=settings.step_retries)
    chunk_import = build_chunk_import(
        step_retries=settings.step_retries, chunks_per_run=settings.chunks_per_run
    )
    registry_job = dg.define_asset_job(
        "registry_job",
        selection=dg.AssetSelection.assets(chats),
        description="List every WAHA session's chats, assign new chats to chunks, register partitions.",
        executor_def=dg.in_process_executor,
    )
    chunk_import_job = dg.define_asset_job(
        "chunk_import_job",
        selection=dg.AssetSelection.assets(chunk_import),
        description="Import chunks: new messages, sessions, contacts and rejects, checked for duplicates.",
        executor_def=dg.in_process_executor,
    )
    postgres = PostgresResource(db_schema=settings.db_schema)
    return dg.Definitions(
        assets=[chats, chunk_import],
        asset_checks=CHECKS,
        jobs=[registry_job, chunk_import_job],
        sensors=[
            chat_discovery_sensor,
            build_activity_sensor(settings.activity_interval_seconds),
            build_inbox_sensor(30),
        ],
        resources={
            "waha": WahaResource(),
            "postgres": postgres,
            "io_manager": PostgresPolarsIOManager(postgres=postgres),
        },
    )


defs = build_defs(get_settings())
