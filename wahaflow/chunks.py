"""The chat registry's rule: new chats get a stable chunk (= Dagster partition) and never move.

Chunk keys look like `default-00007`: the WAHA session's name (reduced to characters that are safe in
the Dagster UI and in partition ranges) and a zero-padded sequence number, so that sorting keys
sorts chunks in creation order. New chats of a session first fill that session's newest chunk up to
`chunk_size`, then open new chunks; within one discovery they are taken in `chat_id` order, so the
same chat list always gives the same assignment.
"""

from __future__ import annotations

import re

import polars as pl

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def chunk_prefix(waha_session: str) -> str:
    """The UI-safe prefix of a session's chunk keys (no commas, pipes, brackets, `...` or spaces)."""
    cleaned = _UNSAFE.sub("_", waha_session).replace("..", "_")
    return cleaned or "session"


def chunk_key(waha_session: str, index: int) -> str:
    """Key of the `index`-th chunk (0-based) of `waha_session`."""
    return f"{chunk_prefix(waha_session)}-{index:05d}"


def assign_chunks(chats: pl.DataFrame, registered: pl.DataFrame, chunk_size: int) -> pl.DataFrame:
    """Chunk keys for the chats in `chats` that are not in `registered` yet.

    `chats` has `waha_session` and `chat_id`; `registered` has `waha_session`, `chat_id` and
    `chunk_key` (the chats already assigned). Returns the new chats' rows of `chats` with `chunk_key`
    set, sorted by key then chat id. Registered chats are never returned: a chat never moves.
    """
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    new = (
        chats.join(registered.select("waha_session", "chat_id"), on=["waha_session", "chat_id"], how="anti")
        .unique(subset=["waha_session", "chat_id"], keep="first", maintain_order=True)
        .sort("waha_session", "chat_id")
    )
    if new.is_empty():
        return new.with_columns(pl.lit(None, pl.String).alias("chunk_key"))

    # Per session: the index of its newest chunk and how many chats that chunk holds already.
    newest = (
        registered.with_columns(
            pl.col("chunk_key").str.extract(r"-(\d+)$").cast(pl.Int64).alias("chunk_index")
        )
        .group_by("waha_session", "chunk_index")
        .agg(pl.len().alias("filled"))
        .sort("chunk_index")
        .group_by("waha_session")
        .agg(pl.col("chunk_index").last(), pl.col("filled").last())
    )
    placed = (
        new.join(newest, on="waha_session", how="left")
        .with_columns(
            # A session with no chunk yet starts at index 0 with nothing in it.
            pl.col("chunk_index").fill_null(0),
            pl.col("filled").fill_null(0),
            pl.int_range(pl.len()).over("waha_session").alias("rank"),
        )
        .with_columns(
            (pl.col("chunk_index") + (pl.col("filled") + pl.col("rank")) // chunk_size).alias("chunk_index")
        )
    )
    prefixes = {s: chunk_prefix(s) for s in placed["waha_session"].unique().to_list()}
    return (
        placed.with_columns(
            pl.format(
                "{}-{}",
                pl.col("waha_session").replace_strict(prefixes, return_dtype=pl.String),
                pl.col("chunk_index").cast(pl.String).str.zfill(5),
            ).alias("chunk_key")
        )
        .drop("chunk_index", "filled", "rank")
        .sort("chunk_key", "chat_id")
    )


def register(
    listed: pl.DataFrame, registered: pl.DataFrame, chunk_size: int
) -> tuple[pl.DataFrame, list[str]]:
    """The registry after a chat listing: (rows to merge into `chats`, chunk keys that are new).

    `listed` is what WAHA lists now (CHATS columns, `chunk_key` empty). Known chats keep their chunk;
    new chats are assigned by `assign_chunks`. The returned rows carry `chunk_key` for every listed
    chat; `synced_until` is left null (the merge keeps the stored value).
    """
    listed = listed.unique(subset=["waha_session", "chat_id"], keep="last", maintain_order=True)
    known = listed.drop("chunk_key").join(
        registered.select("waha_session", "chat_id", "chunk_key"), on=["waha_session", "chat_id"], how="inner"
    )
    new = assign_chunks(listed.drop("chunk_key"), registered, chunk_size)
    rows = pl.concat([known, new], how="diagonal_relaxed").select(listed.columns)
    new_keys = sorted(set(new["chunk_key"].to_list()) - set(registered["chunk_key"].to_list()))
    return rows.sort("chunk_key", "chat_id"), new_keys
