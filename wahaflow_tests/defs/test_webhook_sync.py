"""Live updates through webhooks: simulator -> receiver -> inbox -> chunk run, each applied once."""

from __future__ import annotations

import time

import polars as pl
import pytest

from wahaflow.webhook.serve import BackgroundReceiver
from wahaflow_tests.defs.test_pipeline import TRUTH_COLUMNS, expected_sessions

HMAC_KEY = "webhook-secret"


@pytest.fixture
def receiver(pg_url, pg_schema):
    server = BackgroundReceiver(pg_url, pg_schema, hmac_key=HMAC_KEY).start()
    yield server
    server.stop()


def pending_events(env) -> int:
    return env.execute("SELECT count(*) FROM inbox WHERE processed_at IS NULL")[0][0]


def test_webhook_events_reach_the_warehouse_exactly_once(sync_env_factory, receiver):
    env = sync_env_factory(
        chats=40,
        messages=300,
        webhook_url=receiver.webhook_url,
        webhook_hmac_key=HMAC_KEY,
        webhook_redelivery_rate=0.5,  # at-least-once delivery: many events arrive twice
    )
    assert env.sync().ok
    account = env.simulator.account
    truth = account.ground_truth_messages()
    chats = truth["chat_id"].unique().sort().head(3).to_list()
    own = truth.filter(pl.col("from_me")).sort("message_id")
    edited, acked = own["message_id"][0], own["message_id"][1]
    revoked = truth.filter(~pl.col("from_me")).sort("message_id")["message_id"][0]

    account.add_messages(5, chat_ids=chats, at=int(time.time()) - 3)
    account.edit_message(edited, "edited text ✏️")
    account.set_ack(acked, 4)
    account.revoke_message(revoked)
    assert env.simulator.webhooks.flush(timeout=10)
    assert pending_events(env) > 0

    report = env.sync()
    assert report.ok
    assert pending_events(env) == 0

    stored = env.table("messages", "waha_session, message_id")
    everything = account.ground_truth_messages(include_revoked=True).sort("waha_session", "message_id")
    assert stored.height == everything.height  # nothing twice, nothing lost (the revoked one stays)
    assert (
        stored.select(TRUTH_COLUMNS)
        .filter(pl.col("message_id") != revoked)
        .equals(everything.select(TRUTH_COLUMNS).filter(pl.col("message_id") != revoked))
    )
    row = {r["message_id"]: r for r in stored.iter_rows(named=True)}
    assert row[edited]["body"] == "edited text ✏️" and row[edited]["edited_at"] is not None
    assert row[acked]["ack"] == 4
    assert row[revoked]["revoked_at"] is not None
    assert stored["revoked_at"].drop_nulls().len() == 1
    # Sessions cover every stored message (the revoked one too) by the rule.
    session_of, sessions = expected_sessions(everything.select(TRUTH_COLUMNS))
    assert len(session_of) == stored.height
    assert env.table("sessions", "waha_session, session_id").height == sessions.height

    # Replaying the same events changes nothing.
    snapshot = stored.sort(pl.all())
    assert env.sync().ok
    assert env.table("messages", "1").sort(pl.all()).equals(snapshot)


def test_inbox_sensor_requests_runs_for_chunks_with_pending_events(sync_env_factory, receiver):
    import dagster as dg

    from wahaflow.defs.sensors import build_inbox_sensor

    env = sync_env_factory(
        chats=40, messages=300, webhook_url=receiver.webhook_url, webhook_hmac_key=HMAC_KEY
    )
    assert env.sync().ok
    sensor = build_inbox_sensor(30)
    resources = {"postgres": env.defs.resources["postgres"]}
    assert isinstance(
        sensor(dg.build_sensor_context(instance=env.instance, resources=resources)), dg.SkipReason
    )

    chat = env.table("chats", "chat_id").filter(pl.col("chunk_key") == "default-00001")["chat_id"][0]
    env.simulator.account.add_messages(1, chat_ids=[chat], at=int(time.time()) - 3)
    assert env.simulator.webhooks.flush(timeout=10)
    result = sensor(dg.build_sensor_context(instance=env.instance, resources=resources))
    assert [r.tags["dagster/partition"] for r in result.run_requests] == ["default-00001"]


def test_an_edit_for_a_message_never_imported_is_kept_in_rejects(sync_env_factory, receiver):
    import httpx

    from wahaflow.webhook.app import sign

    env = sync_env_factory(chats=20, messages=100)
    assert env.sync().ok
    chat = env.table("chats", "chat_id")["chat_id"][0]
    envelope = {
        "id": "evt_01jedit0000000000000000000",
        "timestamp": int(time.time() * 1000),
        "event": "message.edited",
        "session": "default",
        "engine": "NOWEB",
        "payload": {
            "id": f"true_{chat}_EDITACTION",
            "timestamp": int(time.time()) - 5,
            "from": chat,
            "fromMe": True,
            "body": "new text",
            "editedMessageId": "NEVERIMPORTED",
        },
    }
    body = httpx.Request("POST", "http://x", json=envelope).content
    reply = httpx.post(receiver.webhook_url, content=body, headers={"X-Webhook-Hmac": sign(body, HMAC_KEY)})
    assert reply.status_code == 200
    assert env.sync().ok
    assert pending_events(env) == 0
    rejects = env.table("rejects", "reject_id")
    assert rejects.filter(pl.col("reason").str.contains("message.edited")).height == 1
    assert "NEVERIMPORTED" in rejects["payload"][0]
