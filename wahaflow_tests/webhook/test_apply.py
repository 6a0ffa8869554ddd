"""Reading the inbox back as frames: pending_chats, pending_events, mark_processed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import psycopg

from wahaflow import schemas
from wahaflow.webhook.apply import (
    ACKS,
    EDITS,
    REVOKES,
    key_id_expr,
    mark_processed,
    pending_chats,
    pending_events,
)
from wahaflow.webhook.inbox import insert_events, parse_event
from wahaflow_tests.webhook.events import ACK, ALICE, BOB, GROUP, ME, MESSAGE, SESSION_STATUS, body, envelope

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _store(conn: psycopg.Connection, schema: str, envelopes: list[dict]) -> list[str]:
    events = [parse_event(body(e), T0 + timedelta(seconds=i)) for i, e in enumerate(envelopes)]
    with conn.transaction():
        insert_events(conn, schema, events)
    return [e.event_id for e in events]


def _noweb_group_message(key: str, text: str, from_me: bool = False) -> dict:
    sender = ME if from_me else BOB
    return envelope(
        MESSAGE,
        id=f"evt_group_{key}",
        engine="NOWEB",
        event="message.any",
        payload={
            "id": f"{'true' if from_me else 'false'}_{GROUP}_{key}_{sender}",
            "timestamp": 1727745100,
            "from": GROUP,
            "fromMe": from_me,
            "to": GROUP,
            "participant": sender,
            "body": text,
            "hasMedia": False,
            "ack": None,
            "_data": {"key": {"remoteJid": GROUP, "fromMe": from_me, "id": key}, "pushName": "Bob"},
        },
    )


def test_pending_events_decodes_messages_acks_edits_revokes(pg_url: str, migrated: str) -> None:
    alice_key = "2F7A9C0B4E6D8F1A3C5E7B9D0F2A4C6E"
    own = envelope(
        MESSAGE,
        id="evt_own",
        event="message.any",
        payload__id=f"true_{ALICE}_3A5F0B1C2D3E4F5A6B7C",
        payload__fromMe=True,
        payload__from=ME,
        payload__to=ALICE,
        payload__body="sure, 10 am",
        payload__timestamp=1727745200,
    )
    edit = envelope(
        MESSAGE,
        id="evt_edit",
        event="message.edited",
        payload__id=f"true_{ALICE}_3EB0EDIT000000000001",
        payload__fromMe=True,
        payload__from=ME,
        payload__to=ALICE,
        payload__body="sure, 11 am\x00",
        payload__timestamp=1727745300,
        payload__editedMessageId="3A5F0B1C2D3E4F5A6B7C",
    )
    revoke = envelope(
        MESSAGE,
        id="evt_revoke",
        event="message.revoked",
        payload={
            "after": {
                "id": f"false_{ALICE}_3EB0REVOKE0000000001",
                "timestamp": 1727745400,
                "from": ALICE,
                "to": ME,
                "fromMe": False,
                "body": "",
            },
            "before": None,
            "revokedMessageId": alice_key,
        },
    )
    acks = [
        envelope(ACK, id="evt_ack_read", payload__ack=3),
        envelope(ACK, id="evt_ack_server", payload__ack=1, payload__ackName="SERVER"),  # late, lower
    ]
    reaction = envelope(MESSAGE, id="evt_reaction", event="message.reaction", payload__id=f"false_{ALICE}_R1")
    group = _noweb_group_message("BAE5GROUP0001", "hello group")
    other_session = envelope(MESSAGE, id="evt_other", session="sales")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        ids = _store(
            conn,
            migrated,
            [MESSAGE, own, edit, revoke, *acks, reaction, group, SESSION_STATUS, other_session],
        )
        chats = pending_chats(conn, migrated)
        assert chats.select("waha_session", "chat_id").rows() == [
            ("default", GROUP),
            ("default", ALICE),
            ("sales", ALICE),
        ]
        assert chats.filter(chat_id=ALICE, waha_session="default")["events"].item() == 7
        with conn.transaction():
            batch = pending_events(conn, migrated, chats.filter(waha_session="default"))
            assert set(batch.event_ids) == set(ids) - {SESSION_STATUS["id"], "evt_other"}

            messages = batch.messages.sort("sent_at")
            assert messages.schema == schemas.MESSAGES
            assert messages.select("message_id", "chat_id", "from_me", "sender_id", "body", "ack").rows() == [
                (MESSAGE["payload"]["id"], ALICE, False, ALICE, "Hi! Are we still on for tomorrow?", 1),
                (f"false_{GROUP}_BAE5GROUP0001_{BOB}", GROUP, False, BOB, "hello group", None),
                (f"true_{ALICE}_3A5F0B1C2D3E4F5A6B7C", ALICE, True, ME, "sure, 10 am", 1),
            ]
            assert messages["sent_at"].to_list()[0] == datetime.fromtimestamp(1727745021, UTC)
            assert messages["waha_session"].unique().to_list() == ["default"]
            assert batch.contacts.filter(contact_id=ALICE)["push_name"].item() == "Alice"
            assert batch.contacts.filter(contact_id=BOB)["push_name"].item() == "Bob"

            assert batch.acks.schema == ACKS
            assert batch.acks.select("message_id", "chat_id", "ack").rows() == [
                (f"true_{ALICE}_3A5F0B1C2D3E4F5A6B7C", ALICE, 3)  # the highest ack wins
            ]
            assert batch.edits.schema == EDITS
            assert batch.edits.select("chat_id", "key_id", "body").rows() == [
                (ALICE, "3A5F0B1C2D3E4F5A6B7C", "sure, 11 am")
            ]
            assert batch.edits["edited_at"].item() == datetime.fromtimestamp(1727745300, UTC)
            assert batch.revokes.schema == REVOKES
            assert batch.revokes.select("chat_id", "key_id").rows() == [(ALICE, alice_key)]
            # the bare key id names the stored message: (chat, 3rd part of the serialized id)
            keyed = messages.with_columns(key_id_expr(pl.col("message_id")).alias("key_id"))
            assert keyed.join(batch.edits, on=["chat_id", "key_id"])["message_id"].to_list() == [
                f"true_{ALICE}_3A5F0B1C2D3E4F5A6B7C"
            ]
            assert keyed.join(batch.revokes, on=["chat_id", "key_id"])["message_id"].to_list() == [
                MESSAGE["payload"]["id"]
            ]
            assert batch.rejects.is_empty()

            assert mark_processed(conn, migrated, batch.event_ids) == len(batch.event_ids)
        assert pending_chats(conn, migrated).select("waha_session", "chat_id").rows() == [("sales", ALICE)]
        assert pending_events(conn, migrated, chats).event_ids == ["evt_other"]
        assert mark_processed(conn, migrated, batch.event_ids) == 0  # already processed


def test_a_rolled_back_chunk_run_leaves_events_pending(pg_url: str, migrated: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        _store(conn, migrated, [MESSAGE])
        chats = pending_chats(conn, migrated)
        try:
            with conn.transaction():
                batch = pending_events(conn, migrated, chats)
                mark_processed(conn, migrated, batch.event_ids)
                raise RuntimeError("the chunk run failed")
        except RuntimeError:
            pass
        assert pending_events(conn, migrated, chats).event_ids == [MESSAGE["id"]]


def test_events_that_cannot_be_applied_become_rejects(pg_url: str, migrated: str) -> None:
    no_chat = envelope(MESSAGE, id="evt_nochat", payload={"body": "who sent me?", "timestamp": 1})
    no_ack = envelope(ACK, id="evt_noack", payload__ack=None, payload__ackName="UNKNOWN")
    bad_message = envelope(MESSAGE, id="evt_bad", payload__timestamp="yesterday")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        _store(conn, migrated, [no_chat, no_ack, bad_message])
        chats = pending_chats(conn, migrated)
        assert chats.select("waha_session", "chat_id").rows() == [("default", ALICE), ("default", None)]
        batch = pending_events(conn, migrated, chats)
        assert sorted(batch.event_ids) == ["evt_bad", "evt_noack", "evt_nochat"]
        assert batch.messages.is_empty() and batch.acks.is_empty()
        assert batch.rejects.schema == schemas.REJECTS
        reasons = sorted(batch.rejects["reason"].to_list())
        assert len(reasons) == 3
        assert any("no chat id" in r for r in reasons)
        assert any("ack" in r for r in reasons)
        assert any("timestamp" in r for r in reasons)
