"""The simulator's webhooks into the real receiver: at-least-once delivery lands exactly once, and the
inbox decodes to the simulator's ground truth in every engine."""

from __future__ import annotations

import hashlib
import hmac
import re

import httpx
import orjson
import polars as pl
import psycopg
import pytest

from wahaflow.simulator.account import GROUND_TRUTH_MESSAGE_COLUMNS
from wahaflow.simulator.webhooks import WebhookEmitter, event_id, ulid
from wahaflow.webhook.apply import key_id_expr, pending_chats, pending_events

KEY = "sim-hook-key"


def test_envelope_ids_look_like_waha_ones() -> None:
    ids = {event_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"evt_[0-9a-hjkmnp-tv-z]{26}", i) for i in ids)
    assert ulid(0)[:10] == "0000000000"


@pytest.mark.parametrize("engine", ["WEBJS", "NOWEB", "GOWS"])
def test_simulator_events_land_exactly_once(
    engine: str, simulator_factory, receiver_factory, inbox_rows, pg_url: str, migrated: str
) -> None:
    receiver = receiver_factory(hmac_key=KEY)
    sim = simulator_factory(
        chats=40,
        messages=200,
        engine=engine,
        webhook_url=receiver.webhook_url,
        webhook_hmac_key=KEY,
        webhook_redelivery_rate=0.5,
    )
    hooks = sim.webhooks
    assert hooks is not None
    hooks.reissue_rate = 0.3  # some retries come back under a new envelope id
    account = sim.account

    added = account.add_messages(40)
    assert hooks.flush(20)
    ids = added["message_id"].to_list()
    account.edit_message(ids[0], "edited text")
    account.revoke_message(ids[1])
    own = added.filter(pl.col("from_me"))["message_id"].to_list()
    account.set_ack(own[0] if own else ids[2], 4)
    assert hooks.flush(20)

    stats = hooks.stats
    assert stats.failed == 0 and stats.dropped == 0
    assert stats.redelivered > 0 and stats.reissued > 0
    assert stats.by_status.keys() == {200}

    rows = inbox_rows()
    by_event: dict[str, list[dict]] = {}
    for row in rows:
        by_event.setdefault(row["event"], []).append(row)
    assert sorted(r["message_id"] for r in by_event["message.any"]) == sorted(ids)  # once each
    assert len(by_event["message.edited"]) == 1
    assert len(by_event["message.revoked"]) == 1
    # acks are exempt from the message dedup (one message is acked several times): a reissued ack
    # (new envelope id) is a second row, which pending_events folds into one
    assert {r["message_id"] for r in by_event["message.ack"]} == {own[0] if own else ids[2]}
    assert 1 <= len(by_event["message.ack"]) <= 2

    with psycopg.connect(pg_url, autocommit=True) as conn:
        batch = pending_events(conn, migrated, pending_chats(conn, migrated))
    truth = added.sort("message_id")
    got = batch.messages.select(GROUND_TRUTH_MESSAGE_COLUMNS).sort("message_id")
    assert got.to_dicts() == truth.to_dicts()  # chat ids, senders, bodies (NUL removed), acks: per engine

    keyed = truth.with_columns(key_id_expr(pl.col("message_id")).alias("key_id"))
    assert keyed.join(batch.edits, on=["chat_id", "key_id"])["message_id"].to_list() == [ids[0]]
    assert batch.edits["body"].to_list() == ["edited text"]
    assert keyed.join(batch.revokes, on=["chat_id", "key_id"])["message_id"].to_list() == [ids[1]]
    assert batch.acks["ack"].to_list() == [4]
    assert batch.rejects.is_empty()


def test_emitter_signs_and_retries(simulator_factory) -> None:
    received: list[tuple[bytes, dict[str, str]]] = []
    answers = iter([503, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        received.append((request.content, dict(request.headers)))
        return httpx.Response(next(answers, 200))

    sim = simulator_factory(chats=10, messages=30, engine="WEBJS")
    emitter = WebhookEmitter(
        "http://receiver.invalid/webhooks/waha",
        hmac_key=KEY,
        retry_delay=0.01,
        transport=httpx.MockTransport(handler),
    )
    emitter.attach(sim.account).start()
    sim.account.add_messages(1, from_me=False)
    assert emitter.flush(10)
    emitter.close()
    assert len(received) == 2  # a 503, then the retry
    (first, headers), (second, _) = received
    assert first == second
    assert headers["x-webhook-hmac"] == hmac.new(KEY.encode(), first, hashlib.sha512).hexdigest()
    assert headers["x-webhook-hmac-algorithm"] == "sha512"
    assert headers["user-agent"].startswith("WAHA/")
    envelope = orjson.loads(first)
    assert envelope["event"] == "message.any"
    assert envelope["engine"] == "WEBJS" and envelope["environment"]["engine"] == "WEBJS"
    assert envelope["me"]["id"] == sim.account.me
    assert envelope["payload"]["fromMe"] is False
    assert emitter.stats.retries == 1 and emitter.stats.delivered == 1


def test_message_and_message_any_and_redelivery(simulator_factory) -> None:
    received: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        received.append(orjson.loads(request.content))
        return httpx.Response(200)

    sim = simulator_factory(chats=10, messages=30, engine="NOWEB")
    emitter = WebhookEmitter(
        "http://receiver.invalid/webhooks/waha",
        events={"message", "message.any"},
        redelivery_rate=1.0,
        transport=httpx.MockTransport(handler),
    )
    emitter.attach(sim.account).start()
    sim.account.add_messages(1, from_me=False)
    sim.account.add_messages(1, from_me=True)
    sim.account.set_ack(sim.account.ground_truth_messages()["message_id"][0], 3)  # not subscribed
    assert emitter.flush(10)
    emitter.close()
    sim.account.add_messages(1)  # after close: ignored
    events = [e["event"] for e in received]
    # incoming: message.any + message; own: message.any only; each posted twice (same body)
    assert sorted(events) == ["message"] * 2 + ["message.any"] * 4
    assert len({e["id"] for e in received}) == 3
    assert all(re.fullmatch(r"evt_[0-9a-hjkmnp-tv-z]{26}", e["id"]) for e in received)
    assert all(e["session"] == "default" and e["engine"] == "NOWEB" for e in received)
