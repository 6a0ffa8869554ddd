"""One chunk run's work, without Dagster: plan the fetch, fetch, merge with what is stored, sessionize.

Data flows one way: stored state + WAHA -> frames -> `ChunkBatch`, which the warehouse writes in one
transaction. A first import of a chat fetches its whole history; later runs fetch from the start of
the chat's last stored session minus the session gap (design.md §5 rule 10), and chats whose listed
last activity is not newer than what is stored are not fetched at all.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import psycopg

from wahaflow import schemas
from wahaflow.chunks import register
from wahaflow.sessions import derive_sessions
from wahaflow.waha.client import VERSION_TTL_SECONDS, ServerVersion, WahaClient
from wahaflow.waha.errors import WahaError
from wahaflow.waha.fetch import (
    STREAM_ENGINES,
    ChunkFetch,
    fetch_account_stream,
    fetch_chunk,
    read_spooled_histories,
)
from wahaflow.waha.listings import take_listing
from wahaflow.waha.normalize import Reject, reject, rejects_frame
from wahaflow.waha.paging import default_until
from wahaflow.waha.spool import Spool, open_spool
from wahaflow.warehouse import reads
from wahaflow.warehouse.writes import TableWrite, TableWrites, write_all
from wahaflow.webhook.apply import InboxBatch, key_id_expr, mark_processed, pending_events


@dataclass
class ChunkBatch:
    """Everything one run writes for its chunks, as frames, plus the figures for metadata."""

    chunk_keys: list[str]
    messages: pl.DataFrame
    sessions: pl.DataFrame
    touched_chats: pl.DataFrame  # (waha_session, chat_id) whose sessions were re-derived
    contacts: pl.DataFrame
    rejects: pl.DataFrame
    chats: pl.DataFrame
    stats: dict[str, float] = field(default_factory=dict)
    inbox_event_ids: list[str] = field(default_factory=list)  # applied here: marked processed on write

    def table_writes(self) -> TableWrites:
        """Everything to store, in one transaction that also marks the applied inbox events."""
        event_ids = list(self.inbox_event_ids)

        def mark_inbox(conn: psycopg.Connection, db_schema: str) -> None:
            if event_ids:
                mark_processed(conn, db_schema, event_ids)

        return TableWrites(tuple(self.writes()), then=(mark_inbox,))

    def writes(self) -> list[TableWrite]:
        """The table writes, in order, that store this batch (one transaction)."""
        return [
            TableWrite("chats", self.chats, mode="merge"),
            TableWrite("contacts", self.contacts, mode="merge", keep_existing_on_null=True),
            # A first import of these chats: nothing stored, so a direct COPY is tried first.
            TableWrite(
                "messages",
                self.messages,
                mode="merge",
                assume_new=not self.stats.get("messages_stored_before"),
            ),
            TableWrite("sessions", self.sessions, mode="replace", replace_scope=("waha_session", "chat_id")),
            TableWrite("rejects", self.rejects, mode="merge"),
        ]

    def per_chunk(self) -> pl.DataFrame:
        """Messages, sessions and chats per chunk key (every key of the run, zeros included)."""
        keys = pl.DataFrame({"chunk_key": self.chunk_keys}, schema={"chunk_key": pl.String})

        def count(frame: pl.DataFrame, name: str) -> pl.DataFrame:
            return frame.group_by("chunk_key").agg(pl.len().cast(pl.Int64).alias(name))

        return (
            keys.join(count(self.messages, "messages"), on="chunk_key", how="left")
            .join(count(self.sessions, "sessions"), on="chunk_key", how="left")
            .join(count(self.chats, "chats"), on="chunk_key", how="left")
            .fill_null(0)
            .sort("chunk_key")
        )


def plan_fetch(chats: pl.DataFrame, state: pl.DataFrame, gap_seconds: int, *, full: bool) -> pl.DataFrame:
    """Which chats to fetch, and from when.

    `chats` is the registry (CHATS schema), `state` the stored per-chat figures
    (`warehouse.reads.CHAT_STATE`). A chat is fetched when it was never synced or the chat list
    reports activity after what the last fetch covered. Returns those chats with `since` (unix
    seconds, inclusive; null = whole history): the start of the chat's last stored session minus the
    gap (rule 10). With `full`, every chat is fetched from the beginning.
    """
    planned = chats.join(state, on=["waha_session", "chat_id"], how="left")
    if full:
        return planned.with_columns(pl.lit(None, pl.Int64).alias("since"))
    stale = (
        pl.col("synced_until").is_null()
        | pl.col("last_message_at").is_null()
        | (pl.col("last_message_at") > pl.col("synced_until"))
    )
    window_start = pl.coalesce("last_session_started_at", "last_sent_at").dt.epoch("s") - gap_seconds
    return planned.filter(stale).with_columns(
        pl.when(pl.col("last_sent_at").is_null()).then(None).otherwise(window_start.clip(1)).alias("since")
    )


def assemble(
    chunk_keys: list[str],
    planned: pl.DataFrame,
    affected: pl.DataFrame,
    fetched: pl.DataFrame,
    stored: pl.DataFrame,
    contacts: pl.DataFrame,
    rejects: pl.DataFrame,
    gap_seconds: int,
    until: int,
    inbox: InboxBatch | None = None,
) -> ChunkBatch:
    """Merge fetched (and webhook) messages into the stored ones and re-derive their chats' sessions.

    `planned` are the chats that were fetched (from `plan_fetch`) up to `until` (unix seconds,
    inclusive); `affected` (CHATS rows) every chat whose messages change: the planned ones plus those
    with pending inbox events. `fetched` and `stored` have the MESSAGES schema (`stored` = every
    stored message of the affected chats). A message present in both keeps the fetched version,
    except for the edit/revoke flags, which only webhooks set. Then the inbox's acks (never
    backwards), edits and revokes are applied. Sessions are re-derived for every affected chat over
    all its messages, so late messages extend or merge sessions (rule 5).
    """
    started = time.perf_counter()
    keys = ["waha_session", "chat_id"]
    message_key = ["waha_session", "message_id"]
    inbox = inbox or InboxBatch()
    flags = stored.select(
        *message_key, pl.col("edited_at").alias("_edited"), pl.col("revoked_at").alias("_revoked")
    )
    combined = (
        pl.concat([stored, schemas.conform(inbox.messages, schemas.MESSAGES), fetched])  # last wins
        .unique(subset=message_key, keep="last")
        .join(flags, on=message_key, how="left")
        .with_columns(
            pl.coalesce("edited_at", "_edited").alias("edited_at"),
            pl.coalesce("revoked_at", "_revoked").alias("revoked_at"),
        )
        .drop("_edited", "_revoked", "chunk_key")
        .join(affected.select(*keys, "chunk_key"), on=keys, how="inner")
    )
    with_sessions, sessions = derive_sessions(apply_inbox(combined, inbox), gap_seconds)
    rejects = pl.concat([rejects, unmatched_inbox_updates(combined, inbox)], how="diagonal_relaxed")
    # The fetch covered history up to `until` (or the chat's own `covered_until`, when its session
    # was read from an earlier spool): activity listed after it keeps the chat stale.
    bound = pl.col("covered_until") if "covered_until" in planned.columns else pl.lit(until, pl.Int64)
    covered = bound.cast(pl.Int64).mul(1_000_000).cast(schemas.UTC_TIME)
    synced = planned.with_columns(pl.min_horizontal("last_message_at", covered).alias("synced_until"))
    return ChunkBatch(
        chunk_keys=sorted(chunk_keys),
        messages=schemas.conform(with_sessions, schemas.MESSAGES),
        sessions=schemas.conform(sessions, schemas.SESSIONS),
        touched_chats=affected.select(keys),
        contacts=schemas.conform(
            pl.concat([contacts, inbox.contacts], how="diagonal_relaxed"), schemas.CONTACTS
        ).unique(subset=["waha_session", "contact_id"], keep="last"),
        rejects=schemas.conform(pl.concat([rejects, inbox.rejects], how="diagonal_relaxed"), schemas.REJECTS),
        chats=schemas.conform(synced, schemas.CHATS),
        stats={"sessionize_seconds": time.perf_counter() - started},
        inbox_event_ids=list(inbox.event_ids),
    )


def unmatched_inbox_updates(messages: pl.DataFrame, inbox: InboxBatch) -> pl.DataFrame:
    """REJECTS rows for acks, edits and revokes whose message is not in `messages`: they cannot be
    applied (the message was never imported), so they are kept in `rejects`, never dropped silently."""
    if not inbox.has_updates:
        return schemas.empty(schemas.REJECTS)
    present = messages.select("waha_session", "chat_id", key_id_expr(pl.col("message_id")).alias("key_id"))
    acks = inbox.acks.with_columns(key_id_expr(pl.col("message_id")).alias("key_id"))
    by_session: dict[str, list[Reject]] = {}
    for event, frame in (
        ("message.ack", acks),
        ("message.edited", inbox.edits),
        ("message.revoked", inbox.revokes),
    ):
        missing = frame.join(present, on=["waha_session", "chat_id", "key_id"], how="anti")
        for row in missing.iter_rows(named=True):  # a handful of events, not messages
            item = reject(
                row, source=f"webhook {event}", reason=f"{event} for a message not in the warehouse"
            )
            by_session.setdefault(row["waha_session"], []).append(item)
    if not by_session:
        return schemas.empty(schemas.REJECTS)
    return pl.concat([rejects_frame(items, waha_session=ws) for ws, items in by_session.items()])


def apply_inbox(messages: pl.DataFrame, inbox: InboxBatch) -> pl.DataFrame:
    """`messages` with the inbox's acks (the highest wins), edits (new body) and revokes (flag) applied.

    Edits and revokes name messages by their bare key id within a chat (waha-api.md §4).
    """
    if not inbox.has_updates:
        return messages
    keyed = messages.with_columns(key_id_expr(pl.col("message_id")).alias("_key"))
    acks = inbox.acks.select("waha_session", "message_id", pl.col("ack").alias("_ack"))
    edits = inbox.edits.select(
        "waha_session",
        "chat_id",
        pl.col("key_id").alias("_key"),
        pl.col("body").alias("_body"),
        pl.col("edited_at").alias("_edited_at"),
    ).unique(subset=["waha_session", "chat_id", "_key"], keep="last")
    revokes = inbox.revokes.select(
        "waha_session", "chat_id", pl.col("key_id").alias("_key"), pl.col("revoked_at").alias("_revoked_at")
    ).unique(subset=["waha_session", "chat_id", "_key"], keep="first")
    by_key = ["waha_session", "chat_id", "_key"]
    return (
        keyed.join(acks, on=["waha_session", "message_id"], how="left")
        .join(edits, on=by_key, how="left")
        .join(revokes, on=by_key, how="left")
        .with_columns(
            pl.max_horizontal("ack", "_ack").cast(pl.Int16).alias("ack"),
            pl.coalesce("_body", "body").alias("body"),
            pl.coalesce("_edited_at", "edited_at").alias("edited_at"),
            pl.coalesce("revoked_at", "_revoked_at").alias("revoked_at"),
        )
        .drop("_key", "_ack", "_body", "_edited_at", "_revoked_at")
    )


@dataclass
class Discovery:
    """What one chat listing changed in the registry."""

    chats: pl.DataFrame  # every listed chat with its chunk (CHATS schema)
    new_chunk_keys: list[str]
    contacts: pl.DataFrame
    rejects: pl.DataFrame
    stats: dict[str, float] = field(default_factory=dict)
    server: ServerVersion | None = None  # None: the server did not say

    def writes(self) -> list[TableWrite]:
        return [
            TableWrite("chats", self.chats, mode="merge", keep_existing_on_null=True),
            TableWrite("contacts", self.contacts, mode="merge", keep_existing_on_null=True),
            TableWrite("rejects", self.rejects, mode="merge"),
        ]


async def discover(
    client: WahaClient, sessions: list[str], registered: pl.DataFrame, chunk_size: int
) -> Discovery:
    """List every session's chats and address book; assign new chats to chunks."""
    started = time.perf_counter()
    before = client.stats.snapshot()
    # every session's chat list and address book at once (or those the warm-up listed), and the
    # server's version and engine (kept for the chunk runs of this process: whether they can read
    # the account stream)
    server, *listings = await asyncio.gather(
        _server_version(client, max_age=DISCOVERY_ANSWER_AGE),
        *(take_listing(client, s, max_age=DISCOVERY_ANSWER_AGE) for s in sessions),
    )
    listed_all = pl.concat([schemas.conform(listing.chats, schemas.CHATS) for listing in listings])
    rows, new_keys = register(listed_all, registered, chunk_size)
    done = client.stats.minus(before)
    return Discovery(
        chats=schemas.conform(rows, schemas.CHATS),
        new_chunk_keys=new_keys,
        contacts=schemas.conform(
            pl.concat([listing.contacts for listing in listings], how="diagonal_relaxed"), schemas.CONTACTS
        ).unique(subset=["waha_session", "contact_id"], keep="last", maintain_order=True),
        rejects=schemas.conform(
            pl.concat([listing.rejects for listing in listings], how="diagonal_relaxed"), schemas.REJECTS
        ),
        stats={"seconds": time.perf_counter() - started, "requests": done.requests, "retries": done.retries},
        server=server,
    )


async def import_chunks(
    client: WahaClient,
    conn: psycopg.Connection,
    db_schema: str,
    chunk_keys: list[str],
    *,
    gap_seconds: int,
    full: bool = False,
    until: float | None = None,
    stream_min_chats: int = 100,
    spool_root: Path | None = None,
) -> ChunkBatch:
    """Fetch and assemble the chunks `chunk_keys` (one run): nothing is written here.

    On engines with an account-wide message stream (NOWEB, GOWS), whole histories come from that
    stream when it is worth reading the whole account: when this run, or with `spool_root` (shared
    by the runs of one sync or backfill) the account as a whole, needs the whole history of at least
    `stream_min_chats` chats and `STREAM_MIN_SHARE` of the session's chats. The stream is read once
    into a spool under `spool_root/<session>` and every run takes its chats from there.
    """
    started = time.perf_counter()
    until = default_until() if until is None else int(until)
    registry = reads.chats_in_chunks(conn, db_schema, chunk_keys)
    state = reads.chat_state(conn, db_schema, chunk_keys)
    planned = plan_fetch(registry, state, gap_seconds, full=full)
    fetched, contacts, rejects, fetch_stats = [], [], [], []
    covered_until: dict[str, int] = {}
    sessions: list[str] = planned["waha_session"].unique(maintain_order=True).to_list()
    # Every session's own id is asked while the engine is (kept per process), and while its
    # messages are fetched: it is needed only to normalize them.
    own_ids = {s: asyncio.ensure_future(client.own_id(s)) for s in sessions}
    try:
        streams = await _can_stream(client)
        needs = reads.whole_history_needs(conn, db_schema, full=full) if streams and sessions else {}
        for waha_session in sessions:
            session_chats = planned.filter(pl.col("waha_session") == waha_session)
            spool_dir = spool_root / waha_session if spool_root is not None else None
            # a spool written earlier (another run's, or the sync's warm-up) is always read
            spooled = open_spool(spool_dir) if spool_dir is not None else None
            whole_histories = session_chats.filter(pl.col("since").is_null()).height
            stream = (
                streams
                and spooled is None
                and _worth_streaming(
                    whole_histories, needs.get(waha_session), spool_dir is not None, stream_min_chats
                )
            )
            results, covered_until[waha_session] = await _fetch_session(
                client,
                waha_session,
                own_ids[waha_session],
                session_chats,
                until=until,
                stream=stream,
                spooled=spooled,
                spool_dir=spool_dir,
            )
            for result in results:
                fetched.append(result.messages)
                contacts.append(result.contacts)
                rejects.append(result.rejects)
                fetch_stats.append(result.stats)
    finally:
        for pending in own_ids.values():
            pending.cancel()
        await asyncio.gather(*own_ids.values(), return_exceptions=True)
    planned = planned.with_columns(
        pl.col("waha_session")
        .replace_strict(covered_until, default=until, return_dtype=pl.Int64)
        .alias("covered_until")
    )
    # Webhook events waiting for these chats are applied in the same transaction as the fetch.
    inbox = pending_events(conn, db_schema, registry.select("waha_session", "chat_id"))
    inbox_chats = pl.concat(
        [
            f.select("waha_session", "chat_id")
            for f in (inbox.messages, inbox.acks, inbox.edits, inbox.revokes)
        ]
    )
    affected = registry.join(
        pl.concat([planned.select("waha_session", "chat_id"), inbox_chats]).unique(),
        on=["waha_session", "chat_id"],
        how="semi",
    )
    stored = reads.messages_of_chats(conn, db_schema, affected.select("waha_session", "chat_id"))
    batch = assemble(
        chunk_keys,
        planned,
        affected,
        _concat(fetched, schemas.MESSAGES),
        stored,
        _concat(contacts, schemas.CONTACTS),
        _concat(rejects, schemas.REJECTS),
        gap_seconds,
        until,
        inbox,
    )
    batch.stats.update(
        chats_planned=planned.height,
        chats_registered=registry.height,
        messages_fetched=sum(f.height for f in fetched),
        messages_stored_before=stored.height,
        inbox_events=len(inbox.event_ids),
        inbox_messages=inbox.messages.height,
        waha_requests=sum(s.requests for s in fetch_stats),
        waha_retries=sum(s.retries for s in fetch_stats),
        fetch_seconds=sum(s.seconds for s in fetch_stats),
        seconds=time.perf_counter() - started,
    )
    return batch


async def _fetch_session(
    client: WahaClient,
    waha_session: str,
    own_id: asyncio.Future[str | None],
    chats: pl.DataFrame,
    *,
    until: int,
    stream: bool,
    spooled: Spool | None,
    spool_dir: Path | None,
) -> tuple[list[ChunkFetch], int]:
    """Fetch one session's planned `chats`: the whole histories from `spooled`, a complete spool
    (the stream's, or a sync's read-ahead of chat histories: those it holds) or, with `stream`, from
    the account stream (through a spool in `spool_dir`); the rest chat by chat. Returns the fetches
    and the bound they cover: `until`, or the end of a spool written earlier (then the chat-by-chat
    fetches stop there too)."""
    results: list[ChunkFetch] = []
    whole = chats.filter(pl.col("since").is_null())
    if not whole.is_empty():
        fetched: ChunkFetch | None = None
        held = whole
        if spooled is not None:  # the stream's spool, or a read-ahead of some chats' histories
            held = whole.filter(spooled.covers(whole.get_column("chat_id")))
            fetched = await read_spooled_histories(spooled, own_id, held)
        elif stream:  # None: the stream was refused after all
            fetched = await fetch_account_stream(
                client, waha_session, own_id, whole, until=until, spool_dir=spool_dir
            )
        if fetched is not None:
            results.append(fetched)
            chats = chats.join(held, on="chat_id", how="anti")
            until = int(fetched.stats.until)
    if not chats.is_empty():
        results.append(await fetch_chunk(client, waha_session, own_id, chats, until=until))
    return results, until


def _worth_streaming(
    run_needs: int, account_needs: tuple[int, int] | None, shared: bool, min_chats: int
) -> bool:
    """Whether to read a session's whole stream for the `run_needs` whole histories this run needs.

    `account_needs` is (whole histories the account needs, chats in the account). The stream (the
    whole account) pays off when the histories it serves are many and a good share of the account:
    this run's alone, or, when the spool is `shared` by the runs of a group, those every run of the
    group will need.
    """
    needed, total = account_needs or (run_needs, run_needs)
    served = needed if shared else run_needs
    return stream_pays_off(served, total, min_chats)


def stream_pays_off(histories: int, chats: int, min_chats: int) -> bool:
    """Whether reading a session's whole stream pays off to serve `histories` whole chat histories
    of its `chats`: at least `min_chats` of them, and `STREAM_MIN_SHARE` of the session."""
    return histories >= max(min_chats, STREAM_MIN_SHARE * chats)


DISCOVERY_ANSWER_AGE = 30.0
"""Discovery asks the server's version and engine, and lists a session, again unless this process
did within this many seconds (a sync's warm-up asks first: `wahaflow.orchestrate.warmup`)."""


async def _server_version(
    client: WahaClient, *, max_age: float = VERSION_TTL_SECONDS
) -> ServerVersion | None:
    """The server's version and engine, or None when it does not say."""
    try:
        return await client.server_version(max_age=max_age)
    except WahaError:
        return None


async def server_engine(client: WahaClient, *, max_age: float = VERSION_TTL_SECONDS) -> str | None:
    """The server's engine, upper case (None when it does not say or cannot be asked)."""
    server = await _server_version(client, max_age=max_age)
    if server is None:
        return None
    return (server.engine or "").upper() or None


async def _can_stream(client: WahaClient) -> bool:
    """Whether the server's engine serves `chats/all/messages` (unknown engine: no)."""
    return await server_engine(client) in STREAM_ENGINES


STREAM_MIN_SHARE = 0.2
"""Stream a session's messages only for runs that need at least this share of its chats."""


def _concat(frames: list[pl.DataFrame], schema: pl.Schema) -> pl.DataFrame:
    if not frames:
        return schemas.empty(schema)
    return pl.concat([schemas.conform(f, schema) for f in frames])


def register_listing(
    conn: psycopg.Connection, db_schema: str, listed: pl.DataFrame, chunk_size: int
) -> pl.DataFrame:
    """Merge listed chats into the registry now (new ones get a chunk); returns the new chats' rows."""
    registered = reads.registered_chats(conn, db_schema)
    rows, _ = register(schemas.conform(listed, schemas.CHATS), registered, chunk_size)
    with conn.transaction():
        write_all(conn, db_schema, [TableWrite("chats", rows, mode="merge", keep_existing_on_null=True)])
    return rows.join(registered.select("waha_session", "chat_id"), on=["waha_session", "chat_id"], how="anti")
