"""Vectorized generation of a synthetic WhatsApp account (people, chats, messages) from a seed.

Everything is drawn from one `numpy.random.Generator` in a fixed order, so a seed always gives the
same account; the engine only changes how a few draws are mapped (acks), never the draw order, so
the same seed on another engine gives the same chats, ids, timestamps and bodies.

Shape of the data (the realism the importer must survive):
- chat sizes are heavy-tailed: most chats hold 1-5 messages, a few hold thousands;
- about 10% of chats are groups with 2-60 participants, some addressed by `@lid`;
  a few 1:1 chats exist only under a `@lid` id;
- inter-message gaps mix same-second bursts, short replies, exactly 1,800 s and 1,801 s (the session
  threshold edge) and long silences of hours to weeks;
- media messages (`has_media`) mostly without caption (null body), a few NUL characters, a few
  65,536-character texts, emoji/RTL/CJK bodies; acks include null (NOWEB/GOWS incoming).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from wahaflow.simulator import corpus

HISTORY_END = 1_780_272_000  # 2026-06-01T00:00:00Z: the newest history message is at or before it
HISTORY_SPAN = 730 * 86_400  # chats' last activity spreads over the two years before HISTORY_END
ACK_NULL = -128  # sentinel for a null ack in the int8 ack column
MAX_CHAT_MESSAGES = 100_000  # NOWEB keeps at most 100K messages per chat

# media kinds: index into MEDIA_KINDS (0 = no media)
MEDIA_KINDS = ("", "image", "video", "ptt", "document", "sticker")
MEDIA_MIMETYPES = ("", "image/jpeg", "video/mp4", "audio/ogg; codecs=opus", "application/pdf", "image/webp")
MEDIA_EXTENSIONS = ("", "jpeg", "mp4", "oga", "pdf", "webp")

# key id styles by device: web/desktop, iOS, Android, Baileys
KEY_PREFIXES = (b"3EB0", b"3A", b"", b"BAE5")
_HEX = np.array([f"{i:02X}".encode() for i in range(256)], dtype="S2")
_COUNTRY_CODES = np.array([b"1", b"44", b"49", b"55", b"91", b"34", b"7", b"52", b"62", b"234", b"33"])


@dataclass
class People:
    """Everyone the account knows besides itself (chat partners, group members, other contacts)."""

    phone: list[str | None]  # digits, None when only a LID is known
    lid: list[str | None]  # digits of the `@lid` id, None when unknown
    name: list[str | None]  # name saved in the address book
    push: list[str | None]  # the person's own display name
    pid: list[str]  # id used as group participant: `<phone>@c.us` or `<lid>@lid`
    business: np.ndarray  # bool


@dataclass
class Chats:
    """The chats: 1:1 (`partner` >= 0) and groups (`members` in CSR form)."""

    chat_id: list[str]  # normalized id (`@c.us`, `@lid`, `@g.us`)
    is_group: np.ndarray  # bool
    partner: np.ndarray  # int32 person index, -1 for groups
    subject: list[str | None]  # group subject, None for 1:1
    members_off: np.ndarray  # int64, len C+1: members of chat c are members[off[c]:off[c+1]]
    members: np.ndarray  # int32 person indexes
    created: np.ndarray  # int64 group creation time (0 for 1:1)
    flags: np.ndarray  # uint8 bits: 1 archived, 2 pinned, 4 muted


@dataclass
class Messages:
    """Message columns, grouped by chat and in (timestamp, row) order within each chat."""

    chat: np.ndarray  # int32
    ts: np.ndarray  # int64 unix seconds
    from_me: np.ndarray  # bool
    sender: np.ndarray  # int32 person index of a group message's author; -1 otherwise
    body: np.ndarray  # int32 index into the body pool; -1 = no text (media without caption)
    media: np.ndarray  # int8 index into MEDIA_KINDS
    ack: np.ndarray  # int8, ACK_NULL for null
    key: np.ndarray  # S32 WhatsApp key id (the last part of the serialized id)


@dataclass
class Generated:
    """One generated account."""

    people: People
    chats: Chats
    messages: Messages
    bodies: list[str]
    chat_sizes: np.ndarray  # int64 messages per chat


def _unique_ints(rng: np.random.Generator, n: int, low: int, high: int) -> np.ndarray:
    """`n` distinct integers in [low, high), in random order."""
    return rng.choice(high - low, size=n, replace=False).astype(np.int64) + low


def _digits(values: np.ndarray) -> list[str]:
    return [str(v) for v in values.tolist()]


def hex_keys(rng: np.random.Generator, n: int, counter_start: int, devices: np.ndarray) -> np.ndarray:
    """`n` key ids that are unique by construction: a bijective mix of a counter, hex-encoded.

    `devices` picks the style per key (index into KEY_PREFIXES); Android keys are 32 hex digits.
    """
    counter = np.arange(counter_start, counter_start + n, dtype=np.uint64)
    salt = np.uint64(rng.integers(0, 2**63, dtype=np.int64))
    x = counter ^ salt
    # splitmix64 finalizer: bijective on uint64, so distinct counters give distinct keys
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    core = _HEX[x.astype(">u8").view(np.uint8).reshape(n, 8)].view("S16").ravel()
    extra_raw = rng.integers(0, 2**63, size=n, dtype=np.int64).astype(np.uint64)
    extra = _HEX[extra_raw.astype(">u8").view(np.uint8).reshape(n, 8)].view("S16").ravel()
    keys = np.empty(n, dtype="S32")
    for device, prefix in enumerate(KEY_PREFIXES):
        sel = devices == device
        if not sel.any():
            continue
        if device == 1:  # iOS: 3A + 18 hex
            keys[sel] = np.char.add(np.char.add(prefix, core[sel]), _two(extra[sel]))
        elif device == 2:  # Android: 32 hex
            keys[sel] = np.char.add(core[sel], extra[sel])
        else:
            keys[sel] = np.char.add(prefix, core[sel])
    return keys


def _two(values: np.ndarray) -> np.ndarray:
    """First two characters of each S16 value."""
    return values.view("S1").reshape(len(values), 16)[:, :2].copy().view("S2").ravel()


def _people(
    rng: np.random.Generator, rnd: random.Random, n: int, lid_only: np.ndarray, me_phone: str
) -> People:
    bases = _unique_ints(rng, n, 2_000_000_000, 9_999_999_999)
    cc = _COUNTRY_CODES[rng.integers(0, len(_COUNTRY_CODES), size=n)]
    phones = np.char.add(cc, bases.astype("S10"))
    lid_known = lid_only | (rng.random(n) < 0.4)
    lids = _unique_ints(rng, n, 10**13, 3 * 10**14)
    named = rng.random(n) < 0.55
    pushed = rng.random(n) < 0.8
    lid_addressed = rng.random(n) < 0.3
    business = rng.random(n) < 0.1
    phone_list: list[str | None] = [
        None if lo else p.decode() for lo, p in zip(lid_only, phones, strict=True)
    ]
    lid_list: list[str | None] = [
        str(v) if k else None for k, v in zip(lid_known, lids.tolist(), strict=True)
    ]
    if me_phone in phone_list:  # never give anyone the session's own number
        phone_list[phone_list.index(me_phone)] = "19999999999"
    names: list[str | None] = []
    pushes: list[str | None] = []
    pids: list[str] = []
    for i in range(n):
        names.append(corpus.person_name(rnd) if named[i] and phone_list[i] is not None else None)
        pushes.append(corpus.push_name(rnd) if pushed[i] or phone_list[i] is None else None)
        phone, lid = phone_list[i], lid_list[i]
        if phone is None or (lid is not None and lid_addressed[i]):
            pids.append(f"{lid}@lid")
        else:
            pids.append(f"{phone}@c.us")
    return People(phone_list, lid_list, names, pushes, pids, business)


def _chat_sizes(rng: np.random.Generator, n_chats: int, n_messages: int, is_group: np.ndarray) -> np.ndarray:
    """Messages per chat: at least one each, most 1-5, a heavy (Pareto) tail, summing to n_messages."""
    small = np.minimum(rng.geometric(0.55, n_chats) - 1, 4).astype(np.int64)
    budget = n_messages - n_chats
    if small.sum() > budget:
        small = np.floor(small * (budget / max(int(small.sum()), 1))).astype(np.int64)
    rest = budget - int(small.sum())
    weights = rng.pareto(0.9, n_chats) * np.where(is_group, 3.0, 1.0) * (rng.random(n_chats) < 0.3)
    if weights.sum() == 0:
        weights = np.ones(n_chats)
    extra = rng.multinomial(rest, weights / weights.sum()).astype(np.int64)
    sizes = 1 + small + extra
    over = sizes > MAX_CHAT_MESSAGES
    if over.any() and n_messages <= MAX_CHAT_MESSAGES * n_chats:
        excess = int((sizes[over] - MAX_CHAT_MESSAGES).sum())
        sizes[over] = MAX_CHAT_MESSAGES
        room = (MAX_CHAT_MESSAGES - sizes).astype(np.float64)
        while excess > 0:
            add = np.minimum(rng.multinomial(excess, room / room.sum()), MAX_CHAT_MESSAGES - sizes)
            sizes += add
            excess -= int(add.sum())
            room = (MAX_CHAT_MESSAGES - sizes).astype(np.float64)
    return sizes


def _gaps(rng: np.random.Generator, n: int) -> np.ndarray:
    """Seconds since the previous message of the same chat (mixture; see module docstring)."""
    u = rng.random(n)
    short = 1 + rng.exponential(45.0, n).astype(np.int64)
    medium = rng.integers(300, 1_800, n)
    long_ = 1_802 + np.exp(rng.uniform(0.0, np.log(45 * 86_400), n)).astype(np.int64)
    gap = np.select(
        [u < 0.25, u < 0.68, u < 0.79, u < 0.81, u < 0.82],
        [0, np.minimum(short, 1_799), medium, 1_800, 1_801],
        default=long_,
    ).astype(np.int64)
    return gap


def _timestamps(rng: np.random.Generator, sizes: np.ndarray) -> np.ndarray:
    n_chats = len(sizes)
    n = int(sizes.sum())
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    gap = _gaps(rng, n)
    gap[starts] = 0
    is_long = gap > 1_801
    chat_of = np.repeat(np.arange(n_chats), sizes)
    long_excess = np.bincount(chat_of, weights=np.where(is_long, gap - 1_802, 0), minlength=n_chats)
    fixed = np.bincount(chat_of, weights=np.where(is_long, 1_802, gap), minlength=n_chats)
    # squeeze long silences of very busy chats so a chat spans at most HISTORY_SPAN
    room = np.maximum(HISTORY_SPAN - fixed, 0)
    factor = np.where(long_excess > room, room / np.maximum(long_excess, 1), 1.0)
    gap = np.where(is_long, 1_802 + np.floor((gap - 1_802) * factor[chat_of]).astype(np.int64), gap)
    cum = np.cumsum(gap)
    offset = cum - (cum[starts] - gap[starts])[chat_of]  # seconds since the chat's first message
    duration = offset[starts + sizes - 1]
    recency = np.floor(HISTORY_SPAN * rng.random(n_chats) ** 3).astype(np.int64)
    last = HISTORY_END - recency
    return (last - duration)[chat_of] + offset


def generate(
    seed: int, n_chats: int, n_messages: int, engine: str, me_phone: str, group_share: float = 0.1
) -> Generated:
    """Generate an account; see the module docstring for its shape."""
    if n_chats < 1 or n_messages < n_chats:
        raise ValueError("need at least one chat and at least one message per chat")
    rng = np.random.default_rng(seed)
    rnd = random.Random(seed)

    n_groups = min(n_chats, max(1 if n_chats >= 3 else 0, round(n_chats * group_share)))
    is_group = np.zeros(n_chats, dtype=bool)
    is_group[rng.choice(n_chats, size=n_groups, replace=False)] = True
    n_direct = n_chats - n_groups
    n_group_only = max(8, n_groups * 4) if n_groups else 0
    n_other = n_direct // 10
    n_people = n_direct + n_group_only + n_other
    lid_only = np.zeros(n_people, dtype=bool)
    lid_only[:n_direct] = rng.random(n_direct) < 0.04
    lid_only[n_direct : n_direct + n_group_only] = rng.random(n_group_only) < 0.2
    people = _people(rng, rnd, n_people, lid_only, me_phone)

    # chats
    partner = np.full(n_chats, -1, dtype=np.int32)
    partner[~is_group] = np.arange(n_direct, dtype=np.int32)
    group_ids = _unique_ints(rng, n_groups, 10**11, 10**12)
    created = np.zeros(n_chats, dtype=np.int64)
    created[is_group] = HISTORY_END - HISTORY_SPAN * 2 + rng.integers(0, HISTORY_SPAN, n_groups)
    member_counts = np.zeros(n_chats, dtype=np.int64)
    member_counts[is_group] = np.minimum(2 + rng.geometric(0.12, n_groups), 60)
    pool = np.arange(n_direct + n_group_only, dtype=np.int32)
    members_off = np.concatenate(([0], np.cumsum(member_counts)))
    members = np.empty(int(members_off[-1]), dtype=np.int32)
    for c in np.flatnonzero(is_group):
        k = int(member_counts[c])
        members[members_off[c] : members_off[c + 1]] = rng.choice(pool, size=min(k, len(pool)), replace=False)
    chat_ids: list[str] = []
    subjects: list[str | None] = []
    group_no = 0
    for c in range(n_chats):
        if is_group[c]:
            first = int(members[members_off[c]])
            if group_no % 9 == 4 and people.phone[first] is not None:
                chat_ids.append(f"{people.phone[first]}-{int(created[c])}@g.us")  # old-style group id
            else:
                chat_ids.append(f"120363{int(group_ids[group_no]):012d}@g.us")
            subjects.append(corpus.group_subject(rnd, group_no))
            group_no += 1
        else:
            p = int(partner[c])
            phone = people.phone[p]
            chat_ids.append(f"{phone}@c.us" if phone is not None else f"{people.lid[p]}@lid")
            subjects.append(None)
    flags = (
        (rng.random(n_chats) < 0.05).astype(np.uint8)
        | ((rng.random(n_chats) < 0.02).astype(np.uint8) << 1)
        | ((rng.random(n_chats) < 0.08).astype(np.uint8) << 2)
    )
    chats = Chats(chat_ids, is_group, partner, subjects, members_off, members, created, flags)

    # messages
    sizes = _chat_sizes(rng, n_chats, n_messages, is_group)
    ts = _timestamps(rng, sizes)
    chat_of = np.repeat(np.arange(n_chats, dtype=np.int32), sizes)
    out_rate = np.where(is_group, rng.beta(1, 5, n_chats), rng.beta(2, 2, n_chats))
    from_me = rng.random(n_messages) < out_rate[chat_of]
    msg_group = is_group[chat_of]
    pick = rng.random(n_messages) ** 2  # a few members do most of the talking
    count = (members_off[1:] - members_off[:-1])[chat_of]
    sender = np.where(
        msg_group & ~from_me,
        members[np.minimum(members_off[:-1][chat_of] + (pick * count).astype(np.int64), len(members) - 1)]
        if len(members)
        else -1,
        -1,
    ).astype(np.int32)
    bodies, nul_start, long_start = corpus.body_pool(seed)
    media = np.where(
        rng.random(n_messages) < 0.12, rng.choice(5, n_messages, p=[0.5, 0.1, 0.2, 0.1, 0.1]) + 1, 0
    )
    media = media.astype(np.int8)
    captioned = (rng.random(n_messages) < 0.3) & np.isin(media, (1, 2, 4))
    body = rng.integers(0, nul_start, n_messages).astype(np.int32)
    body[(media > 0) & ~captioned] = -1
    text_rows = np.flatnonzero(media == 0)
    n_nul = min(len(text_rows), max(2, n_messages // 2_000))
    n_long = min(len(text_rows) - n_nul, max(2, min(60, n_messages // 2_500)))
    special = rng.choice(text_rows, size=n_nul + n_long, replace=False)
    body[special[:n_nul]] = nul_start + rng.integers(0, long_start - nul_start, n_nul)
    body[special[n_nul:]] = long_start + rng.integers(0, len(bodies) - long_start, n_long)
    ack = draw_acks(rng.random(n_messages), from_me, engine)
    devices = rng.choice(4, n_messages, p=[0.45, 0.25, 0.25, 0.05]).astype(np.int8)
    key = hex_keys(rng, n_messages, 0, devices)
    messages = Messages(chat_of, ts, from_me, sender, body, media, ack, key)
    return Generated(people, chats, messages, bodies, sizes)


_ACK_OUT = (np.array([0.01, 0.03, 0.10, 0.30, 0.95, 1.0]), np.array([-1, 0, 1, 2, 3, 4]))
_ACK_IN = {
    "WEBJS": (np.array([0.1, 0.4, 1.0]), np.array([1, 2, 3])),
    "NOWEB": (np.array([0.9, 0.95, 1.0]), np.array([ACK_NULL, 2, 3])),
    "GOWS": (np.array([0.5, 0.8, 1.0]), np.array([ACK_NULL, 2, 3])),
}


def draw_acks(u: np.ndarray, from_me: np.ndarray, engine: str) -> np.ndarray:
    """Map uniform draws `u` to ack values per engine: own messages -1..4; incoming ones per engine
    (NOWEB mostly null, as real NOWEB stores do). GOWS reports ERROR (-1) as null."""
    out_cut, out_val = _ACK_OUT
    in_cut, in_val = _ACK_IN[engine]
    out = out_val[np.minimum(np.searchsorted(out_cut, u, side="right"), len(out_val) - 1)]
    inc = in_val[np.minimum(np.searchsorted(in_cut, u, side="right"), len(in_val) - 1)]
    ack = np.where(from_me, out, inc).astype(np.int8)
    if engine == "GOWS":
        ack[ack == -1] = ACK_NULL
    return ack
