"""The assets: the chat registry, and the per-chunk messages, sessions, contacts and rejects.

Thin wiring: the work is done by `wahaflow.importer`; this module runs it, hands the frames to the
IO manager (one transaction per run) and reports metadata.
"""

import asyncio
from collections.abc import Callable, Iterator
from typing import TypeVar

import dagster as dg
import polars as pl

from wahaflow.defs.partitions import BACKFILL_TAG, SYNC_TAG, chat_chunks
from wahaflow.defs.resources import WahaResource
from wahaflow.importer import ChunkBatch, discover, import_chunks
from wahaflow.orchestrate.storage import dynamic_partitions_read_once
from wahaflow.settings import get_settings
from wahaflow.waha.errors import WahaAuthError, WahaFetchError, WahaNotFound, WahaRequestError
from wahaflow.waha.spool import group_directory, remove_expired
from wahaflow.warehouse import reads
from wahaflow.warehouse.resource import PostgresResource
from wahaflow.warehouse.writes import TableWrites

T = TypeVar("T")
WAHA_POOL = "waha_api"
PERMANENT_WAHA_ERRORS = (WahaAuthError, WahaNotFound, WahaRequestError)


def waha_retry_policy(step_retries: int) -> dg.RetryPolicy | None:
    """Step retries with exponential backoff for assets that call WAHA (None when disabled)."""
    if not step_retries:
        return None
    return dg.RetryPolicy(
        max_retries=step_retries, delay=2.0, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
    )


CHUNK_ASSETS = ("messages", "sessions", "contacts", "rejects")


class ChunkImportConfig(dg.Config):
    """Run config of a chunk import."""

    full: bool = False  # re-fetch every chat's whole history instead of only what is new


def build_chats(*, step_retries: int) -> dg.AssetsDefinition:
    """The chat registry asset, with its step retries."""
    return dg.asset(
        key="chats",
        group_name="waha",
        kinds={"polars", "postgres"},
        metadata={"table": "chats", "write_mode": "merge"},
        retry_policy=waha_retry_policy(step_retries),
        pool=WAHA_POOL,
        description="The chat registry: every chat of every WAHA session, each assigned to a stable chunk.",
    )(chats)


def chats(context: dg.AssetExecutionContext, waha: WahaResource, postgres: PostgresResource) -> TableWrites:
    """List the chats, assign new ones to chunks and register one dynamic partition per new chunk."""
    settings = get_settings()
    with postgres.connect() as conn:
        registered = reads.registered_chats(conn, postgres.db_schema)

    async def run():
        async with waha.client() as client:
            return await discover(client, waha.session_names(), registered, settings.chunk_size)

    found = _without_retry_on_permanent_errors(lambda: asyncio.run(run()))
    if found.new_chunk_keys:
        # Sorted, so that partition ranges in the UI follow creation order.
        context.instance.add_dynamic_partitions(chat_chunks.name, sorted(found.new_chunk_keys))
    context.add_output_metadata(
        {
            "chats_listed": found.chats.height,
            "new_chunks": len(found.new_chunk_keys),
            "chunks_total": len(context.instance.get_dynamic_partitions(chat_chunks.name)),
            "contacts_listed": found.contacts.height,
            "rejects": found.rejects.height,
            "waha_requests": int(found.stats["requests"]),
            "waha_version": found.server.version if found.server else None,
            "waha_engine": found.server.engine if found.server else None,
            "discover_seconds": round(found.stats["seconds"], 3),
            "preview": dg.MetadataValue.md(_preview(found.chats, ["chat_id", "name", "chunk_key"])),
        }
    )
    return TableWrites(tuple(found.writes()))


def build_chunk_import(*, step_retries: int, chunks_per_run: int) -> dg.AssetsDefinition:
    """The per-chunk multi-asset, with its step retries and backfill batch size."""
    return dg.multi_asset(
        outs=CHUNK_OUTS,
        name="chunk_import",
        group_name="waha",
        partitions_def=chat_chunks,
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=chunks_per_run),
        retry_policy=waha_retry_policy(step_retries),
        pool=WAHA_POOL,
        deps=["chats"],
        can_subset=False,
    )(chunk_import)


def _table_out(table: str, write_mode: str, description: str) -> dg.AssetOut:
    """The output of one warehouse table written by the chunk import."""
    return dg.AssetOut(
        metadata={"table": table, "write_mode": write_mode},
        kinds={"polars", "postgres"},
        description=description,
    )


CHUNK_OUTS = {
    "messages": _table_out("messages", "merge", "Every message of the chunk's chats (design.md §4)."),
    "sessions": _table_out(
        "sessions",
        "replace",
        "Conversation sessions by the gap rule, re-derived for every chat that changed.",
    ),
    "contacts": _table_out(
        "contacts", "merge", "Chat partners and group senders seen in the chunk's messages."
    ),
    "rejects": _table_out(
        "rejects", "merge", "Payloads that could not be imported, with the reason and where they came from."
    ),
}


def chunk_import(
    context: dg.AssetExecutionContext,
    config: ChunkImportConfig,
    waha: WahaResource,
    postgres: PostgresResource,
) -> Iterator[dg.Output]:
    """Fetch the chunks' new messages, merge them, re-derive sessions; all written in one transaction."""
    keys = sorted(context.partition_keys)
    settings = get_settings()
    remove_expired(settings.home_dir)
    group = context.run.tags.get(SYNC_TAG) or context.run.tags.get(BACKFILL_TAG)
    spool_root = group_directory(settings.home_dir, postgres.db_schema, group) if group else None

    async def run() -> ChunkBatch:
        async with waha.client() as client:
            with postgres.connect() as conn:
                return await import_chunks(
                    client,
                    conn,
                    postgres.db_schema,
                    keys,
                    gap_seconds=settings.session_gap_seconds,
                    full=config.full,
                    stream_min_chats=settings.stream_min_chats,
                    spool_root=spool_root,
                )

    batch = _without_retry_on_permanent_errors(lambda: asyncio.run(run()))
    _partition_metadata(context, batch)
    figures = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in batch.stats.items()}
    yield dg.Output(
        batch.table_writes(),
        output_name="messages",
        metadata={
            **figures,
            "messages": batch.messages.height,
            "preview": dg.MetadataValue.md(
                _preview(batch.messages, ["chat_id", "sent_at", "from_me", "body"])
            ),
        },
    )
    yield dg.Output(
        None,
        output_name="sessions",
        metadata={
            "sessions": batch.sessions.height,
            "chats_rederived": batch.touched_chats.height,
            "preview": dg.MetadataValue.md(
                _preview(batch.sessions, ["chat_id", "started_at", "ended_at", "message_count"])
            ),
        },
    )
    yield dg.Output(None, output_name="contacts", metadata={"contacts": batch.contacts.height})
    yield dg.Output(
        None,
        output_name="rejects",
        metadata={
            "rejects": batch.rejects.height,
            "preview": dg.MetadataValue.md(_preview(batch.rejects, ["source", "reason"])),
        },
    )


def _without_retry_on_permanent_errors(work: Callable[[], T]) -> T:
    """Run `work`; a WAHA error that retrying cannot fix (bad key, unknown session, bad request)
    fails the step at once instead of using up its retries."""
    try:
        return work()
    except WahaFetchError as error:
        if isinstance(error.__cause__, PERMANENT_WAHA_ERRORS):
            raise dg.Failure(description=str(error), allow_retries=False) from error
        raise
    except PERMANENT_WAHA_ERRORS as error:
        raise dg.Failure(description=str(error), allow_retries=False) from error


def _partition_metadata(context: dg.AssetExecutionContext, batch: ChunkBatch) -> None:
    """Per-chunk row counts on each partition's materialization."""
    with dynamic_partitions_read_once(context.instance):  # Dagster checks every key against them
        for row in batch.per_chunk().iter_rows(named=True):
            key = row["chunk_key"]
            for asset, count in (("messages", row["messages"]), ("sessions", row["sessions"])):
                context.add_asset_metadata(
                    {"dagster/partition_row_count": count, "chats_fetched": row["chats"]},
                    asset_key=dg.AssetKey(asset),
                    partition_key=key,
                )


def _preview(frame: pl.DataFrame, columns: list[str], rows: int = 5) -> str:
    """A short markdown table of the first rows (long text cut)."""
    if frame.is_empty():
        return "_no rows_"
    head = (
        frame.select(columns)
        .head(rows)
        .with_columns(
            pl.col(c).cast(pl.String).str.slice(0, 40).str.replace_all("|", "\\|", literal=True)
            for c in columns
        )
    )
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in head.iter_rows()]
    return "\n".join(lines)
