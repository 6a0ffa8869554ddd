"""Message paging against a real HTTP server reproducing each engine's paging behaviour."""

from __future__ import annotations

import asyncio
import logging
import random
import time

import pytest

from wahaflow.waha.client import WahaClient
from wahaflow.waha.paging import ChatMessages
from wahaflow_tests.waha.fakewaha import FakeWaha, message

CHAT = "14155550101@c.us"
NOW = 1_760_000_000


def client_for(fake: FakeWaha, **kwargs) -> WahaClient:
    options = {"page_size": 100, "timeout": 5.0, "backoff_initial": 0.01, "backoff_max": 0.05}
    return WahaClient(fake.url, **{**options, **kwargs})  # type: ignore[attr-defined]


def fill(fake: FakeWaha, chat: str, stamps: list[float]) -> set[str]:
    msgs = [message(chat, f"K{i:06d}", ts, from_me=i % 3 == 0) for i, ts in enumerate(stamps)]
    fake.chats[chat] = msgs
    return {m["id"] for m in msgs}


def fetch(fake: FakeWaha, chat: str = CHAT, **kwargs) -> ChatMessages:
    client_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in ("page_size", "max_attempts")}

    async def run() -> ChatMessages:
        async with client_for(fake, **client_kwargs) as client:
            return await client.chat_messages("default", chat, **kwargs)

    return asyncio.run(run())


def tied_stamps(n: int, seconds: int, seed: int = 1) -> list[float]:
    """`n` timestamps spread over `seconds` distinct seconds (many ties)."""
    rng = random.Random(seed)
    return [float(NOW - rng.randrange(seconds)) for _ in range(n)]


def test_small_chat_costs_exactly_one_request_with_the_right_query(fake: FakeWaha) -> None:
    ids = fill(fake, CHAT, [NOW - i for i in range(37)])
    result = fetch(fake, until=NOW)
    assert set(result.raw["id"]) == ids and result.raw.height == 37
    assert result.pages == 1 and result.requests == 1
    (seen,) = fake.seen
    assert seen.raw_path == "/api/default/chats/14155550101%40c.us/messages"
    assert seen.params == {
        "sortBy": "timestamp",
        "sortOrder": "desc",
        "limit": "100",
        "offset": "0",
        "downloadMedia": "false",
        "filter.timestamp.gte": "1",
        "filter.timestamp.lte": str(NOW),
    }


def test_empty_chat_and_empty_window(fake: FakeWaha) -> None:
    fill(fake, CHAT, [])
    assert fetch(fake, until=NOW).raw.height == 0
    assert fetch(fake, since=NOW + 10, until=NOW).requests == 0  # nothing to ask for


@pytest.mark.parametrize("mode", ["waha", "webjs"])
def test_many_pages_with_same_second_ties_in_unstable_order(fake: FakeWaha, mode: str) -> None:
    fake.mode = mode
    ids = fill(fake, CHAT, tied_stamps(1_234, seconds=300))
    result = fetch(fake, until=NOW)
    assert result.raw.height == 1_234 and set(result.raw["id"]) == ids
    assert result.raw["id"].n_unique() == 1_234
    # keyset pages re-read only the boundary second: about n / page_size pages
    assert result.pages <= 16


def test_more_same_second_messages_than_the_page_size(fake: FakeWaha) -> None:
    stamps = [float(NOW - 100)] * 250 + [float(NOW - 50 - i % 7) for i in range(40)] + [float(NOW - 200)] * 5
    ids = fill(fake, CHAT, stamps)
    result = fetch(fake, until=NOW)
    assert result.raw.height == len(stamps) and set(result.raw["id"]) == ids
    limits = [int(s.params["limit"]) for s in fake.seen]
    assert max(limits) >= 400  # the limit was raised for the crowded second ...
    assert limits[-1] == 100 or limits[-1] >= 400  # ... and the fetch ended
    assert len(limits) <= 6


def test_page_exactly_full_then_end(fake: FakeWaha) -> None:
    ids = fill(fake, CHAT, [float(NOW - i) for i in range(100)])
    result = fetch(fake, until=NOW)
    assert set(result.raw["id"]) == ids
    assert result.pages == 2  # the second (short) page proves the end


def test_webjs_short_pages_without_gte_are_not_trusted(fake: FakeWaha) -> None:
    """WEBJS loads one more batch per request when `gte` is missing; the client always sends gte>=1,
    so WEBJS keeps loading and a short page really is the end."""
    fake.mode = "webjs"
    fake.webjs_batch = 30
    ids = fill(fake, CHAT, [float(NOW - 5 * i) for i in range(450)])
    result = fetch(fake, until=NOW)
    assert set(result.raw["id"]) == ids
    assert all(float(s.params["filter.timestamp.gte"]) >= 1 for s in fake.seen)
    assert result.pages == 5


def test_webjs_incremental_since(fake: FakeWaha) -> None:
    fake.mode = "webjs"
    fill(fake, CHAT, [float(NOW - i) for i in range(300)])
    result = fetch(fake, since=NOW - 149, until=NOW - 10)
    assert sorted(result.raw["timestamp"].to_list()) == [float(t) for t in range(NOW - 149, NOW - 9)]
    assert result.pages == 2
    assert fake.seen[0].params["filter.timestamp.gte"] == str(NOW - 149)


def test_server_ignoring_filters_is_detected(fake: FakeWaha, caplog: pytest.LogCaptureFixture) -> None:
    fake.mode = "ignore_filters"
    stamps = [float(NOW + 30 - i) for i in range(350)]  # 30 of them newer than `until`
    fill(fake, CHAT, stamps)
    with caplog.at_level(logging.WARNING):
        result = fetch(fake, until=NOW)
    assert sorted(result.raw["timestamp"].to_list()) == sorted(t for t in stamps if t <= NOW)
    assert "ignores the timestamp filters" in caplog.text


def test_server_ignoring_sort_order_ascending(fake: FakeWaha) -> None:
    fake.mode = "asc"
    ids = fill(fake, CHAT, tied_stamps(420, seconds=120, seed=7))
    result = fetch(fake, until=NOW)
    assert set(result.raw["id"]) == ids


def test_arrivals_and_revokes_while_paging(fake: FakeWaha) -> None:
    """New messages arrive (newer than the frozen bound) and already-read ones are revoked (deleted,
    as NOWEB does) between pages: offset paging would skip messages; keyset paging does not."""
    initial = fill(fake, CHAT, tied_stamps(600, seconds=400, seed=3))
    counter = iter(range(10_000))

    def mutate(state: FakeWaha, chat_id: str, params: dict[str, str]) -> None:
        with state.lock:
            msgs = state.chats[chat_id]
            for _ in range(7):
                msgs.append(message(chat_id, f"NEW{next(counter)}", float(NOW + 1)))
            newest = sorted(msgs, key=lambda m: -m["timestamp"])
            for gone in newest[10:13]:  # revoke some of the newest (already read) messages
                msgs.remove(gone)

    fake.on_messages = mutate
    result = fetch(fake, until=NOW)
    got = set(result.raw["id"])
    assert result.raw["timestamp"].max() <= NOW  # nothing newer than the frozen bound
    still_there = {m["id"] for m in fake.chats[CHAT]} & initial
    assert still_there <= got  # nothing that existed throughout is missing
    assert got <= initial
    assert result.raw["id"].n_unique() == result.raw.height


def test_default_until_is_frozen_now_minus_one(fake: FakeWaha) -> None:
    now = int(time.time())
    fill(fake, CHAT, [float(now - 5), float(now + 100)])
    result = fetch(fake)
    assert result.raw.height == 1
    assert now - 1 <= float(fake.seen[0].params["filter.timestamp.lte"]) <= now + 1
