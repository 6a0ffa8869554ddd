"""One chunk run's work, without Dagster: plan the fetch, fetch, merge with what is stored, sessionize.

Data flows one way: stored state + WAHA -> frames -> `ChunkBatch`, which the warehouse writes in one
transaction. A first import of a chat fetches its whole history; later runs fetch from the start of
the chat's last stored session minus the session gap (design.md §5 rule 10), and chats whose listed
last activity is not newer than what is stored are not fetched at all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import polars as pl

from wahaflow import schemas
from wahaflow.sessions import derive_sessions
from wahaflow.warehouse.loader import TableWrite


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

    def writes(self) -> list[TableWrite]:
        """The table writes, in order, that store this batch (one transaction)."""
        return [
            TableWrite("chats", self.chats, mode="merge"),
            TableWrite("contacts", self.contacts, mode="merge", keep_existing_on_null=True),
            TableWrite("messages", self.messages, mode="merge"),
            TableWrite(
                "sessions",
                self.sessions,
                mode="replace",
                replace_scope=self.touched_chats,
            ),
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
    fetched: pl.DataFrame,
    stored: pl.DataFrame,
    contacts: pl.DataFrame,
    rejects: pl.DataFrame,
    gap_seconds: int,
) -> ChunkBatch:
    """Merge fetched messages into the stored ones of the same chats and re-derive their sessions.

    `planned` are the chats that were fetched (from `plan_fetch`); `fetched` and `stored` have the
    MESSAGES schema (`stored` = every stored message of the planned chats). A message present in
    both keeps the fetched version (acks and edits move forward). Sessions are re-derived for every
    planned chat over all its messages, so late messages extend or merge sessions (rule 5).
    """
    started = time.perf_counter()
    keys = ["waha_session", "chat_id"]
    chat_keys = planned.select(*keys, "chunk_key")
    combined = (
        pl.concat([stored, fetched])  # fetched last: `keep="last"` prefers it
        .unique(subset=["waha_session", "message_id"], keep="last")
        .drop("chunk_key")
        .join(chat_keys, on=keys, how="inner")
    )
    with_sessions, sessions = derive_sessions(combined, gap_seconds)
    synced = planned.with_columns(pl.col("last_message_at").alias("synced_until"))
    return ChunkBatch(
        chunk_keys=sorted(chunk_keys),
        messages=schemas.conform(with_sessions, schemas.MESSAGES),
        sessions=schemas.conform(sessions, schemas.SESSIONS),
        touched_chats=planned.select(keys),
        contacts=schemas.conform(contacts, schemas.CONTACTS).unique(
            subset=["waha_session", "contact_id"], keep="last"
        ),
        rejects=schemas.conform(rejects, schemas.REJECTS),
        chats=schemas.conform(synced, schemas.CHATS),
        stats={"sessionize_seconds": time.perf_counter() - started},
    )
