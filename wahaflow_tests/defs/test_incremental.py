"""Staying in sync: incremental fetches after a full import, compared with the ground truth."""

from __future__ import annotations

import time

import polars as pl

from wahaflow_tests.defs.test_pipeline import assert_matches_ground_truth

MINUTE = 60


def test_new_messages_land_once_and_sessions_are_rederived(sync_env_factory):
    env = sync_env_factory(chats=60, messages=400)
    assert env.sync().ok
    truth = env.simulator.account.ground_truth_messages()
    busy_chats = truth["chat_id"].unique().sort().head(3).to_list()
    # New messages from a few seconds ago (a sync never reads the current, still-filling second).
    env.simulator.account.add_messages(6, chat_ids=busy_chats, at=int(time.time()) - 3)
    requests_before = env.simulator.stats.total
    report = env.sync()
    assert report.ok and report.messages_fetched >= 6
    assert_matches_ground_truth(env)
    # Requests in proportion to the chats with activity: listing, address book, session, 3 chats.
    assert env.simulator.stats.total - requests_before <= 3 + 3 + 3


def test_late_message_bridging_two_sessions_merges_them(sync_env_factory):
    env = sync_env_factory(chats=20, messages=100)
    account = env.simulator.account
    now = int(time.time()) - 3 * 3600
    target = account.ground_truth_messages()["chat_id"].sort()[0]
    # Two sessions 50 minutes apart, newer than anything else in the chat.
    account.add_messages(1, chat_ids=[target], at=now)
    account.add_messages(1, chat_ids=[target], at=now + 50 * MINUTE)
    assert env.sync().ok
    sessions = env.table("sessions", "started_at").filter(pl.col("chat_id") == target)
    before = sessions.height
    assert_matches_ground_truth(env)

    # A late message 25 minutes after the first (an offline phone), plus new activity in the chat.
    account.add_messages(1, chat_ids=[target], at=now + 25 * MINUTE)
    account.add_messages(1, chat_ids=[target], at=int(time.time()) - 3)
    assert env.sync().ok
    assert_matches_ground_truth(env)
    after = env.table("sessions", "started_at").filter(pl.col("chat_id") == target)
    # The two sessions merged into one; the new message opened a session of its own.
    assert after.height == before
    merged = after.filter(pl.col("started_at").dt.epoch("s") == now)
    assert merged["message_count"].to_list() == [3]


def test_nothing_new_costs_a_handful_of_requests(sync_env_factory):
    env = sync_env_factory(chats=100, messages=500)
    assert env.sync().ok
    before = env.simulator.stats.total
    report = env.sync()
    assert report.ok and report.chunks_run == []
    assert env.simulator.stats.total - before <= 3


def test_messages_of_the_current_second_are_picked_up_by_the_next_sync(sync_env_factory):
    env = sync_env_factory(chats=20, messages=100)
    assert env.sync().ok
    chat = env.simulator.account.ground_truth_messages()["chat_id"].sort()[0]
    env.simulator.account.add_messages(2, chat_ids=[chat])  # stamped with the current second
    env.sync()  # may or may not see them, depending on the clock: they must not be lost either way
    time.sleep(1.1)
    assert env.sync().ok
    assert_matches_ground_truth(env)
