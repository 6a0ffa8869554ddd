"""Pure functions from WAHA's raw JSON to the frames of `wahaflow.schemas` (no I/O here).

Messages are parsed page by page straight from the response bytes into Polars (`pl.read_json` with an
explicit schema of just the fields we need); only a page that holds a malformed item is decoded item
by item, so the malformed items go to rejects and the rest of the page lands. All per-row rules
(design.md §5 rules 1, 2, 8) are Polars expressions:

- `chat_id` comes from the request path (the caller adds it), never from `from`;
- ids ending `@s.whatsapp.net` (and bare phone numbers) are written `@c.us`;
- `sent_at` is `timestamp` (unix seconds) as UTC;
- `sender_id` is the session's own id when `fromMe`; in groups (and broadcasts/channels) the
  `participant` (else `author`, else the participant suffix of the serialized id); else the chat id;
- NUL characters are removed from every text column (Postgres cannot hold them).

Chats and contacts lists are small (one item per chat/contact, not per message) and their shapes
differ per engine, so they are read item by item and then normalized with the same expressions.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import polars as pl

from wahaflow import schemas
from wahaflow.waha.errors import WahaBadResponse
from wahaflow.waha.ids import (
    STATUS_BROADCAST,
    is_direct_expr,
    is_group_expr,
    normalize_id,
    normalize_id_expr,
    serialized_id,
)

log = logging.getLogger(__name__)

# Timestamps are unix seconds; anything at or beyond this is not seconds (e.g. milliseconds).
MAX_TIMESTAMP = 100_000_000_000.0

# The fields of a WAMessage the import needs, as `pl.read_json` reads them (everything else is skipped).
RAW_MESSAGES = pl.Schema(
    {
        "id": pl.String,
        "timestamp": pl.Float64,
        "fromMe": pl.Boolean,
        "participant": pl.String,
        "author": pl.String,
        "body": pl.String,
        "hasMedia": pl.Boolean,
        "ack": pl.Float64,
        "_data": pl.Struct(
            {
                "notifyName": pl.String,  # WEBJS
                "pushName": pl.String,  # NOWEB
                "Info": pl.Struct({"PushName": pl.String}),  # GOWS
            }
        ),
        "from": pl.String,  # engine-dependent; the chat only on NOWEB/GOWS (read for `chats/all` only)
    }
)
"""One page of messages as parsed: the WAMessage fields the import needs, unnormalized. Every row
has a non-empty `id`, a `timestamp` in unix seconds and a `fromMe` (malformed items are rejected)."""

_ID_PARTICIPANT_RS = r"^(?:true|false)_[^_]+_[^_]+_(.+)$"


# --------------------------------------------------------------------------------------------------
# rejects


@dataclass(frozen=True)
class Reject:
    """A payload that could not be normalized: where it came from, why, and its JSON text."""

    source: str
    reason: str
    payload: str


def dump_payload(item: Any) -> str:
    """`item` as JSON text (lone surrogates escaped rather than failing)."""
    try:
        return orjson.dumps(item).decode()
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(item, ensure_ascii=True, default=str)


def reject(item: Any, *, source: str, reason: str) -> Reject:
    """A `Reject` of `item` (any JSON value) with `reason`."""
    return Reject(source=source, reason=reason, payload=dump_payload(item))


def reject_id(waha_session: str, source: str, payload: str) -> str:
    """Deterministic id of a reject: the same payload from the same place always gets the same id."""
    digest = hashlib.sha256(f"{waha_session}\n{source}\n{payload}".encode("utf-8", "replace"))
    return digest.hexdigest()


def rejects_frame(rejects: Iterable[Reject], *, waha_session: str) -> pl.DataFrame:
    """REJECTS rows for `rejects` (`chunk_key` null; duplicates collapsed by `reject_id`)."""
    rows = list(rejects)
    now = datetime.now(UTC)
    frame = pl.DataFrame(
        {
            "reject_id": [reject_id(waha_session, r.source, r.payload) for r in rows],
            "waha_session": [waha_session] * len(rows),
            "source": [r.source for r in rows],
            "reason": [r.reason for r in rows],
            "payload": [r.payload for r in rows],
            "rejected_at": [now] * len(rows),
        },
        schema={
            "reject_id": pl.String,
            "waha_session": pl.String,
            "source": pl.String,
            "reason": pl.String,
            "payload": pl.String,
            "rejected_at": schemas.UTC_TIME,
        },
    )
    return _strip_nul(schemas.conform(frame, schemas.REJECTS), exclude=("payload",)).unique(
        subset="reject_id", keep="first", maintain_order=True
    )


# --------------------------------------------------------------------------------------------------
# JSON helpers


def loads(content: bytes, *, source: str) -> Any:
    """Decode a response body; broken or truncated JSON is a (retried) `WahaBadResponse`."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        pass
    try:  # orjson refuses lone surrogates ("\ud800"), which JavaScript's JSON.stringify does emit
        return json.loads(content)
    except (ValueError, UnicodeDecodeError) as exc:
        size = len(content)
        raise WahaBadResponse(
            f"{source}: response is not valid JSON ({size} bytes; truncated?): {exc}", source=source
        ) from exc


def loads_array(content: bytes, *, source: str) -> list[Any]:
    """Decode a response body that must be a JSON array."""
    value = loads(content, source=source)
    if not isinstance(value, list):
        message = f"{source}: expected a JSON array, got {type(value).__name__}: {_preview(content)}"
        raise WahaBadResponse(message, source=source)
    return value


def loads_object(content: bytes, *, source: str) -> dict[str, Any]:
    """Decode a response body that must be a JSON object."""
    value = loads(content, source=source)
    if not isinstance(value, dict):
        message = f"{source}: expected a JSON object, got {type(value).__name__}: {_preview(content)}"
        raise WahaBadResponse(message, source=source)
    return value


def _preview(content: bytes, size: int = 120) -> str:
    text = content[:size].decode("utf-8", "replace")
    return text + ("…" if len(content) > size else "")


def _number(value: Any) -> float | None:
    """A JSON number (or numeric string, or protobuf Long `{low, high}`) as float; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if number == number and abs(number) != float("inf") else None
    if isinstance(value, dict) and isinstance(value.get("low"), int) and isinstance(value.get("high"), int):
        return float((value["high"] << 32) + (value["low"] & 0xFFFFFFFF))
    return None


def _text(value: Any) -> str | None:
    """A string field: lone surrogates dropped (Postgres cannot hold them); non-strings -> None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = value.encode("utf-8", "ignore").decode("utf-8")
        return value
    return None


def _strip_nul(frame: pl.DataFrame, exclude: Sequence[str] = ()) -> pl.DataFrame:
    """`frame` with NUL characters removed from every String column (except `exclude`)."""
    cols = [n for n, t in frame.schema.items() if t == pl.String and n not in exclude]
    if not cols:
        return frame
    return frame.with_columns(pl.col(c).str.replace_all("\x00", "", literal=True) for c in cols)


def _non_empty(text: pl.Expr) -> pl.Expr:
    """`text`, with "" as null (GOWS sends an empty `PushName` when it has none)."""
    return pl.when(text.str.len_bytes() > 0).then(text)


def _seconds_to_utc(seconds: pl.Expr) -> pl.Expr:
    """Unix seconds (Float64) -> UTC datetime (microseconds)."""
    return (seconds * 1_000_000).round().cast(pl.Int64).cast(schemas.UTC_TIME)


# --------------------------------------------------------------------------------------------------
# messages


@dataclass
class MessagePage:
    """One parsed page of `GET /api/{session}/chats/{chatId}/messages`.

    `frame` holds the page's valid messages in response order (schema `RAW_MESSAGES`), `rejects` its
    malformed items, `count` the number of items in the response (valid or not: a page is short when
    `count < limit`).
    """

    frame: pl.DataFrame
    rejects: list[Reject] = field(default_factory=list)
    count: int = 0


def parse_message_page(content: bytes, *, source: str) -> MessagePage:
    """Parse a messages response body. Not a JSON array -> `WahaBadResponse` (the request is retried).

    Fast path: the bytes go straight into Polars with `RAW_MESSAGES` as schema, checked with a few
    column reductions (no per-page query: small pages are the common case and normalization runs
    once per chunk). If that fails (an item of an unexpected shape, old builds' object ids) or a
    row does not validate, the page is decoded item by item, and only the bad items are rejected.
    """
    if content.lstrip()[:1] != b"[":
        loads_array(content, source=source)  # raises with the right message (bad JSON / not an array)
    try:
        frame = pl.read_json(io.BytesIO(content), schema=RAW_MESSAGES)
    except Exception:  # malformed item or broken JSON: sort it out item by item
        return _parse_items(loads_array(content, source=source), source=source)
    if frame.height and not _valid_page(frame):
        return _parse_items(loads_array(content, source=source), source=source)
    return MessagePage(frame=frame, count=frame.height)


def _valid_page(frame: pl.DataFrame) -> bool:
    """Every row has a non-empty id, a timestamp in unix seconds and a fromMe (cheap reductions)."""
    ids, stamps = frame.get_column("id"), frame.get_column("timestamp")
    return (
        ids.null_count() == 0
        and ids.min() != ""  # "" is the smallest string
        and stamps.null_count() == 0
        and 0 <= stamps.min() < MAX_TIMESTAMP  # type: ignore[operator]
        and stamps.max() < MAX_TIMESTAMP  # type: ignore[operator]
        and frame.get_column("fromMe").null_count() == 0
    )


def _parse_items(items: list[Any], *, source: str) -> MessagePage:
    """The slow path: validate and extract item by item (only for pages with a malformed item)."""
    columns: dict[str, list[Any]] = {name: [] for name in RAW_MESSAGES}
    rejects: list[Reject] = []
    for item in items:
        row, reason = _message_row(item)
        if row is None:
            rejects.append(reject(item, source=source, reason=reason))
            continue
        for name, value in zip(RAW_MESSAGES, row, strict=True):
            columns[name].append(value)
    frame = pl.DataFrame(columns, schema=RAW_MESSAGES, strict=False)
    return MessagePage(frame=frame, rejects=rejects, count=len(items))


def _message_row(item: Any) -> tuple[tuple[Any, ...] | None, str]:
    """One WAMessage as a `RAW_MESSAGES` row, or (None, reason)."""
    if not isinstance(item, dict):
        return None, f"message is not a JSON object (got {type(item).__name__})"
    message_id = _text(serialized_id(item.get("id")))
    if not message_id:
        return None, "message has no id (neither a string nor an object with _serialized)"
    raw_ts = item.get("timestamp")
    timestamp = _number(raw_ts)
    if timestamp is None:
        return None, f"message timestamp is missing or not a number: {raw_ts!r:.80}"
    if not 0 <= timestamp < MAX_TIMESTAMP:
        return None, f"message timestamp is not unix seconds: {raw_ts!r:.80}"
    from_me = item.get("fromMe")
    if not isinstance(from_me, bool):
        prefix = message_id.split("_", 1)[0]
        if prefix not in ("true", "false"):
            return None, f"message has no boolean fromMe: {from_me!r:.80}"
        from_me = prefix == "true"
    body = item.get("body")
    if isinstance(body, bool | int | float):
        body = json.dumps(body)
    elif body is not None and not isinstance(body, str):
        return None, f"message body is not text (got {type(body).__name__})"
    ack = _number(item.get("ack"))
    has_media = item.get("hasMedia") is True or bool(item.get("media")) or bool(item.get("mediaUrl"))
    data = item.get("_data")
    names: dict[str, Any] = {"notifyName": None, "pushName": None, "Info": None}
    if isinstance(data, dict):
        info = data.get("Info")
        for key, value in (
            ("notifyName", data.get("notifyName")),
            ("pushName", data.get("pushName")),
            ("Info", info.get("PushName") if isinstance(info, dict) else None),
        ):
            if isinstance(value, str):
                names[key] = {"PushName": _text(value)} if key == "Info" else _text(value)
    row = (
        message_id,
        timestamp,
        from_me,
        _text(serialized_id(item.get("participant"))),
        _text(serialized_id(item.get("author"))),
        _text(body),
        has_media,
        ack,
        names,
        _text(serialized_id(item.get("from"))),
    )
    return row, ""


def push_name_expr() -> pl.Expr:
    """The sender's display name carried in `_data` (WEBJS `notifyName`, NOWEB `pushName`, GOWS
    `Info.PushName`); empty names are null."""
    data = pl.col("_data")
    return pl.coalesce(
        _non_empty(data.struct.field("notifyName")),
        _non_empty(data.struct.field("pushName")),
        _non_empty(data.struct.field("Info").struct.field("PushName")),
    )


def normalize_ids(ids: pl.Series) -> pl.Series:
    """`normalize_id` over a Series, computed once per distinct value (ids repeat a lot)."""
    distinct = ids.unique().drop_nulls().to_frame("old")
    changed = distinct.with_columns(normalize_id_expr(pl.col("old")).alias("new")).filter(
        pl.col("old") != pl.col("new")
    )
    if changed.is_empty():
        return ids
    return ids.replace(changed.get_column("old"), changed.get_column("new"))


def normalize_messages(raw: pl.DataFrame, *, waha_session: str, me_id: str | None) -> pl.DataFrame:
    """MESSAGES rows for `raw` (schema `RAW_MESSAGES` plus `chat_id`, the id of the chat the messages
    were requested for, from the request path). `session_id` and `chunk_key` stay null.

    `me_id` is the session's own id (`GET /api/sessions/{session}` -> `me.id`); it is the sender of
    every `fromMe` message (null when unknown).
    """
    me = normalize_id(me_id)
    raw = raw.with_columns(normalize_ids(raw.get_column("chat_id")))
    chat = pl.col("chat_id")
    multi = is_group_expr(chat) | ~is_direct_expr(chat)  # groups, broadcasts, channels
    declared = pl.coalesce(_non_empty(pl.col("participant")), _non_empty(pl.col("author")))
    if raw.select((multi & ~pl.col("fromMe") & declared.is_null()).any()).item():
        # old builds without `participant`: the sender is the suffix of the serialized group id
        declared = pl.coalesce(declared, pl.col("id").str.extract(_ID_PARTICIPANT_RS, 1))
    frame = raw.select(
        pl.lit(waha_session, pl.String).alias("waha_session"),
        pl.col("id").str.replace_all("\x00", "", literal=True).alias("message_id"),
        chat.str.replace_all("\x00", "", literal=True),
        _seconds_to_utc(pl.col("timestamp")).alias("sent_at"),
        pl.col("fromMe").alias("from_me"),
        pl.when(pl.col("fromMe"))
        .then(pl.lit(me, pl.String))
        .when(multi)
        .then(declared.str.replace_all("\x00", "", literal=True))
        .alias("sender_id"),
        pl.col("body").str.replace_all("\x00", "", literal=True),
        pl.col("hasMedia").fill_null(False).alias("has_media"),
        pl.col("ack").cast(pl.Int16, strict=False),
        pl.lit(None, pl.String).alias("session_id"),
        pl.lit(None, pl.String).alias("chunk_key"),
    )
    frame = frame.with_columns(normalize_ids(frame.get_column("sender_id")))
    if frame.get_column("sender_id").null_count():  # 1:1 partners, groups without a participant
        frame = frame.with_columns(
            pl.when(pl.col("from_me"))
            .then(pl.col("sender_id"))
            .otherwise(pl.coalesce("sender_id", "chat_id"))
            .alias("sender_id")
        )
    return frame if frame.schema == schemas.MESSAGES else schemas.conform(frame, schemas.MESSAGES)


def contacts_from_messages(
    raw: pl.DataFrame,
    *,
    waha_session: str,
    me_id: str | None,
    chat_ids: Sequence[str] = (),
    messages: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """CONTACTS seen in messages: every 1:1 chat partner and every sender other than me, with the
    latest push name seen (`_data.notifyName` / `_data.pushName` / `_data.Info.PushName`).

    `raw` is as for `normalize_messages` (pass its result as `messages` to avoid computing it
    twice); `chat_ids` adds the partners of 1:1 chats that have no messages in `raw`. `name` stays
    null (that comes from the address book).
    """
    if messages is None:
        messages = normalize_messages(raw, waha_session=waha_session, me_id=me_id)
    seen = messages.select("chat_id", "sender_id", "from_me", "sent_at").with_columns(
        raw.select(push_name_expr().str.replace_all("\x00", "", literal=True)).to_series().alias("push_name")
    )
    senders = seen.filter(~pl.col("from_me") & pl.col("sender_id").is_not_null()).select(
        pl.col("sender_id").alias("contact_id"), "push_name", "sent_at"
    )
    partners = seen.filter(is_direct_expr(pl.col("chat_id"))).select(
        pl.col("chat_id").alias("contact_id"), pl.lit(None, pl.String).alias("push_name"), "sent_at"
    )
    listed = pl.DataFrame(
        {"contact_id": normalize_ids(pl.Series(list(chat_ids), dtype=pl.String))},
        schema={"contact_id": pl.String},
    ).select(
        "contact_id",
        pl.lit(None, pl.String).alias("push_name"),
        pl.lit(None, schemas.UTC_TIME).alias("sent_at"),
    )
    listed = listed.filter(is_direct_expr(pl.col("contact_id")))
    everyone = pl.concat([senders, partners, listed]).sort("sent_at", nulls_last=False)
    contacts = everyone.group_by("contact_id", maintain_order=True).agg(
        pl.col("push_name").drop_nulls().last().alias("push_name")
    )
    return schemas.conform(
        contacts.with_columns(pl.lit(waha_session).alias("waha_session")).sort("contact_id"), schemas.CONTACTS
    )


# --------------------------------------------------------------------------------------------------
# chats


@dataclass
class NormalizedChats:
    """CHATS rows from a chat listing, its rejects, and the chats deliberately not imported."""

    chats: pl.DataFrame
    rejects: list[Reject]
    skipped: list[str]


def normalize_chats(
    items: Sequence[Any], *, waha_session: str, source: str, include_status: bool = False
) -> NormalizedChats:
    """CHATS rows from `/api/{session}/chats` items (any engine) or `/chats/overview` ChatSummary items.

    - WEBJS: `id` object (`_serialized`), `name`, `isGroup`, `timestamp`;
    - NOWEB: `@s.whatsapp.net` ids, optional `name`, `conversationTimestamp`;
    - GOWS: `{id, name, conversationTimestamp}`;
    - ChatSummary: `id`, `name`, `_chat` (the raw engine chat), `lastMessage`.

    `waha_chat_id` is the id exactly as listed (it is used in request paths), `chat_id` the
    normalized id, `is_group` iff the id ends with `@g.us`, `last_message_at` the chat's last activity,
    `chunk_key` null (the chat registry assigns chunks).

    Skipped on purpose (returned in `skipped`, logged): `status@broadcast`, the status/stories feed.
    It is not a conversation (other people's 24-hour stories), WAHA's own `/chats/overview` excludes
    it, and its history is gone within a day; pass `include_status=True` to keep it. Broadcast lists
    and channels (`@newsletter`) are kept. Items without a usable id go to `rejects`. When two listed
    ids normalize to the same `chat_id` (e.g. `…@s.whatsapp.net` and `…@c.us`), the most recently
    active one is kept and the other is logged.
    """
    rows: dict[str, list[Any]] = {"waha_chat_id": [], "name": [], "ts": []}
    rejects: list[Reject] = []
    skipped: list[str] = []
    for item in items:
        if not isinstance(item, dict):
            reason = f"chat is not a JSON object ({type(item).__name__})"
            rejects.append(reject(item, source=source, reason=reason))
            continue
        raw_id = _text(serialized_id(item.get("id")))
        inner = item.get("_chat") if isinstance(item.get("_chat"), dict) else {}
        if not raw_id:
            raw_id = _text(serialized_id(inner.get("id")))
        if not raw_id:
            rejects.append(reject(item, source=source, reason="chat has no id"))
            continue
        if raw_id == STATUS_BROADCAST and not include_status:
            skipped.append(raw_id)
            continue
        rows["waha_chat_id"].append(raw_id)
        rows["name"].append(_chat_name(item, inner))
        rows["ts"].append(_chat_timestamp(item, inner))
    if skipped:
        log.info("%s: skipped %d status@broadcast chat(s) (stories, not conversations)", source, len(skipped))
    frame = pl.DataFrame(rows, schema={"waha_chat_id": pl.String, "name": pl.String, "ts": pl.Float64})
    chats = frame.select(
        pl.lit(waha_session, pl.String).alias("waha_session"),
        normalize_id_expr(pl.col("waha_chat_id")).alias("chat_id"),
        pl.col("waha_chat_id"),
        pl.col("name"),
        is_group_expr(normalize_id_expr(pl.col("waha_chat_id"))).alias("is_group"),
        pl.lit(None, pl.String).alias("chunk_key"),
        pl.when(pl.col("ts").is_between(0, MAX_TIMESTAMP, closed="none"))
        .then(_seconds_to_utc(pl.col("ts")))
        .alias("last_message_at"),
    )
    chats = _strip_nul(schemas.conform(chats, schemas.CHATS), exclude=("waha_chat_id",))
    deduped = (
        chats.with_row_index("_order")
        .sort("last_message_at", descending=True, nulls_last=True, maintain_order=True)
        .unique(subset="chat_id", keep="first", maintain_order=True)
        .sort("_order")
        .drop("_order")
    )
    if deduped.height < chats.height:
        dropped = chats.join(deduped, on="waha_chat_id", how="anti")["waha_chat_id"].to_list()
        log.warning("%s: listed ids that duplicate another chat after normalization: %s", source, dropped)
    return NormalizedChats(chats=deduped, rejects=rejects, skipped=skipped)


def _chat_name(item: dict[str, Any], inner: dict[str, Any]) -> str | None:
    if "_chat" in item and "name" in item:  # a ChatSummary: WAHA's own choice of name (or null)
        return _text(item["name"]) or None
    for candidate in (item.get("name"), inner.get("name"), inner.get("subject")):
        if isinstance(candidate, str) and candidate:
            return _text(candidate)
    meta = item.get("groupMetadata")
    if isinstance(meta, dict) and isinstance(meta.get("subject"), str):
        return _text(meta["subject"])
    return None


def _chat_timestamp(item: dict[str, Any], inner: dict[str, Any]) -> float | None:
    last = item.get("lastMessage") if isinstance(item.get("lastMessage"), dict) else {}
    for candidate in (
        inner.get("conversationTimestamp"),
        inner.get("timestamp"),
        item.get("conversationTimestamp"),
        item.get("timestamp"),
        last.get("timestamp"),
    ):
        number = _number(candidate)
        if number is not None and number > 0:
            return number
    return None


# --------------------------------------------------------------------------------------------------
# contacts


def normalize_contacts(
    items: Sequence[Any], *, waha_session: str, source: str
) -> tuple[pl.DataFrame, list[Reject]]:
    """CONTACTS rows from `/api/contacts/all` items (WEBJS `name`/`pushname`; NOWEB/GOWS `name`,
    `pushname` or `notify`). Items without an id go to rejects; one row per normalized id, the first
    non-null `name`/`push_name` winning."""
    rows: dict[str, list[Any]] = {"contact_id": [], "name": [], "push_name": []}
    rejects: list[Reject] = []
    for item in items:
        if not isinstance(item, dict):
            reason = f"contact is not a JSON object ({type(item).__name__})"
            rejects.append(reject(item, source=source, reason=reason))
            continue
        contact_id = _text(serialized_id(item.get("id")))
        if not contact_id:
            rejects.append(reject(item, source=source, reason="contact has no id"))
            continue
        names = (item.get("pushname"), item.get("notify"), item.get("pushName"))
        push = next((v for v in names if isinstance(v, str)), None)
        name = item.get("name")
        rows["contact_id"].append(contact_id)
        rows["name"].append(_text(name) if isinstance(name, str) else None)
        rows["push_name"].append(_text(push))
    frame = pl.DataFrame(rows, schema={"contact_id": pl.String, "name": pl.String, "push_name": pl.String})
    contacts = (
        frame.with_columns(normalize_id_expr(pl.col("contact_id")).alias("contact_id"))
        .group_by("contact_id", maintain_order=True)
        .agg(pl.col("name").drop_nulls().first(), pl.col("push_name").drop_nulls().first())
        .with_columns(pl.lit(waha_session).alias("waha_session"))
    )
    return _strip_nul(schemas.conform(contacts, schemas.CONTACTS)), rejects
