"""The per-chunk fetch: all messages of a chunk's chats, in parallel, all or nothing.

`fetch_chunk` pages every chat of the chunk concurrently through one `WahaClient` (bounded by its
concurrency), under ONE frozen upper bound, and returns frames ready for the session rule and the
warehouse: `messages` (MESSAGES; `session_id`/`chunk_key` null), `contacts` (seen in the messages),
`rejects`, and the fetch's figures. If any chat fails for good, the whole fetch fails with an error
naming that chat (the chunk run must commit all or nothing), and the other chats' requests are
cancelled.

`fetch_chats` and `fetch_contacts` read the chat list and the address book into frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from wahaflow.waha.client import WahaClient, forget_server_version
from wahaflow.waha.errors import (
    WahaAuthError,
    WahaError,
    WahaFetchError,
    WahaNotFound,
    WahaRequestError,
    WahaSessionNotFound,
)
from wahaflow.waha.normalize import (
    RAW_MESSAGES,
    NormalizedChats,
    Reject,
    contacts_from_messages,
    normalize_chats,
    normalize_contacts,
    normalize_ids,
    normalize_messages,
    rejects_frame,
)
from wahaflow.waha.paging import ChatMessages, default_until
from wahaflow.waha.spool import (
    MissingChatField,
    Spool,
    SpoolProgress,
    open_spool,
    spool_lock,
    stream_to_spool,
)

log = logging.getLogger(__name__)


@dataclass
class FetchStats:
    """Figures of one chunk fetch. `per_chat` has `chat_id`, `waha_chat_id`, `messages`, `pages`,
    `requests` (HTTP requests incl. retries) and `retries` per chat."""

    requests: int = 0
    retries: int = 0
    bytes_received: int = 0
    seconds: float = 0.0
    until: float = 0.0
    chats: int = 0
    per_chat: pl.DataFrame = field(default_factory=pl.DataFrame)

    def as_metadata(self) -> dict[str, Any]:
        """Plain numbers for run metadata."""
        return {
            "waha_requests": self.requests,
            "waha_retries": self.retries,
            "waha_bytes": self.bytes_received,
            "fetch_seconds": round(self.seconds, 3),
            "fetch_until": self.until,
            "chats_fetched": self.chats,
        }


@dataclass
class ChunkFetch:
    """The result of `fetch_chunk`."""

    messages: pl.DataFrame
    contacts: pl.DataFrame
    rejects: pl.DataFrame
    stats: FetchStats


def _since_of(chats: pl.DataFrame, since: Mapping[str, float | None] | None) -> list[float | None]:
    """Per-row lower bounds: the `since` mapping (by chat_id or waha_chat_id), else a `since` column."""
    if "since" in chats.columns:
        column = chats.get_column("since")
        if column.dtype.is_temporal():
            column = column.dt.epoch("s")
        values: list[float | None] = column.to_list()
    else:
        values = [None] * chats.height
    if since:
        keys = chats.get_column("chat_id").to_list()
        raw_keys = chats.get_column("waha_chat_id").to_list() if "waha_chat_id" in chats.columns else keys
        values = [
            since[k] if k in since else since.get(r, v)
            for k, r, v in zip(keys, raw_keys, values, strict=True)
        ]
    return values


OwnId = str | Awaitable[str | None] | None
"""The session's own id, or an awaitable of it (asked while the messages are fetched)."""


async def _resolved(me_id: OwnId) -> str | None:
    return await me_id if isinstance(me_id, Awaitable) else me_id


async def fetch_chunk(
    client: WahaClient,
    waha_session: str,
    me_id: OwnId,
    chats: pl.DataFrame,
    *,
    since: Mapping[str, float | None] | None = None,
    until: float | None = None,
    page_size: int | None = None,
) -> ChunkFetch:
    """Fetch the messages of every chat in `chats` (CHATS rows: `chat_id` and `waha_chat_id`, the id
    used in request paths; an optional `since` column of unix seconds or datetimes) in parallel.

    `since` (optional, by `chat_id`) overrides per-chat lower bounds (inclusive; None = whole history);
    `until` is the ONE frozen upper bound of the whole fetch (default now - 1 s). `me_id` is the
    session's own id, the sender of its own messages (or an awaitable of it, awaited once the
    messages are in).
    """
    started = time.monotonic()
    before = client.stats.snapshot()
    until = default_until() if until is None else until
    chat_ids: list[str] = chats.get_column("chat_id").to_list()
    path_ids: list[str] = (
        chats.get_column("waha_chat_id").fill_null(chats.get_column("chat_id")).to_list()
        if "waha_chat_id" in chats.columns
        else chat_ids
    )
    lower = _since_of(chats, since)

    async def one(index: int) -> ChatMessages:
        return await client.chat_messages(
            waha_session, path_ids[index], since=lower[index], until=until, page_size=page_size
        )

    tasks = [asyncio.create_task(one(i), name=f"waha-chat-{chat_ids[i]}") for i in range(len(chat_ids))]
    results = await _all_or_nothing(tasks, chat_ids, waha_session)

    raw = _chunk_frame(path_ids, results)
    me_id = await _resolved(me_id)
    messages = normalize_messages(raw, waha_session=waha_session, me_id=me_id)
    contacts = contacts_from_messages(
        raw, waha_session=waha_session, me_id=me_id, chat_ids=chat_ids, messages=messages
    )
    if messages.get_column("message_id").n_unique() < messages.height:
        # boundary seconds are read twice by design; the latest copy of a message wins
        messages = messages.unique(subset="message_id", keep="last", maintain_order=True)
    rejects: list[Reject] = [rej for r in results for rej in r.rejects]

    done = client.stats.minus(before)
    counts = dict(raw.select("_path", "id").unique().group_by("_path").len().iter_rows())
    per_chat = pl.DataFrame(
        {
            "chat_id": chat_ids,
            "waha_chat_id": path_ids,
            "messages": [counts.get(p, 0) for p in path_ids],
            "pages": [r.pages for r in results],
            "requests": [r.requests for r in results],
            "retries": [r.retries for r in results],
        },
        schema={
            "chat_id": pl.String,
            "waha_chat_id": pl.String,
            "messages": pl.Int64,
            "pages": pl.Int64,
            "requests": pl.Int64,
            "retries": pl.Int64,
        },
    )
    stats = FetchStats(
        requests=done.requests,
        retries=done.retries,
        bytes_received=done.bytes_received,
        seconds=time.monotonic() - started,
        until=until,
        chats=len(chat_ids),
        per_chat=per_chat,
    )
    return ChunkFetch(
        messages=messages,
        contacts=contacts,
        rejects=rejects_frame(rejects, waha_session=waha_session),
        stats=stats,
    )


def _chunk_frame(path_ids: list[str], results: list[ChatMessages]) -> pl.DataFrame:
    """Every chat's pages in one frame (`RAW_MESSAGES` plus `chat_id`, normalized from the id used
    in the request path, and `_path`, that id). Boundary seconds appear twice (de-duplicated later)."""
    frames: list[pl.DataFrame] = []
    owners: list[str] = []
    for path_id, result in zip(path_ids, results, strict=True):
        pages = result.frames if result.trusted else [result.raw]  # untrusted: filtered to the window
        for frame in pages:
            if frame.height:
                frames.append(frame)
                owners.append(path_id)
    if not frames:
        return pl.DataFrame(schema={**RAW_MESSAGES, "chat_id": pl.String, "_path": pl.String})
    paths = pl.DataFrame({"_path": owners, "n": [f.height for f in frames]}).select(
        pl.col("_path").repeat_by("n").explode()
    )
    raw = pl.concat(frames, how="vertical").with_columns(paths.to_series())
    return raw.with_columns(normalize_ids(raw.get_column("_path")).alias("chat_id"))


async def _all_or_nothing(
    tasks: list[asyncio.Task[ChatMessages]], chat_ids: list[str], waha_session: str
) -> list[ChatMessages]:
    """Await every task; on the first failure cancel the rest and raise an error naming the chat."""
    if not tasks:
        return []
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    failed = [
        (i, t.exception()) for i, t in enumerate(tasks) if t.done() and not t.cancelled() and t.exception()
    ]
    if failed:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        index, exc = failed[0]
        if isinstance(exc, WahaAuthError | WahaSessionNotFound):
            raise exc
        chat_id = chat_ids[index]
        message = f"fetching the messages of chat {chat_id} (WAHA session {waha_session!r}) failed: {exc}"
        if isinstance(exc, WahaError):
            raise WahaFetchError(message, chat_id=chat_id, status=exc.status, source=exc.source) from exc
        raise WahaFetchError(message, chat_id=chat_id) from exc
    return [t.result() for t in tasks]


async def fetch_chats(
    client: WahaClient, waha_session: str, *, overview: bool = False, include_status: bool = False
) -> tuple[pl.DataFrame, pl.DataFrame, NormalizedChats]:
    """The session's chats as (CHATS frame, REJECTS frame, details incl. skipped chats).

    Reads `GET /api/{session}/chats` (or `/chats/overview` with `overview=True`).
    """
    if overview:
        items = await client.chats_overview(waha_session)
        source = f"GET /api/{waha_session}/chats/overview"
    else:
        items = await client.chats(waha_session)
        source = f"GET /api/{waha_session}/chats"
    normalized = normalize_chats(
        items, waha_session=waha_session, source=source, include_status=include_status
    )
    return normalized.chats, rejects_frame(normalized.rejects, waha_session=waha_session), normalized


async def fetch_contacts(client: WahaClient, waha_session: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The session's address book as (CONTACTS frame, REJECTS frame)."""
    items = await client.contacts(waha_session)
    contacts, rejects = normalize_contacts(items, waha_session=waha_session, source="GET /api/contacts/all")
    return contacts, rejects_frame(rejects, waha_session=waha_session)


STREAM_ENGINES = frozenset({"NOWEB", "GOWS"})
"""Engines that serve `GET /api/{session}/chats/all/messages` (WEBJS answers 422)."""
STREAM_PAGE_SIZE = 10_000
"""Messages per request of the account stream: few sequential round trips (WAHA sets no maximum)."""


async def fetch_account_stream(
    client: WahaClient,
    waha_session: str,
    me_id: OwnId,
    chats: pl.DataFrame,
    *,
    until: float | None = None,
    page_size: int = STREAM_PAGE_SIZE,
    spool_dir: Path | None = None,
) -> ChunkFetch | None:
    """The whole history of `chats` read from the account-wide stream `chats/all/messages`
    (NOWEB and GOWS, waha-api.md §2.4): a few large requests instead of one or more per chat.

    The stream goes through a spool (`wahaflow.waha.spool`): `spool_dir` is shared by the runs of one
    sync or backfill, so that only the first one reads WAHA (none, when the sync's warm-up did);
    without it, a temporary one is used. The result's `stats.until` is the spool's bound, which is
    older than `until` when it was written before. There is no chat in that request path, so a
    message's chat is its `from`, which on these two engines is always the chat id (`key.remoteJid`
    / `Info.Chat`). `me_id` may be an awaitable (the session's id, asked while the stream is read).
    Returns None, so that the caller fetches chat by chat, when a message has no `from` or the
    server does not serve the stream after all (an engine changed since its version was asked).
    """
    started = time.monotonic()
    until = default_until() if until is None else until
    with contextlib.ExitStack() as cleanup:
        if spool_dir is None:
            spool_dir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="wahaflow-spool-")))
        spool, written = await spool_account_stream(
            client, waha_session, spool_dir, until=int(until), page_size=page_size
        )
        if spool is None:
            return None
        return await read_spooled_histories(spool, me_id, chats, written=written, started=started)


async def read_spooled_histories(
    spool: Spool, me_id: OwnId, chats: pl.DataFrame, *, written: bool = False, started: float | None = None
) -> ChunkFetch:
    """The whole history of `chats` (that `spool` covers) from the spool, as a `ChunkFetch`.

    Its rejects are the spool's (every reader stores them: `reject_id` makes that idempotent); its
    requests are the spool's when this run `written` it, else none. `stats.until` is the spool's
    bound.
    """
    started = time.monotonic() if started is None else started
    chat_ids: list[str] = chats.get_column("chat_id").to_list()
    raw = spool.read(chat_ids)
    rejects = spool.rejects()
    me_id = await _resolved(me_id)
    messages = normalize_messages(raw, waha_session=spool.waha_session, me_id=me_id)
    contacts = contacts_from_messages(
        raw, waha_session=spool.waha_session, me_id=me_id, chat_ids=chat_ids, messages=messages
    )
    stats = FetchStats(
        requests=spool.requests if written else 0,
        retries=spool.retries if written else 0,
        bytes_received=spool.bytes_received if written else 0,
        seconds=time.monotonic() - started,
        until=spool.until,
        chats=len(chat_ids),
    )
    return ChunkFetch(messages=messages, contacts=contacts, rejects=rejects, stats=stats)


async def spool_account_stream(
    client: WahaClient,
    waha_session: str,
    spool_dir: Path,
    *,
    until: int,
    page_size: int = STREAM_PAGE_SIZE,
    progress: SpoolProgress | None = None,
) -> tuple[Spool | None, bool]:
    """The session's account stream spooled in `spool_dir`: read from WAHA up to `until`, unless a
    complete spool is already there (another run's, or a sync's warm-up). Writers take the spool's
    lock, so the stream is read once.

    Returns (the spool, whether this call read WAHA), or (None, False) when the stream cannot serve:
    an item has no `from`, or the server refuses the stream (its engine changed since its version
    was asked; then the kept version is dropped).
    """
    async with spool_lock(spool_dir):
        spool = open_spool(spool_dir)
        if spool is not None:
            return spool, False
        try:
            spool = await stream_to_spool(
                client, waha_session, spool_dir, until=until, page_size=page_size, progress=progress
            )
            return spool, True
        except MissingChatField as missing:
            log.warning("%s; fetching chat by chat", missing)
        except (WahaRequestError, WahaNotFound) as refused:
            if isinstance(refused, WahaSessionNotFound):
                raise
            forget_server_version(client)
            log.warning("the account stream was refused (%s); fetching chat by chat", refused)
        return None, False
