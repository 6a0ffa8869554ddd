"""Sensors that keep the warehouse in sync: new chats, chats with new activity, webhook inbox.

- `chat_discovery_sensor` pages through every session's chat list within its time budget (the
  cursor remembers where it stopped), registers new chats in their chunks, adds the new partitions
  and requests runs for the chunks that gained chats, all in one `SensorResult`. Each pass also
  refreshes every known chat's last activity, which is what the activity sensor reads.
- `chunk_activity_sensor` requests runs for chunks whose chats show activity after their last sync,
  grouped into ranged runs, skipping chunks that already have a run queued or in progress.
- `webhook_inbox_sensor` does the same for chunks whose chats have webhook events in the inbox; the
  chunk run applies them in its own transaction and marks them processed, so each applies once.
"""

import asyncio
import json
import time
from dataclasses import asdict, dataclass

import dagster as dg
import polars as pl

from wahaflow.defs.partitions import RANGE_END, RANGE_START, batches, chat_chunks, partition_tags
from wahaflow.defs.resources import WahaResource
from wahaflow.importer import register_listing
from wahaflow.settings import get_settings
from wahaflow.waha.normalize import normalize_chats
from wahaflow.warehouse import reads
from wahaflow.warehouse.resource import PostgresResource

CHUNK_JOB = "chunk_import_job"
PAGE_SIZE = 500
TIME_BUDGET_SECONDS = 40.0  # well inside Dagster's 60 s sensor timeout
ACTIVE_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


@dataclass
class DiscoveryCursor:
    """Where the discovery pass stands: which session, at which offset of its chat list."""

    session_index: int = 0
    offset: int = 0
    passes: int = 0

    @classmethod
    def parse(cls, raw: str | None) -> "DiscoveryCursor":
        return cls(**json.loads(raw)) if raw else cls()

    def dump(self) -> str:
        return json.dumps(asdict(self))


def busy_chunks(instance: dg.DagsterInstance) -> set[str]:
    """Chunks targeted by a chunk-import run that is queued or in progress."""
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=CHUNK_JOB, statuses=ACTIVE_STATUSES))
    keys = instance.get_dynamic_partitions(chat_chunks.name)
    busy: set[str] = set()
    for run in runs:
        tags = run.tags
        if "dagster/partition" in tags:
            busy.add(tags["dagster/partition"])
        elif tags.get(RANGE_START) in keys and tags.get(RANGE_END) in keys:
            busy.update(keys[keys.index(tags[RANGE_START]) : keys.index(tags[RANGE_END]) + 1])
    return busy


def chunk_run_requests(
    all_keys: list[str],
    wanted: set[str],
    chunks_per_run: int,
    reason: str,
    heavy: set[str] | None = None,
) -> list[dg.RunRequest]:
    """Ranged runs over `wanted` (contiguous in `all_keys`) of at most `chunks_per_run` chunks'
    worth of work (`partitions.batches`: chunks outside `heavy` count less)."""
    stamp = int(time.time())
    return [
        dg.RunRequest(
            job_name=CHUNK_JOB,
            run_key=f"{reason}:{keys[0]}..{keys[-1]}:{stamp}",
            tags={**partition_tags(keys), "wahaflow/trigger": reason},
        )
        for keys in batches(all_keys, sorted(wanted), chunks_per_run, heavy)
    ]


@dg.sensor(
    name="chat_discovery_sensor",
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Registers new WAHA chats in chunks, adds their partitions and requests their runs.",
)
def chat_discovery_sensor(
    context: dg.SensorEvaluationContext, waha: WahaResource, postgres: PostgresResource
) -> dg.SensorResult:
    settings = get_settings()
    sessions = waha.session_names()
    cursor = DiscoveryCursor.parse(context.cursor)
    deadline = time.monotonic() + TIME_BUDGET_SECONDS
    new_chats: list[pl.DataFrame] = []

    async def page_through() -> None:
        async with waha.client() as client:
            while True:  # at least one page per evaluation, then as many as the budget allows
                session = sessions[cursor.session_index % len(sessions)]
                page = await client.chats_page(session, offset=cursor.offset, limit=PAGE_SIZE)
                listed = normalize_chats(page, waha_session=session, source=f"GET /api/{session}/chats").chats
                with postgres.connect() as conn:
                    new_chats.append(register_listing(conn, postgres.db_schema, listed, settings.chunk_size))
                if len(page) < PAGE_SIZE:  # this session's list is done: next session
                    cursor.offset = 0
                    cursor.session_index += 1
                    if cursor.session_index >= len(sessions):
                        cursor.session_index = 0
                        cursor.passes += 1
                        return
                else:
                    cursor.offset += len(page)
                if time.monotonic() >= deadline:
                    return

    asyncio.run(page_through())
    with postgres.connect() as conn:
        registered = reads.registered_chats(conn, postgres.db_schema)
    known = set(context.instance.get_dynamic_partitions(chat_chunks.name))
    in_registry = set(registered["chunk_key"].drop_nulls().to_list())
    to_add = sorted(in_registry - known)
    touched = {k for frame in new_chats for k in frame["chunk_key"].to_list()}
    all_keys = [*context.instance.get_dynamic_partitions(chat_chunks.name), *to_add]
    wanted = touched - busy_chunks(context.instance)
    context.log.info(
        f"discovery: {sum(f.height for f in new_chats)} new chats, {len(to_add)} new chunks, "
        f"{len(wanted)} chunks to import"
    )
    return dg.SensorResult(
        run_requests=chunk_run_requests(all_keys, wanted, settings.chunks_per_run, "discovery"),
        dynamic_partitions_requests=[chat_chunks.build_add_request(to_add)] if to_add else [],
        cursor=cursor.dump(),
    )


def _chunk_sensor(
    name: str, interval_seconds: int, description: str, reason: str, chunks_needing_runs
) -> dg.SensorDefinition:
    """A sensor that requests grouped runs for the chunks `chunks_needing_runs(conn, schema)` names,
    skipping chunks that already have a run queued or in progress."""

    @dg.sensor(
        name=name,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=description,
    )
    def _sensor(
        context: dg.SensorEvaluationContext, postgres: PostgresResource
    ) -> dg.SensorResult | dg.SkipReason:
        with postgres.connect() as conn:
            needed = set(chunks_needing_runs(conn, postgres.db_schema))
            heavy = reads.chunks_needing_history(conn, postgres.db_schema)
        all_keys = context.instance.get_dynamic_partitions(chat_chunks.name)
        wanted = (needed & set(all_keys)) - busy_chunks(context.instance)
        if not wanted:
            return dg.SkipReason(f"no chunk needs a run ({reason})")
        settings = get_settings()
        return dg.SensorResult(
            run_requests=chunk_run_requests(all_keys, wanted, settings.chunks_per_run, reason, heavy)
        )

    return _sensor


def build_activity_sensor(interval_seconds: int) -> dg.SensorDefinition:
    """Runs for chunks whose chats have activity after their last sync."""
    return _chunk_sensor(
        "chunk_activity_sensor",
        interval_seconds,
        "Requests incremental runs for chunks whose chats have new activity.",
        "activity",
        reads.stale_chunks,
    )


def build_inbox_sensor(interval_seconds: int) -> dg.SensorDefinition:
    """Runs for chunks whose chats have webhook events waiting in the inbox."""
    return _chunk_sensor(
        "webhook_inbox_sensor",
        interval_seconds,
        "Turns pending webhook inbox events into runs of the affected chunks.",
        "inbox",
        reads.chunks_with_pending_events,
    )
