"""The webhook receiver over real HTTP and real Postgres: design.md §5 rule 11."""

from __future__ import annotations

import logging

import httpx
import orjson
import pytest

from wahaflow.webhook.app import sign
from wahaflow.webhook.inbox import MAX_BODY_BYTES, body_event_id, parse_event, strip_nul
from wahaflow_tests.webhook.events import ACK, ALICE, ME, MESSAGE, SESSION_STATUS, body, envelope

DOC_BODY = b'{"event":"message","session":"default","engine":"WEBJS"}'
DOC_KEY = "my-secret-key"
DOC_HMAC = (
    "208f8a55dde9e05519e898b10b89bf0d0b3b0fdf11fdbf09b6b90476301b98d8"
    "097c462b2b17a6ce93b6b47a136cf2e78a33a63f6752c2c1631777076153fa89"
)


def post(url: str, content: bytes, key: str | None = None, **headers: str | bytes) -> httpx.Response:
    if key is not None:
        headers["X-Webhook-Hmac"] = sign(content, key)
    headers.setdefault("Content-Type", "application/json")
    return httpx.post(url, content=content, headers=headers, timeout=10)


def test_a_valid_event_is_committed_before_the_200(receiver_factory, inbox_rows) -> None:
    receiver = receiver_factory()
    raw = body(MESSAGE)
    response = post(receiver.webhook_url, raw)
    assert response.status_code == 200
    assert response.json() == {"status": "stored", "event_id": MESSAGE["id"]}
    [row] = inbox_rows()  # a new connection sees it: committed
    assert row["event_id"] == MESSAGE["id"]
    assert row["waha_session"] == "default"
    assert row["event"] == "message"
    assert row["message_id"] == MESSAGE["payload"]["id"]
    assert row["chat_id"] == ALICE
    assert row["payload"] == raw.decode()
    assert row["processed_at"] is None
    assert row["chunk_key"] is None  # the chat is not registered yet
    assert httpx.get(f"{receiver.url}/health").json()["status"] == "ok"


def test_replays_are_answered_200_and_stored_once(receiver_factory, inbox_rows) -> None:
    receiver = receiver_factory()
    raw = body(MESSAGE)
    assert post(receiver.webhook_url, raw).json()["status"] == "stored"
    assert post(receiver.webhook_url, raw).json()["status"] == "duplicate"
    # the same message under a new envelope id (a retry that does not reuse the id)
    again = envelope(MESSAGE, id="evt_01j92t1nj884g7zwyrd6z1rv0x", timestamp=1727745099999)
    response = post(receiver.webhook_url, body(again))
    assert response.status_code == 200
    assert response.json()["status"] == "duplicate"
    # a 2024 build: no envelope id; the same body twice is one event (id = digest of the body)
    old = body(envelope(MESSAGE, id=None, timestamp=None, payload__id=f"false_{ALICE}_OLD2024"))
    assert post(receiver.webhook_url, old).json() == {"status": "stored", "event_id": body_event_id(old)}
    assert post(receiver.webhook_url, old).json()["status"] == "duplicate"
    # acks of one message are distinct events (SERVER then READ), each stored once
    for ack, eid in ((2, "evt_01j92tafaw355qakgd2avsqwa1"), (3, "evt_01j92tafaw355qakgd2avsqwa2")):
        event = body(envelope(ACK, id=eid, payload__ack=ack))
        assert post(receiver.webhook_url, event).json()["status"] == "stored"
        assert post(receiver.webhook_url, event).json()["status"] == "duplicate"
    rows = inbox_rows()
    assert sorted(r["event"] for r in rows) == ["message", "message", "message.ack", "message.ack"]
    assert len({r["event_id"] for r in rows}) == 4


def test_signature_required_when_a_key_is_set(receiver_factory, inbox_rows) -> None:
    receiver = receiver_factory(hmac_key="s3cret")
    raw = body(MESSAGE)
    assert post(receiver.webhook_url, raw).status_code == 401  # missing
    assert post(receiver.webhook_url, raw, key="wrong").status_code == 401
    assert post(receiver.webhook_url, raw, **{"X-Webhook-Hmac": "zz" * 64}).status_code == 401
    assert post(receiver.webhook_url, raw, **{"X-Webhook-Hmac": "é".encode("latin-1")}).status_code == 401
    tampered = raw.replace(b"tomorrow", b"tonight!")
    assert post(receiver.webhook_url, tampered, **{"X-Webhook-Hmac": sign(raw, "s3cret")}).status_code == 401
    assert inbox_rows() == []
    assert post(receiver.webhook_url, raw, key="s3cret").status_code == 200
    upper = sign(raw, "s3cret").upper()
    assert post(receiver.webhook_url, raw, **{"X-Webhook-Hmac": upper}).json()["status"] == "duplicate"
    assert len(inbox_rows()) == 1


def test_the_documented_hmac_test_vector(receiver_factory, inbox_rows) -> None:
    assert sign(DOC_BODY, DOC_KEY) == DOC_HMAC
    assert DOC_HMAC.startswith("208f8a55dde9") and DOC_HMAC.endswith("6153fa89")  # as in waha-api.md §5
    receiver = receiver_factory(hmac_key=DOC_KEY)
    # the signature is accepted; the doc's body has no payload, so it is then refused as an envelope
    assert post(receiver.webhook_url, DOC_BODY, **{"X-Webhook-Hmac": DOC_HMAC}).status_code == 400
    assert post(receiver.webhook_url, DOC_BODY, **{"X-Webhook-Hmac": DOC_HMAC[:-1] + "0"}).status_code == 401
    # the doc's envelope with a payload, signed the same way, is stored
    full = DOC_BODY[:-1] + b',"payload":{"id":"false_14155550101@c.us_DOC","from":"14155550101@c.us"}}'
    assert post(receiver.webhook_url, full, key=DOC_KEY).status_code == 200
    assert [r["message_id"] for r in inbox_rows()] == ["false_14155550101@c.us_DOC"]


NOT_ENVELOPES = [
    b"this is no json SECRET-CONTENT",
    b'{"event": "message", "session": "default", "payload": {"body": "SECRET-CONTENT"',  # truncated
    b'["SECRET-CONTENT"]',
    b'"SECRET-CONTENT"',
    b'{"session": "default", "payload": {"body": "SECRET-CONTENT"}}',  # no event
    b'{"event": "message", "payload": {"body": "SECRET-CONTENT"}}',  # no session
    b'{"event": 7, "session": "default", "payload": {"body": "SECRET-CONTENT"}}',
    b'{"event": "message.any", "session": "default", "payload": "SECRET-CONTENT"}',  # not an object
    b'{"id": 5, "event": "message", "session": "default", "payload": {"body": "SECRET-CONTENT"}}',
    b'{"event": "message", "session": "default", "payload": {"body": "\xff SECRET-CONTENT"}}',  # not UTF-8
    b"",
]


def test_not_json_or_not_an_envelope_is_400_and_logged_without_content(
    receiver_factory, inbox_rows, caplog: pytest.LogCaptureFixture
) -> None:
    key = "KEY-THAT-MUST-NOT-BE-LOGGED"
    receiver = receiver_factory(hmac_key=key)
    for content in NOT_ENVELOPES:
        caplog.clear()
        with caplog.at_level(logging.DEBUG):
            response = post(receiver.webhook_url, content, key=key)
        assert response.status_code == 400, content
        assert "SECRET-CONTENT" not in response.text
        logged = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records)
        assert f"(400, {len(content)} bytes)" in logged
        assert "SECRET-CONTENT" not in logged
        assert key not in logged
    assert inbox_rows() == []


def test_over_one_mib_is_413_and_a_65536_character_text_is_accepted(receiver_factory, inbox_rows) -> None:
    receiver = receiver_factory()
    too_big = body(envelope(MESSAGE, payload__body="x" * MAX_BODY_BYTES))
    assert post(receiver.webhook_url, too_big).status_code == 413

    def chunks():  # no Content-Length: the limit holds while reading
        for i in range(0, len(too_big), 64 * 1024):
            yield too_big[i : i + 64 * 1024]

    response = httpx.post(receiver.webhook_url, content=chunks(), timeout=10)
    assert response.status_code == 413
    assert inbox_rows() == []

    text = ("WhatsApp 😀 " * 6554)[:65_536]  # the longest WhatsApp text, multi-byte characters included
    assert len(text) == 65_536
    raw = body(envelope(MESSAGE, payload__body=text))
    assert 65_536 < len(raw) < MAX_BODY_BYTES
    assert post(receiver.webhook_url, raw).status_code == 200
    [row] = inbox_rows()
    assert orjson.loads(row["payload"])["payload"]["body"] == text


def test_nul_characters_are_accepted_and_stored_without_them(receiver_factory, inbox_rows) -> None:
    receiver = receiver_factory()
    raw = body(envelope(MESSAGE, payload__body="nul\x00here \\u0000 stays\x00"))
    assert b"\\u0000" in raw
    assert post(receiver.webhook_url, raw).status_code == 200
    [row] = inbox_rows()
    assert "\x00" not in row["payload"]
    decoded = orjson.loads(row["payload"])
    assert decoded["payload"]["body"] == "nulhere \\u0000 stays"  # an escaped backslash is text, kept
    assert strip_nul(b'"a\\u0000b\\\\u0000c\\\\\\u0000"') == b'"ab\\\\u0000c\\\\"'


def test_session_status_and_unknown_events_are_accepted(receiver_factory, inbox_rows) -> None:
    receiver = receiver_factory()
    assert post(receiver.webhook_url, body(SESSION_STATUS)).status_code == 200
    future = {"id": "evt_01j9future0000000000000000", "event": "call.teleported", "session": "default"}
    assert post(receiver.webhook_url, body(future)).status_code == 200
    rows = {r["event"]: r for r in inbox_rows()}
    assert set(rows) == {"session.status", "call.teleported"}
    status = rows["session.status"]
    assert status["chat_id"] is None and status["message_id"] is None
    assert status["processed_at"] == status["received_at"]  # nothing applies it: not a backlog


def test_chat_id_per_engine() -> None:
    # WEBJS: `from` is the sender, `to` the recipient
    own = envelope(MESSAGE, payload__fromMe=True, payload__from="14155550100@c.us", payload__to=ALICE)
    assert parse_event(body(own)).chat_id == ALICE
    assert parse_event(body(MESSAGE)).chat_id == ALICE
    # NOWEB / GOWS: `from` is the chat, in every direction; `@s.whatsapp.net` is written `@c.us`
    noweb = envelope(
        MESSAGE,
        engine="NOWEB",
        payload__id="true_14155550101@c.us_ABC",
        payload__fromMe=True,
        payload__from="14155550101@s.whatsapp.net",
    )
    noweb["payload"].pop("to")
    assert parse_event(body(noweb)).chat_id == ALICE
    gows_group = envelope(
        MESSAGE,
        engine="GOWS",
        payload__id="false_120363@g.us_ABC_14155550102@c.us",
        payload__from="120363@g.us",
        payload__to="14155550102@c.us",
        payload__participant="14155550102@c.us",
    )
    assert parse_event(body(gows_group)).chat_id == "120363@g.us"
    # no from/to at all: the chat part of the serialized id
    bare = envelope(MESSAGE, payload__from=None, payload__to=None)
    bare["payload"].pop("from")
    bare["payload"].pop("to")
    assert parse_event(body(bare)).chat_id == ALICE
    # no engine named (2024 builds): the id decides; NOWEB's literal `me` is not a chat
    own_in_group = envelope(
        MESSAGE,
        engine=None,
        payload__id=f"true_120363@g.us_ABC_{ME}",
        payload__fromMe=True,
        payload__from="120363@g.us",
        payload__to=ME,
    )
    assert parse_event(body(own_in_group)).chat_id == "120363@g.us"
    ack_me = envelope(ACK, engine="NOWEB", payload__from="me")
    assert parse_event(body(ack_me)).chat_id == ALICE
    # events that are not about a message carry no message or chat, even with an `id` in the payload
    archive = {"event": "chat.archive", "session": "default", "payload": {"id": ALICE, "archived": True}}
    event = parse_event(body(archive))
    assert (event.message_id, event.chat_id) == (None, None)
    assert event.processed_at is not None
