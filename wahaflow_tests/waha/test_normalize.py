"""Every sample payload of `shared/reference/waha-samples` (and GOWS shapes from waha-api.md) parses
into the right frames, with exact values; malformed items go to rejects while the rest lands."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import orjson
import polars as pl
import pytest

from wahaflow import schemas
from wahaflow.waha.errors import WahaBadResponse
from wahaflow.waha.ids import normalize_id
from wahaflow.waha.normalize import (
    contacts_from_messages,
    normalize_chats,
    normalize_contacts,
    normalize_messages,
    parse_message_page,
    rejects_frame,
)

SAMPLES = Path(__file__).resolve().parents[1] / "reference" / "waha-samples"

ME = "14155550100@c.us"
ALICE = "14155550101@c.us"
BOB = "14155550102@c.us"
CAROL_LID = "205829163744521@lid"
GROUP = "120363025246125486@g.us"


def sample(name: str) -> bytes:
    path = SAMPLES / name
    return path.read_bytes()


def messages_of(content: bytes, chat_id: str, me: str | None = ME) -> tuple[pl.DataFrame, pl.DataFrame]:
    page = parse_message_page(content, source=f"GET /api/default/chats/{chat_id}/messages")
    assert not page.rejects
    raw = page.frame.with_columns(pl.lit(normalize_id(chat_id)).alias("chat_id"))
    return (
        normalize_messages(raw, waha_session="default", me_id=me),
        contacts_from_messages(raw, waha_session="default", me_id=me),
    )


def utc(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def test_webjs_messages_sample() -> None:
    messages, contacts = messages_of(sample("messages.webjs.json"), ALICE)
    assert messages.schema == schemas.MESSAGES
    rows = {r["message_id"]: r for r in messages.to_dicts()}
    assert len(rows) == 4
    own = rows["true_14155550101@c.us_3A5F0B1C2D3E4F5A6B7C"]
    assert own["from_me"] is True
    assert own["sender_id"] == ME  # not `from` (which is me on WEBJS anyway) but the session's id
    assert own["chat_id"] == ALICE
    assert own["sent_at"] == utc(1727745300)
    assert own["ack"] == 3
    media = rows["false_14155550101@c.us_A06CA7BB5DD8C8F705628CDB7E3A33C9"]
    assert media["sender_id"] == ALICE
    assert media["has_media"] is True
    assert media["body"] == "Here is the venue map"
    assert {r["session_id"] for r in rows.values()} == {None}
    assert {r["waha_session"] for r in rows.values()} == {"default"}
    assert contacts.to_dicts() == [
        {"waha_session": "default", "contact_id": ALICE, "name": None, "push_name": "Alice"}
    ]


def test_noweb_group_messages_sample() -> None:
    messages, contacts = messages_of(sample("messages.noweb-group.json"), GROUP)
    by_id = {r["message_id"]: r for r in messages.to_dicts()}
    assert by_id["true_120363025246125486@g.us_3A9D2C4B6E8F0A1B3C5D_14155550100@c.us"]["sender_id"] == ME
    carol = by_id["false_120363025246125486@g.us_AC3E5F7091B2D4F6A8C0E2B4D6F8A0C2_205829163744521@lid"]
    assert carol["sender_id"] == CAROL_LID
    assert carol["has_media"] is True
    assert carol["ack"] is None
    bob = by_id["false_120363025246125486@g.us_A1B2C3D4E5F60718293A4B5C6D7E8F90_14155550102@c.us"]
    assert bob["sender_id"] == BOB
    assert bob["chat_id"] == GROUP  # from the path; `from` is the group here but never used
    # own message sent from this socket: no participant, no suffix -> still me
    assert by_id["true_120363025246125486@g.us_3EB0F1E2D3C4B5A69788"]["sender_id"] == ME
    assert by_id["true_120363025246125486@g.us_3EB0F1E2D3C4B5A69788"]["ack"] == 2
    assert sorted(contacts.select("contact_id", "push_name").rows()) == [
        (BOB, "Bob Jones"),
        (CAROL_LID, "Carol"),
    ]


def test_chat_id_comes_from_the_path_and_is_normalized() -> None:
    content = sample("messages.webjs.json")
    # the same payload requested as NOWEB-style `@s.whatsapp.net` path id
    messages, _ = messages_of(content, "14155550101@s.whatsapp.net")
    assert set(messages["chat_id"]) == {ALICE}
    assert messages.filter(~pl.col("from_me"))["sender_id"].unique().to_list() == [ALICE]


GOWS_GROUP = [
    {
        "id": "false_120363025246125486@g.us_3EB0AAAA_14155550102@c.us",
        "timestamp": 1727744100,
        "from": GROUP,
        "fromMe": False,
        "source": "app",
        "to": "14155550102@c.us",
        "participant": "14155550102@s.whatsapp.net",
        "body": "hi \u0000from GOWS",
        "hasMedia": False,
        "media": None,
        "ack": None,
        "ackName": "UNKNOWN",
        "_data": {"Info": {"Chat": GROUP, "Sender": "14155550102@s.whatsapp.net", "PushName": "Bob J"}},
    },
    {
        "id": "true_120363025246125486@g.us_3EB0BBBB_14155550100@c.us",
        "timestamp": 1727744200,
        "from": GROUP,
        "fromMe": True,
        "source": "app",
        "participant": "14155550100@c.us",
        "body": None,
        "hasMedia": True,
        "media": None,
        "ack": 1,
        "ackName": "SERVER",
        "_data": {"Info": {"IsFromMe": True, "PushName": "Acme Support"}},
    },
    {
        # old shape: id object, participant missing (2024 WEBJS) -> sender from the id suffix
        "id": {"_serialized": "false_120363025246125486@g.us_3EB0CCCC_205829163744521@lid"},
        "timestamp": 1727744300,
        "fromMe": False,
        "body": "old build",
        "hasMedia": False,
    },
]


def test_gows_group_and_old_shapes() -> None:
    messages, contacts = messages_of(orjson.dumps(GOWS_GROUP), GROUP)
    rows = {r["message_id"]: r for r in messages.to_dicts()}
    bob = rows["false_120363025246125486@g.us_3EB0AAAA_14155550102@c.us"]
    assert bob["sender_id"] == BOB  # participant @s.whatsapp.net -> @c.us
    assert bob["body"] == "hi from GOWS"  # NUL removed
    own = rows["true_120363025246125486@g.us_3EB0BBBB_14155550100@c.us"]
    assert own["body"] is None and own["has_media"] is True  # media without caption: null body
    assert own["sender_id"] == ME and own["ack"] == 1
    old = rows["false_120363025246125486@g.us_3EB0CCCC_205829163744521@lid"]
    assert old["sender_id"] == CAROL_LID
    assert sorted(contacts.select("contact_id", "push_name").rows(), key=str) == [
        (BOB, "Bob J"),
        (CAROL_LID, None),
    ]


def test_webjs_media_without_caption_keeps_empty_body() -> None:
    item = json.loads(sample("messages.webjs.json"))[1]
    item["body"] = ""
    messages, _ = messages_of(orjson.dumps([item]), ALICE)
    assert messages["body"].to_list() == [""]
    assert messages["has_media"].to_list() == [True]


def test_float_timestamps_and_numeric_strings() -> None:
    items = [
        {"id": "false_1@c.us_A", "timestamp": 1727745300.25, "fromMe": False, "ack": 2.0},
        {"id": "false_1@c.us_B", "timestamp": "1727745301", "fromMe": False},  # forces the slow path
    ]
    messages, _ = messages_of(orjson.dumps(items), "1")
    assert messages["chat_id"].unique().to_list() == ["1@c.us"]  # bare digits -> @c.us
    assert messages.sort("message_id")["sent_at"].to_list() == [
        datetime(2024, 10, 1, 1, 15, 0, 250000, tzinfo=UTC),
        utc(1727745301),
    ]
    assert messages.sort("message_id")["ack"].to_list() == [2, None]


def test_malformed_items_go_to_rejects_and_the_rest_lands() -> None:
    good = json.loads(sample("messages.webjs.json"))
    items = [
        good[0],
        "not an object",
        {"timestamp": 1727745000, "fromMe": False, "body": "no id"},
        {"id": "false_14155550101@c.us_BADTS", "timestamp": "yesterday", "fromMe": False},
        {"id": "false_14155550101@c.us_BADBODY", "timestamp": 1727745001, "body": {"x": 1}},
        good[2],
    ]
    source = "GET /api/default/chats/14155550101@c.us/messages"
    page = parse_message_page(orjson.dumps(items), source=source)
    assert page.count == 6
    assert page.frame["id"].to_list() == [good[0]["id"], good[2]["id"]]
    reasons = [r.reason for r in page.rejects]
    assert len(reasons) == 4
    assert "not a JSON object" in reasons[0]
    assert "no id" in reasons[1]
    assert "timestamp" in reasons[2] and "yesterday" in reasons[2]
    assert "body is not text" in reasons[3]
    assert json.loads(page.rejects[2].payload) == items[3]
    frame = rejects_frame(page.rejects, waha_session="default")
    assert frame.schema == schemas.REJECTS
    assert frame["source"].unique().to_list() == [source]
    # deterministic ids: the same rejects again give the same ids
    again = rejects_frame(
        parse_message_page(orjson.dumps(items), source=source).rejects, waha_session="default"
    )
    assert frame["reject_id"].to_list() == again["reject_id"].to_list()
    assert frame["reject_id"].n_unique() == 4


@pytest.mark.parametrize(
    "body",
    [b'[{"id":"false_1@c.us_A","timestamp":17277', b'{"message":"pong"}', b"", b"null", b"<html>502</html>"],
)
def test_a_page_that_is_not_a_json_array_is_a_bad_response(body: bytes) -> None:
    with pytest.raises(WahaBadResponse):
        parse_message_page(body, source="GET /x")


def test_lone_surrogates_and_nul_are_removed() -> None:
    content = (
        b'[{"id":"false_1@c.us_A","timestamp":10,"fromMe":false,"body":"a\\u0000b\\ud800c\\ud83d\\ude00"}]'
    )
    messages, _ = messages_of(content, "1@c.us")
    assert messages["body"].to_list() == ["abc😀"]


def test_chats_samples_all_shapes() -> None:
    webjs = normalize_chats(json.loads(sample("chats.webjs.json")), waha_session="default", source="GET x")
    noweb = normalize_chats(json.loads(sample("chats.noweb.json")), waha_session="default", source="GET x")
    overview = normalize_chats(
        json.loads(sample("chats-overview.noweb.json")), waha_session="default", source="GET x"
    )
    for result in (webjs, noweb, overview):
        assert result.chats.schema == schemas.CHATS
        assert result.chats["chat_id"].to_list() == [ALICE, GROUP, BOB]
        assert result.chats["is_group"].to_list() == [False, True, False]
        assert result.chats["last_message_at"].to_list() == [
            utc(1727745300),
            utc(1727744100),
            utc(1727650000),
        ]
        assert result.chats["chunk_key"].to_list() == [None] * 3
        assert not result.rejects
    assert noweb.chats["waha_chat_id"].to_list() == [
        "14155550101@s.whatsapp.net",
        GROUP,
        "14155550102@s.whatsapp.net",
    ]
    assert noweb.chats["name"].to_list() == [None, "Project Falcon", None]
    assert webjs.chats["waha_chat_id"].to_list() == [ALICE, GROUP, BOB]
    assert webjs.chats["name"].to_list() == ["Alice Smith", "Project Falcon", "Bob Jones"]
    assert overview.chats["name"].to_list() == ["Alice Smith", "Project Falcon", "Bob Jones"]


def test_gows_chats_status_skipped_and_bad_items_rejected() -> None:
    items = [
        {"id": "14155550101@c.us", "name": "Alice", "conversationTimestamp": 1727745300},
        {"id": "status@broadcast", "conversationTimestamp": 1727745000},
        {
            "id": "120363999@newsletter",
            "name": "Channel",
            "conversationTimestamp": {"low": 1727745000, "high": 0},
        },
        {"id": "205829163744521@lid", "name": None, "conversationTimestamp": None},
        {"name": "no id"},
        42,
    ]
    result = normalize_chats(items, waha_session="s1", source="GET /api/s1/chats")
    assert result.chats["chat_id"].to_list() == [ALICE, "120363999@newsletter", CAROL_LID]
    assert result.chats["last_message_at"].to_list() == [utc(1727745300), utc(1727745000), None]
    assert result.skipped == ["status@broadcast"]
    assert [r.reason for r in result.rejects] == ["chat has no id", "chat is not a JSON object (int)"]
    with_status = normalize_chats(items, waha_session="s1", source="GET x", include_status=True)
    assert "status@broadcast" in with_status.chats["chat_id"].to_list()


def test_contacts_samples() -> None:
    webjs, rejects = normalize_contacts(
        json.loads(sample("contacts.webjs.json")), waha_session="default", source="GET /api/contacts/all"
    )
    assert not rejects
    assert webjs.schema == schemas.CONTACTS
    assert webjs.select("contact_id", "name", "push_name").rows() == [
        (ME, "Acme Support", "Acme Support"),
        (ALICE, "Alice Smith", "Alice"),
        (BOB, None, "Bob Jones"),
    ]
    noweb, _ = normalize_contacts(
        json.loads(sample("contacts.noweb.json")), waha_session="default", source="GET /api/contacts/all"
    )
    assert noweb.select("contact_id", "name", "push_name").rows() == [
        (ALICE, "Alice Smith", "Alice"),
        (BOB, None, "Bob Jones"),
        ("184467440737095@lid", None, "Bob Jones"),
    ]
    gows, rejects = normalize_contacts(
        [
            {"id": "14155550103@s.whatsapp.net", "name": "Dan", "notify": "Danny"},
            {"name": "nobody"},
        ],
        waha_session="default",
        source="GET /api/contacts/all",
    )
    assert gows.select("contact_id", "name", "push_name").rows() == [("14155550103@c.us", "Dan", "Danny")]
    assert [r.reason for r in rejects] == ["contact has no id"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("14155550101@s.whatsapp.net", ALICE),
        ("14155550101:12@s.whatsapp.net", ALICE),
        ("14155550101", ALICE),
        (ALICE, ALICE),
        (CAROL_LID, CAROL_LID),
        (GROUP, GROUP),
        ("status@broadcast", "status@broadcast"),
        (None, None),
    ],
)
def test_normalize_id(raw: str | None, expected: str | None) -> None:
    assert normalize_id(raw) == expected
    if raw is not None:
        from wahaflow.waha.ids import normalize_id_expr

        assert pl.select(normalize_id_expr(pl.lit(raw))).item() == expected
