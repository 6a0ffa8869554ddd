"""Which rows a request selects, per engine: slicing precomputed per-chat orders, never scanning
the whole account (waha-api.md §2.2-§2.4, §3).

- NOWEB/GOWS messages: filter by time with binary search on the chat's sorted timestamps, then
  `fromMe`/`ack`, sort (`desc` default), then `offset`/`limit` (SQL semantics).
- WEBJS messages: the browser holds the newest messages of each chat; a request loads earlier
  batches of `webjs_batch` messages until `offset+limit` messages pass the filters, stopping as soon
  as the oldest one passing is older than `filter.timestamp.gte` (missing or 0 = +Infinity, i.e.
  after one batch). It then sorts newest first (ties in load order) and slices; `sortBy`/`sortOrder`
  are ignored. What was loaded stays loaded for later requests (WAHA's `getMessages`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from wahaflow.simulator.account import Account, ContactEntry


class EngineCrash(Exception):
    """An engine-side error WAHA answers with its 500 body."""


@dataclass
class MessageQuery:
    """Parsed parameters of a messages request."""

    limit: int | None = 10  # None or <= 0: no limit
    offset: int = 0
    desc: bool = True
    gte: float | None = None
    lte: float | None = None
    from_me: bool | None = None
    ack: int | None = None

    @property
    def stop(self) -> float:
        """`offset + limit` (infinite without a limit)."""
        if self.limit is None or self.limit <= 0:
            return math.inf
        return max(self.offset, 0) + self.limit

    def window(self, rows: np.ndarray) -> np.ndarray:
        start = max(self.offset, 0)
        return rows[start:] if math.isinf(self.stop) else rows[start : int(self.stop)]


@dataclass
class WebjsState:
    """What the WEBJS browser has loaded: per chat, the oldest loaded row."""

    oldest_loaded: dict[int, int] = field(default_factory=dict)

    def reset(self) -> None:
        self.oldest_loaded.clear()


def _filter(account: Account, rows: np.ndarray, q: MessageQuery) -> np.ndarray:
    if q.from_me is not None:
        rows = rows[account.col("from_me")[rows] == q.from_me]
    if q.ack is not None:
        rows = rows[account.col("ack")[rows] == q.ack]
    return rows


def _time_slice(ts: np.ndarray, rows: np.ndarray, q: MessageQuery) -> np.ndarray:
    t = ts[rows]
    lo = int(np.searchsorted(t, q.gte, "left")) if q.gte is not None else 0
    hi = int(np.searchsorted(t, q.lte, "right")) if q.lte is not None else len(rows)
    return rows[lo:hi]


def store_messages(account: Account, rows_asc: np.ndarray, q: MessageQuery) -> np.ndarray:
    """NOWEB/GOWS selection over rows in (timestamp, row) order."""
    rows = _filter(account, _time_slice(account.col("ts"), rows_asc, q), q)
    if q.desc:
        rows = rows[::-1]
    return q.window(rows)


def webjs_messages(
    account: Account, c: int, q: MessageQuery, state: WebjsState, batch: int, initial: int, crash: bool
) -> np.ndarray:
    """WEBJS selection for chat `c` (module docstring); updates `state`."""
    rows = account.chat_rows(c)
    n = len(rows)
    ts = account.col("ts")
    oldest = state.oldest_loaded.get(c)
    if oldest is None:
        start = max(n - initial, 0)
    else:
        hit = np.flatnonzero(rows == oldest)
        start = int(hit[0]) if len(hit) else int(np.searchsorted(ts[rows], ts[oldest], "left"))

    def passes(sub: np.ndarray) -> np.ndarray:
        sub = sub[(ts[sub] >= q.gte) if q.gte is not None else slice(None)]
        sub = sub[(ts[sub] <= q.lte) if q.lte is not None else slice(None)]
        return _filter(account, sub, q)

    msgs = passes(rows[start:])
    gte = q.gte or math.inf
    while len(msgs) < q.stop and start > 0:
        new_start = max(start - batch, 0)
        msgs = np.concatenate((passes(rows[new_start:start]), msgs))
        start = new_start
        if len(msgs) == 0:
            if crash:
                raise EngineCrash(
                    "Evaluation failed: TypeError: Cannot read properties of undefined (reading 't')"
                )
            continue
        if ts[msgs[0]] < gte:
            break
    if start < n:
        state.oldest_loaded[c] = int(rows[start])
    # newest first, ties in load (ascending) order; only the tail that can reach the window is sorted
    if not math.isinf(q.stop) and q.stop < len(msgs):
        stamps = ts[msgs]
        msgs = msgs[int(np.searchsorted(stamps, stamps[len(msgs) - int(q.stop)], "left")) :]
    order = np.argsort(-ts[msgs], kind="stable")
    return q.window(msgs[order])


def sorted_chats(account: Account, sort_by: str | None, desc: bool) -> list[int]:
    """Served chats (those with a message) in `/chats` order: store order without `sortBy`."""
    last = account.last_ts_array()
    served = [c for c in range(account.n_chats) if last[c] > 0 and len(account.chat_rows(c))]
    if sort_by == "conversationTimestamp":
        served.sort(key=lambda c: int(last[c]), reverse=desc)
    elif sort_by == "id":
        served.sort(key=account.engine_chat_id, reverse=desc)
    elif sort_by == "name":
        names = {c: _visible_name(account, c) for c in served}
        present = sorted((c for c in served if names[c] is not None), key=lambda c: names[c], reverse=desc)
        missing = [c for c in served if names[c] is None]
        served = present + missing if desc else missing + present
    return served


def _visible_name(account: Account, c: int) -> str | None:
    if account.engine == "NOWEB":
        return account.chats.subject[c]
    return account.chat_name(c)


def overview_chats(account: Account, ids: list[str] | None) -> list[int]:
    """Chats of `/chats/overview`, newest activity first, optionally restricted to `ids`."""
    last = account.last_ts_array()
    if ids:
        wanted = {account.chat_index(i) for i in ids}
        chats = [c for c in wanted if c is not None and len(account.chat_rows(c))]
    else:
        chats = [c for c in range(account.n_chats) if len(account.chat_rows(c))]
    chats.sort(key=lambda c: (-int(last[c]), c))
    return chats


def sorted_contacts(account: Account, sort_by: str | None, desc: bool) -> list[ContactEntry]:
    entries = list(account.contacts())
    if sort_by == "id":
        entries.sort(key=lambda e: e.contact_id, reverse=desc)
    elif sort_by == "name":
        present = sorted((e for e in entries if e.name is not None), key=lambda e: e.name or "", reverse=desc)
        missing = [e for e in entries if e.name is None]
        entries = present + missing if desc else missing + present
    return entries


def page(items: list, offset: int | None, limit: int | None) -> list:
    """`items[offset:offset+limit]`; no limit when `limit` is None or <= 0."""
    start = max(offset or 0, 0)
    if limit is None or limit <= 0:
        return items[start:]
    return items[start : start + limit]
