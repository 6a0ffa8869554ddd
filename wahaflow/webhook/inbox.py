"""The durable webhook inbox: parse a WAHA event envelope into an inbox row and commit rows in groups.

One row per accepted event (table `inbox`, `wahaflow.schemas.INBOX`):

- `event_id`: the envelope `id` (`evt_<ulid>`); 2024 builds sent no id, then `sha256:<hex of the raw
  body>`, so an identical redelivery still collapses.
- `message_id`: the message the event carries or refers to (`payload.id`; `payload.after.id` for
  `message.revoked`), else null. Together with `waha_session` and `event` it is unique for message
  events (index `inbox_message_event_key`, migration 2), so the same message redelivered under a new
  envelope id is stored once. Acks are exempt (one message is acked several times).
- `chat_id`: the normalized chat of that message (`chat_of`), null when the event has none (e.g.
  `session.status`). Events that no chunk run applies (not in `APPLIED_EVENTS`) and that have no chat
  are stored already processed (`processed_at` = `received_at`), so they never look like a backlog.
  An applied event whose chat cannot be derived stays pending with a null chat: `pending_chats`
  lists it as (waha_session, null) and `pending_events` turns it into a reject.
- `payload`: the raw body as text, with NUL characters (`\\u0000` escapes) removed (design.md §5
  rule 8: Postgres text cannot hold NUL). Everything else is kept byte for byte.
- `chunk_key`: the chat's chunk from `chats` at receipt (null for a chat not registered yet).

Writes are group commits (`GroupCommitter`): requests queue their row and wait; a few writer tasks
take whatever is queued (up to a batch limit), insert it with one statement
(`INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING RETURNING event_id`), commit, and only
then wake the requests. Under load a batch collects while the previous one commits, so one fsync
serves many events; when idle a batch is a single event and nothing waits for a timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from psycopg import sql

from wahaflow.waha.ids import normalize_id, serialized_id

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
"""Largest body accepted (design.md §5 rule 11: 413 above it)."""

MESSAGE_EVENTS = frozenset({"message", "message.any"})
"""Events whose payload is a `WAMessage` to import."""

APPLIED_EVENTS = frozenset({"message", "message.any", "message.ack", "message.edited", "message.revoked"})
"""Events a chunk run applies to the warehouse (wahaflow/webhook/apply.py)."""

ACK_EVENTS = frozenset({"message.ack", "message.ack.group"})

PAYLOAD_REQUIRED = frozenset(
    {
        "message",
        "message.any",
        "message.ack",
        "message.ack.group",
        "message.edited",
        "message.revoked",
        "message.reaction",
        "message.waiting",
        "session.status",
    }
)
"""Events whose envelope must carry a `payload` object (other events are accepted as long as the
envelope itself is valid: WAHA adds events, and an unknown one is stored, not refused)."""

_ENGINES_FROM_IS_CHAT = frozenset({"NOWEB", "GOWS"})

# `\u0000` escapes in JSON text, unless the backslash is itself escaped (`\\u0000` is the 6 characters
# "\u0000" in the decoded value, which Postgres holds fine).
_NUL_ESCAPE = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


class InvalidEvent(ValueError):
    """The body is not a WAHA event envelope. The message says why, never what the body held."""


@dataclass(frozen=True)
class InboxEvent:
    """One parsed event, ready to insert (see the module docstring for the columns)."""

    event_id: str
    waha_session: str
    event: str
    message_id: str | None
    chat_id: str | None
    received_at: datetime
    payload: str
    processed_at: datetime | None = None


# --------------------------------------------------------------------------------------------------
# parsing


def strip_nul(body: bytes) -> bytes:
    """`body` (JSON text) without NUL characters: raw NUL bytes and `\\u0000` escapes are removed."""
    if b"\\u0000" in body:
        body = _NUL_ESCAPE.sub(rb"\1", body)
    if b"\x00" in body:
        body = body.replace(b"\x00", b"")
    return body


def body_event_id(body: bytes) -> str:
    """The event id of an envelope without `id`: a digest of the raw body."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


def key_id(message_id: str | None) -> str | None:
    """The bare key id of a serialized message id (`{fromMe}_{chat}_{keyId}[_{participant}]`: the 3rd
    `_`-separated part); a bare id is returned as is."""
    if not message_id:
        return None
    parts = message_id.split("_")
    if len(parts) >= 3 and parts[0] in ("true", "false"):
        return parts[2]
    return message_id


def _id_chat(message: dict[str, Any]) -> str | None:
    """The chat part of a serialized message id (`{fromMe}_{chat}_{keyId}…`), else None."""
    mid = serialized_id(message.get("id"))
    parts = mid.split("_") if mid else []
    if len(parts) >= 3 and parts[0] in ("true", "false") and parts[1]:
        return parts[1]
    return None


def chat_of(message: Any, engine: str | None) -> str | None:
    """The normalized chat id of a `WAMessage`-like payload (a message, an ack, a revoke's `after`).

    Per engine (waha-api.md §2.6): NOWEB and GOWS put the chat id in `from` (`key.remoteJid` /
    `Info.Chat`) for every message; WEBJS and WPP put the sender in `from` and the recipient in
    `to`, so the chat is `to` for own messages and `from` otherwise. When that field is missing (or is
    NOWEB's literal `me`), and when the envelope names no engine (2024 builds), the chat part of the
    serialized id (`{fromMe}_{chat}_{keyId}…`, the same in every engine) is used first.
    `@s.whatsapp.net` and bare numbers are written `@c.us` (rule 1).
    """
    if not isinstance(message, dict):
        return None
    candidate = _id_chat(message) if engine is None else None
    if not candidate:
        if engine in _ENGINES_FROM_IS_CHAT:
            field_value = message.get("from")
        else:
            field_value = message.get("to") if message.get("fromMe") is True else message.get("from")
        candidate = serialized_id(field_value)
    if not candidate or candidate == "me":
        candidate = _id_chat(message)
    if not candidate:
        return None
    return normalize_id(candidate.replace("\x00", "")) or None


def _message_ref(event: str, payload: dict[str, Any], engine: str | None) -> tuple[str | None, str | None]:
    """(message_id, chat_id) of a `message*` event's payload; (None, None) for other events."""
    if not event.startswith("message"):
        return None, None
    if event == "message.revoked":
        after, before = payload.get("after"), payload.get("before")
        message = after if isinstance(after, dict) else before
        mid = serialized_id(message.get("id")) if isinstance(message, dict) else None
        return mid, chat_of(after, engine) or chat_of(before, engine)
    return serialized_id(payload.get("id")), chat_of(payload, engine)


def parse_event(body: bytes, received_at: datetime | None = None) -> InboxEvent:
    """The inbox row of a raw webhook body; `InvalidEvent` when it is not a WAHA event envelope.

    An envelope is a JSON object with a non-empty string `event` and `session` and, for the events
    of `PAYLOAD_REQUIRED`, a `payload` object. `id`, when present, must be a non-empty string.
    """
    received_at = received_at or datetime.now(UTC)
    try:
        envelope = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:  # JavaScript's JSON.stringify can emit lone surrogates (`"\ud800"`), which orjson refuses
            envelope = json.loads(body.decode("utf-8"))
        except ValueError as exc:  # UnicodeDecodeError included: JSON bodies must be UTF-8
            raise InvalidEvent("body is not JSON") from exc
    if not isinstance(envelope, dict):
        raise InvalidEvent("body is not a JSON object")
    event, session = envelope.get("event"), envelope.get("session")
    if not isinstance(event, str) or not event:
        raise InvalidEvent("envelope has no string `event`")
    if not isinstance(session, str) or not session:
        raise InvalidEvent("envelope has no string `session`")
    payload = envelope.get("payload")
    if event in PAYLOAD_REQUIRED and not isinstance(payload, dict):
        raise InvalidEvent("envelope has no `payload` object")
    raw_id = envelope.get("id")
    if raw_id is not None and (not isinstance(raw_id, str) or not raw_id):
        raise InvalidEvent("envelope `id` is not a non-empty string")
    engine = envelope.get("engine") if isinstance(envelope.get("engine"), str) else None
    message_id, chat_id = _message_ref(event, payload, engine) if isinstance(payload, dict) else (None, None)
    return InboxEvent(
        event_id=_clean(raw_id) if raw_id else body_event_id(body),
        waha_session=_clean(session),
        event=_clean(event),
        message_id=_clean(message_id) if message_id else None,
        chat_id=_clean(chat_id) if chat_id else None,
        received_at=received_at,
        payload=strip_nul(body).decode("utf-8"),
        processed_at=None if chat_id or event in APPLIED_EVENTS else received_at,
    )


def _clean(text: str) -> str:
    """`text` as Postgres can hold it: without NUL characters and lone surrogates."""
    text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "ignore").decode("utf-8")
    return text


# --------------------------------------------------------------------------------------------------
# inserting


def insert_sql(schema: str) -> sql.Composed:
    """The batch insert: arrays of the columns in, the ids of the rows inserted (not duplicates) out.

    The arrays are sent in binary (`%b`): text arrays in text format escape every quote of every
    payload with a regex callback, which cost more than everything else in a request together."""
    return sql.SQL(
        "INSERT INTO {inbox} (event_id, waha_session, event, message_id, chat_id, received_at, payload,"
        " processed_at, chunk_key)"
        " SELECT e.event_id, e.waha_session, e.event, e.message_id, e.chat_id, e.received_at, e.payload,"
        " e.processed_at, (SELECT c.chunk_key FROM {chats} c"
        "  WHERE c.waha_session = e.waha_session AND c.chat_id = e.chat_id)"
        " FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::timestamptz[],"
        "  %b::text[], %b::timestamptz[])"
        "  AS e(event_id, waha_session, event, message_id, chat_id, received_at, payload, processed_at)"
        " ON CONFLICT DO NOTHING RETURNING event_id"
    ).format(inbox=sql.Identifier(schema, "inbox"), chats=sql.Identifier(schema, "chats"))


def _params(events: Sequence[InboxEvent]) -> list[list[Any]]:
    return [
        [e.event_id for e in events],
        [e.waha_session for e in events],
        [e.event for e in events],
        [e.message_id for e in events],
        [e.chat_id for e in events],
        [e.received_at for e in events],
        [e.payload for e in events],
        [e.processed_at for e in events],
    ]


def insert_events(conn: psycopg.Connection, schema: str, events: Sequence[InboxEvent]) -> set[str]:
    """Insert `events` (duplicates are skipped) in the caller's transaction; the ids inserted now."""
    if not events:
        return set()
    rows = conn.execute(insert_sql(schema), _params(events)).fetchall()
    return {r[0] for r in rows}


async def insert_events_async(
    conn: psycopg.AsyncConnection, schema: str, events: Sequence[InboxEvent]
) -> set[str]:
    """`insert_events` on an async connection."""
    if not events:
        return set()
    cur = await conn.execute(insert_sql(schema), _params(events))
    return {r[0] for r in await cur.fetchall()}


# --------------------------------------------------------------------------------------------------
# group commit


class InboxUnavailable(RuntimeError):
    """The event could not be committed (database down, queue full, shutting down): answer 503."""


@dataclass
class _Pending:
    event: InboxEvent
    future: asyncio.Future[bool]
    size: int


@dataclass
class CommitStats:
    """Counters of a `GroupCommitter` (read them from the event loop's thread)."""

    batches: int = 0
    events: int = 0
    inserted: int = 0
    failed_batches: int = 0
    max_batch: int = 0
    sizes: list[int] = field(default_factory=list, repr=False)

    def snapshot(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "events": self.events,
            "inserted": self.inserted,
            "failed_batches": self.failed_batches,
            "max_batch": self.max_batch,
            "mean_batch": round(self.events / self.batches, 2) if self.batches else 0.0,
        }


class GroupCommitter:
    """Commits inbox rows in groups on a pool of connections; `store` returns after the commit.

    `writers` tasks each take up to `max_batch` queued events (and at most `max_batch_bytes` of
    payload), insert them with one statement and commit. At most `max_queue` events wait; beyond that
    `store` raises `InboxUnavailable` at once (back-pressure: WAHA retries).
    """

    def __init__(
        self,
        database_url: str,
        schema: str,
        *,
        writers: int = 2,
        max_batch: int = 256,
        max_batch_bytes: int = 8 * MAX_BODY_BYTES,
        max_queue: int = 20_000,
    ) -> None:
        self.database_url = database_url
        self.schema = schema
        self.writers = writers
        self.max_batch = max_batch
        self.max_batch_bytes = max_batch_bytes
        self.max_queue = max_queue
        self.stats = CommitStats()
        self._sql = insert_sql(schema)
        self._queue: asyncio.Queue[_Pending] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._pool: Any = None
        self._closing = False

    async def start(self) -> None:
        """Open the connection pool (waits for the first connections) and start the writers."""
        from psycopg_pool import AsyncConnectionPool

        self._queue = asyncio.Queue()
        self._pool = AsyncConnectionPool(
            self.database_url,
            min_size=self.writers,
            max_size=self.writers,
            open=False,
            name="wahaflow-inbox",
            kwargs={"autocommit": False},
            reconnect_timeout=60.0,
        )
        await self._pool.open(wait=True, timeout=30.0)
        self._tasks = [
            asyncio.create_task(self._writer(), name=f"inbox-writer-{i}") for i in range(self.writers)
        ]

    async def close(self) -> None:
        """Commit what is queued, then stop the writers and close the pool."""
        self._closing = True
        if self._queue is not None:
            try:
                await asyncio.wait_for(self._queue.join(), timeout=10.0)
            except TimeoutError:
                log.warning("inbox: %d queued event(s) not committed at shutdown", self._queue.qsize())
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._queue is not None:
            while not self._queue.empty():
                item = self._queue.get_nowait()
                if not item.future.done():
                    item.future.set_exception(InboxUnavailable("shutting down"))
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def running(self) -> bool:
        """True between `start` and `close`."""
        return bool(self._tasks) and not self._closing

    @property
    def queued(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def store(self, event: InboxEvent) -> bool:
        """Commit `event` to the inbox; True if it is new, False if it was a duplicate."""
        if self._queue is None or self._closing or not self._tasks:
            raise InboxUnavailable("the inbox is not running")
        if self._queue.qsize() >= self.max_queue:
            raise InboxUnavailable("the inbox queue is full")
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(event, future, len(event.payload)))
        return await asyncio.shield(future)

    async def _writer(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            first = await queue.get()
            batch = [first]
            size = first.size
            while len(batch) < self.max_batch and size < self.max_batch_bytes and not queue.empty():
                item = queue.get_nowait()
                batch.append(item)
                size += item.size
            try:
                await self._commit(batch)
            except BaseException:  # cancelled mid-commit (shutdown): nobody may wait forever
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(InboxUnavailable("shutting down"))
                raise
            finally:
                for _ in batch:
                    queue.task_done()

    async def _commit(self, batch: list[_Pending]) -> None:
        events = [p.event for p in batch]
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(self._sql, _params(events))
                inserted = {r[0] for r in await cur.fetchall()}
            # leaving the block committed the transaction
        except Exception as exc:
            self.stats.failed_batches += 1
            if len(batch) > 1 and not isinstance(exc, psycopg.OperationalError):
                # a data error in one event must not fail the others: retry them one by one
                for item in batch:
                    await self._commit([item])
                return
            log.error("inbox: could not commit %d event(s): %s", len(batch), type(exc).__name__)
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(InboxUnavailable(type(exc).__name__))
            return
        stats = self.stats
        stats.batches += 1
        stats.events += len(batch)
        stats.inserted += len(inserted)
        stats.max_batch = max(stats.max_batch, len(batch))
        for item in batch:
            if not item.future.done():
                item.future.set_result(item.event.event_id in inserted)


def pending_count(conn: psycopg.Connection, schema: str) -> int:
    """Events not applied yet."""
    query = sql.SQL("SELECT count(*) FROM {} WHERE processed_at IS NULL").format(
        sql.Identifier(schema, "inbox")
    )
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def read_inbox(conn: psycopg.Connection, schema: str, event_ids: Iterable[str] | None = None) -> list[dict]:
    """Inbox rows as dicts (all, or those of `event_ids`), oldest first; for tests and tools."""
    query = sql.SQL("SELECT * FROM {}").format(sql.Identifier(schema, "inbox"))
    params: list[Any] = []
    if event_ids is not None:
        query = sql.SQL("{} WHERE event_id = ANY(%s)").format(query)
        params.append(list(event_ids))
    query = sql.SQL("{} ORDER BY received_at, event_id").format(query)
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(query, params).fetchall()
