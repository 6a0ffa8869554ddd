"""The frames that flow WAHA -> client -> sessions -> warehouse, as explicit Polars schemas.

These are the data contract between the packages: the WAHA client produces frames with exactly
these schemas, the session rule adds `session_id` and builds `SESSIONS`, and the warehouse derives
its table DDL from them (plus the keys below). Column meanings: design.md §4.
"""

from __future__ import annotations

import polars as pl

UTC_TIME = pl.Datetime("us", "UTC")

CHATS = pl.Schema(
    {
        "waha_session": pl.String,
        "chat_id": pl.String,  # normalized: @s.whatsapp.net -> @c.us
        "waha_chat_id": pl.String,  # the id exactly as the engine lists it (used in request paths)
        "name": pl.String,
        "is_group": pl.Boolean,
        "chunk_key": pl.String,
        "last_message_at": UTC_TIME,  # last activity as the chat list reports it
        "synced_until": UTC_TIME,  # the `last_message_at` that the last successful fetch covered
    }
)

CONTACTS = pl.Schema(
    {
        "waha_session": pl.String,
        "contact_id": pl.String,
        "name": pl.String,
        "push_name": pl.String,
    }
)

MESSAGES = pl.Schema(
    {
        "waha_session": pl.String,
        "message_id": pl.String,  # WAHA's serialized id
        "chat_id": pl.String,  # from the request path, normalized (rule 1)
        "sent_at": UTC_TIME,  # `timestamp` seconds as UTC (rule 2)
        "from_me": pl.Boolean,
        "sender_id": pl.String,
        "body": pl.String,
        "has_media": pl.Boolean,
        "ack": pl.Int16,
        "session_id": pl.String,
        "chunk_key": pl.String,
        "edited_at": UTC_TIME,  # last edit applied (webhook `message.edited`); body is the new text
        "revoked_at": UTC_TIME,  # revoked ("deleted for everyone"): flagged, never deleted
    }
)

SESSIONS = pl.Schema(
    {
        "waha_session": pl.String,
        "session_id": pl.String,
        "chat_id": pl.String,
        "started_at": UTC_TIME,
        "ended_at": UTC_TIME,
        "message_count": pl.Int32,
        "inbound_count": pl.Int32,
        "outbound_count": pl.Int32,
        "chunk_key": pl.String,
    }
)

REJECTS = pl.Schema(
    {
        "reject_id": pl.String,  # deterministic hash of (source, payload): a retry never duplicates
        "waha_session": pl.String,
        "chunk_key": pl.String,
        "source": pl.String,  # where it came from, e.g. "GET /api/default/chats/123@c.us/messages"
        "reason": pl.String,
        "payload": pl.String,  # the raw JSON text
        "rejected_at": UTC_TIME,
    }
)

INBOX = pl.Schema(
    {
        "event_id": pl.String,  # envelope `id`, else "sha256:" + hex digest of the raw body (2024 builds)
        "waha_session": pl.String,  # envelope `session`
        "event": pl.String,  # envelope `event`, e.g. "message.any"
        "message_id": pl.String,  # the message the event carries or refers to (payload `id`), else null
        "chat_id": pl.String,  # normalized chat of the message, when derivable (wahaflow/webhook/inbox.py)
        "received_at": UTC_TIME,
        "payload": pl.String,  # the raw JSON body (NUL characters removed, rule 8)
        "processed_at": UTC_TIME,  # null = pending (not applied to the warehouse yet)
        "chunk_key": pl.String,  # the chat's chunk when it was registered at receipt, else null
    }
)

PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "chats": ("waha_session", "chat_id"),
    "contacts": ("waha_session", "contact_id"),
    "messages": ("waha_session", "message_id"),
    "sessions": ("waha_session", "session_id"),
    "rejects": ("reject_id",),
    "inbox": ("event_id",),
}

FRAME_SCHEMAS: dict[str, pl.Schema] = {
    "chats": CHATS,
    "contacts": CONTACTS,
    "messages": MESSAGES,
    "sessions": SESSIONS,
    "rejects": REJECTS,
    "inbox": INBOX,
}


def empty(schema: pl.Schema) -> pl.DataFrame:
    """An empty frame with `schema`."""
    return pl.DataFrame(schema=schema)


def conform(frame: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    """`frame` with exactly `schema`'s columns, in order and cast; missing columns become null."""
    return frame.select(
        [
            (pl.col(name) if name in frame.columns else pl.lit(None)).cast(dtype).alias(name)
            for name, dtype in schema.items()
        ]
    )
