"""The synthetic WhatsApp account the simulator serves, its mutations and its ground truth.

`Account(AccountSpec(...))` generates the data (see `generate.py` for its shape). The HTTP app reads
it through the query helpers here; tests mutate it (`add_messages`, `add_chat`, `edit_message`,
`revoke_message`, `set_ack`) while the server runs in another thread, so every read and write takes
`account.lock`.

Ground truth (`ground_truth_messages`, `ground_truth_chats`, `ground_truth_contacts`) is what a
correct import of everything the simulator currently serves must contain. The WAHA client's
normalization must give exactly these values:

- `chat_id`: the chat's id as in the request path, normalized: users `<digits>@c.us` (NOWEB's
  `@s.whatsapp.net` written as `@c.us`), privacy ids `<digits>@lid`, groups `…@g.us`.
- `message_id`: WAHA's serialized `id`, verbatim: `{fromMe}_{chat_id}_{keyId}` plus
  `_{participant}` for every group message (own ones carry the session's own id).
- `sent_at`: `timestamp` (unix seconds) as a UTC datetime.
- `from_me`: `fromMe`.
- `sender_id`: the session's own id (`me`, `@c.us`) when `from_me`; else, in groups, the message's
  `participant` (`@s.whatsapp.net` written as `@c.us`, `@lid` kept as `@lid`); else the chat id.
- `body`: `body` verbatim except that NUL characters are removed (design.md §5 rule 8). A media
  message without caption has a null body on NOWEB/GOWS and `""` on WEBJS (whatsapp-web.js
  behaviour); both are kept as served.
- `has_media`: `hasMedia`; `ack`: `ack` (null stays null; GOWS reports ERROR as null).
- chats: `name` is the `/chats/overview` `name` (group subject; for 1:1 the saved contact name,
  else the push name, else null), `is_group` is "id ends with `@g.us`", `last_message_at` is the
  newest message's `sent_at`.
- contacts: one row per entry of `/api/contacts/all` (`contact_id` = its `id`, `name` = `name`,
  `push_name` = `pushname`; absent fields are null). NOWEB lists a person known by phone number and
  LID twice (a `@c.us` entry and a `@lid` entry), as real NOWEB stores do.

Revoked messages disappear from what is served (NOWEB deletes them) and from the ground truth unless
`include_revoked=True`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import polars as pl

from wahaflow.schemas import CHATS, CONTACTS, MESSAGES
from wahaflow.simulator import generate as gen
from wahaflow.simulator.jids import C_US, LID, to_c_us, to_s_whatsapp_net

Engine = Literal["WEBJS", "NOWEB", "GOWS"]
ENGINES: tuple[Engine, ...] = ("WEBJS", "NOWEB", "GOWS")

PRESETS: dict[str, tuple[int, int]] = {
    "seed": (1_172, 5_700),
    "big": (10_000, 50_000),
    "huge": (20_000, 1_000_000),
}
"""Preset name -> (chats, messages)."""

GROUND_TRUTH_MESSAGE_COLUMNS = (
    "waha_session",
    "message_id",
    "chat_id",
    "sent_at",
    "from_me",
    "sender_id",
    "body",
    "has_media",
    "ack",
)


@dataclass(frozen=True)
class AccountSpec:
    """What to generate: the seed, the size, the engine whose shapes are served, the WAHA session."""

    seed: int = 42
    n_chats: int = 60
    n_messages: int = 400
    engine: Engine = "NOWEB"
    waha_session: str = "default"
    me: str = "14155550100@c.us"
    me_push_name: str = "Acme Support"
    me_lid: str = "100200300400500@lid"

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, not {self.engine!r}")
        if not self.me.endswith(C_US):
            raise ValueError("me must be a `@c.us` id")

    @classmethod
    def preset(cls, name: str, **overrides: object) -> AccountSpec:
        """The spec of preset `name` (`seed`, `big`, `huge`), with field overrides."""
        n_chats, n_messages = PRESETS[name]
        return replace(cls(n_chats=n_chats, n_messages=n_messages), **overrides)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ContactEntry:
    """One entry of `/api/contacts/all` (engine-specific set; see module docstring)."""

    contact_id: str
    person: int
    lid: str | None  # the person's `@lid` id shown on a NOWEB phone-number entry
    name: str | None
    push_name: str | None


class _Growable:
    """Message columns with spare capacity, so appends are amortized O(1)."""

    def __init__(self, m: gen.Messages) -> None:
        self.n = len(m.ts)
        self.cols: dict[str, np.ndarray] = {
            "chat": m.chat,
            "ts": m.ts,
            "from_me": m.from_me,
            "sender": m.sender,
            "body": m.body,
            "media": m.media,
            "ack": m.ack,
            "key": m.key,
            "alive": np.ones(self.n, dtype=bool),
        }

    def append(self, values: dict[str, np.ndarray]) -> np.ndarray:
        k = len(values["ts"])
        need = self.n + k
        cap = len(self.cols["ts"])
        if need > cap:
            new_cap = max(need, int(cap * 1.5) + 64)
            for name, col in self.cols.items():
                grown = np.zeros(new_cap, dtype=col.dtype)
                grown[: self.n] = col[: self.n]
                self.cols[name] = grown
        for name, col in self.cols.items():
            col[self.n : need] = values.get(name, True)
        rows = np.arange(self.n, need)
        self.n = need
        return rows

    def __getitem__(self, name: str) -> np.ndarray:
        return self.cols[name][: self.n]


class Account:
    """A generated account plus thread-safe mutations, lookups and ground truth."""

    def __init__(self, spec: AccountSpec) -> None:
        self.spec = spec
        self.lock = threading.RLock()
        self.version = 0  # bumped by every mutation
        g = gen.generate(spec.seed, spec.n_chats, spec.n_messages, spec.engine, spec.me.split("@")[0])
        self.people = g.people
        self.chats = g.chats
        self.bodies = g.bodies
        self._regular_bodies = g.bodies.index(gen.corpus.NUL_BODIES[0])
        self._m = _Growable(g.messages)
        self._key_counter = spec.n_messages
        self._mut_rng = np.random.default_rng([spec.seed, 0x5EED])
        bounds = np.concatenate(([0], np.cumsum(g.chat_sizes)))
        all_rows = np.arange(spec.n_messages, dtype=np.int64)
        self._order: list[np.ndarray] = [all_rows[bounds[c] : bounds[c + 1]] for c in range(spec.n_chats)]
        self._last_ts = g.messages.ts[bounds[1:] - 1].copy()
        self._all_order: tuple[int, np.ndarray] | None = None
        self._lookup: dict[str, int] = {}
        for c, cid in enumerate(self.chats.chat_id):
            self._index_chat(c, cid)
        self._contacts: list[ContactEntry] | None = None
        self._listeners: list[Callable[[str, list[str]], None]] = []

    def subscribe(self, listener: Callable[[str, list[str]], None]) -> None:
        """Call `listener(event, message_ids)` after every mutation, with WAHA event names:
        `message.any` (new messages), `message.edited`, `message.revoked`, `message.ack`.
        This is the seam for a webhook emitter; the simulator itself sends no events yet."""
        self._listeners.append(listener)

    def _emit(self, event: str, message_ids: list[str]) -> None:
        for listener in self._listeners:
            listener(event, message_ids)

    # ---------------------------------------------------------------- basic facts

    @property
    def engine(self) -> Engine:
        return self.spec.engine

    @property
    def waha_session(self) -> str:
        return self.spec.waha_session

    @property
    def me(self) -> str:
        return self.spec.me

    @property
    def n_chats(self) -> int:
        return len(self.chats.chat_id)

    @property
    def n_messages(self) -> int:
        """Messages currently served (revoked ones excluded)."""
        with self.lock:
            return int(self._m["alive"].sum())

    def col(self, name: str) -> np.ndarray:
        """A message column (`chat`, `ts`, `from_me`, `sender`, `body`, `media`, `ack`, `key`,
        `alive`), indexed by row. Call under `lock`."""
        return self._m[name]

    # ---------------------------------------------------------------- chats

    def _index_chat(self, c: int, cid: str) -> None:
        self._lookup[cid] = c
        if cid.endswith(C_US):
            self._lookup[to_s_whatsapp_net(cid)] = c
            self._lookup[cid.split("@")[0]] = c

    def chat_index(self, chat_id: str) -> int | None:
        """Index of the chat named `chat_id` in any accepted form (`@c.us`, `@s.whatsapp.net`,
        `@lid`, `@g.us`, bare phone number), or None."""
        return self._lookup.get(chat_id)

    def engine_chat_id(self, c: int) -> str:
        """The chat's id as the engine lists it in `/chats` (NOWEB: users as `@s.whatsapp.net`)."""
        cid = self.chats.chat_id[c]
        return to_s_whatsapp_net(cid) if self.engine == "NOWEB" else cid

    def chat_rows(self, c: int) -> np.ndarray:
        """Rows of chat `c` in (timestamp, row) order, oldest first. Call under `lock`."""
        return self._order[c]

    def chat_last_ts(self, c: int) -> int:
        """Timestamp of the chat's newest message."""
        return int(self._last_ts[c])

    def last_ts_array(self) -> np.ndarray:
        """Newest message timestamp per chat. Call under `lock`."""
        return self._last_ts

    def all_rows(self) -> np.ndarray:
        """Every served row in (timestamp, row) order (cached until the next mutation)."""
        with self.lock:
            if self._all_order is None or self._all_order[0] != self.version:
                alive = np.flatnonzero(self._m["alive"])
                ts = self._m["ts"][alive]
                self._all_order = (self.version, alive[np.argsort(ts, kind="stable")])
            return self._all_order[1]

    def chat_name(self, c: int) -> str | None:
        """The `/chats/overview` name: group subject, else contact name, else push name, else None."""
        if self.chats.is_group[c]:
            return self.chats.subject[c]
        p = int(self.chats.partner[c])
        return self.people.name[p] or self.people.push[p]

    def group_members(self, c: int) -> np.ndarray:
        """Person indexes of group `c`'s participants (the session itself excluded)."""
        return self.chats.members[self.chats.members_off[c] : self.chats.members_off[c + 1]]

    # ---------------------------------------------------------------- messages

    def participant(self, row: int) -> str | None:
        """The group participant id (`@c.us` or `@lid`) of a row; None outside groups."""
        c = int(self._m["chat"][row])
        if not self.chats.is_group[c]:
            return None
        if self._m["from_me"][row]:
            return self.me
        return self.people.pid[int(self._m["sender"][row])]

    def message_id(self, row: int) -> str:
        """WAHA's serialized id of a row."""
        c = int(self._m["chat"][row])
        fm = "true" if self._m["from_me"][row] else "false"
        mid = f"{fm}_{self.chats.chat_id[c]}_{self._m['key'][row].decode()}"
        participant = self.participant(row)
        return f"{mid}_{participant}" if participant else mid

    def find_message(self, message_id: str, chat: int | None = None) -> int | None:
        """Row of a served message given its serialized id (or, on NOWEB/GOWS, its bare key id);
        `chat` restricts the search to one chat. None when absent."""
        with self.lock:
            parts = message_id.split("_")
            full = len(parts) >= 3 and parts[0] in ("true", "false")
            key = parts[2] if full else message_id
            if full:
                c = self.chat_index(parts[1])
                if c is None or (chat is not None and c != chat):
                    return None
                rows = self._order[c]
            elif self.engine == "WEBJS":
                return None
            else:
                rows = self._order[chat] if chat is not None else self.all_rows()
            hits = rows[self._m["key"][rows] == key.encode()]
            for row in hits.tolist():
                if not full or self.message_id(row) == message_id:
                    return int(row)
            return None

    def _row_of(self, message_id: str) -> int:
        row = self.find_message(message_id)
        if row is None:
            raise KeyError(f"no served message with id {message_id!r}")
        return row

    # ---------------------------------------------------------------- mutations

    def _touch(self, chats: Sequence[int]) -> None:
        ts, alive = self._m["ts"], self._m["alive"]
        for c in set(chats):
            rows = self._order[c]
            rows = rows[alive[rows]]
            self._order[c] = rows[np.lexsort((rows, ts[rows]))]
            self._last_ts[c] = ts[self._order[c][-1]] if len(self._order[c]) else 0
        self.version += 1

    def add_messages(
        self,
        n: int,
        *,
        chat_ids: Sequence[str] | None = None,
        at: int | float | datetime | Sequence[int] | None = None,
        from_me: bool | None = None,
    ) -> pl.DataFrame:
        """Append `n` new messages and return their ground-truth rows.

        Message `i` goes to `chat_ids[i % len(chat_ids)]` (any accepted id form), else to a random
        chat. Its timestamp is `at` (unix seconds, a datetime, or one value per message), default the
        current wall-clock second; pass an older `at` to plant a late message inside history.
        `from_me` forces the direction (default: random).
        """
        if n <= 0:
            return self._frame(np.arange(0))
        with self.lock:
            rng = self._mut_rng
            if chat_ids:
                idx = [self.chat_index(cid) for cid in chat_ids]
                if any(c is None for c in idx):
                    raise KeyError(f"unknown chat in {chat_ids!r}")
                chats = np.array([idx[i % len(idx)] for i in range(n)], dtype=np.int32)
            else:
                chats = rng.integers(0, self.n_chats, n).astype(np.int32)
            ts = _timestamps(at, n)
            fm = rng.random(n) < 0.3 if from_me is None else np.full(n, from_me)
            sender = np.full(n, -1, dtype=np.int32)
            for i, c in enumerate(chats.tolist()):
                members = self.group_members(c)
                if self.chats.is_group[c] and not fm[i] and len(members):
                    sender[i] = members[int(rng.integers(0, len(members)))]
            fm |= (sender < 0) & self.chats.is_group[chats]  # a memberless group: only own messages
            media = np.where(rng.random(n) < 0.1, 1, 0).astype(np.int8)
            body = rng.integers(0, self._regular_bodies, n).astype(np.int32)
            body[media > 0] = -1
            ack = gen.draw_acks(rng.random(n), fm, self.engine)
            devices = rng.integers(0, 4, n).astype(np.int8)
            key = gen.hex_keys(rng, n, self._key_counter, devices)
            self._key_counter += n
            rows = self._m.append(
                {
                    "chat": chats,
                    "ts": ts,
                    "from_me": fm,
                    "sender": sender,
                    "body": body,
                    "media": media,
                    "ack": ack,
                    "key": key,
                }
            )
            for c, row in zip(chats.tolist(), rows.tolist(), strict=True):
                self._order[c] = np.append(self._order[c], row)
            self._touch(chats.tolist())
            frame = self._frame(rows)
        self._emit("message.any", frame["message_id"].to_list())
        return frame

    def add_chat(self, *, name: str | None = None, messages: int = 1, at: int | None = None) -> str:
        """Create a new 1:1 chat with a new person (named `name`) holding `messages` new messages;
        return its chat id. (A chat appears in `/chats` only once it has a message.)"""
        with self.lock:
            p = len(self.people.pid)
            phone = str(30_000_000_000 + p)
            self.people.phone.append(phone)
            self.people.lid.append(None)
            self.people.name.append(name)
            self.people.push.append(name)
            self.people.pid.append(f"{phone}@c.us")
            self.people.business = np.append(self.people.business, False)
            c = self.n_chats
            cid = f"{phone}@c.us"
            ch = self.chats
            ch.chat_id.append(cid)
            ch.subject.append(None)
            ch.is_group = np.append(ch.is_group, False)
            ch.partner = np.append(ch.partner, np.int32(p))
            ch.members_off = np.append(ch.members_off, ch.members_off[-1])
            ch.created = np.append(ch.created, 0)
            ch.flags = np.append(ch.flags, np.uint8(0))
            self._order.append(np.arange(0, dtype=np.int64))
            self._last_ts = np.append(self._last_ts, 0)
            self._index_chat(c, cid)
            self._contacts = None
            self.add_messages(max(messages, 1), chat_ids=[cid], at=at)
            return cid

    def edit_message(self, message_id: str, body: str) -> None:
        """Replace a message's text (as after a `message.edited` event)."""
        with self.lock:
            row = self._row_of(message_id)
            self.bodies.append(body)
            self._m["body"][row] = len(self.bodies) - 1
            self.version += 1
        self._emit("message.edited", [message_id])

    def revoke_message(self, message_id: str) -> None:
        """Revoke a message: it is no longer served (NOWEB deletes revoked messages)."""
        with self.lock:
            row = self._row_of(message_id)
            self._m["alive"][row] = False
            self._touch([int(self._m["chat"][row])])
        self._emit("message.revoked", [message_id])

    def set_ack(self, message_id: str, ack: int | None) -> None:
        """Set a message's ack (-1..4, or None)."""
        with self.lock:
            row = self._row_of(message_id)
            self._m["ack"][row] = gen.ACK_NULL if ack is None else ack
            self.version += 1
        self._emit("message.ack", [message_id])

    # ---------------------------------------------------------------- contacts

    def contacts(self) -> list[ContactEntry]:
        """The entries `/api/contacts/all` lists, in store order."""
        with self.lock:
            if self._contacts is None:
                self._contacts = self._build_contacts()
            return self._contacts

    def _build_contacts(self) -> list[ContactEntry]:
        pp = self.people
        out: list[ContactEntry] = []
        for p in range(len(pp.pid)):
            phone, lid = pp.phone[p], pp.lid[p]
            lid_id = f"{lid}{LID}" if lid else None
            if phone is not None:
                shown_lid = lid_id if self.engine == "NOWEB" else None
                out.append(ContactEntry(f"{phone}{C_US}", p, shown_lid, pp.name[p], pp.push[p]))
            if lid_id and (phone is None or self.engine == "NOWEB"):
                out.append(ContactEntry(lid_id, p, None, None if phone else pp.name[p], pp.push[p]))
        return out

    def lids(self) -> list[tuple[str, str]]:
        """Known (lid, phone-number id) pairs, sorted by lid."""
        pp = self.people
        pairs = [
            (f"{lid}{LID}", f"{phone}{C_US}")
            for phone, lid in zip(pp.phone, pp.lid, strict=True)
            if phone is not None and lid is not None
        ]
        return sorted(pairs)

    def pn_of_lid(self, lid: str) -> tuple[bool, str | None]:
        """(known, phone-number id) for a `@lid` id."""
        digits = lid.split("@")[0]
        for phone, known in zip(self.people.phone, self.people.lid, strict=True):
            if known == digits:
                return True, f"{phone}{C_US}" if phone else None
        return False, None

    def lid_of_pn(self, phone: str) -> str | None:
        """The `@lid` id of a phone number (`digits`, `@c.us` or `@s.whatsapp.net`), or None."""
        digits = to_c_us(phone).split("@")[0]
        for known, lid in zip(self.people.phone, self.people.lid, strict=True):
            if known == digits and lid:
                return f"{lid}{LID}"
        return None

    # ---------------------------------------------------------------- ground truth

    def _frame(self, rows: np.ndarray) -> pl.DataFrame:
        """Ground-truth message rows (see module docstring) for `rows`."""
        m = self._m
        chat = m["chat"][rows]
        is_group = self.chats.is_group[chat]
        from_me = m["from_me"][rows]
        sender = m["sender"][rows]
        body_idx = m["body"][rows]
        ack = m["ack"][rows].astype(np.int16)
        pid = pl.Series([*self.people.pid, None], dtype=pl.String)
        bodies = pl.Series([*self.bodies, None], dtype=pl.String)
        frame = pl.DataFrame(
            {
                "chat_id": pl.Series(self.chats.chat_id, dtype=pl.String).gather(chat),
                "ts": m["ts"][rows],
                "from_me": from_me,
                "is_group": is_group,
                "member": pid.gather(np.where(sender >= 0, sender, len(pid) - 1)),
                "body": bodies.gather(np.where(body_idx >= 0, body_idx, len(bodies) - 1)),
                "has_media": m["media"][rows] > 0,
                "ack": ack,
                "key": pl.Series(m["key"][rows]).cast(pl.String),
            }
        )
        me = pl.lit(self.me)
        participant = pl.when(pl.col("from_me")).then(me).otherwise(pl.col("member"))
        body = pl.col("body")
        if self.engine == "WEBJS":
            body = body.fill_null("")
        out = frame.select(
            pl.lit(self.waha_session).alias("waha_session"),
            pl.concat_str(
                [
                    pl.when(pl.col("from_me")).then(pl.lit("true")).otherwise(pl.lit("false")),
                    pl.lit("_"),
                    pl.col("chat_id"),
                    pl.lit("_"),
                    pl.col("key"),
                    pl.when(pl.col("is_group")).then(pl.lit("_") + participant),
                ],
                ignore_nulls=True,
            ).alias("message_id"),
            pl.col("chat_id"),
            pl.from_epoch(pl.col("ts"), "s").dt.replace_time_zone("UTC").alias("sent_at"),
            pl.col("from_me"),
            pl.when(pl.col("from_me"))
            .then(me)
            .when(pl.col("is_group"))
            .then(pl.col("member"))
            .otherwise(pl.col("chat_id"))
            .alias("sender_id"),
            body.str.replace_all("\x00", "", literal=True).alias("body"),
            pl.col("has_media"),
            pl.when(pl.col("ack") != gen.ACK_NULL).then(pl.col("ack")).alias("ack"),
        )
        return out.cast({k: MESSAGES[k] for k in GROUND_TRUTH_MESSAGE_COLUMNS})  # type: ignore[misc]

    def ground_truth_messages(self, *, include_revoked: bool = False) -> pl.DataFrame:
        """Every served message, normalized (columns `GROUND_TRUTH_MESSAGE_COLUMNS`, dtypes of
        `schemas.MESSAGES`), sorted by (chat_id, sent_at, message_id)."""
        with self.lock:
            rows = np.arange(self._m.n) if include_revoked else np.flatnonzero(self._m["alive"])
            frame = self._frame(rows)
        return frame.sort("chat_id", "sent_at", "message_id")

    def ground_truth_chats(self) -> pl.DataFrame:
        """One row per served chat: waha_session, chat_id, name, is_group, last_message_at."""
        with self.lock:
            served = [c for c in range(self.n_chats) if len(self._order[c])]
            frame = pl.DataFrame(
                {
                    "waha_session": [self.waha_session] * len(served),
                    "chat_id": [self.chats.chat_id[c] for c in served],
                    "name": [self.chat_name(c) for c in served],
                    "is_group": [bool(self.chats.is_group[c]) for c in served],
                    "last_message_at": self._last_ts[served],
                }
            )
        frame = frame.with_columns(
            pl.from_epoch("last_message_at", "s").dt.replace_time_zone("UTC").alias("last_message_at")
        )
        cols = ("waha_session", "chat_id", "name", "is_group", "last_message_at")
        return frame.cast({k: CHATS[k] for k in cols}).sort("chat_id")  # type: ignore[misc]

    def ground_truth_contacts(self) -> pl.DataFrame:
        """One row per `/api/contacts/all` entry: waha_session, contact_id, name, push_name."""
        entries = self.contacts()
        frame = pl.DataFrame(
            {
                "waha_session": [self.waha_session] * len(entries),
                "contact_id": [e.contact_id for e in entries],
                "name": [e.name for e in entries],
                "push_name": [e.push_name for e in entries],
            },
            schema=CONTACTS,
        )
        return frame.sort("contact_id")


def _timestamps(at: int | float | datetime | Sequence[int] | None, n: int) -> np.ndarray:
    if at is None:
        return np.full(n, int(time.time()), dtype=np.int64)
    if isinstance(at, datetime):
        at = at.timestamp() if at.tzinfo else at.replace(tzinfo=UTC).timestamp()
    if isinstance(at, int | float):
        return np.full(n, int(at), dtype=np.int64)
    values = np.asarray(list(at), dtype=np.int64)
    if len(values) != n:
        raise ValueError("`at` needs one timestamp per message")
    return values


__all__ = [
    "ENGINES",
    "GROUND_TRUTH_MESSAGE_COLUMNS",
    "PRESETS",
    "Account",
    "AccountSpec",
    "ContactEntry",
    "Engine",
]
