"""Conversation sessions: design.md §5 rules 3-5 and 10, as one vectorized Polars pass.

The rule: within one (`waha_session`, `chat_id`), messages are ordered by (`sent_at`, `message_id`);
the first message opens a session, and so does every message whose `sent_at` is MORE than the gap
after the previous message's (exactly the gap stays in the same session).

How it is computed, without `.over()` and without a Python loop over messages or sessions:

1. One sort puts the rows in (waha_session, chat_id, sent_at) order. Sorting 10M rows by string
   columns is slow, so the fast path packs a 64-bit stable hash of the chat (the top bits of
   xxh3_64), the time offset and the row number into one UInt128 and sorts that single column. A
   hash collision would interleave two chats, so the result is verified exactly: in the sorted
   order the chat id must change exactly where the hash changes. If not (with the 55 hash bits
   left by µs timestamps spanning years, about one chance in two million at 200k chats), the
   plain multi-column sort is used instead.
2. `new_session = first row of its chat | sent_at.diff() > gap`; `seq = new_session.cum_sum() - 1`
   numbers the sessions globally.
3. A group_by on the sorted `seq` gives start, end and counts. Ties on `sent_at` do not move a
   boundary (their diff is 0), they only decide which message is a session's first: the one with
   the smallest `message_id` among the rows at the session's first instant.
4. `session_id` is hashed once per session (not per message) and gathered back to the messages,
   which keep their input row order.

Session ids: the md5 hex digest of `f"{waha_session}|{chat_id}|{first_message_id}"`, the same as the
peer baselines' and Postgres' `md5(waha_session || '|' || chat_id || '|' || first_message_id)`, so
any run, any Polars version and plain SQL give the same id. It is computed by the `polars-hash`
plugin (stable hashes; Polars' own `Expr.hash` may change between versions and is not used for ids).

Incremental syncs (rule 10): fetch each active chat from `rederive_window_start`, then re-derive all
of that chat's sessions with `derive_sessions(merge_messages(stored, fetched), gap)` and replace the
chat's stored sessions (a late message may extend or merge sessions, which retires ids).
"""

from __future__ import annotations

import polars as pl
import polars_hash as plh

from wahaflow.schemas import SESSIONS, UTC_TIME

_US_PER_S = 1_000_000
_IDX = pl.get_index_type()
# Width of the chat hash in the packed sort key. Tests lower it to force collisions (and the fallback).
_MAX_HASH_BITS = 64
# Odd multiplier that mixes the waha_session hash into the chat hash when several accounts are present.
_MIX = 0x9E3779B97F4A7C15

_REQUIRED = ("waha_session", "message_id", "chat_id", "sent_at", "from_me")
_NOT_NULL = ("waha_session", "message_id", "chat_id", "sent_at")


def derive_sessions(messages: pl.DataFrame, gap_seconds: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split `messages` into conversation sessions (design.md §5 rules 3-5).

    `messages` has at least the MESSAGES columns used here (`waha_session`, `message_id`, `chat_id`,
    `sent_at`, `from_me`; `chunk_key` is carried when present), one row per message: de-duplicate
    first (see `merge_messages`). Returns `(messages, sessions)`: the input rows, in their input
    order and with their columns, with `session_id` filled; and one row per session with exactly the
    SESSIONS schema, in no particular row order. A null `from_me` counts as inbound.
    """
    if gap_seconds < 0:
        raise ValueError(f"gap_seconds must be >= 0, got {gap_seconds}")
    missing = [c for c in _REQUIRED if c not in messages.columns]
    if missing:
        raise ValueError(f"messages frame lacks column(s) {missing}")
    nulls = [c for c, n in messages.select(pl.col(_NOT_NULL).null_count()).row(0, named=True).items() if n]
    if nulls:
        raise ValueError(f"messages frame has nulls in key column(s) {nulls}")
    if messages.is_empty():
        return messages.with_columns(session_id=pl.lit(None, pl.String)), pl.DataFrame(schema=SESSIONS)

    order = _order_by_hash(messages)
    if order is None:
        order = _order_by_sort(messages)

    gap_us = gap_seconds * _US_PER_S
    order = (
        order.lazy()
        .with_columns(
            new_session=pl.col("new_chat") | (pl.col("t").diff() > gap_us),
            from_me=pl.lit(messages.get_column("from_me")).gather(pl.col("row")),
        )
        .with_columns(seq=(pl.col("new_session").cum_sum() - 1).cast(_IDX).set_sorted())
        .collect()
    )

    stats = (
        order.lazy()
        .group_by("seq", maintain_order=True)
        .agg(
            started_at=pl.col("t").first(),
            ended_at=pl.col("t").last(),
            message_count=pl.len().cast(pl.Int32),
            outbound_count=pl.col("from_me").sum().cast(pl.Int32),
        )
        .collect()
    )
    # The first message of each session: the smallest message_id among its rows at its first instant.
    first_row = (
        order.lazy()
        .filter(pl.col("t") == pl.col("t").filter("new_session").gather(pl.col("seq")))
        .select("seq", "row", mid=pl.lit(messages.get_column("message_id")).gather(pl.col("row")))
        .group_by("seq", maintain_order=True)
        .agg(pl.col("row").get(pl.col("mid").arg_min()))
        .collect()
        .get_column("row")
    )

    chunk_key = pl.col("chunk_key") if "chunk_key" in messages.columns else pl.lit(None)
    heads = messages.select(
        pl.col("waha_session", "chat_id"),
        first_message_id="message_id",
        chunk_key=chunk_key.cast(pl.String),
    )[first_row]
    sessions = (
        pl.concat([stats, heads], how="horizontal")
        .lazy()
        .select(
            "waha_session",
            session_id_expr("waha_session", "chat_id", "first_message_id").alias("session_id"),
            "chat_id",
            pl.col("started_at", "ended_at").cast(UTC_TIME),
            "message_count",
            inbound_count=pl.col("message_count") - pl.col("outbound_count"),
            outbound_count="outbound_count",
            chunk_key="chunk_key",
        )
        .collect(engine="streaming")  # the md5s are most of this step: spread them over the cores
        .rechunk()
    )

    seq_of_row = pl.zeros(messages.height, _IDX, eager=True).scatter(order["row"], order["seq"])
    return messages.with_columns(session_id=sessions["session_id"].gather(seq_of_row)), sessions


def session_id_expr(waha_session: str, chat_id: str, first_message_id: str) -> pl.Expr:
    """md5 hex of "waha_session|chat_id|first_message_id" (design.md §5 rule 4), from three columns."""
    return plh.concat_str([waha_session, chat_id, first_message_id], separator="|").nchash.md5()


def rederive_window_start(stored_sessions: pl.DataFrame, gap_seconds: int) -> pl.DataFrame:
    """Per (waha_session, chat_id): `fetch_from`, the inclusive lower bound in unix seconds of the
    messages to re-read for that chat (design.md §5 rule 10): the start of its last stored session
    minus the gap. A late message at or after it joins, extends or bridges the last session."""
    return (
        stored_sessions.group_by("waha_session", "chat_id")
        .agg(pl.col("started_at").max())
        .select(
            "waha_session",
            "chat_id",
            fetch_from=pl.col("started_at").dt.epoch("s") - gap_seconds,
        )
        .sort("waha_session", "chat_id")
    )


def merge_messages(stored: pl.DataFrame, fetched: pl.DataFrame) -> pl.DataFrame:
    """The union of a chat's stored and freshly fetched messages, one row per (waha_session,
    message_id), the fetched version winning; feed it to `derive_sessions` to re-derive the chats."""
    return pl.concat([stored, fetched], how="diagonal_relaxed").unique(
        subset=["waha_session", "message_id"], keep="last", maintain_order=True
    )


def _order_by_hash(messages: pl.DataFrame) -> pl.DataFrame | None:
    """Fast path of step 1: sort one packed UInt128 key (chat hash | time offset | row number).

    Returns `row` (input position), `t` (sent_at in µs) and `new_chat` (first row of a chat) in
    (waha_session, chat_id, sent_at) order, or None when two chats' hashes collide.
    """
    n = messages.height
    t_us = pl.col("sent_at").dt.epoch("us")
    t_min, t_max = messages.select(t_us.min(), t_us.max().alias("max")).row(0)
    t_bits = (t_max - t_min).bit_length()
    row_bits = max(1, (n - 1).bit_length())
    if t_bits > 63:  # a time span that Int64 µs cannot hold: leave it to the exact sort
        return None
    hash_bits = min(_MAX_HASH_BITS, 128 - t_bits - row_bits)  # >= 33: row numbers fit in 32 bits

    ws = messages.get_column("waha_session")
    one_account = bool((ws == ws[0]).all())
    chat_hash = plh.col("chat_id").nchash.xxh3_64()
    if not one_account:
        chat_hash = chat_hash ^ (plh.col("waha_session").nchash.xxh3_64() * pl.lit(_MIX, pl.UInt64))
    key = (
        (chat_hash // 2 ** (64 - hash_bits)).cast(pl.UInt128) * pl.lit(2 ** (t_bits + row_bits), pl.UInt128)
        + (t_us - t_min).cast(pl.UInt128) * pl.lit(2**row_bits, pl.UInt128)
        + pl.int_range(pl.len(), dtype=pl.UInt128)
    )
    packed = messages.lazy().select(key=key).collect().sort("key")
    time_and_row = pl.lit(2 ** (t_bits + row_bits), pl.UInt128)  # the key's chat hash starts at this bit
    order = (
        packed.lazy()
        .select(
            row=(pl.col("key") & pl.lit(2**row_bits - 1, pl.UInt128)).cast(_IDX),
            t=((pl.col("key") % time_and_row) // pl.lit(2**row_bits, pl.UInt128)).cast(pl.Int64) + t_min,
            new_chat=_changed(pl.col("key") // time_and_row),
        )
        # For the exact check that no two chats share a hash: the chat changes exactly where the hash does.
        .with_columns(
            chat_changed=_changed(pl.lit(messages.get_column("chat_id")).gather(pl.col("row")))
            | (pl.lit(False) if one_account else _changed(pl.lit(ws).gather(pl.col("row"))))
        )
        .collect()
    )
    if (order["chat_changed"] != order["new_chat"]).any():
        return None
    return order.drop("chat_changed")


def _order_by_sort(messages: pl.DataFrame) -> pl.DataFrame:
    """Exact (slower) step 1: the multi-column sort by the string keys themselves."""
    return (
        messages.lazy()
        .select(
            "waha_session",
            "chat_id",
            t=pl.col("sent_at").dt.epoch("us"),
            row=pl.int_range(pl.len(), dtype=_IDX),
        )
        .sort("waha_session", "chat_id", "t")
        .select(
            "row",
            "t",
            new_chat=_changed(pl.col("waha_session")) | _changed(pl.col("chat_id")),
        )
        .collect()
    )


def _changed(values: pl.Expr) -> pl.Expr:
    """True where `values` differs from the previous row, and on the first row."""
    return (values != values.shift()).fill_null(True)
