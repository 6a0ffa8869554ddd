"""`wahaflow sync`: discover chats, then materialize every missing or stale chunk through Dagster.

Runs execute in this process (no process launch per chunk) against the persistent Dagster instance,
so the UI shows them like any other run. While Dagster starts, the sync's warm-up reads the
histories the runs will need into a spool (`wahaflow.orchestrate.warmup`). Chunks are batched into
ranged runs: by the messages each chunk holds in that spool (`_spooled_weights`); without one, the
first of `WAHAFLOW_CHUNKS_PER_RUN` partitions and later ones by the previous run's messages per
chunk (`next_run_size`). A failed run names its chunks and how to re-run just those.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import polars as pl
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from wahaflow.defs.partitions import SYNC_TAG, batches, chat_chunks, partition_tags, weighted_run
from wahaflow.orchestrate.warmup import SpoolWarmup
from wahaflow.settings import Settings
from wahaflow.waha.spool import spooled_messages
from wahaflow.warehouse import reads
from wahaflow.warehouse.resource import PostgresResource

# The terminal shows progress; Dagster's own event log stays in the instance (and the UI).
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class SyncReport:
    """What a sync did."""

    chunks_total: int = 0
    chunks_run: list[str] = field(default_factory=list)
    failed_chunks: list[str] = field(default_factory=list)
    failed_runs: list[str] = field(default_factory=list)
    registry_failed: bool = False
    messages_fetched: int = 0
    waha_requests: int = 0
    seconds: float = 0.0
    totals: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.registry_failed or self.failed_chunks)


def _load_definitions() -> dg.Definitions:
    from wahaflow.defs.definitions import defs

    return defs


def _failure_message(result: dg.ExecuteInProcessResult) -> str:
    """The first failed step's error message (one line), for the terminal."""
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        while error is not None and error.cause is not None and "dagster" in error.cls_name.lower():
            error = error.cause
        if error is not None:
            return error.message.strip().splitlines()[0]
    return "see the run in the Dagster UI"


def _metadata_value(result: dg.ExecuteInProcessResult, key: str) -> int:
    for event in result.get_asset_materialization_events():
        value = event.materialization.metadata.get(key)
        if value is not None:
            return int(value.value)
    return 0


MESSAGES_PER_RUN = 100_000
"""Messages a run of `wahaflow sync` may hold (see `next_run_size` and `_spooled_weights`): the
run's frames, and so the process' peak memory, grow with it."""
MAX_GROWTH = 4


def next_run_size(chunks_per_run: int, chunks: int, messages: int) -> int:
    """How many chunks the next run of a sync takes, from what the last run fetched.

    `WAHAFLOW_CHUNKS_PER_RUN` is the size of the first run. When chunks turn out light (few
    messages each), later runs take as many as fit in `MESSAGES_PER_RUN` messages, up to
    `MAX_GROWTH` times the setting: fewer runs, so less of Dagster's per-run cost.
    """
    per_chunk = messages / chunks if chunks else 0
    fitting = int(MESSAGES_PER_RUN // per_chunk) if per_chunk else chunks_per_run * MAX_GROWTH
    return max(chunks_per_run, min(fitting, chunks_per_run * MAX_GROWTH))


def run_sync(
    settings: Settings,
    instance: dg.DagsterInstance,
    *,
    full: bool = False,
    defs: dg.Definitions | None = None,
    console: Console | None = None,
    warmup: SpoolWarmup | None = None,
) -> SyncReport:
    """Discover chats, then import the chunks that need it; returns the report (never raises on a
    failed chunk: the report says which failed).

    `warmup` is the sync's read-ahead of the histories its runs will need, started by the caller
    (early, before Dagster loads); without it, one starts here.
    """
    with contextlib.ExitStack() as stack:
        if warmup is None:
            warmup = stack.enter_context(SpoolWarmup(settings, full=full))
        stack.enter_context(_loaded_heap_set_aside())
        return _sync(
            settings, instance, full, defs or _load_definitions(), console or Console(stderr=True), warmup
        )


def _sync(
    settings: Settings,
    instance: dg.DagsterInstance,
    full: bool,
    defs: dg.Definitions,
    console: Console,
    warmup: SpoolWarmup,
) -> SyncReport:
    report = SyncReport()
    started = time.perf_counter()
    console.print("[bold]Discovering chats[/bold] …")
    discovery = _execute(defs.resolve_job_def("registry_job"), instance)
    if discovery.error is not None:
        report.registry_failed = True
        report.failed_runs.append(discovery.run_id)
        report.errors.append(discovery.error)
        report.seconds = time.perf_counter() - started
        return report
    report.waha_requests += discovery.waha_requests
    if not warmup.wait(0):
        _follow_read_ahead(warmup, console)
    warmed = warmup.result()
    report.waha_requests += warmed.requests
    if warmed.error is not None:
        console.print(
            f"Reading ahead stopped ({warmed.error}); the chunk runs fetch without it.", markup=False
        )

    all_keys = instance.get_dynamic_partitions(chat_chunks.name)
    postgres = PostgresResource(db_schema=settings.db_schema)
    with postgres.connect() as conn:
        if full:
            wanted, heavy = all_keys, None
        else:  # chats with new activity, and chats with webhook events waiting in the inbox
            wanted = sorted(
                set(reads.stale_chunks(conn, postgres.db_schema))
                | set(reads.chunks_with_pending_events(conn, postgres.db_schema))
            )
            heavy = reads.chunks_needing_history(conn, postgres.db_schema)
    wanted_set = set(wanted)
    pending = [key for key in all_keys if key in wanted_set]
    report.chunks_total = len(all_keys)
    job = defs.resolve_job_def("chunk_import_job")
    run_config = {"ops": {"chunk_import": {"config": {"full": full}}}, **QUIET}

    columns = (
        TextColumn("[bold]Importing chunks"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[messages]:,} messages, {task.fields[rate]:,.0f}/s"),
        TimeElapsedColumn(),
    )
    # The runs of this sync share the warm-up's spools (one per WAHA session).
    sync_id, spool_group = warmup.sync_id, warmup.group
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("chunks", total=len(pending), messages=0, rate=0.0)
        size = settings.chunks_per_run
        weights: dict[str, int] | None = None
        while pending:
            if weights is None:  # once the first run has spooled the stream: its exact sizes
                weights = _spooled_weights(postgres, spool_group, settings.chunks_per_run, heavy)
            if weights is not None:
                max_chunks = settings.chunks_per_run * MAX_GROWTH
                keys = weighted_run(all_keys, pending, weights, MESSAGES_PER_RUN, max_chunks)
            else:
                keys = batches(all_keys, pending, size, heavy)[0]
            pending = pending[len(keys) :]
            tags = {**partition_tags(keys), SYNC_TAG: sync_id}
            outcome = _execute(job, instance, tags=tags, run_config=run_config)
            report.chunks_run.extend(keys)
            if outcome.error is None:
                report.messages_fetched += outcome.messages_fetched
                report.waha_requests += outcome.waha_requests
                size = next_run_size(settings.chunks_per_run, len(keys), outcome.messages_fetched)
            else:
                report.failed_chunks.extend(keys)
                report.failed_runs.append(outcome.run_id)
                report.errors.append(f"{keys[0]}..{keys[-1]}: {outcome.error}")
            elapsed = time.perf_counter() - started
            progress.update(
                task,
                advance=len(keys),
                messages=report.messages_fetched,
                rate=report.messages_fetched / elapsed if elapsed else 0.0,
            )

    with postgres.connect() as conn:
        report.totals = reads.table_counts(conn, postgres.db_schema)
    report.seconds = time.perf_counter() - started
    return report


@contextlib.contextmanager
def _loaded_heap_set_aside() -> Iterator[None]:
    """Within the block, the heap loaded so far (Dagster, the definitions, the instance) is set aside
    from the cyclic garbage collector (`gc.freeze`), so that the collection after each run
    (`_execute`) walks only what that run left: about 2 ms instead of 130."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _follow_read_ahead(warmup: SpoolWarmup, console: Console) -> None:
    """A progress line while the warm-up is still reading ahead (the chunk runs wait for it)."""
    columns = (TextColumn("[bold]Reading ahead"), TextColumn("{task.fields[read]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("read-ahead", read="")
        while True:
            done = warmup.wait(0.2)
            read = warmup.progress
            chats = f"{read.chats_done:,}/{read.chats_total:,} chats, " if read.chats_total else ""
            progress.update(task, read=f"{chats}{read.messages:,} messages")
            if done:
                return


def _spooled_weights(
    postgres: PostgresResource, spool_group: Path, chunks_per_run: int, heavy: Collection[str] | None
) -> dict[str, int] | None:
    """Messages per chunk, counted in the spools of this sync (None before any).

    A chunk with no chat in a spooled session weighs as a chunk of a full run of `chunks_per_run`
    when it has whole histories to fetch, else nothing: its fetch is incremental.
    """
    counts = spooled_messages(spool_group)
    if counts.is_empty():
        return None
    with postgres.connect() as conn:
        chats = reads.registered_chats(conn, postgres.db_schema)
    spooled = chats.join(counts.select("waha_session").unique(), on="waha_session", how="semi")
    per_chunk = (
        spooled.join(counts, on=["waha_session", "chat_id"], how="left")
        .group_by("chunk_key")
        .agg(pl.col("messages").fill_null(0).sum())
    )
    unspooled = pl.lit(MESSAGES_PER_RUN // chunks_per_run)
    if heavy is not None:
        unspooled = pl.when(pl.col("chunk_key").is_in(list(heavy))).then(unspooled).otherwise(0)
    weights = (
        chats.select("chunk_key")
        .unique()
        .join(per_chunk, on="chunk_key", how="left")
        .with_columns(pl.col("messages").fill_null(unspooled))
    )
    return dict(weights.iter_rows())


@dataclass(frozen=True)
class RunOutcome:
    """What `wahaflow sync` keeps of one run (the discovery or a chunk run)."""

    run_id: str
    messages_fetched: int = 0
    waha_requests: int = 0
    error: str | None = None  # None: the run succeeded


def _execute(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    *,
    tags: dict[str, str] | None = None,
    run_config: dict | None = None,
) -> RunOutcome:
    """Run `job` in this process. Only figures leave this function: an in-process result holds every
    output of its run (all the frames written), which must not live on into the next run."""
    result = job.execute_in_process(
        instance=instance, tags=tags, run_config=run_config or QUIET, raise_on_error=False
    )
    if not result.success:
        outcome = RunOutcome(result.run_id, error=_failure_message(result))
    else:
        outcome = RunOutcome(
            result.run_id,
            messages_fetched=_metadata_value(result, "messages_fetched"),
            waha_requests=_metadata_value(result, "waha_requests"),
        )
    # The run's frames stay in reference cycles of Dagster's step context until the cyclic collector
    # next walks its oldest generation, which may be many runs later: a sync of a 1,000,000 message
    # account grew about 15 MB a run without this collection.
    del result
    gc.collect()
    return outcome


def print_report(report: SyncReport, console: Console) -> None:
    """The summary at the end of a sync, with how to re-run failed chunks."""
    if report.registry_failed:
        console.print(
            f"[red]Chat discovery failed[/red]: {report.errors[-1]}\n"
            f"Nothing was imported. Run {report.failed_runs[-1]} in the Dagster UI has the details."
        )
        return
    totals = report.totals
    console.print(
        f"Chunks: {len(report.chunks_run)} run of {report.chunks_total} "
        f"({len(report.failed_chunks)} failed) in {report.seconds:.1f} s; "
        f"{report.messages_fetched:,} messages fetched with {report.waha_requests:,} WAHA requests."
    )
    console.print(
        "Warehouse: "
        + ", ".join(
            f"{totals.get(t, 0):,} {t}" for t in ("chats", "contacts", "messages", "sessions", "rejects")
        )
        + f"; duplicates: {totals.get('duplicates', 0)}"
    )
    if report.failed_chunks:
        console.print(f"[red]Failed chunks[/red]: {', '.join(report.failed_chunks)}")
        for error in report.errors:
            console.print(f"  {error}", markup=False)
        console.print(
            "Re-run just those with `wahaflow sync` again (failed chunks stay stale), or from the Dagster "
            "UI: Assets > messages > Partitions > select the failed partitions > Materialize."
        )
