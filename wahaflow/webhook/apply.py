"""Reading the webhook inbox back as frames, for a chunk run to apply inside its transaction.

    chats = pending_chats(conn, schema)                      # the inbox sensor: who has pending events
    batch = pending_events(conn, schema, chats_of_chunk)     # inside the chunk run's transaction
    ... upsert batch.messages / batch.contacts, apply batch.acks, batch.edits, batch.revokes,
    ... write batch.rejects, re-derive the sessions of the touched chats ...
    mark_processed(conn, schema, batch.event_ids)            # same transaction: all or nothing

Pure functions of a psycopg connection: no commits, no Dagster. Frames:

- `messages` (`schemas.MESSAGES`; `session_id`, `chunk_key` null): the `WAMessage` payloads of
  `message` / `message.any` events, normalized by the WAHA client's own normalizer
  (`wahaflow.waha.normalize`), one row per message id (the last one received wins). The chat is the
  inbox row's `chat_id`, derived at receipt by `inbox.chat_of`: NOWEB and GOWS put the chat in `from`
  for every message; WEBJS (and WPP) put the sender in `from` and the recipient in `to`, so the chat
  is `to` for own messages and `from` otherwise; when that field is missing, the chat part of the
  serialized id. `@s.whatsapp.net` ids are written `@c.us`. The sender of own messages is the
  envelope's `me.id` (the last one seen for the WAHA session).
- `contacts` (`schemas.CONTACTS`): the senders and 1:1 partners of those messages with their push
  names, as the history import derives them.
- `acks` (`ACKS`): `message.ack` events, the highest ack per message (acks only move forward; events
  arrive in any order). Apply with `ack = GREATEST(ack, new ack)` on (waha_session, message_id).
- `edits` (`EDITS`): `message.edited` events: the new `body` of the message whose bare key id is
  `editedMessageId`, the latest edit per message (by the edit's own timestamp).
- `revokes` (`REVOKES`): `message.revoked` events: the bare key id `revokedMessageId` (else the key of
  `before.id`). Revoked messages are flagged, never deleted.
- `rejects` (`schemas.REJECTS`): events that cannot be applied (no chat, no ack, no edited id,
  malformed message), with the reason (rule 8: nothing is lost silently).
- `event_ids`: every pending event read, applied or not (a `message.reaction` of the chat too):
  mark them all processed.

Edits and revokes name the message by its BARE key id (waha-api.md §4), not the serialized id: match
stored messages on (waha_session, chat_id, `split_part(message_id, '_', 3)`) — `key_id_sql` — or
with `key_id_expr` in Polars. Apply in this order: messages, acks, edits, revokes (an event may refer
to a message that arrives in the same batch).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import polars as pl
import psycopg
from psycopg import sql

from wahaflow import schemas
from wahaflow.waha.ids import serialized_id
from wahaflow.waha.normalize import (
    Reject,
    contacts_from_messages,
    normalize_messages,
    parse_message_page,
    rejects_frame,
)
from wahaflow.webhook.inbox import MESSAGE_EVENTS, key_id

SOURCE = "POST /webhooks/waha"
"""The `source` of rejects that come from the inbox."""

ACKS = pl.Schema(
    {
        "waha_session": pl.String,
        "chat_id": pl.String,
        "message_id": pl.String,  # the serialized id, as stored in `messages`
        "ack": pl.Int16,
        "acked_at": schemas.UTC_TIME,  # when the (last) ack event was received
    }
)

EDITS = pl.Schema(
    {
        "waha_session": pl.String,
        "chat_id": pl.String,
        "key_id": pl.String,  # bare key id of the edited message (`editedMessageId`)
        "body": pl.String,  # the new text (NUL removed)
        "edited_at": schemas.UTC_TIME,  # the edit's `timestamp`, else when it was received
    }
)

REVOKES = pl.Schema(
    {
        "waha_session": pl.String,
        "chat_id": pl.String,
        "key_id": pl.String,  # bare key id of the revoked message (`revokedMessageId`)
        "revoked_at": schemas.UTC_TIME,  # the revoke's `timestamp`, else when it was received
    }
)

PENDING_CHATS = pl.Schema(
    {
        "waha_session": pl.String,
        "chat_id": pl.String,  # null: applied events whose chat could not be derived (they become rejects)
        "chunk_key": pl.String,  # the chat's chunk as known at receipt (null: resolve from `chats`)
        "events": pl.Int64,
        "oldest_received_at": schemas.UTC_TIME,
    }
)

_ACK_NAMES = {"ERROR": -1, "PENDING": 0, "SERVER": 1, "DEVICE": 2, "READ": 3, "PLAYED": 4}


def key_id_expr(message_id: pl.Expr) -> pl.Expr:
    """The bare key id of serialized message ids (`{fromMe}_{chat}_{keyId}[_{participant}]`)."""
    return message_id.str.split("_").list.get(2, null_on_oob=True)


def key_id_sql(column: str = "message_id") -> sql.Composable:
    """SQL for the bare key id of a serialized message id column: `split_part(col, '_', 3)`."""
    return sql.SQL("split_part({}, '_', 3)").format(sql.Identifier(column))


@dataclass
class InboxBatch:
    """Pending inbox events decoded into frames (see the module docstring)."""

    event_ids: list[str] = field(default_factory=list)
    messages: pl.DataFrame = field(default_factory=lambda: schemas.empty(schemas.MESSAGES))
    contacts: pl.DataFrame = field(default_factory=lambda: schemas.empty(schemas.CONTACTS))
    acks: pl.DataFrame = field(default_factory=lambda: schemas.empty(ACKS))
    edits: pl.DataFrame = field(default_factory=lambda: schemas.empty(EDITS))
    revokes: pl.DataFrame = field(default_factory=lambda: schemas.empty(REVOKES))
    rejects: pl.DataFrame = field(default_factory=lambda: schemas.empty(schemas.REJECTS))

    @property
    def empty(self) -> bool:
        return not self.event_ids

    @property
    def has_updates(self) -> bool:
        """Whether any ack, edit or revoke is waiting (changes to messages, not new ones)."""
        return not (self.acks.is_empty() and self.edits.is_empty() and self.revokes.is_empty())


# --------------------------------------------------------------------------------------------------
# queries


def pending_chats(conn: psycopg.Connection, schema: str) -> pl.DataFrame:
    """(waha_session, chat_id) pairs with pending events (`PENDING_CHATS`), sorted."""
    query = sql.SQL(
        "SELECT waha_session, chat_id, max(chunk_key), count(*), min(received_at) FROM {}"
        " WHERE processed_at IS NULL GROUP BY waha_session, chat_id ORDER BY waha_session, chat_id"
    ).format(sql.Identifier(schema, "inbox"))
    rows = conn.execute(query).fetchall()
    return pl.DataFrame(rows, schema=PENDING_CHATS, orient="row")


def pending_events(conn: psycopg.Connection, schema: str, chats: pl.DataFrame) -> InboxBatch:
    """The pending events of the (waha_session, chat_id) pairs of `chats` (other columns ignored; a
    null `chat_id` selects that WAHA session's events without a chat), decoded into frames."""
    inbox = sql.Identifier(schema, "inbox")
    pairs = chats.select("waha_session", "chat_id").unique()
    known = pairs.filter(pl.col("chat_id").is_not_null())
    chatless = pairs.filter(pl.col("chat_id").is_null()).get_column("waha_session").to_list()
    columns = sql.SQL("i.event_id, i.waha_session, i.event, i.chat_id, i.received_at, i.payload")
    rows: list[tuple[Any, ...]] = []
    if known.height:
        query = sql.SQL(
            "SELECT {} FROM {} i JOIN unnest(%s::text[], %s::text[]) AS c(waha_session, chat_id)"
            " ON i.waha_session = c.waha_session AND i.chat_id = c.chat_id WHERE i.processed_at IS NULL"
        ).format(columns, inbox)
        params = [known.get_column("waha_session").to_list(), known.get_column("chat_id").to_list()]
        rows += conn.execute(query, params).fetchall()
    if chatless:
        query = sql.SQL(
            "SELECT {} FROM {} i WHERE i.processed_at IS NULL AND i.chat_id IS NULL"
            " AND i.waha_session = ANY(%s)"
        ).format(columns, inbox)
        rows += conn.execute(query, [chatless]).fetchall()
    rows.sort(key=lambda r: (r[4], r[0]))
    return decode_events(rows)


def mark_processed(conn: psycopg.Connection, schema: str, event_ids: Sequence[str]) -> int:
    """Mark events applied (in the caller's transaction); returns how many were pending."""
    if not event_ids:
        return 0
    query = sql.SQL(
        "UPDATE {} SET processed_at = now() WHERE event_id = ANY(%s) AND processed_at IS NULL"
    ).format(sql.Identifier(schema, "inbox"))
    return conn.execute(query, [list(event_ids)]).rowcount


# --------------------------------------------------------------------------------------------------
# decoding


def _loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)  # lone surrogates (stored as sent); the receiver checked it is JSON


def _ack(payload: dict[str, Any]) -> int | None:
    value = payload.get("ack")
    if isinstance(value, int | float) and not isinstance(value, bool) and -1 <= value <= 4:
        return int(value)
    name = payload.get("ackName")
    return _ACK_NAMES.get(name) if isinstance(name, str) else None


def _seconds(value: Any, fallback: datetime) -> datetime:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 100_000_000_000:
        return datetime.fromtimestamp(value, UTC)
    return fallback


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "ignore").decode("utf-8")
    return value


@dataclass
class _SessionMessages:
    items: list[bytes] = field(default_factory=list)
    chats: dict[str, str] = field(default_factory=dict)  # message id -> chat id
    me: str | None = None


def decode_events(rows: Sequence[tuple[Any, ...]]) -> InboxBatch:
    """Frames of inbox rows `(event_id, waha_session, event, chat_id, received_at, payload)`, given
    oldest first."""
    batch = InboxBatch(event_ids=[r[0] for r in rows])
    by_session: dict[str, _SessionMessages] = {}
    acks: list[tuple[Any, ...]] = []
    edits: list[tuple[Any, ...]] = []
    revokes: list[tuple[Any, ...]] = []
    rejects: dict[str, list[Reject]] = {}

    def reject(session: str, event_id: str, text: str, reason: str) -> None:
        rejects.setdefault(session, []).append(Reject(f"{SOURCE} {event_id}", reason, text))

    for event_id, session, event, chat_id, received_at, text in rows:
        envelope = _loads(text)
        payload = envelope.get("payload") if isinstance(envelope, dict) else None
        if not isinstance(payload, dict):
            reject(session, event_id, text, f"{event} event without a payload object")
            continue
        me = envelope.get("me")
        group = by_session.setdefault(session, _SessionMessages())
        if isinstance(me, dict) and isinstance(me.get("id"), str):
            group.me = me["id"]
        if event not in MESSAGE_EVENTS | {"message.ack", "message.edited", "message.revoked"}:
            continue  # not applied (reactions, group receipts, ...): only marked processed
        if chat_id is None:
            reject(session, event_id, text, f"{event} event: no chat id can be derived from the payload")
            continue
        if event in MESSAGE_EVENTS:
            mid = serialized_id(payload.get("id"))
            if mid:
                group.chats[mid] = chat_id
            group.items.append(_dump(payload))
        elif event == "message.ack":
            mid, ack = _text(serialized_id(payload.get("id"))), _ack(payload)
            if not mid or ack is None:
                reject(session, event_id, text, "message.ack event without a message id or an ack value")
                continue
            acks.append((session, chat_id, mid, ack, received_at))
        elif event == "message.edited":
            key = key_id(_text(serialized_id(payload.get("editedMessageId"))))
            if not key:
                reject(session, event_id, text, "message.edited event without editedMessageId")
                continue
            body = _text(payload.get("body"))
            edits.append((session, chat_id, key, body, _seconds(payload.get("timestamp"), received_at)))
        else:  # message.revoked
            before, after = payload.get("before"), payload.get("after")
            key = key_id(_text(serialized_id(payload.get("revokedMessageId"))))
            if not key and isinstance(before, dict):
                key = key_id(_text(serialized_id(before.get("id"))))
            if not key:
                reject(session, event_id, text, "message.revoked event without revokedMessageId")
                continue
            stamp = after.get("timestamp") if isinstance(after, dict) else None
            revokes.append((session, chat_id, key, _seconds(stamp, received_at)))

    messages, contacts = [], []
    for session, group in by_session.items():
        if not group.items:
            continue
        page = parse_message_page(b"[" + b",".join(group.items) + b"]", source=SOURCE)
        rejects.setdefault(session, []).extend(page.rejects)
        if not page.frame.height:
            continue
        mapping = pl.DataFrame(
            {"id": list(group.chats), "chat_id": list(group.chats.values())},
            schema={"id": pl.String, "chat_id": pl.String},
        )
        raw = page.frame.join(mapping, on="id", how="left", maintain_order="left")
        normalized = normalize_messages(raw, waha_session=session, me_id=group.me)
        messages.append(normalized)
        seen = contacts_from_messages(raw, waha_session=session, me_id=group.me, messages=normalized)
        contacts.append(seen)
    if messages:
        batch.messages = pl.concat(messages).unique(
            subset=["waha_session", "message_id"], keep="last", maintain_order=True
        )
    if contacts:
        batch.contacts = (
            pl.concat(contacts)
            .group_by("waha_session", "contact_id", maintain_order=True)
            .agg(pl.col("name").drop_nulls().last(), pl.col("push_name").drop_nulls().last())
            .select(schemas.CONTACTS.names())
        )
    if acks:
        batch.acks = (
            pl.DataFrame(acks, schema=ACKS, orient="row")
            .sort("ack", "acked_at", maintain_order=True)
            .unique(subset=["waha_session", "message_id"], keep="last", maintain_order=True)
            .sort("waha_session", "message_id")
        )
    if edits:
        batch.edits = (
            pl.DataFrame(edits, schema=EDITS, orient="row")
            .sort("edited_at", maintain_order=True)
            .unique(subset=["waha_session", "chat_id", "key_id"], keep="last", maintain_order=True)
        )
    if revokes:
        batch.revokes = (
            pl.DataFrame(revokes, schema=REVOKES, orient="row")
            .sort("revoked_at", maintain_order=True)
            .unique(subset=["waha_session", "chat_id", "key_id"], keep="first", maintain_order=True)
        )
    frames = [rejects_frame(items, waha_session=s) for s, items in rejects.items() if items]
    if frames:
        batch.rejects = pl.concat(frames)
    return batch


def _dump(payload: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(payload)
    except (TypeError, orjson.JSONEncodeError):  # lone surrogates: keep them escaped
        return json.dumps(payload, ensure_ascii=True).encode("ascii")
