"""The per-chunk fetch over real HTTP: frames, rejects, stats, all-or-nothing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
import polars as pl
import pytest

from wahaflow import schemas
from wahaflow.waha.client import WahaClient
from wahaflow.waha.errors import WahaAuthError, WahaFetchError
from wahaflow.waha.fetch import ChunkFetch, fetch_account_stream, fetch_chats, fetch_chunk, fetch_contacts
from wahaflow_tests.waha.fakewaha import ME, FakeWaha, Fault, message

NOW = 1_760_000_000
GROUP = "120363025246125486@g.us"


def make_client(fake: FakeWaha, **kwargs: Any) -> WahaClient:
    options = {"page_size": 40, "timeout": 2.0, "backoff_initial": 0.01, "backoff_max": 0.05}
    return WahaClient(fake.url, **{**options, **kwargs})  # type: ignore[attr-defined]


def chats_frame(rows: list[tuple[str, str]], since: list[int | None] | None = None) -> pl.DataFrame:
    frame = pl.DataFrame(
        {"waha_chat_id": [r[0] for r in rows], "chat_id": [r[1] for r in rows]},
        schema={"waha_chat_id": pl.String, "chat_id": pl.String},
    )
    if since is not None:
        frame = frame.with_columns(pl.Series("since", since, dtype=pl.Int64))
    return frame


def fetch(fake: FakeWaha, chats: pl.DataFrame, **kwargs: Any) -> ChunkFetch:
    async def run() -> ChunkFetch:
        async with make_client(fake) as client:
            return await fetch_chunk(client, "default", ME, chats, until=NOW, **kwargs)

    return asyncio.run(run())


def group_message(key: str, ts: float, sender: str, *, from_me: bool = False) -> dict:
    item = message(GROUP, key, ts, from_me=from_me)
    item["id"] = f"{'true' if from_me else 'false'}_{GROUP}_{key}_{sender}"
    item["participant"] = sender
    item["_data"] = {"pushName": f"name of {sender.split('@')[0]}"}
    return item


def test_chunk_fetch_frames_and_stats(fake: FakeWaha) -> None:
    noweb_alice = "14155550101@s.whatsapp.net"
    fake.chats[noweb_alice] = [
        message(noweb_alice, f"A{i}", float(NOW - i), from_me=i % 2 == 0) for i in range(95)
    ]
    fake.chats[GROUP] = [
        group_message("G1", NOW - 10, "14155550102@s.whatsapp.net"),
        group_message("G2", NOW - 9, "205829163744521@lid"),
        group_message("G3", NOW - 8, ME, from_me=True),
    ]
    fake.chats["14155550109@c.us"] = []
    chats = chats_frame(
        [(noweb_alice, "14155550101@c.us"), (GROUP, GROUP), ("14155550109@c.us", "14155550109@c.us")]
    )
    result = fetch(fake, chats)
    assert result.messages.schema == schemas.MESSAGES
    assert result.messages.height == 98 and result.messages["message_id"].n_unique() == 98
    alice = result.messages.filter(pl.col("chat_id") == "14155550101@c.us")
    assert alice.height == 95
    assert set(alice.filter(~pl.col("from_me"))["sender_id"]) == {"14155550101@c.us"}
    assert set(alice.filter(pl.col("from_me"))["sender_id"]) == {ME}
    group = result.messages.filter(pl.col("chat_id") == GROUP).sort("sent_at")
    assert group["sender_id"].to_list() == ["14155550102@c.us", "205829163744521@lid", ME]
    assert result.messages["session_id"].null_count() == 98
    assert result.messages["chunk_key"].null_count() == 98
    assert result.contacts.schema == schemas.CONTACTS
    assert result.contacts.select("contact_id", "push_name").rows() == [
        ("14155550101@c.us", "Peer"),
        ("14155550102@c.us", "name of 14155550102"),
        ("14155550109@c.us", None),  # a 1:1 partner without messages is still a contact
        ("205829163744521@lid", "name of 205829163744521"),
    ]
    assert result.rejects.height == 0 and result.rejects.schema == schemas.REJECTS
    per_chat = {r["chat_id"]: r for r in result.stats.per_chat.to_dicts()}
    assert per_chat["14155550101@c.us"]["pages"] == 3  # 95 messages, page size 40
    assert per_chat[GROUP]["requests"] == 1 and per_chat["14155550109@c.us"]["requests"] == 1
    assert result.stats.requests == 5 and result.stats.until == NOW
    assert result.stats.as_metadata()["waha_requests"] == 5
    # the path used the listed id, encoded
    assert any(s.raw_path == "/api/default/chats/14155550101%40s.whatsapp.net/messages" for s in fake.seen)


def test_partner_without_messages_is_a_contact(fake: FakeWaha) -> None:
    fake.chats["14155550109@c.us"] = [message("14155550109@c.us", "A", float(NOW - 1), from_me=True)]
    result = fetch(fake, chats_frame([("14155550109@c.us", "14155550109@c.us")]))
    assert result.contacts.select("contact_id", "push_name").rows() == [("14155550109@c.us", None)]


def test_per_chat_lower_bounds(fake: FakeWaha) -> None:
    for chat in ("1@c.us", "2@c.us"):
        fake.chats[chat] = [message(chat, f"K{i}", float(NOW - i)) for i in range(30)]
    chats = chats_frame([("1@c.us", "1@c.us"), ("2@c.us", "2@c.us")], since=[NOW - 9, None])
    result = fetch(fake, chats)
    counts = dict(result.messages.group_by("chat_id").len().rows())
    assert counts == {"1@c.us": 10, "2@c.us": 30}
    overridden = fetch(fake, chats, since={"2@c.us": NOW - 4})
    assert dict(overridden.messages.group_by("chat_id").len().rows()) == {"1@c.us": 10, "2@c.us": 5}


def test_malformed_items_become_rejects_and_the_rest_lands(fake: FakeWaha) -> None:
    good = [message("1@c.us", f"K{i}", float(NOW - i)) for i in range(3)]
    items: list[Any] = [*good[:2], {"id": "false_1@c.us_BAD", "timestamp": "soon"}, 7, good[2]]
    fake.raw_messages["1@c.us"] = orjson.dumps(items)
    first = fetch(fake, chats_frame([("1@c.us", "1@c.us")]))
    assert first.messages.height == 3
    assert first.rejects.height == 2
    assert first.rejects["source"].unique().to_list() == ["GET /api/default/chats/1@c.us/messages"]
    assert json.loads(first.rejects["payload"][0]) == {"id": "false_1@c.us_BAD", "timestamp": "soon"}
    assert "timestamp" in first.rejects["reason"][0]
    second = fetch(fake, chats_frame([("1@c.us", "1@c.us")]))
    assert first.rejects["reject_id"].to_list() == second.rejects["reject_id"].to_list()


def test_every_reader_of_a_spooled_stream_gets_its_rejects(fake: FakeWaha, tmp_path) -> None:
    # The spool may be written by a sync's warm-up, or by another run: each run that reads it stores
    # the stream's rejects (`reject_id` makes that idempotent), so none is lost to a failed writer.
    good = [message("1@c.us", f"K{i}", float(NOW - i)) for i in range(3)]
    bad = {"id": "false_1@c.us_BAD", "timestamp": "soon", "from": "1@c.us"}
    fake.raw_messages["all"] = orjson.dumps([*good[:2], bad, good[2]])
    chats = chats_frame([("1@c.us", "1@c.us")])

    async def read() -> ChunkFetch:
        async with make_client(fake) as client:
            result = await fetch_account_stream(
                client, "default", ME, chats, until=NOW, spool_dir=tmp_path / "default"
            )
            assert result is not None
            return result

    first, again = asyncio.run(read()), asyncio.run(read())
    assert first.stats.requests == 1 and again.stats.requests == 0  # the second read the spool
    assert first.messages.height == again.messages.height == 3
    assert first.rejects.height == 1
    assert first.rejects["reject_id"].to_list() == again.rejects["reject_id"].to_list()


def test_one_failing_chat_fails_the_whole_fetch_naming_it(fake: FakeWaha) -> None:
    for i in range(6):
        chat = f"{i}@c.us"
        fake.chats[chat] = [message(chat, "A", float(NOW - 1))]
    fake.faults = [Fault("status", 500, {"message": "boom"}, match="/3@c.us/") for _ in range(10)]
    chats = chats_frame([(f"{i}@c.us", f"{i}@c.us") for i in range(6)])

    async def run() -> None:
        async with make_client(fake, max_attempts=3) as client:
            await fetch_chunk(client, "default", ME, chats, until=NOW)

    with pytest.raises(WahaFetchError) as info:
        asyncio.run(run())
    assert info.value.chat_id == "3@c.us"
    assert "chat 3@c.us" in str(info.value) and "3 attempt(s)" in str(info.value)


def test_auth_failure_is_raised_as_is(fake: FakeWaha) -> None:
    fake.api_key = "right"
    fake.chats["1@c.us"] = []
    with pytest.raises(WahaAuthError):
        fetch(fake, chats_frame([("1@c.us", "1@c.us")]))


def test_fetch_chats_and_contacts(fake: FakeWaha) -> None:
    fake.chat_items = [
        {"id": "14155550101@s.whatsapp.net", "conversationTimestamp": NOW},
        {"id": "status@broadcast", "conversationTimestamp": NOW},
        {"id": GROUP, "name": "Project Falcon", "conversationTimestamp": NOW - 5},
        {"name": "no id"},
    ]
    fake.contact_items = [{"id": "14155550101@c.us", "name": "Alice", "pushname": "Al"}]

    async def run() -> Any:
        async with make_client(fake) as client:
            return await fetch_chats(client, "default"), await fetch_contacts(client, "default")

    (chats, rejects, details), (contacts, contact_rejects) = asyncio.run(run())
    assert chats["chat_id"].to_list() == ["14155550101@c.us", GROUP]
    assert chats["waha_chat_id"].to_list() == ["14155550101@s.whatsapp.net", GROUP]
    assert details.skipped == ["status@broadcast"]
    assert rejects["reason"].to_list() == ["chat has no id"]
    assert contacts.select("contact_id", "name", "push_name").rows() == [("14155550101@c.us", "Alice", "Al")]
    assert contact_rejects.height == 0


def test_empty_chunk(fake: FakeWaha) -> None:
    result = fetch(fake, chats_frame([]))
    assert result.messages.schema == schemas.MESSAGES and result.messages.height == 0
    assert result.contacts.height == 0 and result.rejects.height == 0
    assert result.stats.requests == 0 and fake.seen == []
