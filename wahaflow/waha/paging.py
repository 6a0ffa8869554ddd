"""Message history paging that survives every engine: keyset by time, newest first (waha-api.md §3).

Offset paging loses or repeats messages (offset drift while messages arrive or get revoked,
same-second ties without a stable order, WEBJS loading history in batches and ignoring `sortOrder`,
WEBJS short pages before the end). Instead, for one chat:

1. the window is `[gte, lte]` with `lte` FROZEN at the start (`until`, default now - 1 s) and
   `gte` = `since` (inclusive) or 1 (with `gte >= 1` WEBJS keeps loading history until the page is
   full, so a short page really is the end);
2. each request is `sortBy=timestamp&sortOrder=desc&limit=<page_size>&offset=0&downloadMedia=false`;
3. a page shorter than `limit` ends the chat; otherwise the next page sets `lte` to the oldest
   timestamp seen in the page (inclusive: the boundary second is read again) and the results are
   de-duplicated by message id;
4. a full page whose messages all lie in the boundary second (more same-second messages than the
   limit) doubles the limit for that second instead of looping; the limit returns to `page_size`
   once past it;
5. the server's order is not trusted blindly: "oldest" is computed from the data, and a full page
   that is not newest-first or holds messages outside the window (a server ignoring sort or filters)
   switches the chat to reading the same window with a doubled limit until a page is short, then
   keeps only the messages inside the window;
6. WEBJS answers 500 "Cannot read properties of undefined (reading 't')" when no message it has
   loaded lies in the window (`WebjsClientCore.getMessages` reads `.t` of an empty list). History is
   loaded newest first, so with the frozen `lte` in the past this means the window is empty: the
   crash is treated as an empty page instead of failing the chat on every run.

A chat with fewer than `page_size` messages costs exactly one request.

A reader can be given its `Window` to read: its lower bound may then be raised while it reads, so
that other readers take the older part (the account stream is read by several readers at once:
`wahaflow.waha.spool`). `oldest_timestamp` asks where a history starts, to split it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import TYPE_CHECKING

import polars as pl

from wahaflow.waha.errors import WahaEmptyWindowCrash
from wahaflow.waha.normalize import RAW_MESSAGES, MessagePage, Reject, parse_message_page

if TYPE_CHECKING:
    from wahaflow.waha.client import WahaClient

log = logging.getLogger(__name__)


def default_until() -> int:
    """The default frozen upper bound: now minus one second (the current second may still fill up)."""
    return int(time.time()) - 1


def _param(value: float) -> int | float:
    """A bound as a query value: integral seconds without a trailing `.0`."""
    return int(value) if float(value).is_integer() else value


@dataclass
class ChatMessages:
    """One chat's pages (frames of schema `RAW_MESSAGES`), its malformed items, the pages requested
    and the HTTP requests made (retries included). `raw` is the chat's messages within the window,
    de-duplicated by id; `fetch_chunk` reads `frames` directly and de-duplicates once per chunk."""

    frames: list[pl.DataFrame] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    pages: int = 0
    requests: int = 0
    retries: int = 0
    since: float | None = None
    until: float = 0
    trusted: bool = True  # False: the server ignored filters or order; `frames` may hold extra rows

    @cached_property
    def raw(self) -> pl.DataFrame:
        """The chat's messages with `since <= timestamp <= until`, one row per id."""
        if not self.frames:
            return pl.DataFrame(schema=RAW_MESSAGES)
        frame = pl.concat(self.frames, how="vertical") if len(self.frames) > 1 else self.frames[0]
        return window(frame, self.since, self.until).unique(subset="id", keep="last", maintain_order=True)


@dataclass
class Window:
    """The part `[low, high]` (unix seconds, both inclusive) of a history a reader has yet to read,
    newest first: `high` moves down as pages arrive, and `low` may be raised meanwhile by whoever
    hands the older part to another reader. `more` is set once a page comes back full."""

    low: float
    high: float
    more: asyncio.Event = field(default_factory=asyncio.Event, repr=False)


def window(frame: pl.DataFrame, since: float | None, until: float) -> pl.DataFrame:
    """The rows of `frame` with `since <= timestamp <= until`."""
    inside = pl.col("timestamp") <= float(until)
    if since is not None:
        inside &= pl.col("timestamp") >= float(since)
    return frame.filter(inside)


async def fetch_chat_messages(
    client: WahaClient,
    session: str,
    chat_id: str,
    *,
    since: float | None = None,
    until: float | None = None,
    page_size: int | None = None,
    on_page: Callable[[pl.DataFrame], None] | None = None,
    part: Window | None = None,
) -> ChatMessages:
    """Every message of `chat_id` (the id as listed, used in the path) with `since <= timestamp <=
    until` (unix seconds, both inclusive; `until` defaults to now - 1 s, frozen for the whole fetch).

    With `on_page`, each non-empty page goes to it as it arrives instead of into `frames` (the
    consumer then applies the window and de-duplicates: boundary seconds are read twice). With
    `part`, the reader reads that window instead of `since`/`until`, as it shrinks (see `Window`);
    a page asked before its `low` was raised may reach below it."""
    from wahaflow.waha.client import CallStats

    page_size = page_size or client.page_size
    until = default_until() if until is None else until
    if part is None:
        part = Window(low=max(1.0, float(since)) if since is not None else 1.0, high=float(until))
    else:
        since, until = part.low, part.high
    result = ChatMessages(since=since, until=until)

    path = client.path("api", session, "chats", chat_id, "messages")
    source = f"GET /api/{session}/chats/{chat_id}/messages"
    parse = partial(parse_message_page, source=source)
    call = CallStats()
    limit = page_size
    while part.low <= part.high:
        low, high = part.low, part.high
        params = _history_params("desc", limit, low, high)
        try:
            page = await client.get(path, params, parse=parse, source=source, call=call)
        except WahaEmptyWindowCrash:
            # WEBJS found nothing in [gte, lte] among what it loaded (module docstring, point 6)
            log.info("%s: WEBJS reports an empty window [%s, %s]", source, _param(low), _param(high))
            page = MessagePage(frame=pl.DataFrame(schema=RAW_MESSAGES), count=0)
        result.pages += 1
        if page.frame.height:
            if on_page is None:
                result.frames.append(page.frame)
            else:
                on_page(page.frame)
        result.rejects.extend(page.rejects)
        if page.count < limit:
            break  # short page: nothing older in the window
        part.more.set()
        stamps = page.frame.get_column("timestamp")
        if result.trusted and not _window_and_order_honoured(stamps, low, high):
            result.trusted = False
            log.warning(
                "%s: the server ignores the timestamp filters or the newest-first order; "
                "reading the window [%s, %s] with a growing limit instead",
                source,
                _param(low),
                _param(high),
            )
        oldest = stamps.min()
        if not result.trusted or oldest is None or oldest >= high:  # type: ignore[operator]
            limit *= 2  # a full page in one second (or an untrusted server): widen, don't loop
            continue
        part.high = float(oldest)  # type: ignore[arg-type]
        limit = page_size
    result.requests = call.requests
    result.retries = call.retries
    return result


async def oldest_timestamp(client: WahaClient, session: str, chat_id: str, *, until: float) -> float | None:
    """The timestamp of the oldest message of `chat_id` at or before `until` (one request of one
    message, oldest first), or None when there is none. A server that ignores `sortOrder` answers
    with a newer one: then the answer is only too late, never wrong for a split."""
    source = f"GET /api/{session}/chats/{chat_id}/messages"
    page = await client.get(
        client.path("api", session, "chats", chat_id, "messages"),
        _history_params("asc", 1, 1, until),
        parse=partial(parse_message_page, source=source),
        source=source,
    )
    oldest = page.frame.get_column("timestamp").min()
    return None if oldest is None else float(oldest)  # type: ignore[arg-type]


def _history_params(order: str, limit: int, low: float, high: float) -> dict[str, str | int | float]:
    """The query of one history page: `limit` messages with `low <= timestamp <= high`, by time in
    `order` ("desc": newest first), without media."""
    return {
        "sortBy": "timestamp",
        "sortOrder": order,
        "limit": limit,
        "offset": 0,
        "downloadMedia": "false",
        "filter.timestamp.gte": _param(low),
        "filter.timestamp.lte": _param(high),
    }


def _window_and_order_honoured(stamps: pl.Series, low: float, high: float) -> bool:
    """True if every timestamp lies in `[low, high]` and the page is newest-first (ties allowed)."""
    if stamps.is_empty():
        return True
    return bool(
        stamps.min() >= low  # type: ignore[operator]
        and stamps.max() <= high  # type: ignore[operator]
        and stamps.is_sorted(descending=True)
    )
