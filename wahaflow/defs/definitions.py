"""wahaflow's Dagster definitions: what `dagster dev` (workspace.yaml) and `wahaflow sync` load."""

from __future__ import annotations

import dagster as dg

from wahaflow.defs.assets import chats, chunk_import
from wahaflow.defs.checks import CHECKS
from wahaflow.defs.partitions import chat_chunks
from wahaflow.defs.resources import WahaResource
from wahaflow.settings import get_settings
from wahaflow.warehouse.io_manager import PostgresPolarsIOManager
from wahaflow.warehouse.resource import PostgresResource

registry_job = dg.define_asset_job(
    "registry_job",
    selection=dg.AssetSelection.assets(chats),
    description="List every WAHA session's chats, assign new chats to chunks, register their partitions.",
    executor_def=dg.in_process_executor,
)

chunk_import_job = dg.define_asset_job(
    "chunk_import_job",
    selection=dg.AssetSelection.assets(chunk_import),
    partitions_def=chat_chunks,
    description="Import chunks: new messages, sessions, contacts and rejects, checked for duplicates.",
    executor_def=dg.in_process_executor,
)

postgres = PostgresResource(db_schema=get_settings().db_schema)

defs = dg.Definitions(
    assets=[chats, chunk_import],
    asset_checks=CHECKS,
    jobs=[registry_job, chunk_import_job],
    resources={
        "waha": WahaResource(),
        "postgres": postgres,
        "io_manager": PostgresPolarsIOManager(postgres=postgres),
    },
)
