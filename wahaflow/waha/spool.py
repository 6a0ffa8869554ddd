"""A spool of an account's message history: read from WAHA once, then served to every chunk run.

`GET /api/{session}/chats/all/messages` (NOWEB, GOWS) carries the whole account, but a chunk run
needs only its own chats. Without a spool, every run of a first import would read the whole stream
again and keep it in memory. Instead, the first run that needs it writes each page as it arrives to a
Parquet file (sorted by chat, so that readers skip row groups of other chats), and every run of the
same sync or backfill reads just its chats from those files: one pass over WAHA, memory bounded by a
page plus the run's own chats. On engines without the stream (WEBJS), a sync's warm-up
(`wahaflow.orchestrate.warmup`) reads the chats' histories ahead into the same format
(`chats_to_spool`); such a spool lists the chats it holds (`Spool.chats`).

A spool is a directory: `page-NNNNN.parquet` files, `rejects.parquet`, and `manifest.json`, written
last (a directory without it is incomplete and is never read). Writers of the same directory take a
file lock, so that concurrent runs of one backfill stream once. Every message in the spool lies at or
before the manifest's `until`; its readers record that bound, not their own, as what they covered.
The files hold message text: they live under `WAHAFLOW_HOME` and are removed with their sync, or
after `MAX_AGE_SECONDS` by the next run that looks.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from wahaflow import schemas
from wahaflow.waha.client import ClientStats, WahaClient
from wahaflow.waha.errors import WahaAuthError, WahaError, WahaSessionNotFound
from wahaflow.waha.normalize import RAW_MESSAGES, Reject, normalize_ids, rejects_frame
from wahaflow.waha.paging import ChatMessages, Window, oldest_timestamp, window

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
REJECTS = "rejects.parquet"
MAX_AGE_SECONDS = 6 * 3600
"""A spool older than this is removed instead of read (a backfill that takes longer streams again)."""
ROW_GROUP_ROWS = 1000
STREAM_READERS = 2
"""Readers of one account stream at once, each over its own span of time (`read_stream`). Each holds
a page in memory: on the 1,000,000-message account, 2 readers took 42-44 s (one: 45-47 s) and
peaked at 450-470 MB; 3 readers were no faster and peaked at 490-500 MB."""
RAW_SPOOL = pl.Schema({**dict(RAW_MESSAGES), "chat_id": pl.String})
"""A spooled message: the page's columns and the chat it belongs to (its normalized `from`)."""


class MissingChatField(Exception):
    """The stream's items do not name their chat (`from`), so it cannot be routed to chunks."""


@dataclass(frozen=True)
class Spool:
    """A complete spool directory and what its manifest says."""

    directory: Path
    waha_session: str
    until: int
    pages: int
    messages: int
    requests: int
    retries: int
    bytes_received: int
    created_at: float
    chats: list[str] | None = None
    """The chats (normalized ids) whose whole history the spool holds; None: every chat of the
    session (the account stream)."""
    readers: int = 1
    """How many readers read it at once (`read_stream`)."""

    def covers(self, chat_ids: pl.Series) -> pl.Series:
        """Whether the spool holds the whole history of each of `chat_ids`."""
        return chat_ids.is_not_null() if self.chats is None else chat_ids.is_in(self.chats)

    def read(self, chat_ids: list[str]) -> pl.DataFrame:
        """The spooled messages of `chat_ids`: RAW_MESSAGES columns plus the normalized `chat_id`,
        inside the window, one row per message id."""
        files = sorted(self.directory.glob("page-*.parquet"))
        if not files:
            return pl.DataFrame(schema=RAW_SPOOL)
        frame = pl.scan_parquet(files).filter(pl.col("chat_id").is_in(chat_ids)).collect()
        return window(frame, None, self.until).unique(subset="id", keep="last", maintain_order=True)

    def messages_per_chat(self) -> pl.DataFrame:
        """(chat_id, messages) of the spool, for sizing runs (boundary seconds may count twice)."""
        files = sorted(self.directory.glob("page-*.parquet"))
        if not files:
            return pl.DataFrame(schema={"chat_id": pl.String, "messages": pl.UInt32})
        return pl.scan_parquet(files).group_by("chat_id").agg(pl.len().alias("messages")).collect()

    def rejects(self) -> pl.DataFrame:
        """REJECTS rows for the stream's malformed items."""
        path = self.directory / REJECTS
        return pl.read_parquet(path) if path.exists() else schemas.empty(schemas.REJECTS)


@dataclass
class SpoolProgress:
    """How far spool writers have read, updated as pages arrive (another thread may read it)."""

    messages: int = 0
    chats_done: int = 0  # chat by chat only (`chats_to_spool`)
    chats_total: int = 0


def open_spool(directory: Path, *, max_age: float = MAX_AGE_SECONDS) -> Spool | None:
    """The complete spool in `directory`, or None (absent, incomplete, or too old: then removed)."""
    try:
        spool = Spool(directory=directory, **json.loads((directory / MANIFEST).read_text()))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):  # absent, torn, or another format
        return None
    if time.time() - spool.created_at > max_age:
        remove_spool(directory)
        return None
    return spool


def remove_spool(directory: Path) -> None:
    """Delete a spool directory if present (its lock file stays: a writer may be holding it)."""
    shutil.rmtree(directory, ignore_errors=True)


async def stream_to_spool(
    client: WahaClient,
    waha_session: str,
    directory: Path,
    *,
    until: int,
    page_size: int,
    progress: SpoolProgress | None = None,
) -> Spool:
    """Read the session's whole stream up to `until` into `directory` (replacing what is there),
    counting the messages in `progress` as pages arrive.

    Raises `MissingChatField` (and leaves no spool) when an item has no `from`.
    """
    progress = progress or SpoolProgress()
    remove_spool_files(directory)
    directory.mkdir(parents=True, exist_ok=True)
    before = client.stats.snapshot()
    pages = messages = 0

    def write_page(frame: pl.DataFrame) -> None:
        nonlocal pages, messages
        if frame.get_column("from").null_count():
            raise MissingChatField(f"GET /api/{waha_session}/chats/all/messages: items without `from`")
        routed = frame.with_columns(normalize_ids(frame.get_column("from")).alias("chat_id")).sort("chat_id")
        routed.write_parquet(directory / f"page-{pages:05d}.parquet", row_group_size=ROW_GROUP_ROWS)
        pages += 1
        messages += routed.height
        progress.messages += routed.height

    try:
        results = await read_stream(
            client, waha_session, until=until, page_size=page_size, on_page=write_page
        )
    except BaseException:
        remove_spool_files(directory)
        raise
    rejects = [reject for result in results for reject in result.rejects]
    rejects_frame(rejects, waha_session=waha_session).write_parquet(directory / REJECTS)
    return _complete(
        directory, waha_session, until, pages, messages, client.stats.minus(before), readers=len(results)
    )


async def read_stream(
    client: WahaClient,
    waha_session: str,
    *,
    until: int,
    page_size: int,
    on_page: Callable[[pl.DataFrame], None],
    readers: int = STREAM_READERS,
) -> list[ChatMessages]:
    """The session's account stream up to `until`, page by page to `on_page`, by up to `readers`
    readers at once (never more than the client's concurrency).

    One reader starts from the newest message. When its first page comes back full (there is more),
    the older rest of the history, from the oldest message (`oldest_timestamp`) to where that reader
    is, is split into equal time spans: the reader keeps the newest, each other span gets a reader
    of its own. Together they read every second up to `until` once; a page asked just before the
    split may reach into another reader's span, so a few messages can come twice (spool readers
    keep one row per id). If one reader fails, the others are cancelled.
    """
    readers = max(1, min(readers, client.concurrency))
    top = Window(low=1.0, high=float(until))

    def reader(part: Window) -> asyncio.Task[ChatMessages]:
        return asyncio.ensure_future(
            client.chat_messages(waha_session, "all", page_size=page_size, on_page=on_page, part=part)
        )

    tasks = [reader(top)]
    more = asyncio.ensure_future(top.more.wait())
    try:
        await asyncio.wait([tasks[0], more], return_when=asyncio.FIRST_COMPLETED)
        more.cancel()
        if readers > 1 and not tasks[0].done():
            oldest = await _oldest(client, waha_session, top.high)
            if not tasks[0].done():
                tasks.extend(reader(part) for part in split_older(top, oldest, readers))
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in (more, *tasks):
            task.cancel()
        await asyncio.gather(more, *tasks, return_exceptions=True)
        raise


async def _oldest(client: WahaClient, waha_session: str, until: float) -> float | None:
    """`oldest_timestamp` of the stream, or None when the server will not say (then one reader
    reads it all); a refused key or an unknown session fails the stream."""
    try:
        return await oldest_timestamp(client, waha_session, "all", until=until)
    except (WahaAuthError, WahaSessionNotFound):
        raise
    except WahaError as error:
        log.info("the oldest message of %s's stream is unknown (%s): one reader", waha_session, error)
        return None


def split_older(top: Window, oldest: float | None, readers: int) -> list[Window]:
    """Split `[oldest, top.high]` into `readers` equal spans of whole seconds: `top` keeps the
    newest (its `low` is raised), and the older ones are returned, the oldest reaching down to
    `top.low`. None (no message, or fewer seconds than readers): nothing is split off."""
    if oldest is None or top.high - oldest < readers:
        return []
    step = (top.high - oldest) / readers
    bounds = [float(int(oldest + step * i)) for i in range(1, readers)]
    parts, low = [], top.low
    for bound in bounds:
        parts.append(Window(low=low, high=bound - 1))
        low = bound
    top.low = low
    return parts


async def chats_to_spool(
    client: WahaClient,
    waha_session: str,
    directory: Path,
    chats: pl.DataFrame,
    *,
    until: int,
    rows_per_file: int = 10_000,
    progress: SpoolProgress | None = None,
) -> Spool:
    """Read the whole history of every chat of `chats` (CHATS rows: `chat_id`, and `waha_chat_id`,
    the id used in request paths) up to `until` into `directory`, chat by chat and concurrently: the
    read-ahead for engines without the account stream (WEBJS).

    Pages are written as they arrive, `rows_per_file` messages a file; `progress` counts the
    messages and chats as they come. The spool lists the chats it holds whole (`Spool.chats`): a
    chat whose requests fail for good is left out, and its chunk run fetches it. A refused key or
    an unknown session fails the whole spool (and leaves none).
    """
    progress = progress or SpoolProgress()
    progress.chats_total += chats.height
    remove_spool_files(directory)
    directory.mkdir(parents=True, exist_ok=True)
    before = client.stats.snapshot()
    buffered: list[pl.DataFrame] = []
    buffered_chats: list[str] = []  # the chat of each buffered page
    counts = {"files": 0, "buffered": 0, "messages": 0}
    rejects: list[Reject] = []

    def flush() -> None:
        if buffered:
            # every page's chat, in one pass for the whole file instead of a column per page
            pages = pl.DataFrame({"chat_id": buffered_chats, "rows": [page.height for page in buffered]})
            routes = pages.select(pl.col("chat_id").repeat_by("rows").explode())
            frame = pl.concat(buffered).hstack(routes).sort("chat_id")
            frame.write_parquet(
                directory / f"page-{counts['files']:05d}.parquet", row_group_size=ROW_GROUP_ROWS
            )
            counts["files"] += 1
            counts["messages"] += frame.height
            counts["buffered"] = 0
            buffered.clear()
            buffered_chats.clear()

    async def read_chat(path_id: str, chat_id: str) -> None:
        def keep(page: pl.DataFrame) -> None:
            buffered.append(page)
            buffered_chats.append(chat_id)
            counts["buffered"] += page.height
            progress.messages += page.height
            if counts["buffered"] >= rows_per_file:
                flush()

        result = await client.chat_messages(waha_session, path_id, since=None, until=until, on_page=keep)
        rejects.extend(result.rejects)
        progress.chats_done += 1

    chat_ids: list[str] = chats.get_column("chat_id").to_list()
    path_ids = chats.get_column("waha_chat_id").fill_null(chats.get_column("chat_id")).to_list()
    try:
        outcomes = await asyncio.gather(
            *(read_chat(p, c) for p, c in zip(path_ids, chat_ids, strict=True)), return_exceptions=True
        )
        refused = [o for o in outcomes if isinstance(o, WahaAuthError | WahaSessionNotFound)]
        if refused:
            raise refused[0]
        flush()
    except BaseException:
        remove_spool_files(directory)
        raise
    covered = [c for c, outcome in zip(chat_ids, outcomes, strict=True) if outcome is None]
    failed = [o for o in outcomes if o is not None]
    if failed:
        log.info("%d chat(s) not read ahead, their runs fetch them (first error: %s)", len(failed), failed[0])
    rejects_frame(rejects, waha_session=waha_session).write_parquet(directory / REJECTS)
    done = client.stats.minus(before)
    return _complete(directory, waha_session, until, counts["files"], counts["messages"], done, covered)


def _complete(
    directory: Path,
    waha_session: str,
    until: int,
    pages: int,
    messages: int,
    done: ClientStats,
    chats: list[str] | None = None,
    readers: int = 1,
) -> Spool:
    """Write the manifest: from here on the spool is complete and readers take it."""
    manifest = {
        "waha_session": waha_session,
        "until": int(until),
        "pages": pages,
        "messages": messages,
        "requests": done.requests,
        "retries": done.retries,
        "bytes_received": done.bytes_received,
        "created_at": time.time(),
        "chats": chats,
        "readers": readers,
    }
    temporary = directory / f"{MANIFEST}.tmp"
    temporary.write_text(json.dumps(manifest))
    os.replace(temporary, directory / MANIFEST)
    return Spool(directory=directory, **manifest)


def remove_spool_files(directory: Path) -> None:
    """Empty a spool directory (manifest first, so that no reader takes it for complete)."""
    with contextlib.suppress(FileNotFoundError):
        (directory / MANIFEST).unlink()
    for path in directory.glob("*.parquet") if directory.exists() else ():
        path.unlink()


def group_directory(home: Path, db_schema: str, group: str) -> Path:
    """Where the spools of one sync or backfill (`group`) live, one subdirectory per WAHA session."""
    return home / "spool" / db_schema / group


def spooled_messages(group: Path) -> pl.DataFrame:
    """(waha_session, chat_id, messages) over the complete spools of one group (empty when none)."""
    spools = [open_spool(d) for d in sorted(group.iterdir()) if d.is_dir()] if group.is_dir() else []
    counts = [
        spool.messages_per_chat().select(pl.lit(spool.waha_session).alias("waha_session"), pl.all())
        for spool in spools
        if spool is not None
    ]
    if not counts:
        return pl.DataFrame(schema={"waha_session": pl.String, "chat_id": pl.String, "messages": pl.UInt32})
    return pl.concat(counts)


def remove_expired(home: Path, max_age: float = MAX_AGE_SECONDS) -> None:
    """Remove every spool under `home` older than `max_age` (those of backfills long finished)."""
    for manifest in (home / "spool").glob(f"*/*/*/{MANIFEST}"):
        open_spool(manifest.parent, max_age=max_age)


def _lock_path(directory: Path) -> Path:
    return directory.with_name(directory.name + ".lock")


@contextlib.asynccontextmanager
async def spool_lock(directory: Path, poll_seconds: float = 0.2) -> AsyncIterator[None]:
    """Hold the spool's writer lock (another process writing the same spool: wait without blocking
    the event loop)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(_lock_path(directory), "a+b") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(poll_seconds)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
